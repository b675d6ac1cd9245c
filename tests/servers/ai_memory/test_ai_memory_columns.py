"""Whole-namespace filters over factorised metadata columns agree with the per-memory predicate."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from servers.ai_memory.columns import MetadataColumns
from servers.ai_memory.filters import Filter, parse_filter
from servers.ai_memory.index import NamespaceIndex
from servers.ai_memory.records import MemoryRecord, content_hash


def record(i: int, metadata: dict[str, Any]) -> MemoryRecord:
    text = f"memory {i}"
    return MemoryRecord(
        id=f"m{i}",
        namespace="ns",
        content=text,
        content_hash=content_hash(text),
        metadata=metadata,
        created_at=1.0,
        updated_at=1.0,
    )


# values that the filter language treats differently: numbers vs booleans, dates vs plain strings,
# lists (membership), nested objects, null, absent fields
scalars = st.one_of(
    st.integers(-3, 3),
    st.sampled_from([1.0, 2.5, -0.0, True, False, None]),
    st.sampled_from(["a", "b", "2024-05-01", "2024-05-01T10:00:00Z", "2023-12-31", ""]),
)
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.fixed_dictionaries({"tier": scalars}))
metadata = st.dictionaries(st.sampled_from(["k", "n", "d", "c"]), values, max_size=4)
operand = st.one_of(
    st.integers(-3, 3), st.sampled_from([1.0, True, False, "a", "b", "2024-05-01", "2024-01-01T00:00:00Z"])
)
paths = st.sampled_from(["k", "n", "d", "c", "c.tier", "absent"])


def field_condition() -> st.SearchStrategy[dict[str, Any]]:
    ranged = st.sampled_from(["$gt", "$gte", "$lt", "$lte"])
    spec = st.one_of(
        operand,
        st.builds(lambda op, v: {op: v}, st.sampled_from(["$eq", "$ne"]), operand),
        st.builds(lambda op, v: {op: v}, st.sampled_from(["$in", "$nin"]), st.lists(operand, min_size=1, max_size=3)),
        st.builds(lambda op, v: {op: v}, ranged, st.sampled_from([0, 1.5, "2024-03-01", "2024-05-01T00:00:00Z"])),
        st.builds(lambda v: {"$exists": v}, st.booleans()),
    )
    return st.builds(lambda p, s: {p: s}, paths, spec)


filters = st.recursive(
    field_condition(),
    lambda inner: st.one_of(
        st.builds(lambda xs: {"$and": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda xs: {"$or": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda x: {"$not": x}, inner),
        st.builds(lambda a, b: {**a, **b}, inner, inner),
    ),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(metadata, min_size=1, max_size=25), filters)
def test_column_mask_equals_the_per_memory_predicate(metas: list[dict[str, Any]], spec: dict[str, Any]) -> None:
    compiled = parse_filter(spec)
    assert isinstance(compiled, Filter)
    columns = MetadataColumns([record(i, m) for i, m in enumerate(metas)])
    expected = [compiled(m) for m in metas]
    assert compiled.mask(columns).tolist() == expected


def test_columns_factorise_values_and_keep_types_apart() -> None:
    metas = [{"v": 1}, {"v": 1.0}, {"v": True}, {"v": [1, 2]}, {"v": [1, 2]}, {}, {"v": {"a": 1}}, {"v": 1}]
    codes, values = MetadataColumns([record(i, m) for i, m in enumerate(metas)]).column("v")
    assert codes.tolist() == [0, 1, 2, 3, 3, 4, 5, 0]
    assert len(values) == 6
    # the boolean stays a boolean: {"v": 1} matches 1, 1.0 and lists holding 1, not True
    one = parse_filter({"v": 1})
    assert one is not None
    got = one.mask(MetadataColumns([record(i, m) for i, m in enumerate(metas)])).tolist()
    assert got == [True, True, False, True, True, False, False, True]


def test_index_mask_follows_appends_updates_removals_and_compaction() -> None:
    idx = NamespaceIndex("ns", 4)
    vec = np.ones((1, 4), dtype=np.float32) / 2
    for i in range(10):
        idx.add([record(i, {"team": "red" if i % 2 else "blue", "i": i})], vec)
    red = parse_filter({"team": "red"})

    def ids() -> set[str]:
        m = idx.mask(2.0, red)
        return {idx.records[r].id for r in np.nonzero(m)[0]}  # type: ignore[union-attr]

    assert ids() == {f"m{i}" for i in range(1, 10, 2)}
    idx.add([record(10, {"team": "red"})], vec)  # appended after the column was built
    idx.add([record(2, {"team": "red"})], vec)  # an update: m2 turns red
    idx.remove("m1")
    assert ids() == {"m2", "m3", "m5", "m7", "m9", "m10"}
    for i in (3, 4, 5, 6, 7, 8):  # enough dead rows to compact
        idx.remove(f"m{i}")
    for i in range(11, 80):
        idx.add([record(i, {"team": "blue"})], vec)
    for i in range(11, 80):
        idx.remove(f"m{i}")
    assert idx.dead < 64  # compacted at least once on the way
    assert ids() == {"m2", "m9", "m10"}

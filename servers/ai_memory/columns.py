"""Metadata columns: a namespace's metadata factorised per field, for whole-namespace filters.

For a field path, every row gets an integer code naming its value there (`MISSING` when the
field is absent), and the distinct values are kept once each. A filter then decides each field
condition once per distinct value (`filters.Filter.mask`) instead of once per memory. Columns
are built on first use of a path and extended as rows are appended; rows are never rewritten
in place (an update appends a new row), so codes stay valid until the index is compacted,
which starts a fresh `MetadataColumns`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from servers.ai_memory.filters import MISSING, lookup
from servers.ai_memory.records import MemoryRecord

__all__ = ["MetadataColumns"]


def _value_key(value: Any) -> Any:
    """A hashable key that is equal only for values every filter condition treats alike:
    same type and value (1, 1.0 and True stay apart), lists and objects item by item."""
    if value is MISSING:
        return MISSING
    if isinstance(value, list):
        return (list, tuple(_value_key(v) for v in value))
    if isinstance(value, dict):
        return (dict, tuple(sorted((str(k), _value_key(v)) for k, v in value.items())))
    return (type(value), value)


class _Column:
    __slots__ = ("built", "codes", "keys", "ordinals", "values")

    def __init__(self) -> None:
        self.codes = np.zeros(0, dtype=np.int32)
        self.values: list[Any] = []
        self.keys: dict[Any, int] = {}
        self.built = 0
        self.ordinals: dict[str, np.ndarray] = {}  # kind -> float per distinct value


class MetadataColumns:
    """Factorised metadata columns over `records` (the index's row list), at most `max_paths`
    paths kept (least recently used dropped)."""

    def __init__(self, records: list[MemoryRecord | None], max_paths: int = 32) -> None:
        self.records = records
        self.max_paths = max_paths
        self._columns: OrderedDict[str, _Column] = OrderedDict()

    def rows(self) -> int:
        return len(self.records)

    def column(self, path: str) -> tuple[np.ndarray, list[Any]]:
        col = self._columns.get(path)
        if col is None:
            col = self._columns[path] = _Column()
            while len(self._columns) > self.max_paths:
                self._columns.popitem(last=False)
        else:
            self._columns.move_to_end(path)
        n = len(self.records)
        if col.built < n:
            fresh = np.empty(n - col.built, dtype=np.int32)
            keys, values = col.keys, col.values
            for i, rec in enumerate(self.records[col.built : n]):
                value = MISSING if rec is None else lookup(rec.metadata, path)
                key = _value_key(value)
                code = keys.get(key)
                if code is None:
                    code = keys[key] = len(values)
                    values.append(value)
                fresh[i] = code
            col.codes = np.concatenate([col.codes, fresh])
            col.built = n
        return col.codes, col.values

    def ordinals(self, path: str, kind: str, convert: Callable[[Any], float | None]) -> np.ndarray:
        """`convert` applied to each distinct value of `path` (NaN where it gives None), as floats,
        cached per kind ("number", "date") and extended as new distinct values appear."""
        _, values = self.column(path)
        col = self._columns[path]
        done = col.ordinals.get(kind, np.zeros(0))
        if len(done) < len(values):
            more = [convert(v) for v in values[len(done) :]]
            extra = np.array([np.nan if x is None else x for x in more], dtype=np.float64)
            done = col.ordinals[kind] = np.concatenate([done, extra])
        return done

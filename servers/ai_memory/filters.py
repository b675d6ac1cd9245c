"""A small metadata filter language (a JSON subset of MongoDB's query operators).

    {"topic": "billing"}                         equality (also matches a list containing it)
    {"topic": {"$in": ["billing", "refunds"]}}   membership
    {"priority": {"$gte": 2, "$lt": 5}}          numeric range
    {"due": {"$gte": "2024-01-01", "$lt": "2024-02-01T12:00:00Z"}}   date range (ISO-8601)
    {"$or": [{"topic": "billing"}, {"vip": true}]}
    {"$and": [...]}, {"$not": {...}}
    {"customer.tier": "gold"}                    dotted path into nested metadata
    {"archived": {"$exists": false}}

Several keys in one object are combined with AND. Operators: $eq $ne $in $nin $gt $gte $lt
$lte $exists, and the combinators $and $or $not. Range operators compare numbers with
numbers and dates with dates (a string operand that parses as ISO-8601 is a date); a value
of another type never matches a range. `parse_filter` validates everything up front and
raises `FilterError` with the offending path, so bad filters become clear tool errors.

A compiled `Filter` is a predicate over one metadata dict, and can also evaluate a whole
namespace at once (`Filter.mask`) from factorised columns: each field condition is decided
once per distinct value of its field, then spread over the rows with numpy. Both ways call the
same comparison functions, so they agree exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any, Protocol

import numpy as np

__all__ = ["MISSING", "Columns", "Filter", "FilterError", "Predicate", "lookup", "parse_filter"]

Predicate = Callable[[dict[str, Any]], bool]
Check = Callable[[Any], bool]  # a condition on one field's value (MISSING when absent)

MISSING: Any = object()
_MISSING = MISSING
_COMPARISONS = {"$gt", "$gte", "$lt", "$lte"}
_FIELD_OPS = {"$eq", "$ne", "$in", "$nin", "$exists", *_COMPARISONS}
_MAX_DEPTH = 16


class FilterError(ValueError):
    pass


def as_date(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str) and len(value) >= 10 and value[4:5] == "-":
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def lookup(meta: dict[str, Any], path: str) -> Any:
    """The value at a dotted `path` of `meta`, or MISSING."""
    cur: Any = meta
    if path in meta:  # a literal key containing dots wins
        return meta[path]
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return _MISSING
        cur = cur[part]
    return cur


def _equals(actual: Any, expected: Any) -> bool:
    if actual is _MISSING:
        return False
    if isinstance(actual, list) and not isinstance(expected, list):
        return any(_equals(a, expected) for a in actual)
    if _is_number(actual) and _is_number(expected):
        return float(actual) == float(expected)
    if isinstance(actual, bool) or isinstance(expected, bool):
        return actual is expected if isinstance(actual, bool) and isinstance(expected, bool) else False
    if type(actual) is not type(expected):
        da, de = as_date(actual), as_date(expected)
        return da is not None and da == de
    return actual == expected


def _compare(op: str, actual: Any, bound: Any) -> bool:
    if _is_number(bound):
        if not _is_number(actual):
            return False
        a, b = float(actual), float(bound)
    else:
        a, b = as_date(actual), as_date(bound)  # type: ignore[assignment]
        if a is None or b is None:
            return False
    if op == "$gt":
        return a > b
    if op == "$gte":
        return a >= b
    if op == "$lt":
        return a < b
    return a <= b


class Columns(Protocol):
    """A namespace's metadata, factorised per field: `column(path)` gives an int array of codes,
    one per row, and the distinct values (`MISSING` included) that the codes index."""

    def column(self, path: str) -> tuple[np.ndarray, list[Any]]: ...

    def ordinals(self, path: str, kind: str, convert: Callable[[Any], float | None]) -> np.ndarray: ...

    def rows(self) -> int: ...


class Filter:
    """A compiled filter node: call it on a metadata dict, or `mask` a whole namespace."""

    def __call__(self, meta: dict[str, Any]) -> bool:
        raise NotImplementedError

    def mask(self, columns: Columns) -> np.ndarray:
        raise NotImplementedError


def _number(value: Any) -> float | None:
    return float(value) if _is_number(value) else None


def _timestamp(value: Any) -> float | None:
    if value is None:
        return None
    parsed = as_date(value)
    return None if parsed is None else parsed.timestamp()


_ORDERS = {"$gt": np.greater, "$gte": np.greater_equal, "$lt": np.less, "$lte": np.less_equal}


class _Field(Filter):
    """Conditions on one field. A field of only range conditions (`ranges`: op, kind, bound)
    is decided with numpy over the distinct values' numbers or timestamps; a value of the
    other kind (or none) becomes NaN there and, as in `_compare`, matches no range."""

    def __init__(self, path: str, checks: list[Check], ranges: list[tuple[str, str, float]] | None = None) -> None:
        self.path, self.checks, self.ranges = path, checks, ranges

    def test(self, value: Any) -> bool:
        return all(check(value) for check in self.checks)

    def __call__(self, meta: dict[str, Any]) -> bool:
        return self.test(lookup(meta, self.path))

    def mask(self, columns: Columns) -> np.ndarray:
        codes, values = columns.column(self.path)
        if self.ranges:
            decided = np.ones(len(values), dtype=bool)
            for op, kind, bound in self.ranges:
                convert = _number if kind == "number" else _timestamp
                decided &= _ORDERS[op](columns.ordinals(self.path, kind, convert), bound)
        else:
            decided = np.fromiter((self.test(v) for v in values), dtype=bool, count=len(values))
        return decided[codes]


class _Join(Filter):
    """All of `parts` (`every`: $and, several keys in one object) or any of them ($or)."""

    def __init__(self, parts: list[Filter], *, every: bool) -> None:
        self.parts, self.every = parts, every

    def __call__(self, meta: dict[str, Any]) -> bool:
        return (all if self.every else any)(p(meta) for p in self.parts)

    def mask(self, columns: Columns) -> np.ndarray:
        out = np.full(columns.rows(), self.every, dtype=bool)  # an empty object matches everything
        for p in self.parts:
            if self.every:
                out &= p.mask(columns)
            else:
                out |= p.mask(columns)
        return out


class _Not(Filter):
    def __init__(self, part: Filter) -> None:
        self.part = part

    def __call__(self, meta: dict[str, Any]) -> bool:
        return not self.part(meta)

    def mask(self, columns: Columns) -> np.ndarray:
        return ~self.part.mask(columns)


def _field_filter(path: str, spec: Any, where: str) -> Filter:
    if not isinstance(spec, dict) or not any(k.startswith("$") for k in spec):
        if isinstance(spec, dict | list):
            raise FilterError(f"{where}: equality value must be a scalar; use $in for lists")
        return _Field(path, [lambda v: _equals(v, spec)])
    checks: list[Check] = []
    for op, operand in spec.items():
        if op not in _FIELD_OPS:
            raise FilterError(f"{where}: unknown operator {op!r} (allowed: {', '.join(sorted(_FIELD_OPS))})")
        if op in ("$eq", "$ne") and isinstance(operand, dict | list):
            raise FilterError(f"{where}.{op}: operand must be a scalar")
        if op in ("$in", "$nin"):
            if not isinstance(operand, list) or not operand:
                raise FilterError(f"{where}.{op}: operand must be a non-empty list")
            if any(isinstance(v, dict | list) for v in operand):
                raise FilterError(f"{where}.{op}: list items must be scalars")
        if op in _COMPARISONS and not _is_number(operand) and as_date(operand) is None:
            raise FilterError(f"{where}.{op}: operand must be a number or an ISO-8601 date, got {operand!r}")
        if op == "$exists" and not isinstance(operand, bool):
            raise FilterError(f"{where}.$exists: operand must be true or false")
        checks.append(_make_check(op, operand))
    ranges = None
    if all(op in _COMPARISONS for op in spec):
        ranges = [
            (op, "number", float(v)) if _is_number(v) else (op, "date", as_date(v).timestamp())  # type: ignore[union-attr]
            for op, v in spec.items()
        ]
    return _Field(path, checks, ranges)


def _make_check(op: str, operand: Any) -> Check:
    if op == "$eq":
        return lambda v: _equals(v, operand)
    if op == "$ne":
        return lambda v: not _equals(v, operand)
    if op == "$in":
        return lambda v: any(_equals(v, x) for x in operand)
    if op == "$nin":
        return lambda v: not any(_equals(v, x) for x in operand)
    if op == "$exists":
        return lambda v: (v is not MISSING) is operand

    def check(v: Any) -> bool:
        if v is MISSING or v is None:
            return False
        return _compare(op, v, operand)

    return check


def _parse(node: Any, where: str, depth: int) -> Filter:
    if depth > _MAX_DEPTH:
        raise FilterError(f"{where}: filter nested deeper than {_MAX_DEPTH} levels")
    if not isinstance(node, dict):
        raise FilterError(f"{where}: a filter must be an object, got {type(node).__name__}")
    parts: list[Filter] = []
    for key, value in node.items():
        if not isinstance(key, str) or not key:
            raise FilterError(f"{where}: empty field name")
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise FilterError(f"{where}.{key}: operand must be a non-empty list of filters")
            subs = [_parse(v, f"{where}.{key}[{i}]", depth + 1) for i, v in enumerate(value)]
            parts.append(_Join(subs, every=key == "$and"))
        elif key == "$not":
            parts.append(_Not(_parse(value, f"{where}.$not", depth + 1)))
        elif key.startswith("$"):
            raise FilterError(f"{where}: unknown top-level operator {key!r} (allowed: $and, $or, $not)")
        else:
            parts.append(_field_filter(key, value, f"{where}.{key}"))
    return parts[0] if len(parts) == 1 else _Join(parts, every=True)


def parse_filter(spec: dict[str, Any] | None) -> Filter | None:
    """Validate a filter and compile it (None: match all)."""
    if spec is None or spec == {}:
        return None
    return _parse(spec, "filters", 0)

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
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

__all__ = ["FilterError", "Predicate", "parse_filter"]

Predicate = Callable[[dict[str, Any]], bool]

_MISSING = object()
_COMPARISONS = {"$gt", "$gte", "$lt", "$lte"}
_FIELD_OPS = {"$eq", "$ne", "$in", "$nin", "$exists", *_COMPARISONS}
_MAX_DEPTH = 16


class FilterError(ValueError):
    pass


def _as_date(value: Any) -> datetime | None:
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


def _lookup(meta: dict[str, Any], path: str) -> Any:
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
        da, de = _as_date(actual), _as_date(expected)
        return da is not None and da == de
    return actual == expected


def _compare(op: str, actual: Any, bound: Any) -> bool:
    if _is_number(bound):
        if not _is_number(actual):
            return False
        a, b = float(actual), float(bound)
    else:
        a, b = _as_date(actual), _as_date(bound)  # type: ignore[assignment]
        if a is None or b is None:
            return False
    if op == "$gt":
        return a > b
    if op == "$gte":
        return a >= b
    if op == "$lt":
        return a < b
    return a <= b


def _field_predicate(path: str, spec: Any, where: str) -> Predicate:
    if not isinstance(spec, dict) or not any(k.startswith("$") for k in spec):
        if isinstance(spec, dict | list):
            raise FilterError(f"{where}: equality value must be a scalar; use $in for lists")
        return lambda meta: _equals(_lookup(meta, path), spec)
    checks: list[Predicate] = []
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
        if op in _COMPARISONS and not _is_number(operand) and _as_date(operand) is None:
            raise FilterError(f"{where}.{op}: operand must be a number or an ISO-8601 date, got {operand!r}")
        if op == "$exists" and not isinstance(operand, bool):
            raise FilterError(f"{where}.$exists: operand must be true or false")
        checks.append(_make_check(op, path, operand))
    return lambda meta: all(c(meta) for c in checks)


def _make_check(op: str, path: str, operand: Any) -> Predicate:
    if op == "$eq":
        return lambda m: _equals(_lookup(m, path), operand)
    if op == "$ne":
        return lambda m: not _equals(_lookup(m, path), operand)
    if op == "$in":
        return lambda m: any(_equals(_lookup(m, path), v) for v in operand)
    if op == "$nin":
        return lambda m: not any(_equals(_lookup(m, path), v) for v in operand)
    if op == "$exists":
        return lambda m: (_lookup(m, path) is not _MISSING) is operand

    def check(m: dict[str, Any]) -> bool:
        actual = _lookup(m, path)
        if actual is _MISSING or actual is None:
            return False
        return _compare(op, actual, operand)

    return check


def _parse(node: Any, where: str, depth: int) -> Predicate:
    if depth > _MAX_DEPTH:
        raise FilterError(f"{where}: filter nested deeper than {_MAX_DEPTH} levels")
    if not isinstance(node, dict):
        raise FilterError(f"{where}: a filter must be an object, got {type(node).__name__}")
    parts: list[Predicate] = []
    for key, value in node.items():
        if not isinstance(key, str) or not key:
            raise FilterError(f"{where}: empty field name")
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise FilterError(f"{where}.{key}: operand must be a non-empty list of filters")
            subs = [_parse(v, f"{where}.{key}[{i}]", depth + 1) for i, v in enumerate(value)]
            if key == "$and":
                parts.append(lambda m, subs=subs: all(s(m) for s in subs))
            else:
                parts.append(lambda m, subs=subs: any(s(m) for s in subs))
        elif key == "$not":
            sub = _parse(value, f"{where}.$not", depth + 1)
            parts.append(lambda m, sub=sub: not sub(m))
        elif key.startswith("$"):
            raise FilterError(f"{where}: unknown top-level operator {key!r} (allowed: $and, $or, $not)")
        else:
            parts.append(_field_predicate(key, value, f"{where}.{key}"))
    return lambda meta: all(p(meta) for p in parts)


def parse_filter(spec: dict[str, Any] | None) -> Predicate | None:
    """Validate a filter and compile it to a predicate over a metadata dict (None: match all)."""
    if spec is None or spec == {}:
        return None
    return _parse(spec, "filters", 0)

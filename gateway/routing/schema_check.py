"""A quick yes for the common tool input schemas, compiled once per route.

jsonschema's `Draft202012Validator.iter_errors` costs ~6 µs for a one-property object (a validator evolved per
subschema, the type checker's registry, a generator per keyword), on every call that reaches a backend. Most
MCP tools declare a flat object: `properties` of plain types, `required`, perhaps `additionalProperties`.
`compile_schema` turns such a schema into a plain Python predicate that answers True only where jsonschema
finds no error; anything else it answers False, and the caller asks jsonschema (which writes the message, so
errors read exactly as before). A schema using any keyword outside the subset below compiles to None: then
jsonschema checks every call, as it always did.

The subset, each keyword with jsonschema's own semantics (a keyword applies only to instances of its type):
`type` (one name or a list), `properties`, `required`, `additionalProperties` (a boolean or a schema), `items`
(a schema or a boolean), `anyOf`, `enum`/`const` of strings, `minimum`/`maximum`/`exclusiveMinimum`/
`exclusiveMaximum`, `minLength`/`maxLength`, `minItems`/`maxItems`, boolean schemas, and the annotations
(`title`, `description`, `default`, `examples`, `format`, which jsonschema does not assert without a format
checker, ...). tests/gateway/test_schema_check.py holds both to agree on arbitrary JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Check = Callable[[Any], bool]

ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "default",
        "examples",
        "format",
        "deprecated",
        "readOnly",
        "writeOnly",
        "$comment",
        "contentEncoding",
        "contentMediaType",
    }
)
ROOT_ONLY = frozenset({"$schema", "$id"})  # read by jsonschema only to resolve `$ref`s, which are not compiled
_PLAIN: dict[str, type] = {"string": str, "object": dict, "array": list, "null": type(None), "boolean": bool}
_OBJECT_KEYWORDS = frozenset({"type", "properties", "required", "additionalProperties"})
_BOUNDS: dict[str, Callable[[Any, Any], bool]] = {  # jsonschema's comparisons, negated (a NaN passes every one)
    "minimum": lambda value, bound: not value < bound,
    "maximum": lambda value, bound: not value > bound,
    "exclusiveMinimum": lambda value, bound: not value <= bound,
    "exclusiveMaximum": lambda value, bound: not value >= bound,
}
_LENGTHS: dict[str, tuple[type[str] | type[list[Any]], bool]] = {
    "minLength": (str, True),
    "maxLength": (str, False),
    "minItems": (list, True),
    "maxItems": (list, False),
}


class _Unsupported(Exception):
    pass


def compile_schema(schema: Any) -> Check | None:
    """A predicate that is True only for instances `schema` accepts (False: ask jsonschema), or None when the
    schema is outside the subset this module compiles."""
    if isinstance(schema, dict):
        for key in ROOT_ONLY:
            if key in schema and not isinstance(schema[key], str):
                return None
        schema = {key: value for key, value in schema.items() if key not in ROOT_ONLY}
    try:
        return _compile(schema)
    except _Unsupported:
        return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _always(value: Any) -> bool:
    return True


def _never(value: Any) -> bool:
    return False


def _every(checks: tuple[Check, ...]) -> Check:
    def every(instance: Any) -> bool:
        for check in checks:  # noqa: SIM110 (a loop: `all()` builds a generator on every call)
            if not check(instance):
                return False
        return True

    return every


def _type_check(names: Any) -> Check:
    names = [names] if isinstance(names, str) else names
    if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
        raise _Unsupported
    if set(names) - {*_PLAIN, "number", "integer"}:
        raise _Unsupported
    plain = tuple(_PLAIN[name] for name in names if name in _PLAIN)
    if "number" in names:

        def number(value: Any) -> bool:
            return isinstance(value, plain) or _is_number(value)

        return number
    if "integer" in names:

        def integer(value: Any) -> bool:
            if isinstance(value, plain):
                return True
            if isinstance(value, bool):
                return False
            return isinstance(value, int) or (isinstance(value, float) and value.is_integer())

        return integer

    def typed(value: Any) -> bool:
        return isinstance(value, plain)

    return typed


def _plain(schema: Any) -> tuple[type, ...] | None:
    """The Python types of a schema that is only a `type` of plain names (no number, no integer)."""
    if not isinstance(schema, dict) or not isinstance(names := schema.get("type"), str | list):
        return None
    names = [names] if isinstance(names, str) else names
    if not names or not all(isinstance(name, str) and name in _PLAIN for name in names):
        return None
    if any(key != "type" and key not in ANNOTATIONS for key in schema):
        return None
    return tuple(_PLAIN[name] for name in names)


def _object(schema: dict[str, Any]) -> Check:
    """The usual tool schema, `{"type": "object", "properties": ..., "required": ..., "additionalProperties":
    ...}`, as one function: a property of plain types is checked with `isinstance`, without a call."""
    properties = schema.get("properties", {})
    required = schema.get("required", [])
    additional = schema.get("additionalProperties", True)
    if not isinstance(properties, dict) or not isinstance(required, list):
        raise _Unsupported
    if not all(isinstance(name, str) for name in required) or not isinstance(additional, bool | dict):
        raise _Unsupported
    names = tuple(required)
    compiled = tuple((name, _plain(sub), _compile(sub)) for name, sub in properties.items())
    known = frozenset(properties)
    extra = None if additional is True else _compile(additional)
    closed = additional is False

    def check(instance: Any) -> bool:
        if not isinstance(instance, dict):
            return False
        for name in names:
            if name not in instance:
                return False
        for name, plain, sub in compiled:
            if name in instance:
                value = instance[name]
                if plain is not None:
                    if not isinstance(value, plain):
                        return False
                elif not sub(value):
                    return False
        if closed:
            return known.issuperset(instance)
        if extra is not None:
            for name, value in instance.items():
                if name not in known and not extra(value):
                    return False
        return True

    return check


def _compile(schema: Any) -> Check:
    if schema is True:
        return _always
    if schema is False:
        return _never
    if not isinstance(schema, dict):
        raise _Unsupported
    if schema.get("type") == "object" and all(key in _OBJECT_KEYWORDS or key in ANNOTATIONS for key in schema):
        return _object(schema)
    checks = [_keyword(key, value, schema) for key, value in schema.items() if key not in ANNOTATIONS]
    if not checks:
        return _always
    return checks[0] if len(checks) == 1 else _every(tuple(checks))


def _keyword(key: str, value: Any, schema: dict[str, Any]) -> Check:
    """One keyword of `schema` as jsonschema applies it (to instances of its type only)."""
    if key == "type":
        return _type_check(value)
    if key == "properties":
        return _properties(value)
    if key == "required":
        return _required(value)
    if key == "additionalProperties":
        return _additional(value, schema.get("properties", {}))
    if key == "items":
        return _items(_compile(value))
    if key == "anyOf":
        if not isinstance(value, list) or not value:
            raise _Unsupported
        return _any_of(tuple(_compile(option) for option in value))
    if key == "enum" or key == "const":
        allowed = value if key == "enum" else [value]
        if not isinstance(allowed, list) or not all(isinstance(each, str) for each in allowed):
            raise _Unsupported  # jsonschema's equality of numbers and booleans is its own: not compiled
        return _one_of_strings(frozenset(allowed))
    if key in _BOUNDS:
        if not _is_number(value):
            raise _Unsupported
        return _bound(_BOUNDS[key], value)
    if key in _LENGTHS:
        if type(value) is not int:
            raise _Unsupported
        kind, at_least = _LENGTHS[key]
        return _length(kind, at_least, value)
    raise _Unsupported  # a keyword outside the subset (`$ref`, `pattern`, `oneOf`, `not`, ...)


def _required(names: Any) -> Check:
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise _Unsupported
    wanted = tuple(names)

    def required(instance: Any) -> bool:
        return not isinstance(instance, dict) or all(name in instance for name in wanted)

    return required


def _items(item: Check) -> Check:
    def items(instance: Any) -> bool:
        return not isinstance(instance, list) or all(item(value) for value in instance)

    return items


def _any_of(options: tuple[Check, ...]) -> Check:
    def any_of(instance: Any) -> bool:
        return any(option(instance) for option in options)

    return any_of


def _one_of_strings(allowed: frozenset[str]) -> Check:
    def enum(instance: Any) -> bool:
        return isinstance(instance, str) and instance in allowed

    return enum


def _bound(holds: Callable[[Any, Any], bool], bound: Any) -> Check:
    def within(instance: Any) -> bool:
        return not _is_number(instance) or holds(instance, bound)

    return within


def _length(kind: type[str] | type[list[Any]], at_least: bool, n: int) -> Check:
    def length(instance: Any) -> bool:
        if not isinstance(instance, kind):
            return True
        size = len(instance)
        return size >= n if at_least else size <= n

    return length


def _properties(properties: Any) -> Check:
    if not isinstance(properties, dict):
        raise _Unsupported
    compiled = tuple((name, _compile(sub)) for name, sub in properties.items())

    def check(instance: Any) -> bool:
        if not isinstance(instance, dict):
            return True
        for name, sub in compiled:  # noqa: SIM110 (a loop: `all()` builds a generator on every call)
            if name in instance and not sub(instance[name]):
                return False
        return True

    return check


def _additional(additional: Any, properties: Any) -> Check:
    if not isinstance(properties, dict):
        raise _Unsupported
    known = frozenset(properties)
    if additional is True:
        return _always
    if additional is False:

        def closed(instance: Any) -> bool:
            return not isinstance(instance, dict) or known.issuperset(instance)

        return closed
    extra = _compile(additional)

    def open_(instance: Any) -> bool:
        return not isinstance(instance, dict) or all(extra(v) for k, v in instance.items() if k not in known)

    return open_

"""The compiled argument check agrees with jsonschema (Draft 2020-12) on arbitrary JSON, for arbitrary schemas
of the subset it compiles; a schema outside it compiles to None (jsonschema then decides every call); and an
invalid call's error reads exactly as jsonschema words it."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from gateway.backends.session import Backend
from gateway.config.loader import GatewaySettings, ServerConfig
from gateway.routing.catalog import Catalog
from gateway.routing.schema_check import compile_schema

NAMES = ["a", "b", "text", "n"]
DIALECTS = ["https://json-schema.org/draft/2020-12/schema", "http://json-schema.org/draft-07/schema#"]
TYPES = ["string", "integer", "number", "boolean", "null", "object", "array"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=False),
    st.sampled_from([0, 1, -1, 0.0, 1.0, 2.5, True, False, "", "a", "b", "ab", "x" * 5]),
    st.text(max_size=6),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.sampled_from([*NAMES, "z", "other"]), inner, max_size=4)
    ),
    max_leaves=12,
)
annotations = st.dictionaries(
    st.sampled_from(["title", "description", "default", "examples", "format", "deprecated", "$comment"]),
    st.sampled_from(["T", "email", "date-time", 1, None, True, ["x"]]),
    max_size=2,
)


def _with(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    return {**extra, **base}


def subschemas(depth: int) -> st.SearchStrategy[Any]:
    """Schemas of the compiled subset (booleans included)."""
    kinds = [
        st.booleans(),
        st.builds(_with, st.builds(lambda t: {"type": t}, st.sampled_from(TYPES)), annotations),
        st.builds(lambda ts: {"type": ts}, st.lists(st.sampled_from(TYPES), min_size=1, max_size=3)),
        st.builds(lambda e: {"enum": e}, st.lists(st.sampled_from(["a", "b", "", "ab"]), max_size=3)),
        st.builds(lambda c: {"const": c}, st.sampled_from(["a", ""])),
        st.builds(
            lambda k, bound, t: {k: bound, **({"type": t} if t else {})},
            st.sampled_from(["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"]),
            st.sampled_from([0, 1, -1, 1.5, 2**64]),
            st.sampled_from([None, "integer", "number"]),
        ),
        st.builds(
            lambda k, n: {k: n},
            st.sampled_from(["minLength", "maxLength", "minItems", "maxItems"]),
            st.integers(min_value=0, max_value=3),
        ),
    ]
    if depth > 0:
        inner = subschemas(depth - 1)
        kinds += [
            st.builds(lambda s: {"type": "array", "items": s}, inner),
            st.builds(lambda s: {"items": s}, inner),
            st.builds(lambda options: {"anyOf": options}, st.lists(inner, min_size=1, max_size=3)),
            objects(depth - 1),
        ]
    return st.one_of(kinds)


def objects(depth: int) -> st.SearchStrategy[dict[str, Any]]:
    def build(props: dict[str, Any], required: list[str], additional: Any, typed: bool, ann: dict[str, Any]) -> Any:
        schema: dict[str, Any] = dict(ann)
        if typed:
            schema["type"] = "object"
        schema["properties"] = props
        if required:
            schema["required"] = required
        if additional is not None:
            schema["additionalProperties"] = additional
        return schema

    return st.builds(
        build,
        st.dictionaries(st.sampled_from(NAMES), subschemas(depth), max_size=3),
        st.lists(st.sampled_from(NAMES), max_size=3, unique=True),
        st.one_of(st.none(), st.booleans(), subschemas(0)),
        st.booleans(),
        annotations,
    )


def instances_for(schema: Any) -> st.SearchStrategy[Any]:
    names = list(schema.get("properties", {})) if isinstance(schema, dict) else []
    return st.one_of(json_values, st.dictionaries(st.sampled_from([*NAMES, *names, "z"]), json_values, max_size=5))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.one_of(objects(2), subschemas(2)), st.sampled_from([None, *DIALECTS]))
def test_the_compiled_check_agrees_with_jsonschema(data: st.DataObject, schema: Any, dialect: str | None) -> None:
    if dialect is not None and isinstance(schema, dict):
        schema = {"$schema": dialect, **schema}
    check = compile_schema(schema)
    assert check is not None, schema  # every schema of the subset compiles
    validator = Draft202012Validator(schema)
    for _ in range(5):
        instance = data.draw(instances_for(schema))
        expected = next(iter(validator.iter_errors(instance)), None) is None
        assert check(instance) is expected, (schema, instance)


def test_schemas_outside_the_subset_are_left_to_jsonschema() -> None:
    for schema in [
        {"type": "object", "properties": {"a": {"$ref": "#/$defs/x"}}, "$defs": {"x": {"type": "string"}}},
        {"type": "object", "properties": {"a": {"type": "string", "pattern": "^a"}}},
        {"oneOf": [{"type": "string"}]},
        {"type": "object", "patternProperties": {"^x": {"type": "string"}}},
        {"type": "strin"},
        {"enum": [1, "a"]},
        {"items": [{"type": "string"}]},
        {"minimum": "1"},
        {"type": "object", "properties": {"a": {"not": {"type": "null"}}}},
        {"$id": 3, "type": "object"},
    ]:
        assert compile_schema(schema) is None, schema


def _route(schema: dict[str, Any]) -> Any:
    backend = Backend("s", ServerConfig(command="x"), GatewaySettings())
    backend.tools = [{"name": "t", "inputSchema": schema}]
    catalog = Catalog()
    catalog.rebuild([backend])
    return catalog.resolve("s_t")


def _jsonschema_words(schema: dict[str, Any], arguments: Any) -> str | None:
    error = next(iter(Draft202012Validator(schema).iter_errors(arguments)), None)
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path) or "(arguments)"
    return f"Invalid arguments for tool 's_t': {where}: {error.message}"


FLAT = {
    "type": "object",
    "properties": {"text": {"type": "string", "title": "Text"}, "n": {"type": "integer", "minimum": 1}},
    "required": ["text"],
    "additionalProperties": False,
}


@settings(max_examples=300, deadline=None)
@given(st.one_of(json_values, st.dictionaries(st.sampled_from(["text", "n", "z"]), json_values, max_size=3)))
def test_a_route_words_invalid_arguments_as_jsonschema_does(arguments: Any) -> None:
    route = _route(FLAT)
    assert route.validation_error(arguments) == _jsonschema_words(FLAT, arguments)


def test_a_valid_call_on_a_flat_schema_skips_jsonschema() -> None:
    route = _route(FLAT)
    assert route.validation_error({"text": "hi", "n": 2}) is None
    assert route._validator is None  # answered by the compiled check: no validator was ever built
    assert route.validation_error({"text": "hi", "n": 0}) == (
        "Invalid arguments for tool 's_t': n: 0 is less than the minimum of 1"
    )

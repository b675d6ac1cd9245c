"""Check a request our client sent against the vendor's own API spec in `../shared/specs/`.

The specs sit beside the repository (CI clones `shared/` next to it), or where `VENDOR_SPECS_DIR`
says. If they are missing, the
check warns and returns instead of failing the test, so the other assertions still run.
"""

from __future__ import annotations

import copy
import json
import os
import re
import warnings
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import jsonschema

# `VENDOR_SPECS_DIR` points elsewhere when `shared/` is not beside the checkout (e.g. a worktree).
SPECS = Path(os.environ.get("VENDOR_SPECS_DIR") or Path(__file__).resolve().parents[2].parent / "shared" / "specs")


@cache
def load_spec(name: str) -> dict[str, Any] | None:
    path = SPECS / name
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def find_operation(spec: dict[str, Any], method: str, path: str) -> tuple[dict, list[dict]]:
    """The operation for `method path` and its parameters; literal segments beat templated ones."""
    best: tuple[int, str] | None = None
    for template in spec["paths"]:
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path) and method.lower() in spec["paths"][template]:
            literal = len(re.sub(r"\{[^}]+\}", "", template))
            if best is None or literal > best[0]:
                best = (literal, template)
    assert best is not None, f"{method} {path} is not in the spec"
    item = spec["paths"][best[1]]
    op = item[method.lower()]
    return op, [*item.get("parameters", []), *op.get("parameters", [])]


def check_request(
    spec_name: str,
    request: httpx.Request,
    *,
    strip_prefix: str = "",
    relax_required: frozenset[str] = frozenset(),
    relax_properties: frozenset[str] = frozenset(),
) -> None:
    """Assert the request's path, query and body conform to the spec's operation.

    `relax_required` drops top-level required body fields the vendor documents as optional;
    `relax_properties` accepts any value for top-level body fields whose spec type is known wrong.
    """
    spec = load_spec(spec_name)
    if spec is None:
        warnings.warn(f"spec {spec_name} not found under {SPECS}; request not checked", stacklevel=2)
        return
    url = urlsplit(str(request.url))
    path = url.path[len(strip_prefix) :] if strip_prefix and url.path.startswith(strip_prefix) else url.path
    op, params = find_operation(spec, request.method, path)
    query = dict(parse_qsl(url.query, keep_blank_values=True))
    declared = {p["name"]: p for p in params if p.get("in") == "query"}
    unknown = set(query) - set(declared)
    assert not unknown, f"query parameters not in the spec: {sorted(unknown)}"
    for name, param in declared.items():
        # `token` is sent as the Authorization header, which Slack accepts in its place.
        if param.get("required") and name != "token":
            assert name in query, f"required query parameter {name} missing"
    body = json.loads(request.content) if request.content else None
    if "requestBody" in op:
        schema = op["requestBody"]["content"]["application/json"]["schema"]
        schema = _resolve(spec, schema)
        schema = copy.deepcopy(schema)
        schema["required"] = [r for r in schema.get("required", []) if r not in relax_required]
        for name in relax_properties:
            schema.get("properties", {})[name] = {}
        root = {"allOf": [schema], "components": spec.get("components", {})}
        jsonschema.validate(body, root)
    form = {p["name"]: p for p in params if p.get("in") == "formData"}
    if form:
        assert isinstance(body, dict), "expected a JSON object body"
        unknown = set(body) - set(form)
        assert not unknown, f"body fields not in the spec: {sorted(unknown)}"
        missing = {n for n, p in form.items() if p.get("required") and n != "token"} - set(body)
        assert not missing, f"required body fields missing: {sorted(missing)}"


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].split("/")[-1]]
    return schema

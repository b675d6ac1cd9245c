"""The house a newcomer walks through stays described: every module of `gateway/` has its line in
docs/architecture.md's module table (and no line names a module that is gone), and every folder's
`__init__.py` says what it owns."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_gateway_module_has_its_line_in_the_architecture_doc() -> None:
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "gateway").rglob("*.py") if p.name != "__init__.py"}
    doc = (ROOT / "docs" / "architecture.md").read_text()
    rows = set(re.findall(r"^\| `(gateway/[\w/]+\.py)` \|", doc, re.MULTILINE))
    assert modules - rows == set(), "modules without a line in docs/architecture.md"
    assert rows - modules == set(), "lines in docs/architecture.md naming no module"


def test_every_gateway_folder_says_what_it_owns() -> None:
    for init in sorted((ROOT / "gateway").rglob("__init__.py")):
        docstring = ast.get_docstring(ast.parse(init.read_text()))
        assert docstring and len(docstring) > 40, f"{init.relative_to(ROOT)} has no docstring saying what it owns"

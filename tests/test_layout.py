"""The rules docs/architecture.md states for the package's layout: short modules, stage packages whose
`__init__` imports nothing, and a page that names every package and top-level module there is."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "westwind"
MAX_LINES = 450
# Packages whose __init__ exports their entry points; every other package's __init__ imports nothing.
EXPORTING_PACKAGES = {"judges", "generation", "report"}


def test_no_module_is_over_the_limit():
    long = {
        str(path.relative_to(PACKAGE)): lines
        for path in PACKAGE.rglob("*.py")
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"over {MAX_LINES} lines: {long}"


def test_stage_packages_import_nothing_on_import():
    for init in PACKAGE.glob("*/__init__.py"):
        if init.parent.name in EXPORTING_PACKAGES:
            continue
        imports = [
            ast.unparse(node)
            for node in ast.parse(init.read_text()).body
            if isinstance(node, ast.Import)
            or (isinstance(node, ast.ImportFrom) and node.module != "__future__")
        ]
        assert not imports, f"{init.relative_to(PACKAGE)} imports {imports}"


def test_architecture_page_names_every_package_and_top_level_module():
    tree = (REPO / "docs" / "architecture.md").read_text().split("```")[1]
    named = set(re.findall(r"[\w]+(?=/|\.py)", tree))
    packages = {path.parent.name for path in PACKAGE.glob("*/__init__.py")}
    modules = {path.stem for path in PACKAGE.glob("*.py")} - {"__init__"}
    assert packages - named == set() and modules - named == set()

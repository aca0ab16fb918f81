"""consent_client stands alone: its own pyproject, and imports of nothing but the standard
library, aiokafka, httpx (orjson when present) and, in its FastAPI module only, FastAPI."""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "clients" / "python"
ALLOWED = {"aiokafka", "httpx", "orjson", "consent_client"}


def test_the_client_imports_nothing_of_the_services() -> None:
    problems = []
    for path in sorted((PACKAGE / "src" / "consent_client").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                ok = top in sys.stdlib_module_names or top in ALLOWED
                ok = ok or (top == "fastapi" and path.name == "fastapi.py")
                if not ok:
                    problems.append(f"{path.name}: import {name}")
    assert not problems, problems


def test_its_own_pyproject() -> None:
    meta = tomllib.loads((PACKAGE / "pyproject.toml").read_text())
    deps = {d.split(">")[0].split("=")[0] for d in meta["project"]["dependencies"]}
    assert deps == {"aiokafka", "httpx"}
    assert meta["project"]["optional-dependencies"]["fastapi"][0].startswith("fastapi")
    assert meta["build-system"]["build-backend"] == "hatchling.build"

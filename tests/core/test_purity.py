"""The tally core stays pure: no event loop, no Redis, no web framework, no sockets."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "service" / "core"
FORBIDDEN = {"asyncio", "redis", "starlette", "websockets", "uvicorn"}
MODULES = sorted(CORE.glob("*.py"))


def imported_modules(source: str) -> set[str]:
    """Every module an ``import`` or ``from ... import`` names, at any depth of the code.

    Relative imports keep their dots: ``from ..feed import x`` gives ``..feed``.
    """
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, (ast.Name, ast.Attribute))
            and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr)
            in ("__import__", "import_module")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value)
    return names


def test_the_core_has_modules_to_check() -> None:
    assert {path.name for path in MODULES} >= {
        "seq.py",
        "election.py",
        "events.py",
        "decoding.py",
        "records.py",
        "totals.py",
        "states.py",
        "headline.py",
        "tally.py",
    }


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.name)
def test_a_core_module_imports_nothing_of_asyncio_redis_or_the_web_stack(path: Path) -> None:
    imported = imported_modules(path.read_text(encoding="utf-8"))

    assert {name for name in imported if name.split(".")[0] in FORBIDDEN} == set()


def test_the_core_may_import_only_itself_of_the_service() -> None:
    outside = {
        name
        for path in MODULES
        for name in imported_modules(path.read_text(encoding="utf-8"))
        if name.startswith("..")
        or (name.startswith("service") and not name.startswith("service.core"))
    }

    assert outside == set()


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("import asyncio", {"asyncio"}),
        ("import redis.asyncio as aioredis", {"redis.asyncio"}),
        ("from starlette.websockets import WebSocket", {"starlette.websockets"}),
        ("def f():\n    import uvicorn", {"uvicorn"}),
        ("import importlib\nimportlib.import_module('websockets')", {"importlib", "websockets"}),
        ("from . import seq", {"."}),
        ("from ..feed import Feed", {"..feed"}),
    ],
)
def test_the_import_check_finds_imports_wherever_they_are(source: str, found: set[str]) -> None:
    assert imported_modules(source) == found

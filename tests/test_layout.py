"""The layout holds: imports run one way (no circles), and the bundled clients use only the
service code meant for them (core, data, protocol)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOR_CLIENTS = ("service.core", "service.data", "service.protocol")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in ("service", "clients")
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules ``path`` imports when it runs (not those for type checking only)."""
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names if alias.name in known)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    if full in known:
                        found.add(full)
                    elif node.module in known:
                        found.add(node.module)
            for field in ("body", "orelse", "finalbody", "handlers"):
                inner = getattr(node, field, None)
                if isinstance(inner, list):
                    visit(inner)

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return found


def test_no_module_imports_one_that_imports_it_back() -> None:
    known = modules()
    graph = {name: imports(path, known) for name, path in known.items()}
    circles: list[list[str]] = []
    done: set[str] = set()

    def walk(name: str, trail: list[str]) -> None:
        if name in trail:
            circles.append([*trail[trail.index(name) :], name])
            return
        if name in done:
            return
        for imported in sorted(graph[name]):
            walk(imported, [*trail, name])
        done.add(name)

    for name in sorted(graph):
        walk(name, [])
    assert circles == []


def test_the_clients_import_only_the_service_code_meant_for_them() -> None:
    known = modules()
    reaching_in = {
        f"{name} -> {imported}"
        for name, path in known.items()
        if name.startswith("clients")
        for imported in imports(path, known)
        if imported.startswith("service")
        and imported != "service.data"
        and not imported.startswith(FOR_CLIENTS)
    }
    assert reaching_in == set()

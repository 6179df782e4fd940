"""The import graph of the portal's own packages: no module imports itself back through others, and
the three apps depend on each other in one direction only.

Every import counts, at any depth (imports inside functions are still imports: they only hide a
cycle from the interpreter, not from the reader). `from package import name` counts as an import of
package.name when that is a module. devtools/ and tests/ stand outside the graph.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ("portal", "provisioning", "packages_ui")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {
        _module_name(path): path
        for app in APPS
        for path in sorted((ROOT / app).rglob("*.py"))
        if "migrations" not in path.parts
    }


def _imported(module: str, source: str, known: set[str], *, is_package: bool = False) -> Iterator[str]:
    """The modules of `known` that `module` (whose text is `source`) imports, anywhere in it."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for name in names:
            # `import a.b.c` imports a.b.c; the nearest module of ours that the name falls in.
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                yield name


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {
        module: set(_imported(module, path.read_text(), known, is_package=path.name == "__init__.py"))
        for module, path in modules.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One path per strongly connected component with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _app(module: str) -> str:
    return module.split(".")[0]


def test_the_graph_sees_imports_inside_functions_submodules_named_in_from_imports_and_relative_ones():
    source = """
from provisioning import services
from provisioning.models import PrivateIndex
from . import checks


def later():
    from packages_ui.services import refresh_request
    import portal.queueing
"""
    known = set(_modules())
    assert set(_imported("provisioning.cron", source, known)) == {
        "provisioning.services", "provisioning.models", "provisioning.checks", "packages_ui.services",
        "portal.queueing",
    }  # fmt: skip


def test_no_module_imports_itself_back_through_other_modules():
    assert _cycles(import_graph()) == []


def test_the_apps_portal_provisioning_and_packages_ui_depend_on_each_other_in_one_direction_only():
    apps: dict[str, set[str]] = {app: set() for app in APPS}
    edges: dict[tuple[str, str], list[str]] = {}
    for module, targets in import_graph().items():
        for target in targets:
            if _app(target) != _app(module):
                apps[_app(module)].add(_app(target))
                edges.setdefault((_app(module), _app(target)), []).append(f"{module} → {target}")
    cycles = _cycles(apps)
    culprits = {pair: sorted(lines) for pair, lines in edges.items() if any(set(pair) <= set(c) for c in cycles)}
    assert cycles == [], culprits

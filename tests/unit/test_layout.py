"""The house keeps its shape: what the client library loads, no import cycle, files that stay readable.

See docs/architecture.md for the rooms and what each may import.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from tests.support.paths import REPO_ROOT

PACKAGES = ("adapters", "activities", "workflows", "starter")
MAX_LINES = 500

NOT_FOR_SERVICES = (
    "starter.cli",
    "starter.runtime",
    "starter.devtools",
    "activities.enrollment_activities",
    "activities.generator_activities",
    "activities.faults",
    "workflows.enrollment",
    "workflows.enrollment_machine",
    "workflows.order_generator",
    "temporalio.worker",
    "alembic",
    "typer",
)
"""What a service importing the client library must not load: the CLI, the worker, dev tooling, activities."""


def _readme_import_line() -> str:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Using it from a service", 1)[1]
    match = re.search(r"^from starter\.client import .+$", section, re.MULTILINE)
    assert match is not None, "the README shows how a service imports the client"
    return match.group(0)


def test_the_readme_client_import_loads_no_cli_worker_tooling_or_activities() -> None:
    probe = f"import sys\n{_readme_import_line()}\nprint('\\n'.join(sorted(sys.modules)))"
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    ).stdout.split()
    assert "starter.client" in loaded
    leaks = [name for name in loaded if any(name == bad or name.startswith(f"{bad}.") for bad in NOT_FOR_SERVICES)]
    assert leaks == []


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (REPO_ROOT / package).rglob("*.py"):
            parts = path.relative_to(REPO_ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The project modules ``path`` imports anywhere in it (a name imported from a package counts as the
    submodule when there is one of that name, else as the package)."""
    targets: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {target for target in targets if target in modules and target != name}


def test_no_import_cycle() -> None:
    modules = _modules()
    graph = {name: _imports(path, name, modules) for name, path in modules.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
    assert cycles == []


def test_no_source_file_outside_tests_is_over_500_lines() -> None:
    long_files = {
        str(path.relative_to(REPO_ROOT)): count
        for package in (*PACKAGES, "bench", "migrations")
        for path in (REPO_ROOT / package).rglob("*.py")
        if "versions" not in path.parts and (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long_files == {}

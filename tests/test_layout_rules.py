"""Rules between rooms that import-linter cannot express (CONTRIBUTING.md "Rooms").

- No `_private` name is imported across a module line: a name another module
  needs is public, in the room that owns it.
- A sub-domain package is entered through its face: outside the package, code
  imports only the names its `__init__.py` lists in `__all__` (apps.py, which
  registers a package's Celery tasks, is wiring and exempt).
- Every "now" comes from `core.clock.now()`, so a simulated clock reaches all of it.
"""

import ast
import importlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = (
    "config",
    "core",
    "accounts",
    "market",
    "billing",
    "demo",
    "agent",
    "trail_verify",
    "exchange_cli",
)
PACKAGES_WITH_A_FACE = (
    "market.matching",
    "market.telemetry",
    "market.index",
    "billing.subsidy",
    "billing.trail",
    "demo.simulation",
)


def _modules():
    for top in SOURCE:
        for path in sorted((ROOT / top).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            yield ".".join(parts), path, ast.parse(path.read_text())


def _imports(tree: ast.Module):
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []


def test_no_private_name_is_imported_across_a_module_line():
    offenders = [
        f"{module}: from {source} import {name}"
        for module, _path, tree in _modules()
        for source, names in _imports(tree)
        if source.split(".")[0] in SOURCE
        for name in names
        if name.startswith("_") and not name.startswith("__")
    ]
    assert offenders == []


def test_sub_domain_packages_are_entered_through_their_face():
    faces = {name: set(importlib.import_module(name).__all__) for name in PACKAGES_WITH_A_FACE}
    offenders = []
    for module, path, tree in _modules():
        if path.name == "apps.py":
            continue
        for package, public in faces.items():
            if module == package or module.startswith(package + "."):
                continue
            for source, names in _imports(tree):
                if source.startswith(package + "."):
                    offenders.append(f"{module}: imports {source} (use {package})")
                elif source == package:
                    offenders += [
                        f"{module}: {package}.{n} is not in its face"
                        for n in names
                        if n not in public
                    ]
    assert offenders == []


def test_every_now_comes_from_the_exchange_clock():
    """`core.clock.now()` is the one source of "now" (a simulation swaps it);
    a `timezone.now()` or `datetime.now()` elsewhere in the exchange would not
    follow a simulated clock. The agent, the trail verifier and the command-line
    client are separate programs and keep their own."""
    offenders = []
    for module, _path, tree in _modules():
        if module == "core.clock" or module.startswith(("agent", "trail_verify", "exchange_cli")):
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ("now", "utcnow", "today")
                and isinstance(node.value, ast.Name)
                and node.value.id in ("timezone", "datetime", "dt", "date")
            ):
                offenders.append(f"{module}:{node.lineno}: {node.value.id}.{node.attr}")
    assert offenders == []

"""Layers point down: asymk_core imports neither the pipeline, the trainers, the nodes, the CLI nor the server."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UPPER = ("pipelines", "train", "nodes", "cli", "server")


def test_importing_the_core_loads_nothing_above_it():
    code = ("import sys, pkgutil, importlib, asymk_talker.asymk_core as core\n"
            "bad = [m for m in sys.modules if m.split('.')[1:2] and m.split('.')[1] in %r]\n"
            "assert not bad, bad\n"
            "for info in pkgutil.walk_packages(core.__path__, core.__name__ + '.'):\n"
            "    importlib.import_module(info.name)\n"
            "bad = [m for m in sys.modules if m.startswith('asymk_talker.') and m.split('.')[1] in %r]\n"
            "assert not bad, bad\n") % (UPPER, UPPER)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def _imported_packages(path: Path, package: list[str]):
    """Top-level sub-packages of ``asymk_talker`` that a module's imports (lazy ones included) name."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = base + (node.module.split(".") if node.module else [])
            else:
                target = (node.module or "").split(".")
                if target[0] != "asymk_talker":
                    continue
                target = target[1:]
            if target:
                yield target[0]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "asymk_talker" and len(parts) > 1:
                    yield parts[1]


def test_no_core_module_imports_a_layer_above_it_even_lazily():
    offenders = []
    for path in sorted((ROOT / "asymk_core").rglob("*.py")):
        package = ["asymk_core", *path.relative_to(ROOT / "asymk_core").parent.parts]
        for name in _imported_packages(path, package):
            if name in UPPER:
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, offenders


def test_nodes_take_nothing_from_the_cli():
    offenders = [f"{p.name} imports cli" for p in sorted((ROOT / "nodes").glob("*.py"))
                 if "cli" in set(_imported_packages(p, ["nodes"]))]
    assert not offenders, offenders

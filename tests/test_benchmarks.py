"""Every script in benchmarks/ runs in the venv the README's set-up makes.

Each script's imports (also those inside functions, where the peers are
imported) are imported for real: a peer installed with --no-deps that
needs an undeclared package (SpikingJelly 2.0 wants loguru) fails here, not
when a user runs the benchmark. Then each script's --help runs.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_benchmark_imports_and_help(script, monkeypatch):
    monkeypatch.syspath_prepend(str(script.parent))  # scripts import their siblings
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.Import):
            for a in node.names:
                importlib.import_module(a.name)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            module = importlib.import_module(node.module)
            for a in node.names:  # a submodule (spikingjelly...neuron) runs its imports
                if not hasattr(module, a.name):
                    importlib.import_module(f"{node.module}.{a.name}")
    r = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr

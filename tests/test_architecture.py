"""The package's shape: imports run one way, no cycles, graphs survive a fresh process.

Imports are read from the source (every `import`, also inside functions),
so a lazy import counts: a cycle through a function body is still a cycle.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1] / "cf2neuro"
FACE = {"api", "cli", "demo", "__main__"}


def _modules() -> dict[str, Path]:
    mods = {}
    for p in ROOT.rglob("*.py"):
        if "lava_runtime" in p.parts:  # a separate package for another Python
            continue
        parts = list(p.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = p
    return mods


def _imports() -> dict[str, set[str]]:
    mods = _modules()
    edges = {}
    for m, p in mods.items():
        pkg = m.split(".") if p.name == "__init__.py" else m.split(".")[:-1]
        deps = set()
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = pkg[:len(pkg) - node.level + 1] if node.level else []
                prefix = ".".join(base + ([node.module] if node.module else []))
                names = [prefix] + [f"{prefix}.{a.name}" for a in node.names]
            else:
                continue
            for d in names:
                while d and d not in mods:
                    d = d.rpartition(".")[0]
                if d and d != m:
                    deps.add(d)
        edges[m] = deps
    return edges


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_no_import_cycle():
    edges = _imports()
    state: dict[str, int] = {}

    def visit(m, path):
        state[m] = 1
        for d in edges[m]:
            assert state.get(d) != 1, f"import cycle: {' -> '.join(path + [m, d])}"
            if d not in state:
                visit(d, path + [m])
        state[m] = 2

    for m in edges:
        if m not in state:
            visit(m, [])


def test_nothing_below_the_face_imports_it():
    for m, deps in _imports().items():
        if _stage(m) not in FACE:
            bad = sorted(d for d in deps if _stage(d) in FACE)
            assert not bad, f"{m} imports the face {bad}"


def test_generic_code_reaches_back_ends_only_through_the_registry():
    for m, deps in _imports().items():
        if not m.startswith("cf2neuro.backends."):
            bad = sorted(d for d in deps if d.startswith("cf2neuro.backends."))
            assert not bad, f"{m} imports back-end modules {bad} (use cf2neuro.backends)"


def test_the_ir_imports_no_model_zoo_module_except_its_tracer():
    for m, deps in _imports().items():
        if m.startswith("cf2neuro.ir") and m != "cf2neuro.ir.trace":
            bad = sorted(d for d in deps if d.startswith("cf2neuro.nn"))
            assert not bad, f"{m} imports the model zoo {bad}"


def test_no_module_is_a_monolith():
    big = {str(p.relative_to(ROOT.parent)): n for p in ROOT.rglob("*.py")
           if ".runtime" not in p.parts  # the Lava runtime's virtual environment
           and (n := len(p.read_text().splitlines())) > 520}
    assert not big, f"modules over ~500 lines: {big}"


def test_registry_imports_no_back_end_module_until_asked():
    code = ("import sys; from cf2neuro.runners import runner_names; runner_names(); "
            "print(sorted(m for m in sys.modules if m.startswith('cf2neuro.backends.') "
            "and m.count('.') > 2))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]", f"listing runners imported {out}"


def test_quantized_graph_round_trips_in_a_fresh_process(tmp_path):
    """save_graph here, load_graph + emulate in a new interpreter: the same integers."""
    from cf2neuro.ir import save_graph
    from cf2neuro.quant import quantize
    from cf2neuro.runners.emulator import emulate
    from test_runner_contract import _graph

    x = np.random.default_rng(0).normal(0, 1, (5, 4, 6)).astype(np.float32)
    q = quantize(_graph(), "loihi2", calibration=x)
    save_graph(q, tmp_path / "q.safetensors")
    np.save(tmp_path / "x.npy", x)
    code = (
        "import sys, numpy as np\n"
        "from cf2neuro.ir import load_graph\n"
        "from cf2neuro.runners.emulator import emulate\n"
        f"q = load_graph(r'{tmp_path / 'q.safetensors'}')\n"
        "ints = {f'{n.name}/{k}': str(v.dtype) for n in q for k, v in n.params.items()\n"
        "        if k in ('weight_mant', 'bias_mant', 'bias_int')}\n"
        "print(sorted(ints.items()))\n"
        f"res = emulate(q, np.load(r'{tmp_path / 'x.npy'}'), probes=['cf1'])\n"
        f"np.savez(r'{tmp_path / 'out.npz'}', output=res['output'], cf1=res['cf1'])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    here = {f"{n.name}/{k}": str(v.dtype) for n in q for k, v in n.params.items()
            if k in ("weight_mant", "bias_mant", "bias_int")}
    assert here and out.stdout.strip() == str(sorted(here.items()))
    local = emulate(q, x, probes=["cf1"])
    with np.load(tmp_path / "out.npz") as fresh:
        np.testing.assert_array_equal(fresh["output"], local["output"])
        np.testing.assert_array_equal(fresh["cf1"], local["cf1"])

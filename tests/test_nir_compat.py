"""Files `cf2neuro export` writes are read by nir 1.0.4 (Sinabs, Rockpool) and the newest nir.

nir 1.0.4 runs in the peers' venv (`make venv-peers`, which `make test` builds):
each graph is written portably by cf2neuro, read there with ``nir.read`` in a
subprocess, and every node's type and array fields are compared with the
graph cf2neuro lowered (nir 1.0.8, in this process). The same file read back
by cf2neuro gives the same IR graph as a file written without `portable`.
"""

import json
import subprocess
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from cf2neuro.ir import Graph
from cf2neuro.ir.engine import Engine
from cf2neuro.nir import export_graph, from_nir, to_nir, write_nir
from cf2neuro.quant import quantize
from conftest import require_corpus
from test_nir_export import inputs, zoo_graph

from peers_env import peers_python

# Run under nir 1.0.4: each node's type, array fields and metadata keys, as JSON.
READ_104 = """
import dataclasses, json, sys
import nir, numpy as np
assert nir.version == "1.0.4", nir.version
g = nir.read(sys.argv[1])
out = {"metadata": sorted(g.metadata), "nodes": {}}
for name, node in g.nodes.items():
    fields = {f.name: np.asarray(getattr(node, f.name)).tolist()
              for f in dataclasses.fields(node)
              if f.name not in ("input_type", "output_type", "metadata")}
    out["nodes"][name] = {"type": type(node).__name__, "fields": fields,
                          "metadata": sorted(getattr(node, "metadata", None) or {})}
print(json.dumps(out))
"""


def nir104() -> Path:
    """The nir 1.0.4 venv's python (the peers' venv)."""
    return peers_python()


def read_with_104(path: Path) -> dict:
    r = subprocess.run([str(nir104()), "-c", READ_104, str(path)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, f"nir 1.0.4 cannot read {path.name}:\n{r.stderr[-2000:]}"
    return json.loads(r.stdout)


def neurons_graph() -> Graph:
    """LIF (reset by subtraction), IF and CubaLIF with a recurrent Linear, and a Threshold."""
    rng = np.random.default_rng(3)
    g = Graph({"dt": 1e-4})
    g.add_node("x", "Input", attrs={"shape": [3]})
    g.add_node("fc", "Linear", ["x"], {"weight": rng.normal(size=(4, 3)).astype(np.float32)})
    g.add_node("sum", "Add", ["fc", "rec"])
    g.add_node("lif", "LIF", ["sum"], {"tau": np.full(4, 5e-4), "r": np.full(4, 5.0),
                                       "v_leak": np.zeros(4), "v_threshold": np.full(4, 0.5)},
               {"reset": "subtract"})
    g.add_node("rec", "Linear", ["lif"], {"weight": rng.normal(size=(4, 4)).astype(np.float32)})
    g.add_node("fc2", "Linear", ["lif"], {"weight": np.eye(4, dtype=np.float32),
                                          "bias": np.full(4, 0.1, np.float32)})
    g.add_node("if", "IF", ["fc2"], {"r": np.ones(4), "v_threshold": np.full(4, 1.0)})
    g.add_node("cuba", "CubaLIF", ["if"], {"tau_syn": np.full(4, 5e-4),
                                           "tau_mem": np.full(4, 1e-3), "r": np.ones(4),
                                           "v_leak": np.zeros(4), "v_threshold": np.ones(4)})
    g.add_node("thr", "Threshold", ["cuba"], {"threshold": np.full(4, 0.5)})
    g.add_node("out", "Output", ["thr"])
    return g.validate()


def graphs() -> dict:
    model, mlp = zoo_graph("mlp")
    cmodel, conv = zoo_graph("vgg-small")
    _, res = zoo_graph("resnet-small")
    return {
        "mlp": mlp,
        "conv": conv,
        "resnet": res,
        "neurons": neurons_graph(),
        "mlp-quantized": quantize(mlp, "loihi2", calibration=inputs(model.config["input_shape"])),
        "conv-quantized": quantize(conv, "loihi2",
                                   calibration=inputs(cmodel.config["input_shape"])),
    }


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict:
    """name -> (IR graph, portable file, file as write_nir writes by default, lowered graph)."""
    root = tmp_path_factory.mktemp("compat")
    out = {}
    for name, g in graphs().items():
        export_graph(g, root / f"{name}.nir")  # what `cf2neuro export` writes
        write_nir(g, root / f"{name}-full.nir")
        out[name] = (g, root / f"{name}.nir", root / f"{name}-full.nir", to_nir(g))
    return out


NAMES = ["mlp", "conv", "resnet", "neurons", "mlp-quantized", "conv-quantized"]


@pytest.mark.parametrize("name", NAMES)
def test_nir_104_reads_every_node_and_parameter(name, written):
    g, path, _, lowered = written[name]
    got = read_with_104(path)
    assert set(got["nodes"]) == set(lowered.nodes)
    assert "dt" in got["metadata"]
    for key, node in lowered.nodes.items():
        seen = got["nodes"][key]
        assert seen["type"] == type(node).__name__, key
        for field, value in seen["fields"].items():
            if field in ("nodes", "edges"):
                continue
            want = getattr(node, field)
            np.testing.assert_array_equal(np.asarray(value), np.asarray(want),
                                          err_msg=f"{key}.{field}")
        if type(node).__name__ in ("LIF", "IF", "CubaLIF"):
            assert "v_reset" not in seen["fields"]  # 1.0.4 resets to zero: v_reset is 0
            np.testing.assert_array_equal(node.v_reset, 0)
    cf = [k for k, n in g.nodes.items() if n.op == "CFNeuron"]
    for k in cf:  # a CF layer's own metadata is on its LIF/IF node for every reader
        assert "cf2neuro.neuron" in got["nodes"][k]["metadata"]


@pytest.mark.parametrize("name", NAMES)
def test_the_newest_nir_and_cf2neuro_read_the_portable_file_the_same(name, written):
    g, path, full, lowered = written[name]
    ng = nir.read(path)  # nir 1.0.8, with its own type check
    assert {k: type(v) for k, v in ng.nodes.items()} == \
        {k: type(v) for k, v in lowered.nodes.items()}
    for key, node in lowered.nodes.items():
        if hasattr(node, "v_reset"):
            np.testing.assert_array_equal(ng.nodes[key].v_reset, node.v_reset)
    back, back_full = from_nir(path), from_nir(full)
    assert back.equals(back_full)
    if name != "neurons":  # (hand-built neurons come back with NIR's defaults filled in)
        g2 = g.copy()
        g2.meta.setdefault("dt", float(lowered.metadata["dt"]))
        assert back.equals(g2)
    x = inputs(g[g.inputs[0]].shape)
    assert torch.equal(Engine(g).run(x)["output"], Engine(back).run(x)["output"])


def test_a_file_written_by_default_is_what_nir_104_refuses(written):
    """The check above is not vacuous: nir 1.0.8 writes v_reset and node metadata."""
    r = subprocess.run([str(nir104()), "-c", "import nir, sys; nir.read(sys.argv[1])",
                        str(written["conv"][2])], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "unexpected keyword argument" in r.stderr


@pytest.mark.parametrize("name", ["braille_noDelay_noBias_subtract.nir", "cnn_sinabs.nir"])
def test_corpus_graphs_reexported_are_read_by_nir_104(name, tmp_path):
    g = from_nir(require_corpus(name), dt=1e-4)
    export_graph(g, tmp_path / name)
    got = read_with_104(tmp_path / name)
    assert {k: v["type"] for k, v in got["nodes"].items()} == \
        {k: type(v).__name__ for k, v in to_nir(g).nodes.items()}
    assert from_nir(tmp_path / name).equals(from_nir(to_nir(g)))


def test_a_non_zero_v_reset_is_kept_with_a_warning(tmp_path, caplog):
    g = Graph({"dt": 1e-4})
    g.add_node("x", "Input", attrs={"shape": [2]})
    g.add_node("if", "IF", ["x"], {"r": np.ones(2), "v_threshold": np.ones(2),
                                   "v_reset": np.array([0.0, -0.5])})
    g.add_node("out", "Output", ["if"])
    write_nir(g.validate(), tmp_path / "r.nir", portable=True)
    assert "non-zero v_reset" in caplog.text and "'if'" in caplog.text
    np.testing.assert_array_equal(nir.read(tmp_path / "r.nir").nodes["if"].v_reset, [0, -0.5])

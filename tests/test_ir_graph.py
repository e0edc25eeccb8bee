"""The IR graph: building, shapes, validation errors, back edges, printing, files."""

import os

import numpy as np
import pytest

from cf2neuro.errors import BadInputError
from cf2neuro.ir import OPS, Graph, IRError, load_graph, save_graph


def mlp_graph(dtype=np.float32) -> Graph:
    rng = np.random.default_rng(0)
    g = Graph({"timesteps": 4, "dt": 1e-3})
    g.add_node("x", "Input", attrs={"shape": [1, 4, 4]})
    g.add_node("conv", "Conv2d", ["x"], {"weight": rng.normal(size=(2, 1, 3, 3)).astype(dtype)},
               {"padding": [1, 1], "stride": (2, 2)})
    g.add_node("bn", "BatchNorm", ["conv"], {k: np.ones(2, dtype) for k in
                                             ("mean", "var", "weight", "bias")})
    g.add_node("cf", "CFNeuron", ["bn"], attrs={"threshold": 0.75})
    g.add_node("pool", "SumPool2d", ["cf"], attrs={"kernel": [2, 2], "stride": [2, 2]})
    g.add_node("flat", "Flatten", ["pool"])
    g.add_node("fc", "Linear", ["flat"], {"weight": rng.normal(size=(3, 2)).astype(dtype),
                                          "bias": np.zeros(3, dtype)})
    g.add_node("out", "Output", ["fc"])
    return g


def recurrent_graph() -> Graph:
    g = Graph({"dt": 1e-3})
    g.add_node("x", "Input", attrs={"shape": [2]})
    g.add_node("fc", "Linear", ["x"], {"weight": np.eye(3, 2, dtype=np.float32)})
    g.add_node("sum", "Add", ["fc", "rec"])
    g.add_node("lif", "LIF", ["sum"], {k: np.full(3, v, np.float32) for k, v in
                                       (("tau", 2e-3), ("r", 2.0), ("v_leak", 0.0),
                                        ("v_threshold", 1.0))})
    g.add_node("rec", "Linear", ["lif"], {"weight": np.eye(3, dtype=np.float32)})
    g.add_node("out", "Output", ["lif"])
    return g


def test_shapes_are_inferred_per_sample():
    g = mlp_graph().validate()
    assert [g[n].shape for n in ("x", "conv", "cf", "pool", "flat", "fc", "out")] == [
        (1, 4, 4), (2, 2, 2), (2, 2, 2), (2, 1, 1), (2,), (3,), (3,)]
    assert g["conv"].attrs == {"stride": [2, 2], "padding": [1, 1], "dilation": [1, 1],
                               "groups": 1}  # defaults filled, tuples made JSON lists
    assert g.inputs == ["x"] and g.outputs == ["out"]
    assert g.edges[:2] == [("x", "conv"), ("conv", "bn")]


@pytest.mark.parametrize("op, inputs, params, attrs, shape", [
    ("Linear", [[5, 4]], {"weight": (3, 4)}, {}, (5, 3)),
    ("Conv2d", [[4, 9, 9]], {"weight": (6, 2, 3, 3)}, {"groups": 2, "dilation": [2, 2],
                                                        "stride": [2, 1]}, (6, 3, 5)),
    ("AvgPool2d", [[3, 7, 7]], {}, {"kernel": [3, 3], "stride": [2, 2], "padding": [1, 1]},
     (3, 4, 4)),
    ("MaxPool2d", [[3, 5, 4]], {}, {"kernel": [2, 2], "stride": [2, 2]}, (3, 2, 2)),
    ("Flatten", [[2, 3, 4]], {}, {"start_dim": 1}, (2, 12)),
    ("Permute", [[2, 3, 4]], {}, {"perm": [2, 0, 1]}, (4, 2, 3)),
    ("Mean", [[5, 6]], {}, {"dims": [0]}, (6,)),
    ("Add", [[3], [3], [3]], {}, {}, (3,)),
    ("Scale", [[2, 3]], {"scale": (3,)}, {}, (2, 3)),
    ("Attention", [[5, 8]] * 3, {}, {"heads": 2, "scale": 0.125}, (5, 8)),
    ("BatchNorm", [[5, 6]], {k: (6,) for k in ("mean", "var", "weight", "bias")}, {"axis": 1},
     (5, 6)),
    ("CubaLIF", [[4]], {k: (4,) for k in ("tau_syn", "tau_mem", "r", "v_leak",
                                          "v_threshold")}, {}, (4,)),
])
def test_shape_inference_of_each_op(op, inputs, params, attrs, shape):
    g = Graph({"dt": 1.0})
    names = []
    for i, s in enumerate(inputs):
        names.append(g.add_node(f"in{i}", "Input", attrs={"shape": s}).name)
    g.add_node("n", op, names, {k: np.ones(v, np.float32) for k, v in params.items()}, attrs)
    g.add_node("out", "Output", ["n"])
    assert g.validate()["n"].shape == shape


def test_every_op_has_a_spec_with_docs_in_graph_module():
    import cf2neuro.ir.graph as graph_module
    for op in OPS:
        assert op in graph_module.__doc__, op


@pytest.mark.parametrize("break_it, words", [
    (lambda g: g.add_node("y", "Linearr", ["x"]), ["'y'", "unknown op 'Linearr'"]),
    (lambda g: g.add_edge("fc", "ghost") if False else g["fc"].inputs.append("ghost"),
     ["'fc'", "'ghost'", "dangling"]),
    (lambda g: g.nodes.pop("x") and g["conv"].inputs.clear(), ["no Input node"]),
    (lambda g: g.nodes.pop("out"), ["no Output node"]),
    (lambda g: g["fc"].params.update(weight=np.ones((3, 5), np.float32)),
     ["'fc'", "Linear", "in-features 5"]),
    (lambda g: g["bn"].params.update(mean=np.ones(3, np.float32)), ["'bn'", "mean", "[2]"]),
    (lambda g: g["fc"].params.pop("weight"), ["'fc'", "lacks", "weight"]),
    (lambda g: g["fc"].params.update(gain=np.ones(1)), ["'fc'", "unknown parameter", "gain"]),
    (lambda g: g["out"].inputs.append("fc"), ["'out'", "2 input(s)", "takes 1"]),
    (lambda g: g["pool"].attrs.update(kernel=[9, 9]), ["'pool'", "too small"]),
    (lambda g: g["cf"].attrs.update(threshold=-1.0), ["'cf'", "threshold > 0"]),
])
def test_validate_names_the_node_and_the_problem(break_it, words):
    g = mlp_graph()
    break_it(g)
    with pytest.raises(IRError) as e:
        g.validate()
    assert isinstance(e.value, BadInputError)
    for w in words:
        assert w in str(e.value)


def test_unreachable_node_and_duplicate_name_are_errors():
    g = mlp_graph()
    g.add_node("lost", "Identity", ["lost"])  # a self-loop fed by nothing
    with pytest.raises(IRError, match="lost.*not reachable"):
        g.validate()
    with pytest.raises(IRError, match="already exists"):
        g.add_node("fc", "Identity", ["x"])


def test_non_json_attrs_are_refused_early():
    g = Graph()
    g.add_node("a", "Input", attrs={"shape": (np.int64(3),)})
    assert g["a"].attrs["shape"] == [3] and type(g["a"].attrs["shape"][0]) is int
    with pytest.raises(IRError, match="JSON"):
        g.add_node("b", "Scale", ["a"], attrs={"bad": np.ones(2)})


def test_back_edges_and_topological_order_are_deterministic():
    g = recurrent_graph().validate()
    # the loop is cut where it leaves the neuron: rec reads last step's spikes
    assert g.back_edges() == {("lif", "rec")}
    assert g.topological_order() == ["x", "fc", "rec", "sum", "lif", "out"]
    assert g["sum"].shape == (3,) and g["rec"].shape == (3,)
    # insertion order does not decide the cut: the DFS starts at the Input
    h = Graph({"dt": 1e-3})
    for name in ["out", "rec", "lif", "sum", "fc", "x"]:
        n = g[name]
        h.add_node(n.name, n.op, n.inputs, n.params, n.attrs)
    assert h.back_edges() == {("lif", "rec")}
    # ties between ready nodes go by insertion order
    assert h.validate().topological_order() == ["rec", "x", "fc", "sum", "lif", "out"]


def test_self_loop_is_a_back_edge():
    g = Graph()
    g.add_node("x", "Input", attrs={"shape": [2]})
    g.add_node("acc", "Add", ["x", "acc"])
    g.add_node("out", "Output", ["acc"])
    assert g.validate().back_edges() == {("acc", "acc")}
    assert "acc(t-1)" in str(g)


def test_printout_is_a_table_of_nodes():
    text = str(mlp_graph().validate())
    lines = text.splitlines()
    assert lines[0].split() == ["name", "op", "inputs", "shape", "params", "/", "attrs"]
    row = next(x for x in lines if x.startswith("conv "))
    assert "Conv2d" in row and "[2, 2, 2]" in row and "weight[2, 1, 3, 3]" in row \
        and "stride=[2, 2]" in row
    cf = next(x for x in lines if x.startswith("cf "))
    assert "threshold=0.75" in cf and "max_spikes=1" in cf and "signed=True" in cf
    assert "dt=0.001" in lines[-1]


def test_copy_is_deep():
    g = mlp_graph()
    h = g.copy()
    h["fc"].params["weight"][0, 0] = 99
    h["fc"].attrs["x"] = 1
    assert g["fc"].params["weight"][0, 0] != 99 and "x" not in g["fc"].attrs


# --- files ------------------------------------------------------------------------

def test_save_load_round_trip_is_exact(tmp_path):
    g = mlp_graph(np.float64).validate()
    g["cf"].params["threshold"] = np.float32(0.5) * np.ones((2, 2, 2), np.float32)
    g.add_node("s", "Scale", ["fc"], {"scale": np.array(3, np.int8)})  # 0-d, int
    g["out"].inputs = ["s"]
    g.meta["nested"] = {"a": [1, 2.5, True, None]}
    g.validate()
    path = save_graph(g, tmp_path / "g.safetensors")
    h = load_graph(path)
    assert h.equals(g)
    assert h["s"].params["scale"].dtype == np.int8 and h["s"].params["scale"].shape == ()
    assert h["fc"].params["weight"].dtype == np.float64
    assert list(h.nodes) == list(g.nodes) and h.edges == g.edges
    assert os.listdir(tmp_path) == ["g.safetensors"]  # no temporary left behind


def test_round_trip_keeps_recurrent_edges(tmp_path):
    g = recurrent_graph().validate()
    h = load_graph(save_graph(g, tmp_path / "r.safetensors"))
    assert h.equals(g) and h.back_edges() == {("lif", "rec")}


def test_failed_save_leaves_the_old_file(tmp_path):
    path = tmp_path / "g.safetensors"
    save_graph(mlp_graph(), path)
    before = path.read_bytes()
    bad = mlp_graph()
    bad.meta["x"] = object()
    with pytest.raises(IRError, match="JSON"):
        save_graph(bad, path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["g.safetensors"]


def test_corrupt_files_give_clear_errors(tmp_path):
    path = save_graph(mlp_graph(), tmp_path / "g.safetensors")
    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.safetensors").write_bytes(b"\x00\x01garbage" * 10)
    for name in ("cut", "junk"):
        with pytest.raises(IRError, match="not a readable graph file"):
            load_graph(tmp_path / f"{name}.safetensors")
    with pytest.raises(IRError, match="does not exist"):
        load_graph(tmp_path / "missing.safetensors")
    from safetensors.numpy import save_file
    save_file({"w": np.ones(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(IRError, match="not a cf2neuro graph"):
        load_graph(tmp_path / "other.safetensors")

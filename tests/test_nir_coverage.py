"""NIR coverage (issue 14): SumPool2d, Threshold, batch dims in Input types, node names.

References are independent of cf2neuro's kernels: numpy windows for sum
pooling, hand-computed spikes for Threshold, the NIR corpus for batch dims.
"""


import nir
import numpy as np
import pytest
import torch

from cf2neuro import api
from cf2neuro.errors import BadInputError, UnsupportedError
from cf2neuro.ir import Graph
from cf2neuro.ir.engine import Engine
from cf2neuro.ir.numerics import FloatNumerics
from cf2neuro.nir import export_graph, from_nir, to_nir, write_nir
from cf2neuro.quant import quantize
from conftest import require_corpus
from test_nir_export import inputs, zoo_graph


def sumpool_reference(x: np.ndarray, k: int, s: int, p: int) -> np.ndarray:
    """NIR's SumPool2d: the sum of each k x k window of the zero-padded input ([N, C, H, W])."""
    x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    h, w = (x.shape[2] - k) // s + 1, (x.shape[3] - k) // s + 1
    out = np.zeros((*x.shape[:2], h, w), x.dtype)
    for i in range(h):
        for j in range(w):
            out[:, :, i, j] = x[:, :, i * s:i * s + k, j * s:j * s + k].sum((2, 3))
    return out


def spikes(shape, T=6, B=3, p=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, *shape, generator=g) < p).float()


# --- SumPool2d ----------------------------------------------------------------

@pytest.mark.parametrize("k,s,p", [(2, 2, 0), (3, 2, 1), (2, 1, 0)])
def test_sumpool2d_is_written_as_nir_sumpool2d_and_sums_exactly(k, s, p, tmp_path):
    g = Graph({"dt": 1e-4})  # the dt the file states
    g.add_node("x", "Input", attrs={"shape": [2, 5, 5]})
    g.add_node("pool", "SumPool2d", ["x"], attrs={"kernel": [k, k], "stride": [s, s],
                                                 "padding": [p, p]})
    g.add_node("out", "Output", ["pool"])
    g.validate()
    ng = to_nir(g)
    node = ng.nodes["pool"]
    assert type(node) is nir.SumPool2d
    assert node.kernel_size.tolist() == [k, k] and node.stride.tolist() == [s, s]
    assert node.padding.tolist() == [p, p]
    write_nir(g, tmp_path / "pool.nir", portable=True)
    back = from_nir(tmp_path / "pool.nir")
    assert back["pool"].op == "SumPool2d" and back.equals(g)
    # small integers: every sum is exact whatever the order of its additions
    x = torch.randint(-8, 9, (2, 3, 2, 5, 5), generator=torch.Generator().manual_seed(1),
                      dtype=torch.float64)
    got = Engine(back, FloatNumerics(torch.float64)).run(x)["output"].numpy()
    want = sumpool_reference(x.numpy().reshape(6, 2, 5, 5), k, s, p).reshape(got.shape)
    np.testing.assert_array_equal(got, want)


def test_float_avgpool_stays_avgpool_and_quantized_pools_are_sumpools():
    model, g = zoo_graph("vgg-small")
    kinds = {type(n).__name__ for n in to_nir(g).nodes.values()}
    assert "AvgPool2d" in kinds and "SumPool2d" not in kinds
    q = quantize(g, "loihi2", calibration=inputs(model.config["input_shape"]))
    kinds = {type(n).__name__ for n in to_nir(q).nodes.values()}
    assert "SumPool2d" in kinds and "AvgPool2d" not in kinds


def sumpool_net() -> nir.NIRGraph:
    """Input [2, 4, 4] -> SumPool2d 2x2 -> IF -> Flatten -> Affine -> IF: integer numbers."""
    w = np.array([[1, -1, 2, 0, 1, 1, -2, 1], [0, 2, -1, 1, 1, 0, 1, -1],
                  [2, 1, 0, -1, 0, 1, 1, 1]], np.float32)
    nodes = {
        "input": nir.Input(input_type=np.array([2, 4, 4])),
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                              padding=np.array([0, 0])),
        "if1": nir.IF(r=np.ones((2, 2, 2)), v_threshold=np.full((2, 2, 2), 2.5)),
        "flat": nir.Flatten(input_type={"input": np.array([2, 2, 2])}, start_dim=0),
        "fc": nir.Affine(weight=w, bias=np.zeros(3, np.float32)),
        "if2": nir.IF(r=np.ones(3), v_threshold=np.full(3, 1.5)),
        "output": nir.Output(output_type=np.array([3])),
    }
    names = list(nodes)
    return nir.NIRGraph(nodes, list(zip(names, names[1:])), type_check=False)


def sumpool_net_reference(x: np.ndarray) -> np.ndarray:
    """The same network by hand: NIR's IF (v += r·x, spike when v > θ, reset to 0)."""
    w = sumpool_net().nodes["fc"].weight
    v1, v2, out = np.zeros((x.shape[1], 2, 2, 2)), np.zeros((x.shape[1], 3)), []
    for xt in x:
        v1 = v1 + sumpool_reference(xt, 2, 2, 0)
        z1 = (v1 > 2.5).astype(float)
        v1[z1 > 0] = 0
        v2 = v2 + z1.reshape(len(xt), -1) @ w.T
        z2 = (v2 > 1.5).astype(float)
        v2[z2 > 0] = 0
        out.append(z2)
    return np.stack(out)


def test_an_imported_sumpool2d_runs_on_the_reference_emulator_and_onnxruntime(tmp_path):
    path = tmp_path / "sumpool.nir"
    nir.write(path, sumpool_net())
    x = spikes([2, 4, 4], T=8, B=4).numpy()
    want = sumpool_net_reference(x)
    assert want.sum() > 5  # the output layer does fire
    ref = api.run(path, runner="reference", inputs=x)
    np.testing.assert_array_equal(ref["output"], want)
    emu = api.run(path, runner="emulator", inputs=x)  # quantized on the fly
    np.testing.assert_array_equal(emu["output"], want)
    # float ONNX: torch's exporter drops avg_pool2d's divisor_override (it averaged here)
    onnx = api.run(path, runner="onnxruntime", inputs=x)
    np.testing.assert_array_equal(onnx["output"], want)


def test_an_imported_sumpool2d_runs_on_lava(lava_python, tmp_path):
    path = tmp_path / "sumpool.nir"
    nir.write(path, sumpool_net())
    x = spikes([2, 4, 4], T=8, B=2).numpy()
    res = api.run(path, runner="lava", inputs=x)
    np.testing.assert_array_equal(res["output"], sumpool_net_reference(x))


# --- Threshold ----------------------------------------------------------------

def threshold_net() -> nir.NIRGraph:
    nodes = {"input": nir.Input(input_type=np.array([3])),
             "fc": nir.Affine(weight=np.array([[1., 0, 0], [0, 2, 0], [1, 1, -1]]),
                              bias=np.array([0., 0.5, 0])),
             "thr": nir.Threshold(threshold=np.array([1.0, 1.0, 0.0])),
             "output": nir.Output(output_type=np.array([3]))}
    return nir.NIRGraph(nodes, [("input", "fc"), ("fc", "thr"), ("thr", "output")])


def test_threshold_is_a_stateless_heaviside_per_step(tmp_path):
    path = tmp_path / "thr.nir"
    nir.write(path, threshold_net())
    g = from_nir(path)
    assert g["thr"].op == "Threshold"
    x = np.array([[[1.0, 0.25, 0.0]],     # fc = [1, 1, 1.25]: 1 > 1 is no spike
                  [[2.0, 0.5, 3.0]],      # fc = [2, 1.5, -0.5]
                  [[1.0, 0.25, 0.0]],     # the same input again: no state carried over
                  [[-1.0, 0.0, -1.0]]])   # fc = [-1, 0.5, 0]: 0 > 0 is no spike
    want = np.array([[[0, 0, 1]], [[1, 1, 0]], [[0, 0, 1]], [[0, 0, 0]]], float)
    for runner in ("reference", "onnxruntime"):
        res = api.run(path, runner=runner, inputs=x)
        np.testing.assert_array_equal(res["output"], want, err_msg=runner)
    # and back out as nir.Threshold, to the value
    ng = to_nir(g)
    assert type(ng.nodes["thr"]) is nir.Threshold
    np.testing.assert_array_equal(ng.nodes["thr"].threshold, [1.0, 1.0, 0.0])
    g.meta["dt"] = ng.metadata["dt"]  # to_nir states the default dt
    assert from_nir(ng).equals(g)


def test_fixed_point_targets_refuse_threshold_naming_the_node(tmp_path):
    g = from_nir(threshold_net())
    with pytest.raises(UnsupportedError, match=r"cannot run node 'thr' \(Threshold\)"):
        quantize(g, "loihi2")
    path = tmp_path / "thr.nir"
    nir.write(path, threshold_net())
    with pytest.raises(UnsupportedError, match="'thr'"):
        api.run(path, runner="emulator", inputs=np.zeros((2, 1, 3)))


# --- Input/Output types with a batch dimension ------------------------------------

def lif_graph(in_shape, out_shape) -> nir.NIRGraph:
    nodes = {"in": nir.Input(input_type=np.array(in_shape)),
             "fc": nir.Affine(weight=np.array([[1.0, -0.5, 2.0], [0.5, 1.0, 0.0]]),
                              bias=np.zeros(2)),
             "lif": nir.LIF(tau=np.full(2, 2e-3), r=np.full(2, 1.0), v_leak=np.zeros(2),
                            v_threshold=np.full(2, 0.05)),
             "out": nir.Output(output_type=np.array(out_shape))}
    return nir.NIRGraph(nodes, [("in", "fc"), ("fc", "lif"), ("lif", "out")],
                        type_check=False)


def test_a_leading_batch_of_one_is_dropped_when_the_rest_fits(tmp_path):
    plain = from_nir(lif_graph([3], [2]), dt=1e-4)
    path = tmp_path / "batched.nir"
    nir.write(path, lif_graph([1, 3], [1, 2]))  # as Norse and Rockpool write
    g = from_nir(path, dt=1e-4)
    assert g["in"].shape == (3,) and g["out"].shape == (2,)
    assert g.equals(plain)
    x = 2 * spikes([3], T=10, B=2)
    ref = api.run(path, runner="reference", inputs=x.numpy(), dt=1e-4)
    emu = api.run(path, runner="emulator", inputs=x.numpy(), dt=1e-4)
    assert ref["output"].shape == emu["output"].shape == (10, 2, 2)
    assert ref["output"].sum() > 0 and emu["output"].sum() > 0


def test_a_leading_batch_of_one_before_a_conv():
    w = np.ones((3, 2, 3, 3), np.float32)
    nodes = {"in": nir.Input(input_type=np.array([1, 2, 5, 5])),
             "conv": nir.Conv2d(input_shape=None, weight=w, stride=1, padding=0, dilation=1,
                                groups=1, bias=np.zeros(3, np.float32)),
             "out": nir.Output(output_type=np.array([1, 3, 3, 3]))}
    g = from_nir(nir.NIRGraph(nodes, [("in", "conv"), ("conv", "out")], type_check=False))
    assert g["in"].shape == (2, 5, 5) and g["out"].shape == (3, 3, 3)


def test_a_leading_one_that_is_a_real_dimension_is_kept():
    """One channel of an image: [1, 5, 5] into a Conv2d is [C, H, W], not a batch."""
    nodes = {"in": nir.Input(input_type=np.array([1, 5, 5])),
             "conv": nir.Conv2d(input_shape=None, weight=np.ones((2, 1, 3, 3)), stride=1,
                                padding=0, dilation=1, groups=1, bias=np.zeros(2)),
             "out": nir.Output(output_type=np.array([2, 3, 3]))}
    g = from_nir(nir.NIRGraph(nodes, [("in", "conv"), ("conv", "out")], type_check=False))
    assert g["in"].shape == (1, 5, 5) and g["out"].shape == (2, 3, 3)


def test_corpus_lif_norse_with_a_batch_dimension_computes_the_same(tmp_path):
    """lif_norse.nir (Norse) with its Input type rewritten as [1, 1]: the same trace."""
    src = require_corpus("lif_norse.nir")
    ng = nir.read(src, type_check=False)
    plain = from_nir(src, dt=1e-4)
    inp = next(k for k, v in ng.nodes.items() if isinstance(v, nir.Input))
    ng.nodes[inp] = nir.Input(input_type=np.array([1, 1]))
    nir.write(tmp_path / "batched.nir", ng)
    g = from_nir(tmp_path / "batched.nir", dt=1e-4)
    assert g[inp].shape == (1,) and g.equals(plain)
    x = spikes([1], T=50, B=1)
    lif = next(n.name for n in g.nodes.values() if n.op == "LIF")
    a = Engine(plain).run(x, probes=[f"v:{lif}"])
    b = Engine(g).run(x, probes=[f"v:{lif}"])
    assert torch.equal(a[f"v:{lif}"], b[f"v:{lif}"])


# --- names of Input and Output nodes ------------------------------------------------

@pytest.mark.parametrize("names", [("input", "output"), ("spikes_in", "readout")])
def test_input_and_output_nodes_may_have_any_name(names, tmp_path):
    a, b = names
    nodes = {a: nir.Input(input_type=np.array([3])),
             "fc": nir.Affine(weight=np.eye(3), bias=np.zeros(3)),
             b: nir.Output(output_type=np.array([3]))}
    path = tmp_path / "named.nir"
    nir.write(path, nir.NIRGraph(nodes, [(a, "fc"), ("fc", b)]))
    g = from_nir(path)
    assert g.inputs == [a] and g.outputs == [b]
    x = np.arange(6.0).reshape(2, 1, 3)
    np.testing.assert_array_equal(api.run(path, inputs=x)["output"], x)


def test_export_names_the_input_node(tmp_path):
    _, g = zoo_graph("mlp")
    assert g.inputs == ["x"]
    ng = to_nir(g)
    assert isinstance(ng.nodes["x"], nir.Input)  # the default: the IR's name
    ng = to_nir(g, input_name="input", output_name="out")
    assert isinstance(ng.nodes["input"], nir.Input) and "x" not in ng.nodes
    assert isinstance(ng.nodes["out"], nir.Output)
    first = next(b for a, b in ng.edges if a == "input")
    assert g[first].inputs == ["x"]  # the same consumer, now fed by "input"
    export_graph(g, tmp_path / "m.nir", input_name="input")
    back = from_nir(tmp_path / "m.nir")
    assert back.inputs == ["input"]
    x = inputs(g[g.inputs[0]].shape)
    assert torch.equal(Engine(g).run(x)["output"], Engine(back).run(x)["output"])
    assert g.inputs == ["x"]  # the caller's graph is not renamed


def test_export_refuses_an_input_name_that_is_taken():
    _, g = zoo_graph("mlp")
    taken = next(n.name for n in g.nodes.values() if n.op == "Linear")
    with pytest.raises(BadInputError, match=f"already has a Linear node.*{taken}|{taken}"):
        to_nir(g, input_name=taken)


def delay_graph(delay) -> nir.NIRGraph:
    nodes = {"input": nir.Input(input_type=np.array([2])),
             "d": nir.Delay(delay=np.asarray(delay, dtype=np.float64)),
             "output": nir.Output(output_type=np.array([2]))}
    return nir.NIRGraph(nodes, [("input", "d"), ("d", "output")], metadata={"dt": 1e-3})


def test_a_delay_shifts_its_input_by_whole_steps(tmp_path):
    """nir.Delay of 2 ms at dt = 1 ms: the input of two steps ago, zeros before."""
    path = tmp_path / "delay.nir"
    nir.write(path, delay_graph([2e-3, 2e-3]))
    g = from_nir(path)
    assert g["d"].op == "Delay" and g["d"].attrs["steps"] == 2
    x = np.arange(12, dtype=np.float32).reshape(6, 1, 2) + 1
    want = np.concatenate([np.zeros((2, 1, 2), np.float32), x[:-2]])
    for runner in ("reference", "onnxruntime"):
        np.testing.assert_array_equal(api.run(path, runner=runner, inputs=x)["output"], want,
                                      err_msg=runner)
    ng = to_nir(g)  # and back out as nir.Delay, in seconds
    assert type(ng.nodes["d"]) is nir.Delay
    np.testing.assert_allclose(ng.nodes["d"].delay, [2e-3, 2e-3])
    assert from_nir(ng).equals(g)


@pytest.mark.parametrize("delay, why", [([1.5e-3, 1.5e-3], "whole number of steps"),
                                        ([1e-3, 2e-3], "whole number of steps")])
def test_a_delay_the_ir_cannot_hold_is_refused(delay, why):
    with pytest.raises(BadInputError, match=f"'d'.*{why}"):
        from_nir(delay_graph(delay))


def test_fixed_point_targets_refuse_a_delay_naming_the_node():
    with pytest.raises(UnsupportedError, match=r"'d' \(Delay\).*float target"):
        quantize(from_nir(delay_graph([1e-3, 1e-3])), "loihi2")

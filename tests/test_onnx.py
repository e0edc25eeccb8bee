"""The ONNX back end: exports that pass onnx's own checks, onnxruntime against the float
reference (the whole digits test set) and bit-exact against the emulator (quantized)."""

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from cf2neuro.backends import get_backend
from cf2neuro.backends.onnx.lower import check_integer_only, export_onnx
from cf2neuro.backends.onnx.runner import TMP_PREFIX, OnnxRuntimeRunner
from cf2neuro.checkpoint import checkpoint_graph
from cf2neuro.cli import main
from cf2neuro.errors import (BadInputError, RunnerTimeoutError, RuntimeMissingError,
                             UnsupportedError)
from cf2neuro.ir import Graph
from cf2neuro.ir.engine import Engine
from cf2neuro.quant import quantize
from cf2neuro.runners import RunRequest, get_runner
from cf2neuro.runners.emulator import emulate
from cf2neuro.verify import calibration_inputs

CF = ("layers.2", "layers.4")  # the digits MLP's CF layers
INTEGER = {TensorProto.INT8, TensorProto.INT16, TensorProto.INT32, TensorProto.INT64,
           TensorProto.UINT8, TensorProto.UINT16, TensorProto.UINT32, TensorProto.UINT64,
           TensorProto.BOOL}


@pytest.fixture(scope="module")
def files(digits_run, tmp_path_factory):
    """The digits checkpoint exported by the CLI: float and quantized for loihi2."""
    ckpt = digits_run[0]
    out = tmp_path_factory.mktemp("onnx")
    paths = {"float": out / "digits.onnx", "loihi2": out / "digits_q.onnx"}
    for target, path in paths.items():
        args = ["export", str(ckpt), "--out", str(path)]
        assert main(args + (["--target", target] if target != "float" else [])) == 0
    return paths


def _error(argv, capsys) -> str:
    """Run the CLI, expect exit 2 and one line on stderr; that line."""
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def _npz(tmp_path, x) -> Path:
    path = tmp_path / "x.npz"
    np.savez(path, x=x)
    return path


def _metadata(model) -> dict:
    return json.loads(next(p.value for p in model.metadata_props if p.key == "cf2neuro"))


# --- the files --------------------------------------------------------------------

def test_backend_is_registered():
    b = get_backend("onnx")
    assert b.runners == {"onnxruntime": "cf2neuro.backends.onnx.runner:OnnxRuntimeRunner"}
    assert b.exporters == {".onnx": "cf2neuro.backends.onnx.lower:export_onnx"}
    assert isinstance(get_runner("onnxruntime"), OnnxRuntimeRunner)
    assert get_runner("onnxruntime").available()[0]


def test_float_export_passes_onnx_checks(files, digits_run):
    model = onnx.load(files["float"])
    onnx.checker.check_model(model, full_check=True)
    onnx.shape_inference.infer_shapes(model, strict_mode=True)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    (inp,) = model.graph.input
    dims = [d.dim_value or d.dim_param for d in inp.type.tensor_type.shape.dim]
    assert dims[0] == 4 and isinstance(dims[1], str) and dims[2:] == [1, 8, 8]  # batch dynamic
    assert inp.type.tensor_type.elem_type == TensorProto.FLOAT
    meta = _metadata(model)
    assert meta["timesteps"] == 4 and meta["input"]["shape"] == [1, 8, 8]
    assert meta["outputs"] == ["output"] and not meta["quantized"] and meta["latency"] == 0


def test_quantized_export_is_integer_only(files):
    model = onnx.load(files["loihi2"])
    onnx.checker.check_model(model, full_check=True)
    g = onnx.shape_inference.infer_shapes(model, strict_mode=True).graph
    tensors = {v.name: v.type.tensor_type.elem_type for v in (*g.input, *g.output,
                                                               *g.value_info)}
    tensors.update({t.name: t.data_type for t in g.initializer})
    outputs = {o for n in g.node for o in n.output}
    assert outputs <= set(tensors)  # every intermediate is typed ...
    floats = {k: TensorProto.DataType.Name(v) for k, v in tensors.items() if v not in INTEGER}
    assert not floats  # ... and none is a float
    assert not {n.op_type for n in g.node} & {"Conv", "Gemm", "Floor", "Round", "Trunc"}
    meta = _metadata(model)
    assert meta["quantized"] and meta["input"]["dtype"] == "int64"
    assert meta["fixed_point"]["backend"] == "loihi2" and meta["latency"] == 3
    check_integer_only(model)


def test_integer_check_names_the_float_tensor():
    node = helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT, name="to_float")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.INT64,
                                                                          [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    with pytest.raises(UnsupportedError, match=r"tensor 'y' \(FLOAT, made by Cast node "
                                               r"'to_float'\)"):
        check_integer_only(model, "m.onnx")


# --- float: onnxruntime vs the float reference ----------------------------------------

def test_float_matches_the_reference_on_the_whole_test_set(files, digits_run):
    ckpt, x, labels = digits_run
    graph = checkpoint_graph(ckpt)
    ref = {k: v.numpy() for k, v in Engine(graph).run(x, CF + tuple(f"v:{c}" for c in CF))
           .items()}
    res = OnnxRuntimeRunner().run(RunRequest(graph, x, CF))
    from_file = OnnxRuntimeRunner().run(RunRequest(None, x, model_file=files["float"]))
    want = ref["output"].sum(0).argmax(-1)
    for out in (res.outputs["output"], from_file.outputs["output"]):
        assert out.shape == ref["output"].shape and out.dtype == np.float32
        assert np.array_equal(out.sum(0).argmax(-1), want)  # 100 % argmax agreement
    total = flips = 0
    for layer in CF:
        a, b = res.probes[layer], ref[layer]
        bad = np.argwhere(a != b)
        total, flips = total + a.size, flips + len(bad)
        for t, n, i in bad[:10]:  # how close the reference was to the spike threshold
            v = ref[f"v:{layer}"][t, n, i]
            print(f"flip {layer}[t={t}, n={n}, i={i}]: ort {a[t, n, i]:g}, reference "
                  f"{b[t, n, i]:g}, reference membrane after reset {v:.3e}")
    print(f"float spikes: {flips} of {total} differ ({100 * (1 - flips / total):.4f} % "
          f"agree); output max |diff| {np.abs(res.outputs['output'] - ref['output']).max():.2e}"
          f"; accuracy {np.mean(want == labels):.4f}")
    assert flips <= 1e-3 * total
    assert np.abs(res.outputs["output"] - ref["output"]).max() < 1e-3


# --- quantized: onnxruntime vs the emulator, bit for bit -------------------------------

def test_quantized_file_equals_the_emulator(files, digits_run):
    ckpt, x, _ = digits_run
    # the export quantizes with the checkpoint's calibration inputs (training split)
    q = quantize(checkpoint_graph(ckpt), "loihi2", calibration=calibration_inputs(ckpt))
    em = emulate(q, x)
    res = OnnxRuntimeRunner().run(RunRequest(None, x, model_file=files["loihi2"]))
    assert res.outputs["output"].dtype == np.int64
    assert np.array_equal(res.outputs["output"], em["output"])
    assert res.latency == em["latency"] == 3
    # integer inputs are the payloads themselves
    scale = _metadata(onnx.load(files["loihi2"]))["fixed_point"]["input_scale"]
    assert scale == q.meta["fixed_point"]["input_scale"]
    xi = np.round(x.astype(np.float64) * scale).astype(np.int64)
    again = OnnxRuntimeRunner().run(RunRequest(None, xi, model_file=files["loihi2"]))
    assert np.array_equal(again.outputs["output"], em["output"])


def test_quantized_graph_with_probes_equals_the_emulator(digits_run):
    ckpt, x, _ = digits_run
    q = quantize(checkpoint_graph(ckpt), "loihi2", calibration=x)
    probes = ("layers.2", "v:layers.4")
    em = emulate(q, x, probes)
    res = OnnxRuntimeRunner().run(RunRequest(q, x, probes))
    for k in ("output", *probes):
        got = res.outputs.get(k, res.probes.get(k))
        assert got.dtype == np.int64 and np.array_equal(got, em[k]), k
    assert np.abs(em["layers.2"]).max() > 0  # the CF layer does spike
    assert res.latency == em["latency"]
    assert set(res.timings) >= {"total", "export", "session", "run"}


def _conv_pool_graph():
    """Conv2d -> CF -> AvgPool2d (SumPool2d once quantized) -> Linear -> CF -> Linear."""
    rng = np.random.default_rng(3)
    f32 = lambda a: np.asarray(a, np.float32)
    g = Graph({"dt": 1e-4})
    g.add_node("x", "Input", attrs={"shape": [2, 9, 8]})
    g.add_node("c1", "Conv2d", ["x"], params={"weight": f32(rng.normal(0, .4, (4, 2, 3, 3))),
                                              "bias": f32(rng.normal(0, .1, 4))},
               attrs={"stride": [2, 1], "padding": [1, 1]})
    g.add_node("n1", "CFNeuron", ["c1"], attrs={"threshold": 1.0, "beta": 0.75,
                                                "max_spikes": 3, "signed": True})
    g.add_node("p1", "AvgPool2d", ["n1"], attrs={"kernel": [2, 2], "stride": [2, 2]})
    g.add_node("fl", "Flatten", ["p1"])
    g.add_node("fc1", "Linear", ["fl"], params={"weight": f32(rng.normal(0, .3, (10, 32))),
                                                "bias": f32(rng.normal(0, .1, 10))})
    g.add_node("n2", "CFNeuron", ["fc1"], attrs={"threshold": 1.0, "beta": 0.5,
                                                 "max_spikes": 4, "signed": True})
    g.add_node("fc2", "Linear", ["n2"], params={"weight": f32(rng.normal(0, .5, (3, 10)))})
    g.add_node("y", "Output", ["fc2"])
    x = rng.uniform(-1, 1, (6, 40, 2, 9, 8)).astype(np.float32)
    return g.validate(), x


def test_conv_and_sum_pooling_bit_exact_with_the_emulator(tmp_path):
    g, x = _conv_pool_graph()
    q = quantize(g, "loihi2", calibration=x)
    assert q["p1"].op == "SumPool2d"
    probes = ("n1", "p1", "v:n2")
    path = tmp_path / "conv.onnx"
    summary = export_onnx(q, path, timesteps=6, probes=probes)
    assert summary["integer_only"] and summary["outputs"] == ["output"]
    model = onnx.load(path)
    ops = {n.op_type for n in model.graph.node}
    assert "Gather" in ops and not ops & {"Conv", "AveragePool"}  # the im2col IntegerConv
    check_integer_only(model)
    em = emulate(q, x, probes)
    res = OnnxRuntimeRunner().run(RunRequest(None, x, probes, model_file=path))
    for k in ("output", *probes):
        assert np.array_equal(res.arrays()[k], em[k]), k
    assert np.abs(em["n1"]).max() > 0 and np.abs(em["p1"]).max() > 1
    # the float graph through ONNX's Conv and AveragePool
    ref = Engine(g).run(x, ("n1", "n2"))
    fl = OnnxRuntimeRunner().run(RunRequest(g, x, ("n1", "n2")))
    assert np.abs(fl.outputs["output"] - ref["output"].numpy()).max() < 1e-4
    for k in ("n1", "n2"):
        assert np.mean(fl.probes[k] == ref[k].numpy()) >= 0.999


# --- the CLI ------------------------------------------------------------------------

def test_cli_runs_an_onnx_file(files, digits_run, tmp_path, capsys):
    x = digits_run[1]
    out = tmp_path / "y.npz"
    argv = ["run", files["float"], "--runner", "onnxruntime", "--inputs", _npz(tmp_path, x),
            "--out", out]
    assert main([str(a) for a in argv]) == 0, capsys.readouterr().err
    direct = OnnxRuntimeRunner().run(RunRequest(None, x, model_file=files["float"]))
    with np.load(out) as y:
        assert np.array_equal(y["output"], direct.outputs["output"])
        assert int(y["latency"]) == 0


def test_cli_runs_a_checkpoint_quantized_for_loihi2(digits_run, tmp_path, capsys):
    ckpt, x, _ = digits_run
    out = tmp_path / "y.npz"
    argv = ["run", ckpt, "--runner", "onnxruntime", "--target", "loihi2", "--inputs",
            _npz(tmp_path, x), "--out", out, "--probe", "layers.4"]
    assert main([str(a) for a in argv]) == 0, capsys.readouterr().err
    em = emulate(quantize(checkpoint_graph(ckpt), "loihi2", calibration=x), x, ["layers.4"])
    with np.load(out) as y:
        assert np.array_equal(y["output"], em["output"])
        assert np.array_equal(y["layers.4"], em["layers.4"])
        assert int(y["latency"]) == em["latency"]


# --- what it refuses ------------------------------------------------------------------

def test_refuses_an_onnx_file_cf2neuro_did_not_write(digits_run, tmp_path, capsys):
    node = helper.make_node("Identity", ["x"], ["y"])
    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [4, 1, 1, 8, 8]) for n in "xy"]
    foreign = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(helper.make_graph([node], "g", vi[:1], vi[1:])), foreign)
    err = _error(["run", foreign, "--runner", "onnxruntime", "--inputs",
                  _npz(tmp_path, digits_run[1][:, :2]), "--out", tmp_path / "y.npz"], capsys)
    assert str(foreign) in err and "not a cf2neuro export" in err and "cf2neuro export" in err
    assert not (tmp_path / "y.npz").exists()


def test_refuses_a_file_that_is_not_onnx(digits_run, tmp_path, capsys):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    err = _error(["run", junk, "--runner", "onnxruntime", "--inputs",
                  _npz(tmp_path, digits_run[1][:, :2]), "--out", tmp_path / "y.npz"], capsys)
    assert str(junk) in err and "cf2neuro export" in err


def test_refuses_a_wrong_input_shape(files, digits_run, tmp_path, capsys):
    x = np.concatenate([digits_run[1][:, :3]] * 2)  # 8 steps, the file has 4
    err = _error(["run", files["float"], "--runner", "onnxruntime", "--inputs",
                  _npz(tmp_path, x), "--out", tmp_path / "y.npz"], capsys)
    assert str(files["float"]) in err and "[4, B, 1, 8, 8]" in err and "[8, 3, 1, 8, 8]" in err


def test_refuses_an_unknown_probe(files, digits_run, tmp_path, capsys):
    err = _error(["run", files["float"], "--runner", "onnxruntime", "--inputs",
                  _npz(tmp_path, digits_run[1][:, :2]), "--out", tmp_path / "y.npz",
                  "--probe", "layers.2"], capsys)
    assert "'layers.2'" in err and str(files["float"]) in err and "--probe" in err
    with pytest.raises(BadInputError, match="no node named 'nope'"):  # a graph: the engine's
        OnnxRuntimeRunner().run(RunRequest(checkpoint_graph(digits_run[0]),
                                           digits_run[1][:, :2], ("nope",)))


def test_export_needs_the_time_steps(digits_run, tmp_path):
    for bad in (None, 0, True):
        with pytest.raises(BadInputError, match="time steps"):
            export_onnx(checkpoint_graph(digits_run[0]), tmp_path / "m.onnx", timesteps=bad)
    assert not list(tmp_path.iterdir())


def test_a_failed_write_leaves_nothing(digits_run, tmp_path, monkeypatch):
    def half(model, path, *a, **k):
        Path(path).write_bytes(model.SerializeToString()[:100])
        raise OSError("disk full")

    monkeypatch.setattr(onnx, "save_model", half)
    with pytest.raises(OSError, match="disk full"):
        export_onnx(checkpoint_graph(digits_run[0]), tmp_path / "m.onnx", timesteps=2)
    assert not list(tmp_path.iterdir())


def test_missing_onnxruntime_says_what_to_install(files, digits_run, tmp_path, capsys,
                                                  monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now fails
    ok, note = OnnxRuntimeRunner().available()
    assert not ok and "pip install" in note and "onnxruntime" in note
    with pytest.raises(RuntimeMissingError, match="pip install"):
        OnnxRuntimeRunner().run(RunRequest(None, digits_run[1], model_file=files["float"]))
    err = _error(["run", files["float"], "--runner", "onnxruntime", "--inputs",
                  _npz(tmp_path, digits_run[1][:, :2]), "--out", tmp_path / "y.npz"], capsys)
    assert "pip install" in err and "onnxruntime" in err


# --- the timeout ----------------------------------------------------------------------

def _temp_dirs() -> set:
    return {p for p in os.listdir(tempfile.gettempdir()) if p.startswith(TMP_PREFIX)}


def test_timeout_stops_onnxruntime(files, digits_run):
    x = np.concatenate([digits_run[1]] * 45, axis=1)  # 16k samples: seconds of int64 matmul
    t0 = time.monotonic()
    # on a busy machine the deadline can pass before the session starts: also a timeout
    with pytest.raises(RunnerTimeoutError, match="onnxruntime running .* timeout|timeout"):
        OnnxRuntimeRunner().run(RunRequest(None, x, timeout=0.5, model_file=files["loihi2"]))
    assert time.monotonic() - t0 < 3.0
    # the session is not left stopped: the next run (no timeout) works
    small = OnnxRuntimeRunner().run(RunRequest(None, x[:, :5], model_file=files["loihi2"]))
    assert small.outputs["output"].shape == (4, 5, 10)


def test_tiny_timeout_leaves_no_temp_dir(digits_run):
    before = _temp_dirs()
    graph = checkpoint_graph(digits_run[0])
    with pytest.raises(RunnerTimeoutError, match="timeout"):
        OnnxRuntimeRunner().run(RunRequest(graph, digits_run[1], timeout=1e-9))
    assert _temp_dirs() == before
    OnnxRuntimeRunner().run(RunRequest(graph, digits_run[1][:, :4], ("layers.2",)))
    assert _temp_dirs() == before  # a run that succeeds cleans up too


def test_exporter_failures_say_what_failed(digits_run, tmp_path, monkeypatch):
    import torch

    graph = checkpoint_graph(digits_run[0])

    def fails(*a, **k):
        try:
            raise NotImplementedError("aten::frobnicate has no ONNX translation")
        except NotImplementedError as inner:
            raise RuntimeError("Failed to convert the exported program") from inner

    monkeypatch.setattr(torch.onnx, "export", fails)
    with pytest.raises(UnsupportedError, match=r"m\.onnx: torch's ONNX exporter cannot lower "
                                               r"the graph \(NotImplementedError: aten::frob"):
        export_onnx(graph, tmp_path / "m.onnx", timesteps=2)

    def ours(*a, **k):  # our own error, raised while torch traced the engine, comes out as is
        try:
            raise BadInputError("what, where, what to do")
        except BadInputError as inner:
            raise RuntimeError("torch.export failed") from inner

    monkeypatch.setattr(torch.onnx, "export", ours)
    with pytest.raises(BadInputError, match="what, where, what to do"):
        export_onnx(graph, tmp_path / "m.onnx", timesteps=2)
    assert not list(tmp_path.iterdir())


def test_cli_exports_probes_and_runs_them(digits_run, tmp_path, capsys):
    """export --probe puts a CF layer's trace into the file; run --probe reads it back."""
    ckpt, x, _ = digits_run
    path = tmp_path / "probed.onnx"
    assert main(["export", str(ckpt), "--out", str(path), "--target", "loihi2",
                 "--probe", CF[0]]) == 0
    assert main(["run", str(path), "--runner", "onnxruntime", "--inputs",
                 str(_npz(tmp_path, x[:, :40])), "--out", str(tmp_path / "y.npz"),
                 "--probe", CF[0]]) == 0
    q = quantize(checkpoint_graph(ckpt), "loihi2", calibration=calibration_inputs(ckpt))
    emu = emulate(q, x[:, :40], probes=[CF[0]])
    with np.load(tmp_path / "y.npz") as y:
        np.testing.assert_array_equal(y[CF[0]], emu[CF[0]])
        np.testing.assert_array_equal(y["output"], emu["output"])
    assert "--probe is for ONNX" in _error(["export", ckpt, "--out", tmp_path / "m.nir",
                                             "--probe", CF[0]], capsys)


def test_verify_a_float_target_against_the_reference(digits_run, tmp_path, capsys):
    """Target onnx is float: verify compares onnxruntime with the float reference, no quantizing."""
    ckpt = digits_run[0]
    assert main(["verify", str(ckpt), "--target", "onnx", "--data", "digits", "--report",
                 str(tmp_path / "v")]) == 0, capsys.readouterr().err
    r = json.loads((tmp_path / "v" / "verify.json").read_text())
    assert r["runner"] == "onnxruntime" and r["quantized"] is False and r["passed"]
    assert r["samples"] == len(digits_run[2]) and r["quantization"] == []
    assert r["runner_argmax_agreement"] == 1.0 and r["runner_accuracy"] == r["float_accuracy"]
    assert min(r["spike_agreement"].values()) >= 0.999 and set(r["spike_agreement"]) >= set(CF)
    for flip in r["flips"]:  # any flip sits at a threshold, within float rounding
        assert flip["margin"] < 1e-4


def test_verify_loihi2_on_onnxruntime_is_bit_exact(digits_run, tmp_path, capsys):
    ckpt = digits_run[0]
    assert main(["verify", str(ckpt), "--target", "loihi2", "--runner", "onnxruntime",
                 "--data", "digits", "--limit", "120", "--report", str(tmp_path / "v")]) == 0
    r = json.loads((tmp_path / "v" / "verify.json").read_text())
    assert r["quantized"] and r["calibration"]["split"] == "train"
    assert set(r["exact_match"].values()) == {1.0} and "v:layers.2" in r["exact_match"]
    assert r["runner_accuracy"] == r["quantized_accuracy"]


def test_export_timesteps_sets_the_unrolled_window(digits_run, tmp_path, capsys):
    ckpt, x, _ = digits_run
    path = tmp_path / "t7.onnx"
    assert main(["export", str(ckpt), "--out", str(path), "--timesteps", "7"]) == 0
    assert _metadata(onnx.load(path))["timesteps"] == 7
    longer = np.concatenate([x, x[:3]])[:, :20]  # T = 7
    res = OnnxRuntimeRunner().run(RunRequest(None, longer, model_file=path))
    ref = Engine(checkpoint_graph(ckpt)).run(longer)["output"].numpy()
    np.testing.assert_allclose(res.outputs["output"], ref, atol=1e-5)
    assert "T = 7" in _error(["run", path, "--runner", "onnxruntime", "--inputs",
                              _npz(tmp_path, x[:, :5]), "--out", tmp_path / "y.npz"], capsys)
    assert "T >= 1" in _error(["export", ckpt, "--out", tmp_path / "t0.onnx",
                               "--timesteps", "0"], capsys)

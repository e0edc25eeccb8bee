"""The Python API behind `cf2neuro export` and `cf2neuro run`."""

import nir
import numpy as np
import pytest
import torch

from cf2neuro import api
from cf2neuro.checkpoint import save_checkpoint
from cf2neuro.errors import BadInputError, CheckpointError, UnsupportedError
from cf2neuro.nn.models import build_model

T, B = 4, 3


def checkpoint(tmp_path, name="mlp", **cfg):
    torch.manual_seed(0)
    defaults = {"mlp": {"hidden": [16, 16]},
                "resnet-small": {"stem": 4, "channels": [4, 8]},
                "spikformer": {"embed_dim": 16, "heads": 2, "depth": 1,
                               "patch_channels": [8]}}[name]
    model = build_model(name, {"timesteps": T, **defaults, **cfg})
    return save_checkpoint(tmp_path / f"ckpt-{name}", model, {}, {"test_accuracy": 0.5}), model


def save_x(path, model, seed=0):
    x = 2 * np.random.default_rng(seed).normal(size=(T, B, *model.config["input_shape"]))
    np.savez(path, x=x.astype(np.float32))
    return x.astype(np.float32)


@pytest.mark.parametrize("name", ["mlp", "resnet-small"])
def test_export_then_run_the_file_equals_running_the_checkpoint(name, tmp_path):
    ckpt, model = checkpoint(tmp_path, name)
    out = tmp_path / "model.nir"
    summary = api.export(ckpt, out)
    assert out.is_file() and summary["path"] == str(out) and summary["dt"] == 1e-4
    assert summary["cf_layers"] and summary["nodes"] == len(nir.read(out).nodes)
    x = save_x(tmp_path / "in.npz", model)
    probes = [summary["cf_layers"][0], "v:" + summary["cf_layers"][-1]]
    from_ckpt = api.run(ckpt, inputs=tmp_path / "in.npz", probes=probes,
                        out=tmp_path / "a.npz")
    from_file = api.run(out, inputs=tmp_path / "in.npz", probes=probes,
                        out=tmp_path / "b.npz")
    assert from_ckpt["output"].shape == (T, B, 10)
    for k in ["output", *probes]:
        np.testing.assert_array_equal(from_ckpt[k], from_file[k])
    # the checkpoint's float model computes the same output
    with torch.no_grad():
        ref = model.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(from_ckpt["output"], ref, rtol=1e-5, atol=1e-5)
    with np.load(tmp_path / "b.npz") as f:
        assert sorted(f.files) == sorted(["output", "latency", *probes])
        np.testing.assert_array_equal(f["output"], from_file["output"])


def test_export_strict_and_spikformer_are_refused(tmp_path):
    ckpt, _ = checkpoint(tmp_path)
    with pytest.raises(UnsupportedError, match="--strict"):
        api.export(ckpt, tmp_path / "strict.nir", strict=True)
    ckpt, _ = checkpoint(tmp_path, "spikformer")
    with pytest.raises(UnsupportedError, match="Attention"):
        api.export(ckpt, tmp_path / "sf.nir")
    assert not (tmp_path / "strict.nir").exists() and not (tmp_path / "sf.nir").exists()
    with pytest.raises(CheckpointError):
        api.export(tmp_path / "nowhere", tmp_path / "x.nir")


def test_export_writes_the_dt_it_is_given(tmp_path):
    ckpt, _ = checkpoint(tmp_path)
    api.export(ckpt, tmp_path / "m.nir", dt=1e-3)
    ng = nir.read(tmp_path / "m.nir")
    assert float(ng.metadata["dt"]) == 1e-3
    lif = next(n for n in ng.nodes.values() if isinstance(n, nir.LIF))
    np.testing.assert_allclose(lif.tau, 1e-3 / (1 - 0.5))


def test_run_a_third_party_nir_file_needs_dt(tmp_path):
    nodes = {"in": nir.Input(input_type=np.array([2])),
             "lif": nir.LIF(tau=np.full(2, 2e-3), r=np.ones(2), v_leak=np.zeros(2),
                            v_threshold=np.full(2, 0.05)),
             "out": nir.Output(output_type=np.array([2]))}
    path = tmp_path / "lif.nir"
    nir.write(path, nir.NIRGraph(nodes, [("in", "lif"), ("lif", "out")]))
    x = np.ones((5, 1, 2), np.float32)
    with pytest.raises(BadInputError, match="--dt"):
        api.run(path, inputs=x)
    res = api.run(path, inputs=x, dt=1e-3, probes=["v:lif"])
    # Euler, a = dt/τ = 0.5: v = 0.5, 0.75 (> 0.05: spikes every step, reset to 0) ...
    np.testing.assert_array_equal(res["output"][:, 0, 0], np.ones(5))
    np.testing.assert_array_equal(res["v:lif"], np.zeros((5, 1, 2)))


def test_run_bad_input_is_a_clear_error(tmp_path):
    ckpt, model = checkpoint(tmp_path)
    save_x(tmp_path / "in.npz", model)
    good = tmp_path / "in.npz"
    np.savez(tmp_path / "nox.npz", y=np.zeros(3))
    np.save(tmp_path / "x.npy", np.zeros(3))
    (tmp_path / "junk.npz").write_text("not a zip")
    np.savez(tmp_path / "shape.npz", x=np.zeros((T, B, 5), np.float32))
    np.savez(tmp_path / "str.npz", x=np.array(["a", "b"]))
    cases = [
        (dict(source=ckpt, inputs=tmp_path / "missing.npz"), "does not exist"),
        (dict(source=ckpt, inputs=tmp_path / "nox.npz"), "no array 'x'"),
        (dict(source=ckpt, inputs=tmp_path / "x.npy"), ".npy"),
        (dict(source=ckpt, inputs=tmp_path / "junk.npz"), "not a readable .npz"),
        (dict(source=ckpt, inputs=tmp_path / "shape.npz"), r"must be \[T, B, 1, 8, 8\]"),
        (dict(source=ckpt, inputs=tmp_path / "str.npz"), "must be numbers"),
        (dict(source=ckpt, inputs=None), "--inputs"),
        (dict(source=ckpt, inputs=good, probes=["nope"]), "no node named 'nope'"),
        (dict(source=ckpt, inputs=good, runner="warp"), "unknown runner 'warp'"),
        (dict(source=ckpt, inputs=good, runner="lava", device="cpu"), "--device is for the"),
        (dict(source=tmp_path / "nothing", inputs=good), "neither a checkpoint"),
        (dict(source=tmp_path / "junk.npz", inputs=good), "not a NIR file"),
    ]
    for kwargs, match in cases:
        with pytest.raises(BadInputError, match=match):
            api.run(**kwargs, out=tmp_path / "out.npz")
    assert not (tmp_path / "out.npz").exists()

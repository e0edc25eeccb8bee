"""Input windows, data sets, ONNX files and target files that cannot be used."""

import json

import numpy as np
import onnx
import pytest
from .catalogue_helpers import cli_refuses
from .checks import cf2neuro, nothing_partial, refused

from cf2neuro.data import load_dataset
from cf2neuro.errors import BadInputError, ConfigError
from cf2neuro.ir.engine import Engine

SHAPE = (1, 8, 8)  # the digits MLP's input


def _npz(tmp_path, x, name="x.npz"):
    np.savez(tmp_path / name, x=x)
    return tmp_path / name


@pytest.fixture(scope="module")
def files(mlp_ckpt, tmp_path_factory):
    """The checkpoint exported as NIR and as ONNX (T = 4)."""
    from cf2neuro.cli import main as cli

    out = tmp_path_factory.mktemp("exports")
    assert cli(["export", str(mlp_ckpt), "--out", str(out / "m.nir")]) == 0
    assert cli(["export", str(mlp_ckpt), "--out", str(out / "m.onnx")]) == 0
    return {"ckpt": mlp_ckpt, "nir": out / "m.nir", "onnx": out / "m.onnx"}


WINDOWS = {  # name: (x, words)
    "T = 0": (np.zeros((0, 2, *SHAPE), np.float32), ["[0, 2, 1, 8, 8]", "time step"]),
    "B = 0": (np.zeros((4, 0, *SHAPE), np.float32), ["[4, 0, 1, 8, 8]"]),
    "NaN": (np.where(np.arange(4 * 2 * 64).reshape(4, 2, *SHAPE) == 5, np.nan, 0.5)
            .astype(np.float32), ["NaN or infinite"]),
    "Inf": (np.full((4, 2, *SHAPE), np.inf, np.float32), ["NaN or infinite"]),
    "wrong shape": (np.zeros((4, 2, 1, 7, 8), np.float32), ["[4, 2, 1, 7, 8]"]),
    "no batch axis": (np.zeros((4, *SHAPE), np.float32), ["[T, B"]),
}
SOURCES = [("ckpt", "reference"), ("ckpt", "emulator"), ("nir", "reference"),
           ("onnx", "onnxruntime")]


@pytest.mark.parametrize("window", list(WINDOWS))
@pytest.mark.parametrize("source, runner", SOURCES)
def test_run_refuses_a_window_it_cannot_run(window, source, runner, files, tmp_path, capsys):
    x, words = WINDOWS[window]
    if source == "onnx" and window == "T = 0":
        words = ["[4, B, 1, 8, 8]", "[0, 2, 1, 8, 8]"]  # the file's own T is named
    if source == "onnx" and window == "no batch axis":
        words = ["[4, B, 1, 8, 8]"]
    argv = ["run", files[source], "--runner", runner, "--inputs", _npz(tmp_path, x),
            "--out", tmp_path / "y.npz"]
    if runner == "emulator":
        argv += ["--target", "loihi2"]
        if window in ("NaN", "Inf"):
            words = ["NaN or infinite"]
    cli_refuses(capsys, argv, *words)
    nothing_partial(tmp_path / "y.npz")


def test_the_engine_refuses_the_same_windows_for_python_callers(files):
    from cf2neuro.checkpoint import checkpoint_graph

    engine = Engine(checkpoint_graph(files["ckpt"]))
    for name in ("T = 0", "B = 0", "NaN"):
        with pytest.raises(BadInputError):
            engine.run(WINDOWS[name][0])


def test_through_the_shell_nan_inputs_are_one_line(files, tmp_path):
    x = _npz(tmp_path, WINDOWS["NaN"][0])
    refused(cf2neuro("run", files["nir"], "--inputs", x, "--out", tmp_path / "y.npz"),
            "NaN or infinite", "nan_to_num")
    nothing_partial(tmp_path / "y.npz")


# --- data sets -------------------------------------------------------------------------

def test_an_empty_test_split_is_refused_by_train(tmp_path, capsys):
    out = tmp_path / "ck"
    cli_refuses(capsys, ["train", "--epochs", "1", "--quiet", "--out", out,
                         "--data-option", "test_fraction=0.0001"],
                "digits", "test split is empty", "--data-option")
    assert not out.exists()


def test_an_empty_train_split_is_refused_by_train(tmp_path, capsys):
    import data_files as df

    for cls in ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                "ship", "truck"):  # 3 files per class: all are TEBN test samples
        for i in range(3):
            df.write_aedat2(tmp_path / "cifar10-dvs" / cls / f"cifar10_{cls}_{i}.aedat",
                            [(df.dvs128_address(1, 2, 0), 10 * i)])
    out = tmp_path / "ck"
    cli_refuses(capsys, ["train", "--epochs", "1", "--quiet", "--out", out, "--data",
                         "cifar10-dvs", "--data-root", tmp_path, "--data-option", "frames=1"],
                "cifar10-dvs", "train split is empty")
    assert not out.exists()


@pytest.mark.parametrize("name, options, words", [
    ("digits", {"test_fraction": 1.0}, ["test_fraction", "between 0 and 1"]),
    ("digits", {"test_fraction": -0.2}, ["test_fraction"]),
    ("digits", {"max_shift": 9}, ["max_shift"]),
    ("nmnist", {"size": "abc"}, ["size", "pair"]),
    ("nmnist", {"frames": 0}, ["frames", ">= 1"]),
    ("cifar10-dvs", {"frames": True}, ["frames"]),
])
def test_a_data_option_out_of_range_is_a_config_error(name, options, words, tmp_path):
    with pytest.raises(ConfigError) as e:
        load_dataset(name, root=str(tmp_path), **options)
    for w in words:
        assert w in str(e.value)


# --- ONNX files ------------------------------------------------------------------------

def _with_metadata(src, dest, change):
    model = onnx.load(src)
    prop = next(p for p in model.metadata_props if p.key == "cf2neuro")
    prop.value = json.dumps(change(json.loads(prop.value)))
    onnx.save(model, dest)
    return dest


@pytest.mark.parametrize("change, words", [
    (lambda m: {**m, "timesteps": "four"}, ["timesteps must be an int"]),
    (lambda m: {**m, "input": {**m["input"], "shape": [1, -8, 8]}}, ["input.shape"]),
    (lambda m: {**m, "outputs": []}, ["outputs must be a non-empty list"]),
    (lambda m: {k: v for k, v in m.items() if k != "latency"}, ["lacks", "latency"]),
])
def test_an_onnx_file_with_damaged_metadata(change, words, files, tmp_path, capsys):
    bad = _with_metadata(files["onnx"], tmp_path / "bad.onnx", change)
    x = _npz(tmp_path, np.zeros((4, 2, *SHAPE), np.float32))
    cli_refuses(capsys, ["run", bad, "--runner", "onnxruntime", "--inputs", x, "--out",
                         tmp_path / "y.npz"], "bad.onnx", "metadata", *words)
    nothing_partial(tmp_path / "y.npz")


@pytest.mark.parametrize("content", [b"", b"\x08\x07garbage" * 10, "half"])
def test_a_corrupt_onnx_file(content, files, tmp_path, capsys):
    data = files["onnx"].read_bytes()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(data[: len(data) // 2] if content == "half" else content)
    x = _npz(tmp_path, np.zeros((4, 2, *SHAPE), np.float32))
    cli_refuses(capsys, ["run", bad, "--runner", "onnxruntime", "--inputs", x, "--out",
                         tmp_path / "y.npz"], "bad.onnx")
    nothing_partial(tmp_path / "y.npz")


# --- target files ----------------------------------------------------------------------

@pytest.mark.parametrize("edit, words", [
    (lambda t: t.replace("weight_bits = 8", "weight_bits = 0"), ["weight_bits = 0", "1..31"]),
    (lambda t: t.replace("state_bits = 24", "state_bits = 99"), ["state_bits = 99"]),
    (lambda t: t.replace("weight_exp_max = 7", "weight_exp_max = 700"), ["weight_exp_max"]),
    (lambda t: t.replace('name = "loihi2"', ""), ["needs a string 'name'"]),
    (lambda t: t.replace("weight_bits = 8", 'weight_bits = "8"'), ["weight_bits must be int"]),
    (lambda t: t.replace("input_bits = 8", ""), ["lacks 'input_bits'"]),
    (lambda t: t + "\n[[broken", ["cannot be read"]),
    (lambda t: t.replace("value = 128", "value = -1"), ["resources.cores", "positive int"]),
])
def test_a_bad_target_file_is_refused_naming_the_field(edit, words, mlp_ckpt, tmp_path,
                                                       capsys):
    from cf2neuro.targets import TARGETS_DIR

    path = tmp_path / "mine.toml"
    path.write_text(edit((TARGETS_DIR / "loihi2.toml").read_text()))
    out = tmp_path / "m.nir"
    cli_refuses(capsys, ["export", mlp_ckpt, "--out", out, "--target", path], "mine.toml",
                *words)
    nothing_partial(out)


def test_a_target_file_that_is_not_text(mlp_ckpt, tmp_path, capsys):
    path = tmp_path / "bin.toml"
    path.write_bytes(b"\xff\xfe\x00name = 1")
    cli_refuses(capsys, ["export", mlp_ckpt, "--out", tmp_path / "m.nir", "--target", path],
                "bin.toml", "cannot be read")


def test_a_run_too_big_for_the_memory_is_refused_with_the_figure(capsys, monkeypatch):
    """Estimated from the graph and the window before any step runs (the figures in GiB)."""
    import cf2neuro.device as device
    from cf2neuro.errors import ConfigError
    from cf2neuro.ir.engine import Engine
    from cf2neuro.ir.passes import run_passes
    from cf2neuro.ir.trace import trace_model
    from cf2neuro.nn.models import build_model

    g = run_passes(trace_model(build_model("mlp", {"timesteps": 4})))
    monkeypatch.setattr(device, "available_memory", lambda d=None: (1 << 20, "RAM available"))
    with pytest.raises(ConfigError, match=r"running 512 samples x 4 steps .* GiB .*--limit"):
        Engine(g).run(np.zeros((4, 512, 1, 8, 8), np.float32))
    Engine(g).run(np.zeros((4, 2, 1, 8, 8), np.float32))  # a small run still fits

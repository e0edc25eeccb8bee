"""Property-based fuzzing (hypothesis), bounded and derandomized so CI is reproducible.

- IR -> NIR -> IR of random small graphs gives the same graph back, or a clean
  cf2neuro error (BadInputError, UnsupportedError): never another exception.
- The readers of data files (CIFAR-10 binary, N-MNIST .bin, AEDAT 2.0 and 3.1),
  of NIR files and of checkpoints' config.json, on malformed bytes, raise only
  cf2neuro errors.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cf2neuro.errors import BadInputError, Cf2NeuroError
from cf2neuro.ir import Graph
from cf2neuro.nir import from_nir, write_nir

FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

SPECIAL = st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -1.0, 1e30, 1e-30])


@st.composite
def arrays(draw, shape, low=-2.0, high=2.0):
    """A float32 array, sometimes with one special value (NaN, inf, 0, huge, tiny)."""
    seed = draw(st.integers(0, 2 ** 16))
    a = np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)
    if draw(st.integers(0, 5)) == 0:
        a.reshape(-1)[draw(st.integers(0, a.size - 1))] = draw(SPECIAL)
    return a


@st.composite
def graphs(draw) -> Graph:
    """Input [n] -> (Linear -> CFNeuron)* -> Linear -> Output, maybe with a loop back to
    the first layer's input from the last neuron (recurrent) or from a Linear (no neuron
    on the cycle: the importer must refuse it)."""
    width0 = width = draw(st.integers(1, 5))
    layers = draw(st.integers(0, 3))
    loop = draw(st.sampled_from(["none", "none", "cf", "fc"])) if layers else "none"
    g = Graph({"dt": draw(st.sampled_from([1e-4, 1e-3, 0.5]))})
    g.add_node("x", "Input", attrs={"shape": [width]})
    prev = "x"
    if loop != "none":
        g.add_node("loop", "Add", ["x", "rec"])
        prev = "loop"
    for i in range(layers):
        out = draw(st.integers(1, 5))
        params = {"weight": draw(arrays((out, width)))}
        if draw(st.booleans()):
            params["bias"] = draw(arrays((out,)))
        g.add_node(f"fc{i}", "Linear", [prev], params)
        cf_params = {}
        if draw(st.booleans()):
            cf_params["threshold"] = draw(arrays((out,), 0.1, 2.0))
        if draw(st.booleans()):
            cf_params["beta"] = draw(arrays((out,), 0.05, 1.0))
        g.add_node(f"cf{i}", "CFNeuron", [f"fc{i}"], cf_params, {
            "threshold": draw(st.sampled_from([1.0, 0.5, 2.0, 0.0, -1.0])),
            "beta": draw(st.sampled_from([0.5, 1.0, 0.9, 0.0, 1.5])),
            "max_spikes": draw(st.integers(1, 4)), "signed": draw(st.booleans())})
        prev, width = f"cf{i}", out
    if loop != "none":
        src = prev if loop == "cf" else f"fc{layers - 1}"
        g.add_node("rec", "Linear", [src], {"weight": draw(arrays((width0, width)))})
    g.add_node("head", "Linear", [prev], {"weight": draw(arrays((3, width)))})
    g.add_node("out", "Output", ["head"])
    return g


@FUZZ
@given(graphs())
def test_ir_nir_round_trip_is_exact_or_a_clean_error(g):
    try:
        g.validate()
    except BadInputError:
        return  # the IR itself refuses it: fine, nothing to round-trip
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "g.nir"
        try:
            write_nir(g, path)
            back = from_nir(path)
        except BadInputError:  # UnsupportedError is one; anything else fails the test
            return
    assert back.equals(g), f"round trip changed the graph:\n{g}\n--- back:\n{back}"


# --- loaders on malformed bytes ------------------------------------------------------------

def _valid_files(tmp: Path) -> dict[str, Path]:
    import data_files as df

    rng = np.random.default_rng(0)
    w = df.polarity_word
    return {
        "cifar": df.write_cifar_bin(tmp / "c.bin", rng.integers(0, 256, (2, 3, 32, 32)), [1, 9]),
        "nmnist": df.write_nmnist_bin(tmp / "n.bin", [(1, 2, 100, 1), (33, 33, 9000, 0)],
                                      overflow_before=(1,)),
        "aedat2": df.write_aedat2(tmp / "a.aedat", [(df.dvs128_address(5, 10, 0), 7),
                                                    (df.dvs128_address(127, 0, 1), 9)]),
        "aedat31": df.write_aedat31(tmp / "g.aedat", [
            df.aedat31_packet(1, [(w(10, 20, 1), 100), (w(3, 4, 0), 199)])]),
    }


def _read(kind: str, path: Path):
    """What a loader does with one file: decode it and bin it into frames."""
    from cf2neuro.data.cifar10 import read_cifar_bin
    from cf2neuro.data.cifar10_dvs import read_aedat2_dvs128
    from cf2neuro.data.dvs_gesture import read_aedat31_polarity
    from cf2neuro.data.events import bin_events, check_in_sensor
    from cf2neuro.data.nmnist import read_nmnist_bin

    if kind == "cifar":
        return read_cifar_bin(path)
    read, sensor = {"nmnist": (read_nmnist_bin, (34, 34)),
                    "aedat2": (read_aedat2_dvs128, (128, 128)),
                    "aedat31": (read_aedat31_polarity, (128, 128))}[kind]
    ev = read(path)
    check_in_sensor(ev, sensor, str(path))
    return bin_events(ev, 2, sensor, sensor, "time")


@st.composite
def garbled(draw, data: bytes) -> bytes:
    """`data` truncated, with bytes flipped, appended, or replaced by noise."""
    how = draw(st.sampled_from(["truncate", "flip", "append", "noise", "empty-tail"]))
    if how == "truncate":
        return data[:draw(st.integers(0, max(len(data) - 1, 0)))]
    if how == "flip":
        b = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            b[draw(st.integers(0, len(b) - 1))] = draw(st.integers(0, 255))
        return bytes(b)
    if how == "append":
        return data + draw(st.binary(min_size=1, max_size=64))
    if how == "noise":
        return draw(st.binary(max_size=7000))
    return data[: len(data) // 2] + b"\x00" * draw(st.integers(0, 16))


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("valid")
    return {k: p.read_bytes() for k, p in _valid_files(tmp).items()}


@pytest.mark.parametrize("kind", ["cifar", "nmnist", "aedat2", "aedat31"])
def test_the_valid_files_read(kind, tmp_path):
    _read(kind, _valid_files(tmp_path)[kind])


@pytest.mark.parametrize("kind", ["cifar", "nmnist", "aedat2", "aedat31"])
def test_data_readers_raise_only_cf2neuro_errors(kind, valid, tmp_path):
    @FUZZ
    @given(garbled(valid[kind]))
    def check(data):
        path = tmp_path / f"f.{kind}"
        path.write_bytes(data)
        try:
            _read(kind, path)
        except Cf2NeuroError:
            pass

    check()


def test_nir_reader_raises_only_cf2neuro_errors(tmp_path):
    g = Graph({"dt": 1e-4})
    g.add_node("x", "Input", attrs={"shape": [3]})
    g.add_node("fc", "Linear", ["x"], {"weight": np.eye(3, dtype=np.float32)})
    g.add_node("cf", "CFNeuron", ["fc"])
    g.add_node("out", "Output", ["cf"])
    write_nir(g.validate(), tmp_path / "ok.nir")
    data = (tmp_path / "ok.nir").read_bytes()

    @FUZZ
    @given(garbled(data))
    def check(bad):
        path = tmp_path / "bad.nir"
        path.write_bytes(bad)
        try:
            from_nir(path)
        except Cf2NeuroError:
            pass

    check()


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


def test_checkpoint_loader_raises_only_cf2neuro_errors(mlp_ckpt, tmp_path):
    from cf2neuro.checkpoint import load_checkpoint

    ck = tmp_path / "ck"
    shutil.copytree(mlp_ckpt, ck)
    good = json.loads((ck / "config.json").read_text())

    @st.composite
    def configs(draw):
        """A random JSON value, or the real config with one section or key replaced."""
        if draw(st.booleans()):
            return draw(JSON)
        cfg = json.loads(json.dumps(good))
        section = draw(st.sampled_from(["model", "train", "data"]))
        if draw(st.booleans()) or not isinstance(cfg[section], dict):
            cfg[section] = draw(JSON)
        else:
            cfg[section][draw(st.sampled_from(sorted(cfg[section])))] = draw(JSON)
        cfg.pop("weights_sha256", None)
        return cfg

    @FUZZ
    @given(configs())
    def check(cfg):
        (ck / "config.json").write_text(json.dumps(cfg))
        try:
            load_checkpoint(ck)
        except Cf2NeuroError:
            pass

    check()

"""The runtime's entry point (cf2neuro's xylosim runner starts it in a subprocess).

    python -m cf2neuro_xylo check
    python -m cf2neuro_xylo run --spec SPEC.npz --inputs IN.npz --out OUT.npz
                                [--keep NAME]... [--ready FILE] [--stats FILE.json]

SPEC.npz holds the arguments of Rockpool's ``XyloSim.from_specification``
(int arrays; see cf2neuro/backends/xylo/lower.py). IN.npz holds ``x``: spike
counts [T, B, channels], uint8-safe (0..15). One XyloSim is built, then every
sample runs from reset state (``reset_state`` then ``evolve(record=True)``).
OUT.npz gets, each [T, B, N] as XyloSim records them: ``Isyn``, ``Vmem``,
``Spikes`` (hidden), ``Isyn_out``, ``Vmem_out``, ``Spikes_out`` (readout);
it is written atomically; ``--keep`` (repeatable) keeps only those arrays
(big networks record a lot). ``--ready`` is written once XyloSim is built.

Exit status: 0 success; 2 the spec or the inputs cannot be run (one line
``cf2neuro_xylo: error: ...`` on stderr); 1 any other error (a traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from . import versions, xylosim_class

SPEC_KEYS = ("weights_in", "weights_out", "weights_rec", "dash_mem", "dash_mem_out", "dash_syn",
             "dash_syn_2", "dash_syn_out", "threshold", "threshold_out", "bias", "bias_out",
             "weight_shift_in", "weight_shift_rec", "weight_shift_out")


def _fail(message: str) -> int:
    print(f"cf2neuro_xylo: error: {message}", file=sys.stderr)
    return 2


def _load(path: str, keys) -> dict:
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in keys if k not in data.files]
            if missing:
                raise ValueError(f"it lacks {missing}")
            return {k: data[k] for k in keys}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise ValueError(f"{path} is not a readable .npz: {e}") from None


def _atomic_savez(path: Path, arrays: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build(spec: dict):
    """Rockpool's XyloSim for the spec (output mode "Spike": the readout's spikes)."""
    kw = {k: np.asarray(v) for k, v in spec.items()}
    for k in ("weight_shift_in", "weight_shift_rec", "weight_shift_out"):
        kw[k] = int(np.asarray(kw[k]).reshape(-1)[0])
    for k in ("weights_in", "weights_rec", "weights_out"):
        kw[k] = kw[k].astype(np.int8)
    return xylosim_class().from_specification(**kw, output_mode="Spike")


RECORDINGS = ("Isyn", "Vmem", "Spikes", "Isyn_out", "Vmem_out", "Spikes_out")


def run(sim, x: np.ndarray, keep=RECORDINGS) -> dict:
    """Every sample from reset state: XyloSim's recordings `keep`, each [T, B, N]."""
    keys = [k for k in keep if k != "Spikes_out"]
    out = {k: [] for k in keep}
    for b in range(x.shape[1]):
        sim.reset_state()
        spikes, _, rec = sim.evolve(x[:, b, :], record=True)
        for k in keys:
            out[k].append(np.asarray(rec[k]).reshape(x.shape[0], -1))
        if "Spikes_out" in out:
            out["Spikes_out"].append(np.asarray(spikes).reshape(x.shape[0], -1))
    dtypes = {"Spikes": np.uint8, "Spikes_out": np.uint8}
    return {k: np.stack(v, 1).astype(dtypes.get(k, np.int16)) for k, v in out.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="cf2neuro_xylo")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="import XyloSim and run a one-neuron network")
    r = sub.add_parser("run")
    r.add_argument("--spec", required=True)
    r.add_argument("--inputs", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--keep", action="append", choices=RECORDINGS)
    r.add_argument("--ready")
    r.add_argument("--stats")
    args = p.parse_args(argv)
    if args.command == "check":
        one = {k: np.zeros(1, np.int64) for k in SPEC_KEYS}
        one.update(weights_in=np.array([[10]]), weights_out=np.array([[1]]),
                   weights_rec=np.zeros((1, 1)), threshold=np.array([20]),
                   threshold_out=np.array([1]), dash_syn=np.array([1]))
        rec = run(build(one), np.array([[[3]], [[3]], [[0]]]))
        assert rec["Spikes"][:, 0, 0].tolist() == [0, 1, 0], rec["Spikes"]
        print(json.dumps(versions()))
        return 0
    t0 = time.perf_counter()
    try:
        spec = _load(args.spec, SPEC_KEYS)
        x = _load(args.inputs, ("x",))["x"]
    except ValueError as e:
        return _fail(str(e))
    if x.ndim != 3 or not np.issubdtype(x.dtype, np.integer) or x.size and (
            x.min() < 0 or x.max() > 255):
        return _fail(f"inputs 'x' must be spike counts [T, B, channels] in 0..255, got "
                     f"{x.dtype} {list(x.shape)}")
    if x.shape[2] != spec["weights_in"].shape[0]:
        return _fail(f"inputs have {x.shape[2]} channels, the spec {spec['weights_in'].shape[0]}")
    sim = build(spec)
    sim_t = time.perf_counter()
    if args.ready:
        Path(args.ready).write_text("ready\n")
    res = run(sim, x.astype(np.int64), tuple(args.keep or RECORDINGS))
    done = time.perf_counter()
    _atomic_savez(Path(args.out), res)
    if args.stats:
        Path(args.stats).write_text(json.dumps({
            "import_s": sim_t - t0, "run_s": done - sim_t, "samples": int(x.shape[1]),
            "steps": int(x.shape[0]), **versions()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

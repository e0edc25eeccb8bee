"""Runs a Loihi 1 network plan on nengo-loihi's emulator (inside the nengo-loihi runtime).

    python nengo_loihi_driver.py --plan PLAN.json --arrays ARRAYS.npz --out OUT.npz
                                 [--stats STATS.json]
    python nengo_loihi_driver.py --check     (prints the versions it runs)

Started by `nengo_loihi_runner` with the runtime's Python (nengo 3.2, nengo-loihi,
numpy < 2); it imports neither torch nor cf2neuro. The plan is already in
Loihi 1's integers (blocks: decay_u, decay_v, vth << 6, bias, vmin/vmax;
synapses: 8-bit mantissas, weight_exp, sign mode), and the network is built
from nengo-loihi's own objects (LoihiBlock, Synapse, Axon, SpikeInput) and run
by its `EmulatorInterface`, stepped by hand so every step's state is read.

Weights go through Loihi 1's two-part weight shift (nengo_loihi/builder/
discretize.py, discretize_weights): mantissa >> shift_bits, << (shift_bits +
weight_exp) (lossy, rounded, when negative), then << 6. It is transcribed
here because nengo-loihi's version clips mixed mantissas to +-254 where the
chip (and Lava) take -256; `check_encoding` compares both on every other weight.

It records only what the plan names (``record``: ``s:``/``v:``/``u:`` + block, the
spikes, voltage and current after each step) and writes them [T, B, n] into OUT.npz.

Time: input spikes reach the first synapse one step later, and every block's
spikes reach the next block one step later, so a block at pipeline depth d
computes sample step k at emulator step k + 1 + d. Before that it is held at
zero (its bias would otherwise run ahead), as cf2neuro's runners reset each
layer at its own depth. Each sample runs on a fresh emulator.

Exit status: 0 success; 2 a plan it cannot build (``nengo_loihi_driver: error:``
line on stderr); 1 anything else (a traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

PREFIX = "nengo_loihi_driver: error: "


class PlanError(ValueError):
    """The plan cannot be built on nengo-loihi (exit status 2)."""


def encode_weights(mant: np.ndarray, weight_exp: int, mixed: bool) -> np.ndarray:
    """Loihi 1's weights in u units (discretize.py discretize_weights, lossy_shift=True).

    shift_bits s = 8 - 8 + is_mixed (block.py SynapseConfig.shift_bits, 8-bit weights);
    a mixed-sign 8-bit weight keeps 7 bits and the sign: -256..254 (even).
    """
    s = 1 if mixed else 0
    lo, hi = (-128, 127) if mixed else (-255, 255)
    w = np.clip(np.round(mant.astype(np.float64) / 2.0 ** s), lo, hi)
    s2 = s + int(weight_exp)
    if s2 < 0:  # the chip's first shift drops bits: rounded, as nengo-loihi models it
        w = np.clip(np.round(w * 2.0 ** s2) / 2.0 ** s2, lo, hi)
    w = w.astype(np.int64)
    w = w << s2 if s2 >= 0 else w >> -s2
    return w << 6


def check_encoding(mant, weight_exp, mixed, raw) -> int:
    """Compare `encode_weights` with nengo-loihi's own discretize_weights; returns how many
    weights nengo-loihi's symmetric clip (+-254) would change (mantissa -256)."""
    from nengo_loihi.block import SynapseConfig
    from nengo_loihi.builder.discretize import discretize_weights

    cfg = SynapseConfig(weight_bits=7, fanout_type=1 if mixed else 2, weight_exp=weight_exp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Lost N extra bits in weight rounding"
        ref = discretize_weights(cfg, mant.astype(np.float64), dtype=np.int64,
                                 check_result=False)
    same = ref == raw
    clipped = mixed & (mant == -256)
    if not np.all(same | clipped):
        raise PlanError("Loihi 1 weight encoding differs from nengo-loihi's discretize_weights "
                        f"(weight_exp {weight_exp}, mixed={mixed})")
    return int(np.count_nonzero(clipped))


def _block(spec: dict, arrays):
    from nengo_loihi.block import LoihiBlock

    n = int(spec["n"])
    block = LoihiBlock(n, label=spec["name"])
    c = block.compartment
    full = lambda v: np.full(n, int(v), dtype=np.int32)  # noqa: E731
    c.decay_u, c.decay_v = full(spec["decay_u"]), full(spec["decay_v"])
    c.vth, c.refract_delay = full(spec["vth"]), full(spec["refract"])
    c.bias = np.asarray(arrays[spec["bias"]], dtype=np.int64).astype(np.int32)
    c.scale_u = c.scale_v = False  # integer state: no u/v input scaling
    c.vmin, c.vmax = int(spec["vmin"]), int(spec["vmax"])
    c.enable_noise = np.zeros(n, dtype=bool)
    if c.bias.shape != (n,):
        raise PlanError(f"block {spec['name']}: bias has shape {c.bias.shape}, want ({n},)")
    return block


def _synapse(spec: dict, arrays, stats: dict):
    from nengo_loihi.block import Synapse
    from nengo_loihi.builder.discretize import array_to_int

    mant = np.asarray(arrays[spec["mant"]], dtype=np.int64)  # [n_pre, n_post]
    mixed = spec["sign_mode"] == "mixed"
    raw = encode_weights(mant, spec["weight_exp"], mixed)
    stats["nengo_clip_would_change"] += check_encoding(mant, spec["weight_exp"], mixed, raw)
    exact = mant.astype(np.float64) * 2.0 ** (6 + spec["weight_exp"])
    stats["weights_changed_by_encoding"] += int(np.count_nonzero(raw != exact))
    syn = Synapse(mant.shape[0], label=spec["name"])
    syn.set_weights(raw.astype(np.float32))  # exact: |raw| < 2^24
    for w in syn.weights:  # integer weights, as nengo-loihi's discretize_synapse leaves them
        array_to_int(w, w.copy())
    syn.format(fanout_type=1 if mixed else (2 if spec["sign_mode"] == "excitatory" else 3))
    return syn


def build(plan: dict, arrays, stats: dict):
    """(model, spike input, blocks by name) from the plan, with nengo-loihi's objects."""
    from nengo_loihi.block import Axon
    from nengo_loihi.builder import Model
    from nengo_loihi.inputs import SpikeInput

    model = Model(dt=0.001, label="cf2neuro")
    blocks = {}
    for spec in plan["blocks"]:
        blocks[spec["name"]] = _block(spec, arrays)
        model.add_block(blocks[spec["name"]])
    spike_input = SpikeInput(int(plan["inputs"]["n"]), label="input")
    model.add_input(spike_input)
    for spec in plan["synapses"]:
        post = blocks.get(spec["post"])
        pre = spike_input if spec["pre"] == "__input__" else blocks.get(spec["pre"])
        if post is None or pre is None:
            raise PlanError(f"synapse {spec['name']}: unknown block {spec['pre']!r} or "
                            f"{spec['post']!r}")
        syn = _synapse(spec, arrays, stats)
        n_pre = pre.n_neurons
        if syn.n_axons != n_pre or syn.weights[0].shape[1] != post.n_neurons:
            raise PlanError(f"synapse {spec['name']}: weights {arrays[spec['mant']].shape} do "
                            f"not connect {n_pre} -> {post.n_neurons} compartments")
        post.add_synapse(syn)
        axon = Axon(n_pre, label=spec["name"])
        axon.target = syn
        pre.add_axon(axon)
    return model, spike_input, blocks


def run(plan: dict, arrays, stats: dict) -> dict:
    from nengo_loihi.emulator.interface import EmulatorInterface

    t0 = time.perf_counter()
    model, spike_input, blocks = build(plan, arrays, stats)
    stats["build_s"] = time.perf_counter() - t0
    x = np.asarray(arrays["x"])
    steps, samples = x.shape[0], x.shape[1]
    x = x.reshape(steps, samples, -1)
    if x.shape[2] != spike_input.n_neurons or np.any((x != 0) & (x != 1)):
        raise PlanError(f"inputs must be binary spikes [T, B, {spike_input.n_neurons}], got "
                        f"{list(x.shape)} with values {np.unique(x)[:5].tolist()}")
    specs = {s["name"]: s for s in plan["blocks"]}
    depth = {name: int(specs[name]["depth"]) for name in blocks}
    total = steps + 1 + max(depth.values(), default=0)
    out = {}  # only what the plan records: "s:" spikes, "v:" voltage, "u:" current
    for key in plan["record"]:
        kind, _, name = key.partition(":")
        if kind not in ("s", "v", "u") or name not in blocks:
            raise PlanError(f"cannot record {key!r}: no block {name!r} or no state {kind!r}")
        out[key] = np.zeros((steps, samples, blocks[name].n_neurons),
                            np.int8 if kind == "s" else np.int32)
    state = {"s": "spiked", "v": "voltage", "u": "current"}
    record = {name: [(key, state[key[0]]) for key in out if key[2:] == name] for name in blocks}
    overflow: dict[str, int] = {}
    t0 = time.perf_counter()
    for b in range(samples):
        spike_input.spikes.clear()
        for k in range(steps):  # spike time k + 1 arrives at step k + 2 (interface.py:491)
            idx = np.flatnonzero(x[k, b])
            if idx.size:
                spike_input.add_spikes(k + 1, idx.tolist())
        emu = EmulatorInterface(model, seed=0)
        comp = emu.compartment
        slices = emu.block_info.slices
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(total):
                emu.step()
                t = emu.t
                for name, block in blocks.items():
                    sl, k = slices[block], t - 1 - depth[name]
                    if k < 0:  # not started: hold it at zero
                        comp.current[sl] = comp.voltage[sl] = comp.ref_count[sl] = 0
                        comp.spiked[sl] = False
                    elif k < steps:
                        for key, attr in record[name]:
                            out[key][k, b] = getattr(comp, attr)[sl]
        for w in caught:
            msg = str(w.message)
            overflow[msg] = overflow.get(msg, 0) + 1
        emu.close()
    stats.update(run_s=time.perf_counter() - t0, emulator_steps=total * samples,
                 warnings=overflow)
    return out


def _atomic_savez(path: Path, arrays: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="nengo_loihi_driver")
    p.add_argument("--plan")
    p.add_argument("--arrays")
    p.add_argument("--out")
    p.add_argument("--stats")
    p.add_argument("--check", action="store_true", help="import nengo-loihi and exit")
    args = p.parse_args(argv)
    if not args.check and not (args.plan and args.arrays and args.out):
        p.error("--plan, --arrays and --out are required (or --check)")
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # distutils, on Python 3.11
        import nengo
        import nengo_loihi
    versions = {"nengo": nengo.__version__, "nengo_loihi": nengo_loihi.__version__,
                "numpy": np.__version__, "python": sys.version.split()[0]}
    if args.check:
        print(json.dumps(versions))
        return 0
    stats = {**versions, "import_s": time.perf_counter() - t0, "nengo_clip_would_change": 0,
             "weights_changed_by_encoding": 0}
    try:
        plan = json.loads(Path(args.plan).read_text())
        with np.load(args.arrays, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        out = run(plan, arrays, stats)
    except PlanError as e:
        print(PREFIX + str(e), file=sys.stderr)
        return 2
    _atomic_savez(Path(args.out), out)
    if args.stats:
        Path(args.stats).write_text(json.dumps(stats, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Lava's cost per sample, per step and per convolution call; Lava's Conv vs Lava's Sparse.

    .venv/bin/python benchmarks/lava_cost.py [--nets mlp,vgg-small,vgg11-head,vgg11-tail]
                                             [--samples 4] [--lowering conv,auto]

Builds each network untrained (cf2neuro's zoo; random inputs on the 8-bit
grid, T = 4), quantizes it for loihi2 (calibrated on other random inputs),
runs it on Lava through `run_lava` once per lowering and prints, side by
side: seconds per sample, per Lava step, per convolve2d call (run time over
steps x calls; the other processes' time included, so an upper bound), the
Lava processes, and whether the outputs and probes equal the emulator's.

Lowerings (``$CF2NEURO_LAVA_CONV``, cf2neuro_lava/synapses.py): ``conv``
is every convolution and sum pooling as Lava's Conv (one
``scipy.signal.convolve2d`` per (output, input) channel pair a step, as
lava/proc/conv/utils.py ``conv_scipy`` does); ``auto`` (the default) is
Lava's Sparse with Lava's own ``conv_to_sparse`` synapses where that is
exact, one sparse product a step.

Networks: ``mlp`` and ``vgg-small`` at digits size ([1, 8, 8]);
``vgg11-head`` the first two VGG-11 stages at CIFAR size (3 -> 64, pool,
64 -> 128, pool on [3, 32, 32]) and two narrow ones (128 -> 128, pool) down
to a small readout;
``vgg11-tail`` two of its widest layers (256 -> 512 -> 512 and a pool, on
a [256, 4, 4] input).
"""

import argparse
import os
import time

import numpy as np

from cf2neuro.backends.loihi2.runner import run_lava
from cf2neuro.ir.passes import run_passes
from cf2neuro.ir.trace import trace_model
from cf2neuro.nn.models import build_model
from cf2neuro.quant import quantize
from cf2neuro.runners.emulator import emulate

T = 4
NETS = {
    "mlp": ("mlp", {"input_shape": [1, 8, 8]}),
    "vgg-small": ("vgg-small", {"input_shape": [1, 8, 8]}),
    "vgg11-head": ("vgg-small", {"input_shape": [3, 32, 32],
                                 "channels": [64, "A", 128, "A", 128, "A", 128, "A"]}),
    "vgg11-tail": ("vgg-small", {"input_shape": [256, 4, 4], "channels": [512, 512, "A"]}),
}


def network(key: str):
    name, opts = NETS[key]
    graph = run_passes(trace_model(build_model(name, {**opts, "timesteps": T})))
    return graph, opts["input_shape"]


def inputs(shape, samples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (T, samples, *shape)) / 255).astype(np.float32)


def neurons(graph) -> list[str]:
    return [n.name for n in graph.nodes.values() if n.op in ("CFNeuron", "LIF", "IF")]


def measure(key: str, samples: int, lowerings: list[str]) -> list[dict]:
    graph, shape = network(key)
    t0 = time.perf_counter()
    q = quantize(graph, "loihi2", calibration=inputs(shape, 16, seed=1))
    x = inputs(shape, samples, seed=2)
    probes = neurons(q)
    emu = emulate(q, x, probes=probes)
    print(f"{key}: quantized in {time.perf_counter() - t0:.1f} s", flush=True)
    rows = []
    for lowering in lowerings:
        os.environ["CF2NEURO_LAVA_CONV"] = lowering  # the runtime reads it (lava_env passes it)
        stats: dict = {}
        res = run_lava(q, x, probes, stats=stats, progress=False)
        exact = all(np.array_equal(res[p], np.asarray(emu[p])) for p in ["output", *probes])
        calls = stats["conv_calls_per_step"]
        rows.append({
            "net": key, "lowering": lowering, "samples": samples, "steps": stats["steps"],
            "processes": stats["processes"], "conv_calls": calls,
            "sparse_synapses": stats["sparse_synapses"], "run_s": stats["run_s"],
            "setup_s": stats["compile_s"] + stats["start_s"] + stats["build_s"],
            "per_sample_s": stats["run_s"] / samples,
            "per_step_ms": 1e3 * stats["run_s"] / stats["steps"],
            "per_call_us": 1e6 * stats["run_s"] / (stats["steps"] * calls) if calls else None,
            "exact": exact})
        print(row_text(rows[-1]), flush=True)
    return rows


HEADER = (f"{'net':<11} {'lowering':<8} {'procs':>5} {'conv calls/step':>15} "
          f"{'sparse syn':>11} {'s/sample':>9} {'ms/step':>9} {'us/call':>8} {'setup s':>8} "
          f"{'== emulator':>11}")


def row_text(r: dict) -> str:
    call = f"{r['per_call_us']:.2f}" if r["per_call_us"] is not None else "-"
    return (f"{r['net']:<11} {r['lowering']:<8} {r['processes']:>5} {r['conv_calls']:>15} "
            f"{r['sparse_synapses']:>11} {r['per_sample_s']:>9.3f} {r['per_step_ms']:>9.2f} "
            f"{call:>8} {r['setup_s']:>8.1f} {str(r['exact']):>11}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default="mlp,vgg-small,vgg11-head,vgg11-tail",
                    help=f"comma-separated, from {', '.join(NETS)}")
    ap.add_argument("--samples", type=int, default=4, help="samples streamed through one run")
    ap.add_argument("--lowering", default="conv,auto",
                    help="comma-separated $CF2NEURO_LAVA_CONV values: conv (before), auto (after)")
    args = ap.parse_args()
    rows = []
    for key in args.nets.split(","):
        if key not in NETS:
            ap.error(f"unknown net {key!r}; known: {', '.join(NETS)}")
        rows += measure(key, args.samples, args.lowering.split(","))
    print("\n" + HEADER)
    for r in rows:
        print(row_text(r))


if __name__ == "__main__":
    main()

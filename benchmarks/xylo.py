"""Xylo: float vs Xylo-quantized accuracy over seeds, and the emulator vs XyloSim side by side.

    .venv/bin/python benchmarks/xylo.py [--seeds 3] [--epochs 30] [--hidden 64]

Trains CF MLPs on `digits-rows` (8 channels x 8 steps, 8 classes) with
``--target xylo`` (unsigned, K = 31, reset by subtraction: what Xylo
computes), verifies each on XyloSim (float, quantized emulator, XyloSim, exact
match), then times the emulator and the xylosim runner on the same test set
and prints the ratio. Needs the Xylo runtime (built on first use, ~40 s).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--hidden", type=int, default=64)
    args = ap.parse_args()

    from cf2neuro.checkpoint import checkpoint_graph
    from cf2neuro.quant import quantize
    from cf2neuro.runners import RunRequest, get_runner
    from cf2neuro.train import TrainConfig, train
    from cf2neuro.verify import calibration_inputs, test_inputs, verify

    rows, speed = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            ckpt = Path(tmp) / f"s{seed}"
            cfg = TrainConfig(data="digits-rows", timesteps=8, epochs=args.epochs, seed=seed,
                              target="xylo", model_options={"hidden": [args.hidden]})
            train(cfg, ckpt, progress=False)
            r = verify(ckpt, target="xylo", data="digits-rows", runner="xylosim")
            rows.append((seed, r["float_accuracy"], r["quantized_accuracy"],
                         r["runner_accuracy"], min(r["exact_match"].values())))
        x, _ = test_inputs(ckpt)
        q = quantize(checkpoint_graph(ckpt), "xylo", calibration=calibration_inputs(ckpt))
        times = {}
        for name in ("emulator", "xylosim"):
            runner = get_runner(name)
            t0 = time.perf_counter()
            runner.run(RunRequest(q, x.numpy()))
            times[name] = time.perf_counter() - t0
        speed = (int(x.shape[1]), int(x.shape[0]), times)

    print(f"digits-rows, {args.hidden} hidden, {args.epochs} epochs, --target xylo")
    print(f"{'seed':>4} {'float':>8} {'emulator':>9} {'XyloSim':>8} {'exact':>7}")
    for seed, f, e, s, ex in rows:
        print(f"{seed:>4} {f:8.2%} {e:9.2%} {s:8.2%} {ex:7.2%}")
    f, e = np.array([r[1] for r in rows]), np.array([r[3] for r in rows])
    print(f"mean {f.mean():8.2%} {np.array([r[2] for r in rows]).mean():9.2%} {e.mean():8.2%}"
          f"   drop {100 * (f - e).mean():.2f} pp (std {100 * (f - e).std():.2f})")
    n, steps, t = speed
    print(f"speed on {n} samples x {steps} steps: emulator {t['emulator']:.3f} s, xylosim "
          f"{t['xylosim']:.3f} s (incl. its subprocess); xylosim / emulator = "
          f"{t['xylosim'] / t['emulator']:.1f}")


if __name__ == "__main__":
    main()

"""Runner throughput on digits, side by side in one run: reference, emulator, onnxruntime.

    .venv/bin/python benchmarks/runner_throughput.py [--reps 5] [--lava] [--batch-scale 10]

Trains the digits recipe once (~15 s), then runs the whole test set (359
samples, T = 4) through each runner via the runner contract (the same
`RunRequest` every caller uses) and prints samples per second, best of
`--reps`, and each runner's ratio to the float reference:

- reference     the float IR engine (torch)
- emulator      the loihi2 fixed-point engine (torch, int64), quantized graph
- onnxruntime   the exported ONNX file (float, and the integer loihi2 export),
                timed on the file (export and session creation reported apart)
- lava          (with --lava) Lava's CPU simulation in its Python 3.10 runtime

`--batch-scale` repeats the test set to show the large-batch rate as well.
"""

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cf2neuro.checkpoint import checkpoint_graph
from cf2neuro.quant import quantize
from cf2neuro.runners import RunRequest, get_runner
from cf2neuro.train import TrainConfig, train
from cf2neuro.verify import calibration_inputs, test_inputs


def best_of(reps: int, fn):
    times, result = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--batch-scale", type=int, default=10)
    ap.add_argument("--lava", action="store_true", help="also time the Lava runner (slow)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    logging.getLogger("cf2neuro.nir.export").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "digits"
        train(TrainConfig(seed=0, device="cpu"), ckpt, progress=False)
        x, _ = test_inputs(ckpt)
        x = x.numpy()
        graph = checkpoint_graph(ckpt)
        qgraph = quantize(graph, "loihi2", calibration=calibration_inputs(ckpt))
        onnx = get_runner("onnxruntime")
        from cf2neuro.api import load_ref  # the exporter the back end declares

        export = load_ref("cf2neuro.backends.onnx.lower:export_onnx")
        files = {}
        for name, g in (("float", graph), ("loihi2", qgraph)):
            t0 = time.perf_counter()
            files[name] = Path(tmp) / f"{name}.onnx"
            export(g, files[name], timesteps=x.shape[0])
            files[name + "_export_s"] = time.perf_counter() - t0

        rows = []  # (label, samples, seconds)
        for scale in (1, args.batch_scale):
            xs = np.repeat(x, scale, axis=1) if scale > 1 else x
            n = xs.shape[1]
            contestants = [
                ("reference (float engine)", lambda: get_runner("reference").run(
                    RunRequest(graph, xs))),
                ("emulator (loihi2 int64)", lambda: get_runner("emulator").run(
                    RunRequest(qgraph, xs))),
                ("onnxruntime float", lambda: onnx.run(
                    RunRequest(None, xs, model_file=files["float"]))),
                ("onnxruntime loihi2 integer", lambda: onnx.run(
                    RunRequest(None, xs, model_file=files["loihi2"]))),
            ]
            if args.lava and scale == 1:
                contestants.append(("lava (loihi2, CPU simulation)", lambda: get_runner(
                    "lava").run(RunRequest(qgraph, xs))))
            for label, fn in contestants:
                fn()  # warm-up (sessions, allocations)
                t, res = best_of(args.reps if "lava" not in label else 1, fn)
                rows.append((label, n, t, res.timings))
    print(f"digits test set: {x.shape[1]} samples x T = {x.shape[0]}; best of {args.reps}; "
          f"cpu, 2 threads")
    print(f"ONNX export: float {files['float_export_s']:.1f} s, "
          f"loihi2 integer {files['loihi2_export_s']:.1f} s (once per model)")
    ref = {}
    print(f"{'runner':<32}{'samples':>8}{'ms':>10}{'samples/s':>12}{'vs reference':>14}"
          f"{'  inference only (ms)':>22}")
    for label, n, t, timings in rows:
        if label.startswith("reference"):
            ref[n] = t
        inner = timings.get("run")
        print(f"{label:<32}{n:>8}{t * 1e3:>10.1f}{n / t:>12.0f}{ref[n] / t:>13.2f}x"
              f"{'' if inner is None else f'{inner * 1e3:>22.1f}'}")


if __name__ == "__main__":
    main()

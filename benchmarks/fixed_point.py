"""Loihi 2 fixed point on digits: emulator vs Lava throughput, Lava streamed vs
one run per sample, and quantized accuracy over 3 seeds.

    .venv/bin/python benchmarks/fixed_point.py [--seeds 0 1 2] [--per-sample 20] [--device cuda]

Each seed trains `cf2neuro train`'s digits recipe (~15 s), quantizes it for
loihi2 and runs the whole test set (359 samples, T = 4). `--device` picks
where the emulator runs; where there is no Lava runtime (a GPU machine
without Python 3.10), the Lava rows are left out and said so.
"""

import argparse
import logging
import statistics
import tempfile
import time

import torch

from cf2neuro.backends.loihi2 import runtime
from cf2neuro.checkpoint import checkpoint_graph
from cf2neuro.quant import quantize
from cf2neuro.runners.emulator import emulate
from cf2neuro.backends.loihi2.runner import run_lava
from cf2neuro.errors import RuntimeMissingError
from cf2neuro.train import TrainConfig, train
from cf2neuro.verify import test_inputs, verify


def timed(fn, device=torch.device("cpu")):
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    result = fn()
    sync()
    return result, time.perf_counter() - t0


def lava_available() -> bool:
    try:
        runtime.setup_lava(progress=False)
        return True
    except RuntimeMissingError as e:
        print(f"no Lava runtime here, Lava rows left out: {e}")
        return False


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--per-sample", type=int, default=20, help="samples for the per-sample run")
    ap.add_argument("--device", default="cpu", help="where the emulator runs")
    ap.add_argument("--batch-scale", type=int, default=10,
                    help="the big-batch row runs this many copies of the test set")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(2)
    logging.getLogger("cf2neuro.nir.export").setLevel(logging.ERROR)
    drops, agreements = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i, seed in enumerate(args.seeds):
            ckpt = f"{tmp}/seed{seed}"
            train(TrainConfig(seed=seed, device="cpu"), ckpt, progress=False)
            r = verify(ckpt, "loihi2", runner="emulator")
            drops.append(r["accuracy_drop_pp"])
            agreements.append(r["argmax_agreement"])
            print(f"seed {seed}: float {100 * r['float_accuracy']:.2f} %, quantized "
                  f"{100 * r['quantized_accuracy']:.2f} %, drop {r['accuracy_drop_pp']:.2f} pp, "
                  f"argmax agreement {100 * r['argmax_agreement']:.2f} %", flush=True)
            if i == 0:
                x, _ = test_inputs(ckpt)
                qgraph = quantize(checkpoint_graph(ckpt), "loihi2", calibration=x)
        steps = x.shape[0] * x.shape[1]
        scale = args.batch_scale
        big = x.repeat(1, scale, *[1] * (x.dim() - 2))  # the emulator's use: big batches at once
        emulate(qgraph, x, device=device)  # warm-up
        emulate(qgraph, big, device=device)
        _, t_emu = timed(lambda: emulate(qgraph, x, device=device), device)
        _, t_big = timed(lambda: emulate(qgraph, big, device=device), device)
        lava = lava_available()
        if lava:
            stats = {}
            _, t_lava = timed(lambda: run_lava(qgraph, x.numpy(), stats=stats, progress=False))
            n = args.per_sample
            _, t_stream = timed(lambda: run_lava(qgraph, x[:, :n].numpy(), progress=False))
            _, t_each = timed(lambda: [run_lava(qgraph, x[:, b:b + 1].numpy(), progress=False)
                                       for b in range(n)])

    print(f"\nquantized accuracy over seeds {args.seeds}: mean drop {statistics.mean(drops):.2f} pp "
          f"(goal <= 0.30), mean argmax agreement {100 * statistics.mean(agreements):.2f} % "
          f"(goal >= 99.5)")
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu, 2 threads"
    print(f"\nthroughput on the same quantized network, {x.shape[1]} samples x {x.shape[0]} steps "
          f"(emulator on {where}):")
    print(f"  emulator   {t_emu * 1e3:9.1f} ms   {steps / t_emu:12.0f} sample-steps/s")
    big_steps = scale * steps
    print(f"  emulator, {scale}x the test set in one call ({scale * x.shape[1]} samples): "
          f"{t_big * 1e3:.1f} ms, {big_steps / t_big:.0f} sample-steps/s")
    if not lava:
        return
    print(f"  Lava       {t_lava * 1e3:9.1f} ms   {steps / t_lava:12.0f} sample-steps/s "
          f"(whole call: runtime start, build, compile, one streamed run)")
    print(f"  emulator / Lava in sample-steps/s: {t_lava / t_emu:.0f}x on the test set, "
          f"{(big_steps / t_big) / (steps / t_lava):.0f}x at {scale}x the batch; against Lava's "
          f"run() alone ({stats['run_s']:.2f} s): {(big_steps / t_big) / (steps / stats['run_s']):.0f}x "
          f"(goal >= 1000)")
    print(f"  Lava stats: {stats}")
    print(f"\nLava, {n} samples: one streamed run {t_stream:.2f} s, one run per sample "
          f"{t_each:.2f} s -> {t_each / t_stream:.1f}x (goal >= 5)")


if __name__ == "__main__":
    main()

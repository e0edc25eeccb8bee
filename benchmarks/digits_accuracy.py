"""Test accuracy of `cf2neuro train`'s digits defaults: 3 seeds, CPU, 2 threads.

Goal (issue 2): mean >= 98.5 % test accuracy within 30 s of training wall time.
`--device cuda` trains on a GPU instead, with the defaults' AMP and compiled
kernels, and also without AMP, side by side.

    .venv/bin/python benchmarks/digits_accuracy.py [--seeds 0 1 2] [--device cuda]
"""

import argparse
import statistics
import tempfile
import time

import torch

from cf2neuro.train import TrainConfig, train


def run_seeds(seeds, **options) -> list[tuple[float, float]]:
    """(test accuracy, wall seconds) per seed for one training configuration."""
    results = []
    for seed in seeds:
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            metrics = train(TrainConfig(seed=seed, **options), out, progress=False)
            results.append((metrics["test_accuracy"], time.perf_counter() - t0))
    return results


def summary(results) -> str:
    accs = [100 * a for a, _ in results]
    secs = [s for _, s in results]
    spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
    return (f"{statistics.mean(accs):6.2f} ± {spread:4.2f} %   "
            f"({', '.join(f'{a:.2f}' for a in accs)})   {statistics.mean(secs):5.1f} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(2)
    if args.device != "cpu":
        for amp in (True, False):
            res = run_seeds(args.seeds, device=args.device, amp=amp)
            print(f"{args.device}, amp {amp}: {summary(res)}", flush=True)
        return
    results = run_seeds(args.seeds, device="cpu")
    print(f"digits, default recipe ({TrainConfig()}):")
    print("test accuracy mean ± std (per seed)   mean wall time:", summary(results))
    mean_acc = statistics.mean(a for a, _ in results)
    worst = max(s for _, s in results)
    print(f"goal >= 98.50 % mean within 30 s: {100 * mean_acc:.2f} %, slowest run {worst:.1f} s "
          f"-> {'met' if mean_acc >= 0.985 and worst <= 30 else 'NOT met'}")


if __name__ == "__main__":
    main()

"""Trace + fold + NIR export time and file size, and float IR execution vs PyTorch.

For the digits CF-MLP and a full-size ResNet-19 (CIFAR input, 12.7 M
parameters), CPU, 2 threads. The IR engine and the PyTorch model run the
same batch, taking turns; the ratio is engine time / PyTorch time.

    .venv/bin/python benchmarks/ir_export.py
"""

import logging
import os
import statistics
import tempfile
import time

import torch

from cf2neuro.ir import Engine, run_passes, trace_model
from cf2neuro.nir import write_nir
from cf2neuro.nn.models import build_model

MODELS = {
    "digits CF-MLP": ("mlp", {}, (4, 128, 1, 8, 8)),
    "ResNet-19": ("resnet19", {"input_shape": [3, 32, 32]}, (4, 8, 3, 32, 32)),
}


def median_ms(fn, reps):
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main():
    torch.set_num_threads(2)
    torch.manual_seed(0)
    logging.getLogger("cf2neuro.nir.export").setLevel(logging.ERROR)  # the CF caveat warning
    trace_model(build_model("mlp", {}))  # one-time torch.fx start-up cost, not per model
    print(f"{'model':<14} {'params':>8} {'trace':>8} {'fold':>8} {'export':>8} {'.nir size':>10}"
          f" {'batch':>16} {'PyTorch':>9} {'IR engine':>10} {'ratio':>6}")
    for label, (name, cfg, shape) in MODELS.items():
        model = build_model(name, {"timesteps": shape[0], **cfg}).eval()
        params = sum(p.numel() for p in model.parameters())
        t0 = time.perf_counter()
        graph = trace_model(model)
        t1 = time.perf_counter()
        folded = run_passes(graph)
        t2 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.nir")
            write_nir(folded, path)
            t3 = time.perf_counter()
            size = os.path.getsize(path)
        x = torch.rand(shape)
        engine = Engine(folded)
        with torch.no_grad():
            for f in (model, engine):  # warm-up
                f(x)
            times = {"torch": [], "ir": []}
            for _ in range(5):  # take turns so machine drift hits both alike
                times["torch"].append(median_ms(lambda: model(x), 1))
                times["ir"].append(median_ms(lambda: engine(x), 1))
        ms_torch, ms_ir = (statistics.median(times[k]) for k in ("torch", "ir"))
        print(f"{label:<14} {params / 1e6:7.2f}M {1e3 * (t1 - t0):6.0f}ms {1e3 * (t2 - t1):6.0f}ms "
              f"{1e3 * (t3 - t2):6.0f}ms {size / 2**20:8.2f}MiB {str(list(shape)):>16} "
              f"{ms_torch:7.1f}ms {ms_ir:8.1f}ms {ms_ir / ms_torch:5.2f}x")


if __name__ == "__main__":
    main()

"""Forward + backward of one spiking layer at [T=4, B=32, 128, 16, 16], CPU (2 threads) or GPU.

cf2neuro's CF neuron (K = 1 and K = 4, signed, learnable α_t) side by side
with snnTorch `Leaky` and SpikingJelly `LIFNode(step_mode="m")`, each eager
(its default) and under `torch.compile`. All peers run the same dynamics
(β = 0.5, reset by subtraction). Prints milliseconds and the ratios that
benchmarks/RESULTS.md records.

    .venv/bin/python benchmarks/neuron_speed.py [--reps 20] [--device cuda]
"""

import argparse
import statistics
import time

import torch

from cf2neuro.nn import functional as cff
from cf2neuro.nn.neuron import CFNeuron

SHAPE = (4, 32, 128, 16, 16)


def step(layer, x, grad):
    def once():
        x.grad = None
        layer(x).backward(grad)

    return once


def interleaved(runs: dict, reps: int, sync=lambda: None) -> dict:
    """Median ms of each run, taking turns so machine drift hits all alike."""
    for once in runs.values():
        for _ in range(3):
            once()
    times = {name: [] for name in runs}
    for _ in range(reps):
        for name, once in runs.items():
            sync()
            t0 = time.perf_counter()
            once()
            sync()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) * 1e3 for name, ts in times.items()}


def snntorch_layer(device):
    import snntorch as snn

    leaky = snn.Leaky(beta=0.5, reset_mechanism="subtract", reset_delay=False).to(device)

    def run(x):
        mem = leaky.reset_mem()
        spikes = []
        for t in range(x.shape[0]):
            spk, mem = leaky(x[t], mem)
            spikes.append(spk)
        return torch.stack(spikes)

    return run


def spikingjelly_layer(device):
    from spikingjelly.activation_based import neuron

    lif = neuron.LIFNode(tau=2.0, decay_input=False, v_reset=None, detach_reset=True,
                         step_mode="m").to(device)

    def run(x):
        lif.reset()
        return lif(x)

    return run


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(2)
    torch.manual_seed(0)
    x = torch.randn(SHAPE, device=device).requires_grad_()
    grad = torch.randn(SHAPE, device=device)
    runs = {}
    peers = {"snntorch.Leaky": snntorch_layer, "spikingjelly.LIFNode": spikingjelly_layer}
    for name, make in peers.items():
        runs[f"{name} eager"] = step(make(device), x, grad)
        runs[f"{name} compiled"] = step(torch.compile(make(device)), x, grad)
    # compile_kernels is a global switch: the CF runs flip it before each call.
    for k in (1, 4):
        for compiled in (False, True):
            layer = CFNeuron(SHAPE[0], max_spikes=k, signed=True).to(device)
            once = step(layer, x, grad)
            runs[f"cf2neuro CF K={k} {'compiled' if compiled else 'eager'}"] = (
                lambda once=once, compiled=compiled: (cff.compile_kernels(compiled), once()))
    # For context: the peers' own neuron (binary, fixed surrogate) in cf2neuro.
    lif = CFNeuron(SHAPE[0], max_spikes=1, signed=False, learn_alpha=False).to(device)
    once = step(lif, x, grad)
    runs["cf2neuro LIF (K=1 unsigned, fixed α) compiled"] = (
        lambda once=once: (cff.compile_kernels(True), once()))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    rows = interleaved(runs, args.reps, sync)
    print(f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu, 2 threads'}"
          f", torch {torch.__version__}")

    width = max(map(len, rows))
    for name, ms in rows.items():
        print(f"{name:<{width}}  {ms:8.2f} ms")
    best_eager = min(v for k, v in rows.items() if not k.startswith("cf2neuro") and "eager" in k)
    best_comp = min(v for k, v in rows.items() if not k.startswith("cf2neuro") and "compiled" in k)
    cf1 = rows["cf2neuro CF K=1 compiled"]
    cf4 = rows["cf2neuro CF K=4 compiled"]
    print(f"\nspeed-up vs fastest peer, default eager : {best_eager / cf1:5.2f}x  (goal >= 5)")
    print(f"speed-up vs fastest peer, compiled      : {best_comp / cf1:5.2f}x  (goal >= 1)")
    print(f"cost of K=4 vs K=1                      : {cf4 / cf1:5.2f}x  (goal <= 2.5)")


if __name__ == "__main__":
    main()

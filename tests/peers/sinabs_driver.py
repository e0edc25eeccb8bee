"""Sinabs 3.1.3 for cf2neuro's tests; runs in the peers' venv (nir 1.0.4), not cf2neuro's.

    make SEED OUT_DIR SPEC [SPEC ...]
        SPEC is KIND[-NEURON][-trained]: KIND mlp or cnn (conv, SumPool2d, flatten,
        linear); NEURON iaf (IAFSqueeze with min_v_mem = -θ, what sinabs.from_model
        and sinabs.from_nir build; the default), nofloor (IAFSqueeze with Sinabs's
        default min_v_mem=None), lif (LIFSqueeze, per-neuron tau_mem in steps and
        threshold), li (lif, but an ExpLeakSqueeze readout) or scalar (LIFSqueeze
        with one tau_mem and threshold, as NIR's own Sinabs example).
        Weights are strong enough that every layer fires; "trained" then takes 30
        Adam steps with Sinabs's surrogate gradients. Writes OUT_DIR/SPEC/net.nir
        (sinabs.to_nir), a fixed sparse binary input in.npz (x) and what the
        network computed on it, out.npz: per NIR node name its spikes, "v:NAME"
        its membranes (after reset and floor), and "output".
    run [--nofloor] NIR_FILE IN.npz OUT.npz [NIR_FILE IN.npz OUT.npz ...]
        sinabs.from_nir(nir.read(NIR_FILE)) run on IN.npz's x; OUT.npz as above,
        keyed by NIR node name. --nofloor: without the min_v_mem = -θ that
        from_nir gives every IAF (to measure what else differs).
        A file Sinabs fails to import or run gives OUT.npz with "error" (the message).

Arrays at the file boundary are time-major [T, B, ...]; Sinabs's Squeeze layers
take [B*T, ...] (batch-major, time inside).
"""

import sys
import warnings
from pathlib import Path

import nir
import numpy as np
import sinabs
import sinabs.layers as sl
import torch
from torch import nn

warnings.filterwarnings("ignore")  # nirtorch's deprecation notices
torch.set_num_threads(1)  # small networks: threads only contend (5x slower on 2 busy cores)
T, B, THETA = 12, 4, 1.0
SHAPES = {"mlp": (20,), "cnn": (2, 12, 12)}


def neuron(kind: str, shape, last: bool = False):
    g = torch.Generator().manual_seed(7)
    if kind == "li" and last:  # a non-spiking readout: ExpLeak, per-neuron tau
        return sl.ExpLeakSqueeze(tau_mem=2.0 + 8.0 * torch.rand(shape, generator=g),
                                 norm_input=False, batch_size=B)
    if kind in ("lif", "li"):  # per-neuron tau (steps) and threshold: arrays in NIR
        return sl.LIFSqueeze(tau_mem=2.0 + 8.0 * torch.rand(shape, generator=g),
                             spike_threshold=0.5 + torch.rand(shape, generator=g),
                             norm_input=False, batch_size=B)
    if kind == "scalar":  # one tau and threshold per layer, as NIR's own Sinabs example
        return sl.LIFSqueeze(tau_mem=5.0, spike_threshold=0.8, norm_input=False,
                             batch_size=B)
    floor = -THETA if kind == "iaf" else None  # "nofloor": Sinabs's default
    return sl.IAFSqueeze(spike_threshold=THETA, min_v_mem=floor, batch_size=B)


def network(kind: str, neuron_kind: str):
    def n(*shape, last=False):
        return neuron(neuron_kind, shape, last)

    if kind == "mlp":
        return nn.Sequential(nn.Linear(20, 32), n(32), nn.Linear(32, 16, bias=False), n(16),
                             nn.Linear(16, 5), n(5, last=True))
    return nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), n(8, 12, 12), sl.SumPool2d(2),
                         nn.Conv2d(8, 8, 3, padding=1, bias=False), n(8, 6, 6),
                         sl.SumPool2d(2), nn.Flatten(), nn.Linear(72, 10), n(10, last=True))


def squeeze(x: torch.Tensor) -> torch.Tensor:  # [T, B, ...] -> [B*T, ...]
    return x.transpose(0, 1).reshape(-1, *x.shape[2:])


def unsqueeze(y: torch.Tensor, b: int) -> np.ndarray:  # [B*T, ...] -> [T, B, ...]
    return y.reshape(b, -1, *y.shape[1:]).transpose(0, 1).detach().numpy()


def spiking(model) -> dict:
    """NIR node name -> spiking layer (nirtorch names modules by the node, '.' -> '_')."""
    return {name: m for name, m in model.named_modules()
            if isinstance(m, (sl.IAFSqueeze, sl.LIFSqueeze))}


def run(model, x: np.ndarray) -> dict:
    layers = spiking(model)
    for m in layers.values():
        m.reset_states()
        m.record_states = True
    seen = {}
    hooks = [m.register_forward_hook(lambda m, i, o, k=k: seen.__setitem__(k, o))
             for k, m in layers.items()]
    with torch.no_grad():
        out = model(squeeze(torch.as_tensor(x)))
    for h in hooks:
        h.remove()
    out = out[0] if isinstance(out, tuple) else out  # nirtorch's executor: (out, state)
    res = {"output": unsqueeze(out, x.shape[1])}
    for k, m in layers.items():
        res[k] = unsqueeze(seen[k], x.shape[1])
        v = m.recordings["v_mem"]  # [B, T, ...]: after reset and floor, as cf2neuro's v
        res[f"v:{k}"] = v.transpose(0, 1).numpy()
    return res


def data(kind: str, seed: int, n: int = B) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, n, *SHAPES[kind], generator=g) < 0.3).float().numpy()


def make(kind: str, seed: int, out: Path, neuron_kind: str, trained: bool) -> None:
    torch.manual_seed(seed)
    model = network(kind, neuron_kind)
    for m in model.modules():  # strong enough that every layer fires
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            m.weight.data *= 3.0 if isinstance(m, nn.Linear) else 2.0
    if trained:
        train(model, kind, seed)
    x = data(kind, seed + 1)
    res = run(model, x)
    for m in spiking(model).values():
        m.reset_states()
        m.record_states = False
    graph = sinabs.to_nir(model, squeeze(torch.as_tensor(x)))
    fill_shapes(graph, model, squeeze(torch.as_tensor(x)))
    out.mkdir(parents=True, exist_ok=True)
    nir.write(out / "net.nir", graph)
    np.savez(out / "in.npz", x=x)
    np.savez(out / "out.npz", **res)


def fill_shapes(graph, model, x) -> None:
    """sinabs.to_nir leaves Conv2d.input_shape and Flatten.input_type None, which
    nir.write (1.0.4) cannot store: fill them in from a forward pass, say so."""
    shapes = {}
    hooks = [m.register_forward_hook(lambda m, i, o, k=k: shapes.__setitem__(k, i[0].shape[1:]))
             for k, m in model.named_modules() if k]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    for k, node in graph.nodes.items():
        if isinstance(node, nir.Conv2d) and node.input_shape is None:
            print(f"filled {k}: Conv2d.input_shape")
            graph.nodes[k] = nir.Conv2d(input_shape=tuple(shapes[k][1:]), weight=node.weight,
                                        stride=node.stride, padding=node.padding,
                                        dilation=node.dilation, groups=node.groups,
                                        bias=node.bias)
        elif isinstance(node, nir.Flatten) and node.input_type["input"] is None:
            print(f"filled {k}: Flatten.input_type")
            graph.nodes[k] = nir.Flatten(input_type={"input": np.array(shapes[k])},
                                         start_dim=node.start_dim, end_dim=node.end_dim)


def train(model, kind: str, seed: int) -> None:
    """30 Adam steps on random data and labels: weights as training leaves them."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xs, ys = data(kind, seed + 2), torch.randint(0, 5, (B,))
    for _ in range(30):
        for m in spiking(model).values():
            m.reset_states()
        out = model(squeeze(torch.as_tensor(xs))).reshape(B, T, -1).sum(1)
        loss = nn.functional.cross_entropy(out[:, :5], ys)
        opt.zero_grad()
        loss.backward()
        opt.step()


def run_file(path: str, inp: str, out: str, floor: bool = True) -> None:
    x = np.load(inp)["x"]
    try:
        graph = nir.read(path)
        model = sinabs.from_nir(graph, batch_size=x.shape[1])
        if not floor:  # measures what else differs: IAF without from_nir's min_v_mem
            for m in spiking(model).values():
                m.min_v_mem = None
        names = {k.replace(".", "_"): k for k in graph.nodes}  # nirtorch's module names
        res = {}
        for k, v in run(model, x).items():
            pre = "v:" if k.startswith("v:") else ""
            res[pre + names.get(k[len(pre):], k[len(pre):])] = v
    except Exception as e:  # noqa: BLE001  (a test pins what Sinabs fails on)
        res = {"error": np.array(f"{type(e).__name__}: {e}")}
    np.savez(out, **res)


def main(argv) -> None:
    cmd, *args = argv
    if cmd == "make":
        seed, out, specs = int(args[0]), Path(args[1]), args[2:]
        for spec in specs:
            kind, *rest = spec.split("-")
            nk = next((r for r in rest if r in ("iaf", "nofloor", "lif", "li", "scalar")),
                      "iaf")
            make(kind, seed, out / spec, nk, "trained" in rest)
    elif cmd == "run" and args:
        floor = args[0] != "--nofloor"
        args = args[1 - floor:]
        for i in range(0, len(args) - 2, 3):
            run_file(*args[i:i + 3], floor=floor)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])

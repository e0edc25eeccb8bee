"""Rockpool 3.1.0 for cf2neuro's tests; runs in the peers' venv (nir 1.0.4), not cf2neuro's.

    make SEED OUT_DIR SPEC [SPEC ...]
        SPEC: mlp (LinearTorch + LIFTorch, twice: nir.CubaLIF), lif (LinearTorch +
        LIFNeuronTorch, twice: nir.LIF), li (the mlp with an ExpSynTorch readout:
        nir.LI), rec (the mlp with has_rec=True), bias (the mlp with a neuron
        bias); "-trained" (e.g. mlp-trained) takes 30 Adam steps on
        a random task first. Per-neuron random τ_mem, τ_syn and θ, dt 1e-3, weights
        strong enough that every layer fires (often several spikes per step).
        Writes OUT_DIR/SPEC/net.nir (Rockpool's to_nir), in.npz (x) and what the
        Rockpool network computed on it, out.npz: per NIR node name its spikes,
        "v:NAME" its membranes (after reset), and "output".
    run NIR_FILE IN.npz OUT.npz [NIR_FILE IN.npz OUT.npz ...]
        Rockpool's from_nir(nir.read(NIR_FILE)) run on IN.npz's x; OUT.npz as above.
        A file Rockpool fails to import or run gives OUT.npz with "error".

stdout: one JSON object with facts the tests check (node types, the parameters
the network had, the dt Rockpool's importer chose). Arrays at the file boundary
are time-major [T, B, ...]; Rockpool's modules take [B, T, N].
"""

import json
import sys
import warnings
from pathlib import Path

# PyPI's `samna` is a stub that pip-installs the real one from the network when
# imported, and `import rockpool` probes it: block it (Rockpool then skips its devices).
sys.modules["samna"] = None

import nir  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from rockpool.nn.combinators import Sequential  # noqa: E402
from rockpool.nn.modules import ExpSynTorch, LIFNeuronTorch, LIFTorch, LinearTorch  # noqa: E402
from rockpool.nn.modules.torch.nir import from_nir, to_nir  # noqa: E402
from rockpool.parameters import Constant  # noqa: E402

warnings.filterwarnings("ignore")  # nirtorch's deprecation notices
T, B, N_IN, DT = 40, 4, 12, 1e-3
SPIKING = (LIFTorch, LIFNeuronTorch)


def layer(kind: str, n: int, g: torch.Generator, **kw):
    tau_mem = 5e-3 + 25e-3 * torch.rand(n, generator=g)
    theta = 0.5 + torch.rand(n, generator=g)
    bias = kw.pop("bias", Constant(torch.zeros(n)))  # frozen: Rockpool's to_nir drops it
    if kind == "lif":
        return LIFNeuronTorch(n, tau_mem=tau_mem, threshold=theta, bias=bias, dt=DT)
    return LIFTorch(n, tau_mem=tau_mem, tau_syn=2e-3 + 10e-3 * torch.rand(n, 1, generator=g),
                    threshold=theta, bias=bias, dt=DT, **kw)


def network(spec: str, seed: int):
    kind = spec.split("-")[0]
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    hidden = {"rec": {"has_rec": True}, "bias": {"bias": 0.05 + 0.1 * torch.rand(24)}}
    scale = (0.3, 0.2) if kind == "lif" else (0.04, 0.03)
    readout = (ExpSynTorch(6, tau=2e-3 + 10e-3 * torch.rand(6, generator=g), dt=DT)
               if kind == "li" else layer(kind, 6, g))
    net = Sequential(LinearTorch((N_IN, 24), has_bias=True),
                     layer(kind, 24, g, **hidden.get(kind, {})),
                     LinearTorch((24, 6)), readout)
    for i, s in zip((0, 2), scale):
        lin = net[i]
        lin.weight.data = lin.weight.data * s + s / 4
    if kind == "rec":
        net[1].w_rec.data = net[1].w_rec.data * 0.05
    losses = []
    if spec.endswith("-trained"):
        params = [(k, v) for m in net.modules().values() for k, v in m.parameters().items()]
        opt = torch.optim.Adam([  # τ in seconds: small steps keep them positive
            {"params": [v for k, v in params if k.startswith("tau")], "lr": 2e-5},
            {"params": [v for k, v in params if not k.startswith("tau")], "lr": 3e-3}])
        data = (torch.rand(8, T, N_IN, generator=g) < 0.3).float()
        target = 0.2 + 0.4 * torch.rand(8, 6, generator=g)  # spikes per step
        for _ in range(30):
            net.reset_state()
            out, _, _ = net(data)
            loss = ((out.mean(1) - target) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss))
    net.reset_state()
    return net, losses


def batch_major(res: dict) -> dict:
    return {k: v.detach().transpose(0, 1).numpy() for k, v in res.items()}


def run_original(net, x: torch.Tensor) -> dict:
    """The Rockpool network itself (its own API records every module)."""
    with torch.no_grad():
        out, _, rec = net(x.transpose(0, 1), record=True)
    res = {"output": out}
    for name, r in rec.items():
        if isinstance(r, dict) and "vmem" in r:
            res[name], res[f"v:{name}"] = r["spikes"], r["vmem"]
    return batch_major(res)


def run_imported(net, x: torch.Tensor) -> dict:
    """A from_nir network (torch API: nirtorch calls forward, so set the record flag)."""
    mods = {n: m for n, m in net.named_children() if isinstance(m, SPIKING)}
    for m in mods.values():
        m._record = True
    with torch.no_grad():
        out, _ = net(x.transpose(0, 1))
    res = {"output": out}
    for name, m in mods.items():
        res[name], res[f"v:{name}"] = m._record_dict["spikes"], m._record_dict["vmem"]
    return batch_major(res)


def make(seed: int, out_dir: Path, spec: str) -> dict:
    net, losses = network(spec, seed)
    d = out_dir / spec
    d.mkdir(parents=True, exist_ok=True)
    graph = to_nir(net)  # it runs the network on zeros (nirtorch's trace): state changes
    net.reset_state()
    write_error = None
    try:
        nir.write(d / "net.nir", graph)
    except RuntimeError as e:  # ExpSynTorch's LI keeps tau as a Parameter (nir.py:247)
        write_error = f"{type(e).__name__}: {e}"
        for node in graph.nodes.values():
            for k, v in vars(node).items():
                if isinstance(v, torch.Tensor):
                    setattr(node, k, v.detach().numpy())
        nir.write(d / "net.nir", graph)
    x = (torch.rand(T, B, N_IN, generator=torch.Generator().manual_seed(seed + 1)) < 0.3)
    np.savez(d / "in.npz", x=x.float().numpy())
    np.savez(d / "out.npz", **run_original(net, x.float()))
    mods = {n: m for n, m in net.modules().items() if isinstance(m, SPIKING)}
    facts = {"nodes": {k: type(v).__name__ for k, v in graph.nodes.items()},
             "edges": [list(e) for e in graph.edges], "losses": losses,
             "write_error": write_error,
             "bias": {n: m.bias.detach().reshape(-1).tolist() for n, m in mods.items()},
             "v_leak": {n: np.asarray(graph.nodes[n].v_leak).tolist() for n in mods},
             "has_rec": {n: bool(getattr(m, "_has_rec", False)) for n, m in mods.items()},
             "w_rec_norm": {n: float(m.w_rec.detach().abs().sum()) for n, m in mods.items()
                            if getattr(m, "_has_rec", False)}}
    return facts


def run(path: Path, inp: Path, out: Path) -> dict:
    x = torch.as_tensor(np.load(inp)["x"])
    try:
        net = from_nir(nir.read(path))
        res = run_imported(net, x)
    except Exception as e:  # noqa: BLE001  (what Rockpool raises is the finding)
        np.savez(out, error=np.array(f"{type(e).__name__}: {e}"))
        return {"error": f"{type(e).__name__}: {e}"}
    np.savez(out, **res)
    return {"dt": {n: float(m.dt) for n, m in net.named_children() if isinstance(m, SPIKING)},
            "modules": {n: type(m).__name__ for n, m in net.named_children()}}


def main(argv: list[str]) -> None:
    if argv[:1] == ["make"] and len(argv) >= 4:
        seed, out_dir = int(argv[1]), Path(argv[2])
        facts = {spec: make(seed, out_dir, spec) for spec in argv[3:]}
    elif argv[:1] == ["run"] and len(argv) >= 4 and (len(argv) - 1) % 3 == 0:
        args = [Path(a) for a in argv[1:]]
        facts = {str(a): run(a, b, c) for a, b, c in zip(args[::3], args[1::3], args[2::3])}
    else:
        sys.exit(__doc__)
    print(json.dumps(facts))


if __name__ == "__main__":
    main(sys.argv[1:])

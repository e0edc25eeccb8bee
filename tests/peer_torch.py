"""Running a peer's imported torch module (snnTorch, Norse) step by step, recording layers.

Both peers' importers build ``nn.Flatten`` from NIR's per-sample dims as torch
dims (a bug: it flattens the batch), so image networks run one sample at a
time, unbatched, which their Conv2d and Linear accept.
"""

import torch


def first(o):
    return o[0] if isinstance(o, tuple) else o


def run_module(net, x, layers, step, reset, batched=True):
    """{"output": [T, B, ...], layer: [T, B, ...]} of `net` on `x` [T, B, ...].

    `layers` maps a recorded name to the submodule; `step(net, x_t, state)`
    returns (output, state); `reset(net)` clears a peer's hidden state.
    """
    samples = [x] if batched else [x[:, b] for b in range(x.shape[1])]
    runs = []
    for xs in samples:
        seen = {name: [] for name in layers}
        hooks = [m.register_forward_hook(lambda mod, i, o, n=name: seen[n].append(first(o)))
                 for name, m in layers.items()]
        reset(net)
        outs, state = [], None
        with torch.no_grad():
            for t in range(xs.shape[0]):
                out, state = step(net, xs[t], state)
                outs.append(first(out))
        for h in hooks:
            h.remove()
        runs.append({"output": torch.stack(outs),
                     **{n: torch.stack(v) for n, v in seen.items()}})
    if batched:
        return runs[0]
    return {k: torch.stack([r[k] for r in runs], dim=1) for k in runs[0]}


def refused_export(peer: str, neuron: dict, why: str, tmp_path) -> str:
    """Export an MLP of CF neuron `neuron` --for `peer`: refused for `why`, nothing written."""
    import pytest

    from cf2neuro.errors import UnsupportedError
    from cf2neuro.ir.passes import run_passes
    from cf2neuro.ir.trace import trace_model
    from cf2neuro.nir import export_graph
    from cf2neuro.nn.models import build_model

    torch.manual_seed(0)
    model = build_model("mlp", {"input_shape": [16], "hidden": [8], "neuron": neuron})
    with pytest.raises(UnsupportedError, match=f"{why}.*train with --neuron reset=zero") as e:
        export_graph(run_passes(trace_model(model)), tmp_path / "r.nir", peer=peer)
    assert not (tmp_path / "r.nir").exists()
    return str(e.value)


def assert_cf_layers_match(peer: str, direction: str, network: str, flag: str, g, theirs, x,
                           batched: bool = True) -> None:
    """The peer's spikes (`theirs`) equal cf2neuro's on every CF layer of `g`; record the cell."""
    from cf2neuro.ir.engine import Engine
    from interop_log import agreement, record

    layers = [n.name for n in g.nodes.values() if n.op == "CFNeuron"]
    ours = Engine(g).run(x, probes=layers)
    record(peer, direction, network, flag=flag, agreement=agreement(theirs, ours, layers),
           lost="none (K=1, unsigned, reset=zero)" + ("" if batched else
                                                      "; feed images unbatched (its Flatten)"))
    for name in layers:
        assert 0.02 < float(ours[name].mean()) < 0.9, name  # the layer is active
        assert torch.equal(theirs[name], ours[name]), name
    torch.testing.assert_close(theirs["output"], ours["output"], rtol=0, atol=1e-5)

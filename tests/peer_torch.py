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

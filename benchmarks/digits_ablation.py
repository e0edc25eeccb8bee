"""Ablation on digits: LIF vs CF, fixed vs learnable surrogate, with and without the PN loss.

Each row: 3 seeds of `cf2neuro train`'s digits recipe with one change, mean ± std.

    .venv/bin/python benchmarks/digits_ablation.py [--seeds 0 1 2]
"""

import argparse

import torch

from cf2neuro.nn import LIF_BASELINE
from cf2neuro.train import TrainConfig
from digits_accuracy import run_seeds, summary

PN = TrainConfig().pn_lambda or 0.1  # the recipe's PN weight

ROWS = {
    "CF (signed, K=1), learnable α_t, PN loss": dict(pn_lambda=PN),
    "CF (signed, K=1), learnable α_t":          dict(pn_lambda=0.0),
    "CF (signed, K=1), fixed α, PN loss":       dict(pn_lambda=PN, neuron={"learn_alpha": False}),
    "CF (signed, K=1), fixed α":                dict(pn_lambda=0.0, neuron={"learn_alpha": False}),
    "CF (signed, K=2), learnable α_t, PN loss": dict(pn_lambda=PN, neuron={"max_spikes": 2}),
    "LIF (K=1, unsigned), learnable α_t, PN":   dict(pn_lambda=PN, neuron=dict(LIF_BASELINE)),
    "LIF (K=1, unsigned), fixed α":             dict(pn_lambda=0.0,
                                                     neuron={**LIF_BASELINE, "learn_alpha": False}),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    torch.set_num_threads(2)
    width = max(map(len, ROWS))
    print(f"{'variant':<{width}}  test accuracy mean ± std (per seed)   mean wall time")
    for name, options in ROWS.items():
        print(f"{name:<{width}}  {summary(run_seeds(args.seeds, **options))}", flush=True)


if __name__ == "__main__":
    main()

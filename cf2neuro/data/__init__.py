"""Data sets, train-time augmentation and input encodings.

    from cf2neuro.data import load_dataset, dataset_names, encode
    bundle = load_dataset("digits", seed=0)      # bundle.train / .test / .spec / .augment
    x_seq = encode(x_batch, timesteps=4, method="direct")   # [T, B, *shape]

Only numpy, torch and the standard library are imported here; each loader
imports what else it needs (scikit-learn for digits) when it runs.
"""

from cf2neuro.data.encoding import ENCODINGS, encode, method_for
from cf2neuro.data.events import Events, bin_events
from cf2neuro.data.registry import (DATASETS, dataset_names, dataset_options, load_dataset,
                                    require_samples)
from cf2neuro.data.spec import DATA_ENV, DataBundle, DataSpec, data_base

__all__ = [
    "DATASETS", "DATA_ENV", "ENCODINGS", "DataBundle", "DataSpec", "Events",
    "bin_events", "data_base", "dataset_names", "dataset_options", "encode",
    "load_dataset", "method_for", "require_samples",
]

"""The data-set registry: one dict from name to loader, and `load_dataset`.

A loader is `loader(root=None, seed=0, **options) -> DataBundle`; its keyword
options (e.g. `frames`, `size`, `bin_by`, `augment`) are the data set's
options. Adding a data set is one entry in DATASETS. Loaders import their
optional dependencies themselves, so importing this module stays cheap.
"""

from __future__ import annotations

import inspect
from typing import Callable, Dict, List, Optional

from cf2neuro.data.cifar10 import load_cifar10
from cf2neuro.data.cifar10_dvs import load_cifar10_dvs
from cf2neuro.data.digits import load_digits_dataset
from cf2neuro.data.digits_rows import load_digits_rows
from cf2neuro.data.dvs_gesture import load_dvs_gesture
from cf2neuro.data.nmnist import load_nmnist
from cf2neuro.data.spec import DataBundle
from cf2neuro.errors import BadInputError, ConfigError

DATASETS: Dict[str, Callable[..., DataBundle]] = {
    "digits": load_digits_dataset,
    "digits-rows": load_digits_rows,
    "cifar10": load_cifar10,
    "nmnist": load_nmnist,
    "cifar10-dvs": load_cifar10_dvs,
    "dvs128-gesture": load_dvs_gesture,
}


def dataset_names() -> List[str]:
    """The registered data-set names, in registration order."""
    return list(DATASETS)


def _canonical(name: str) -> str:
    # "DVS128_Gesture" and "dvs128-gesture" name the same data set.
    return str(name).strip().lower().replace("_", "-")


def _loader(name: str) -> Callable[..., DataBundle]:
    key = _canonical(name)
    if key not in DATASETS:
        raise ConfigError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[key]


def dataset_options(name: str) -> Dict[str, object]:
    """The options a data set's loader accepts, with their defaults."""
    params = inspect.signature(_loader(name)).parameters
    return {k: p.default for k, p in params.items() if k not in ("root", "seed")}


def load_dataset(name: str, root: Optional[str] = None, seed: int = 0, **options) -> DataBundle:
    """Load a registered data set by name.

    `root`: the data directory (default $CF2NEURO_DATA, else
    ~/.cache/cf2neuro/data); `seed`: fixes the split where the split is
    random; `options`: loader options (see `dataset_options(name)`).
    Raises ConfigError for an unknown name or option, DatasetNotFoundError
    when the files are missing, BadInputError when they are corrupt.
    """
    loader, key = _loader(name), _canonical(name)
    allowed = dataset_options(key)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"data set {key!r} has no option(s) {', '.join(unknown)}; "
            f"its options: {', '.join(f'{k}={v!r}' for k, v in allowed.items()) or 'none'}"
        )
    return loader(root=root, seed=seed, **options)


def require_samples(bundle: DataBundle, *splits: str) -> None:
    """Each named split ("train", "test") has a sample; an empty one (few files, a split
    option) would otherwise fail far from its cause. Loading one is not an error."""
    for split in splits:
        if len(getattr(bundle, split)) == 0:
            raise BadInputError(
                f"data set {bundle.spec.name!r}: its {split} split is empty; check the files "
                f"under the data directory (--data-root) and the split options "
                f"(--data-option, e.g. split or test_fraction)")

import sys
from pathlib import Path

# tests/ helpers (data_files.py, require_corpus) are importable by the tests
sys.path.insert(0, str(Path(__file__).parent))

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "nir-graphs"


def require_corpus(name: str) -> Path:
    """A file of the NIR corpus; CI always has ../shared, so there its absence fails."""
    import os

    import pytest

    path = CORPUS / name
    if not path.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing: CI runs with ../shared beside the repo")
        pytest.skip(f"{path} is not here (the NIR corpus lives in ../shared/nir-graphs)")
    return path


import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    """A quickly trained digits checkpoint and its whole test set: (ckpt, x [4, N, 1, 8, 8], labels)."""
    from cf2neuro.data import load_dataset
    from cf2neuro.train import TrainConfig, train

    ckpt = tmp_path_factory.mktemp("digits")
    train(TrainConfig(epochs=15, lr=2e-2), ckpt, progress=False)
    bundle = load_dataset("digits")
    xs = torch.stack([bundle.test[i][0] for i in range(len(bundle.test))])
    ys = np.array([int(bundle.test[i][1]) for i in range(len(bundle.test))])
    return ckpt, xs.unsqueeze(0).expand(4, *xs.shape).contiguous().numpy(), ys


@pytest.fixture(scope="session")
def nengo_loihi_python():
    """The nengo-loihi runtime's python (Loihi 1's emulator), created once by cf2neuro.

    Without a Python 3.10/3.11 the tests skip with the reason; under CI that is a failure.
    """
    import os

    from cf2neuro.backends.loihi2.nengo_loihi_runtime import setup_nengo_loihi
    from cf2neuro.errors import RuntimeMissingError

    try:
        return setup_nengo_loihi(progress=False)
    except RuntimeMissingError as e:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no nengo-loihi runtime (cf2neuro runtime setup nengo-loihi): {e}")


@pytest.fixture(scope="session")
def xylo_python():
    """The Xylo runtime's python (rockpool 3.1.0 + xylosim), created once by cf2neuro.

    Where it cannot be built (no C++ compiler, no PyPI) the tests skip with the reason;
    under CI that is a failure.
    """
    import os

    from cf2neuro.backends.xylo.runtime import setup_xylo
    from cf2neuro.errors import RuntimeMissingError

    try:
        return setup_xylo(progress=False)
    except RuntimeMissingError as e:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no Xylo runtime (cf2neuro runtime setup xylosim): {e}")


@pytest.fixture(scope="session")
def lava_python():
    """The Lava runtime's python, created (once, cached) by cf2neuro itself.

    Without a Python 3.10 on a user's machine the Lava tests skip with the
    reason; under CI (CI set) that is a failure.
    """
    import os

    from cf2neuro.backends.loihi2 import runtime
    from cf2neuro.errors import RuntimeMissingError

    try:
        return runtime.setup_lava(progress=False)
    except RuntimeMissingError as e:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no Lava runtime: {e}")

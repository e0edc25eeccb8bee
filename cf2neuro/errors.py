"""One exception hierarchy for cf2neuro.

Every message says what was wrong, where, and what to do. The CLI maps
`BadInputError` to exit code 2 and `CheckFailedError` to exit code 1.
"""


class Cf2NeuroError(Exception):
    """Base class of every error cf2neuro raises on purpose."""

    exit_code = 2


class BadInputError(Cf2NeuroError):
    """The user's input (file, option, model, data) cannot be used."""


class ConfigError(BadInputError):
    """A model, neuron, data or training option is invalid."""


class CheckpointError(BadInputError):
    """A checkpoint is missing, truncated, corrupt or does not match its config."""


class DatasetNotFoundError(BadInputError):
    """A data set's files are not where the loader looks for them."""


class UnsupportedError(BadInputError):
    """A layer, graph or feature is not supported by a stage or target."""


class RuntimeMissingError(Cf2NeuroError):
    """An external runtime (a Python 3.10 for Lava, a compiler) is not available."""


class CheckFailedError(Cf2NeuroError):
    """A verification bound given by the user failed."""

    exit_code = 1


class RunnerError(Cf2NeuroError):
    """A runner failed while running a valid input (crashed, hung, its runtime broke)."""


class RunnerTimeoutError(RunnerError):
    """A runner did not finish within its timeout; it was stopped and cleaned up."""

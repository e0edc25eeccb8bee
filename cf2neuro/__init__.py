"""cf2neuro: train circulate-firing SNNs and carry them to neuromorphic targets."""

__version__ = "0.1.0"

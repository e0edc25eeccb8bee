"""Spiking layers: the CF neuron, its surrogate gradient and multi-step helpers."""

from .functional import CFParameters, cf_multistep, cf_step, compile_kernels
from .layers import SeqToANN
from .neuron import LIF_BASELINE, CFNeuron, NeuronConfig
from .surrogate import BUMPS, Sharpness

__all__ = ["CFNeuron", "CFParameters", "NeuronConfig", "LIF_BASELINE", "SeqToANN", "Sharpness",
           "BUMPS", "cf_multistep", "cf_step", "compile_kernels"]

"""The circulate-firing neuron: `process.CFNeuron` and its fixed_pt model in `models`."""

"""A Dense whose one-step buffer is cleared at every sample start: `process.ResetDense`."""

"""Compute backends: what actually runs a challenge on a worker's devices."""

"""Fitting: optimiser, training loop, splits, metrics, results store."""

"""Numerical kernels: arrays and scalars in, arrays and status codes out; no files, no printing."""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def random_problem(n, M, T=5, seed=0, tfinal=20.0, scale=0.9):
    """A seeded well-posed problem: sparse W with spectral radius <= scale, alpha ~ U[0.5, 1.5], 1-2 targets."""
    r = np.random.default_rng(seed)
    W = np.zeros((n, n))
    for i in range(n):
        cols = r.choice(n, size=min(3, n), replace=False)
        W[i, cols] = r.normal(size=cols.size)
    rho = max(np.abs(np.linalg.eigvals(W)).max(), 1e-12)
    W *= scale / rho
    alpha = r.uniform(0.5, 1.5, n)
    U = np.zeros((M, n))
    for c in range(M):
        k = r.integers(1, 3)
        U[c, r.choice(n, size=k, replace=False)] = r.uniform(0.0, 1.0, k)
    t = tfinal * np.arange(1, T + 1) / T
    return W, alpha, U, t


def run_with_threads(script, threads):
    """Run ``script`` (a format string with {tests}) in a fresh interpreter with NUMBA_NUM_THREADS=threads;
    returns its stdout."""
    import subprocess

    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
    res = subprocess.run([sys.executable, "-c", script.format(tests=os.path.dirname(__file__))], env=env,
                         capture_output=True, text=True, check=True)
    return res.stdout

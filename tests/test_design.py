"""Perturbation design and observation times.

Each test checks a property stated in the docstring of design_perturbations / observation_times against a
direct computation here (counts, bins, set membership). Comparisons are exact unless a tolerance is stated.
"""

import numpy as np
import pytest

from cellbox_nb.data.design import design_perturbations, observation_times
from cellbox_nb.errors import ConfigError


@pytest.mark.parametrize("method", ["lhs", "uniform"])
@pytest.mark.parametrize("max_targets", [1, 2, 4])
def test_targets_per_condition_and_range(method, max_targets):
    U = design_perturbations(6, 200, max_targets=max_targets, low=-0.5, high=2.0, method=method, seed=1)
    assert U.shape == (200, 6) and U.dtype == np.float64
    k = np.count_nonzero(U, axis=1)
    assert k.min() >= 1 and k.max() <= max_targets
    assert set(k.tolist()) == set(range(1, max_targets + 1))  # every count 1..max_targets occurs in 200 draws
    nz = U[U != 0]
    assert np.all((nz > -0.5) & (nz <= 2.0))


def test_default_levels_are_in_zero_one():
    U = design_perturbations(7, 50, seed=0)
    nz = U[U != 0]
    assert np.all((nz > 0) & (nz <= 1))


def test_lhs_levels_occupy_distinct_bins_per_node():
    M, low, high = 40, 0.0, 1.0
    U = design_perturbations(5, M, max_targets=5, low=low, high=high, method="lhs", seed=2)
    for j in range(5):
        v = U[:, j][U[:, j] != 0]
        bins = np.ceil((v - low) / (high - low) * M).astype(int) - 1  # level in (b/M, (b+1)/M] -> bin b
        assert np.all((bins >= 0) & (bins < M))
        assert len(set(bins.tolist())) == v.size  # a permutation gives each condition its own bin


def test_seeded_and_targets_do_not_depend_on_method():
    a = design_perturbations(8, 30, seed=5)
    np.testing.assert_array_equal(a, design_perturbations(8, 30, seed=5))
    assert not np.array_equal(a, design_perturbations(8, 30, seed=6))
    b = design_perturbations(8, 30, seed=5, method="uniform")
    np.testing.assert_array_equal(a != 0, b != 0)
    c = design_perturbations(8, 30, seed=5, low=1.0, high=3.0)
    np.testing.assert_array_equal(a != 0, c != 0)
    ss = np.random.SeedSequence(5)
    np.testing.assert_array_equal(design_perturbations(8, 30, seed=ss), a)


def test_targets_restrict_the_perturbed_nodes():
    U = design_perturbations(10, 100, max_targets=2, seed=0, targets=[1, 4, 7])
    touched = np.flatnonzero(np.any(U != 0, axis=0))
    assert touched.tolist() == [1, 4, 7]


@pytest.mark.parametrize("kwargs, word", [
    ({"n": 0, "M": 5}, "n"),
    ({"n": 3, "M": 0}, "M"),
    ({"n": 3, "M": 2.0}, "M"),
    ({"n": 3, "M": 5, "max_targets": 0}, "max_targets"),
    ({"n": 3, "M": 5, "max_targets": 4}, "max_targets"),
    ({"n": 5, "M": 5, "max_targets": 3, "targets": [0, 1]}, "max_targets"),
    ({"n": 3, "M": 5, "low": 1.0, "high": 1.0}, "low"),
    ({"n": 3, "M": 5, "high": float("inf")}, "high"),
    ({"n": 3, "M": 5, "method": "sobol"}, "method"),
    ({"n": 3, "M": 5, "seed": -1}, "seed"),
    ({"n": 3, "M": 5, "seed": "x"}, "seed"),
    ({"n": 3, "M": 5, "targets": []}, "targets"),
    ({"n": 3, "M": 5, "targets": [0, 3]}, "targets"),
    ({"n": 3, "M": 5, "targets": [1, 1]}, "targets"),
    ({"n": 3, "M": 5, "targets": ["a"]}, "targets"),
])
def test_invalid_arguments_name_the_argument(kwargs, word):
    kwargs.setdefault("seed", 0)
    with pytest.raises(ConfigError, match=word):
        design_perturbations(**kwargs)


def test_observation_times():
    np.testing.assert_array_equal(observation_times(20.0, 5), [4.0, 8.0, 12.0, 16.0, 20.0])
    t = observation_times(0.1, 3)
    assert t[-1] == 0.1 and np.all(np.diff(t) > 0) and t[0] > 0
    np.testing.assert_allclose(observation_times(7.0, 10), 7.0 * np.arange(1, 11) / 10, rtol=1e-15, atol=0)
    for args, word in (((0.0, 5), "tfinal"), ((-1.0, 5), "tfinal"), ((20.0, 0), "T"), ((np.nan, 5), "tfinal")):
        with pytest.raises(ConfigError, match=word):
            observation_times(*args)

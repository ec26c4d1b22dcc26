"""Tsit5 coefficients as data: structure, order conditions, dense output; tolerance 1e-13 (16-digit data)."""

import numpy as np
import pytest

from cellbox_nb.core import tableau as tb


def test_structure():
    assert tb.check_tableau()
    assert abs(tb.E.sum()) < 1e-14


def test_check_tableau_catches_a_broken_row():
    A = tb.A.copy()
    A[3, 0] += 1e-6
    with pytest.raises(AssertionError, match="row sums"):
        tb.check_tableau(a=A)


def _order_conditions(b, A, c):
    """Residuals of the 17 order conditions of an explicit RK method up to order 5 (Butcher trees)."""
    Ac = A @ c
    return np.array([
        b.sum() - 1,
        b @ c - 1 / 2,
        b @ c**2 - 1 / 3, b @ Ac - 1 / 6,
        b @ c**3 - 1 / 4, b @ (c * Ac) - 1 / 8, b @ (A @ c**2) - 1 / 12, b @ (A @ Ac) - 1 / 24,
        b @ c**4 - 1 / 5, b @ (c**2 * Ac) - 1 / 10, b @ (c * (A @ c**2)) - 1 / 15, b @ (c * (A @ Ac)) - 1 / 30,
        b @ Ac**2 - 1 / 20, b @ (A @ c**3) - 1 / 20, b @ (A @ (c * Ac)) - 1 / 40, b @ (A @ A @ c**2) - 1 / 60,
        b @ (A @ A @ Ac) - 1 / 120,
    ])


def test_fifth_order_conditions_hold():
    assert np.max(np.abs(_order_conditions(tb.B, tb.A, tb.C))) < 1e-13


def test_embedded_method_is_order_four_not_five():
    res = _order_conditions(tb.BHAT, tb.A, tb.C)
    assert np.max(np.abs(res[:8])) < 1e-13
    assert np.max(np.abs(res[8:])) > 1e-6


def test_dense_output_end_points():
    assert np.max(np.abs(tb.dense_weights(1.0) - tb.B)) < 1e-14
    assert np.all(tb.dense_weights(0.0) == 0.0)

"""Tsit5 and DOP853 coefficients as data: structure, order conditions, dense output; tolerance 1e-13 (16-digit
data)."""

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


# -- DOP853 (the interpolating adjoint's integrator for lam) ------------------------------------------------------
def _d8():
    return tb.D8_A[:12, :12], tb.D8_B[:12], tb.D8_C[:12]


def test_dop853_structure():
    A, b, c = _d8()
    assert np.all(np.triu(A) == 0.0)
    assert np.max(np.abs(A.sum(axis=1) - c)) < 1e-14
    assert abs(b.sum() - 1.0) < 1e-14
    # row 12 is the step's result (FSAL): b, at c = 1, with b[12] = 0; stage 12 is at c = 1 too
    assert np.array_equal(tb.D8_A[12], tb.D8_B) and tb.D8_B[12] == 0.0 and tb.D8_C[12] == 1.0 == tb.D8_C[11]
    # the quadrature nodes are the stages with b != 0, by increasing c; the error weights vanish elsewhere
    assert np.array_equal(np.sort(tb.D8_QUAD), np.flatnonzero(tb.D8_B))
    assert np.all(np.diff(tb.D8_C[tb.D8_QUAD]) > 0)
    off = np.setdiff1d(np.arange(13), tb.D8_QUAD)
    assert np.all(tb.D8_E5[off] == 0.0) and np.all(tb.D8_E3[off] == 0.0)
    assert abs(tb.D8_E5.sum()) < 1e-14 and abs(tb.D8_E3.sum()) < 1e-14


def test_dop853_coefficients_are_scipys():
    from scipy.integrate._ivp import dop853_coefficients as ref

    A, b, c = _d8()
    assert np.array_equal(A, ref.A[:12, :12]) and np.array_equal(b, ref.B) and np.array_equal(c, ref.C[:12])
    assert np.array_equal(tb.D8_E5, ref.E5) and np.array_equal(tb.D8_E3, ref.E3)


def test_dop853_order_conditions_and_estimates():
    """b satisfies the 17 conditions up to order 5 and the quadrature conditions b c^k = 1/(k+1) to order 8; the
    5th-order estimate's weights b - E5 are of order 5 (not 6), the 3rd-order's b - E3 of order 3 (not 4)."""
    A, b, c = _d8()
    assert np.max(np.abs(_order_conditions(b, A, c))) < 1e-13
    assert max(abs(b @ c**k - 1.0 / (k + 1)) for k in range(8)) < 1e-13
    assert abs(b @ c**8 - 1.0 / 9) > 1e-8  # 8th order, not more
    e5 = _order_conditions(b - tb.D8_E5[:12], A, c)
    assert np.max(np.abs(e5)) < 1e-13
    assert abs((b - tb.D8_E5[:12]) @ c**5 - 1 / 6) > 1e-6
    e3 = _order_conditions(b - tb.D8_E3[:12], A, c)
    assert np.max(np.abs(e3[:4])) < 1e-13 and np.max(np.abs(e3[4:8])) > 1e-6


def test_dop853_converges_at_order_eight():
    """Fixed steps on y' = y cos t, y(0) = 1, to t = 2 (exact exp(sin t)): the error falls by 2^8 per halving
    (slopes 8 +- 0.2 over h = 1/2 .. 1/8, errors 1e-8 .. 4e-11, far above rounding; measured 8.08, 8.04)."""
    A, b, c = _d8()

    def integrate(m):
        h, y, t = 2.0 / m, 1.0, 0.0
        for _ in range(m):
            k = np.zeros(12)
            for s in range(12):
                k[s] = (y + h * (A[s, :s] @ k[:s])) * np.cos(t + c[s] * h)
            y, t = y + h * (b @ k), t + h
        return abs(y - np.exp(np.sin(2.0)))

    errs = [integrate(m) for m in (4, 8, 16)]
    slopes = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all(np.abs(slopes - 8.0) <= 0.2), slopes

"""Runge-Kutta coefficients as data, and the checks that gate them.

Tsit5: Ch. Tsitouras, "Runge-Kutta pairs of order 5(4) satisfying only the first column simplifying
assumption", Computers & Mathematics with Applications 62 (2011) 770-775, Table 1 (method), with the
continuous extension ("free" 4th-order interpolant) of the same paper.  7 stages, FSAL: the last row of A equals
b and b[6] = 0, so stage 7 of one step is stage 1 of the next.

Arrays (float64):
    C  (7,)   nodes
    A  (7, 7) strictly lower-triangular stage matrix
    B  (7,)   5th-order weights (the propagated solution)
    BHAT (7,) embedded 4th-order weights
    E  (7,)   B - BHAT, the error-estimate weights
    R  (7, 4) dense output: b_i(theta) = sum_p R[i, p] * theta**(p + 1),  x(t_n + theta h) = x_n + h sum_i b_i(theta) k_i
"""

import numpy as np

TSIT5_ORDER = 5

C = np.array([0.0, 0.161, 0.327, 0.9, 0.9800255409045097, 1.0, 1.0])

A = np.zeros((7, 7))
A[1, 0] = 0.161
A[2, :2] = [-0.008480655492356989, 0.335480655492357]
A[3, :3] = [2.897153057105493, -6.359448489975075, 4.3622954328695815]
A[4, :4] = [5.325864828439257, -11.748883564062828, 7.4955393428898365, -0.09249506636175525]
A[5, :5] = [5.86145544294642, -12.92096931784711, 8.159367898576159, -0.071584973281401, -0.028269050394068383]
A[6, :6] = [0.09646076681806523, 0.01, 0.4798896504144996, 1.379008574103742, -3.290069515436081,
            2.324710524099774]

B = A[6].copy()  # FSAL: b equals the last row of A, b[6] = 0

BHAT = np.array([0.09468075576583945, 0.009183565540343254, 0.4877705284247616, 1.234297566930479,
                 -2.7077123499835256, 1.866628418170587, 1.0 / 66.0])

E = B - BHAT

R = np.array([
    [1.0, -2.763706197274826, 2.9132554618219126, -1.0530884977290216],
    [0.0, 0.13169999999999998, -0.2234, 0.1017],
    [0.0, 3.9302962368947516, -5.941033872131505, 2.490627285651253],
    [0.0, -12.411077166933676, 30.33818863028232, -16.548102889244902],
    [0.0, 37.50931341651104, -88.1789048947664, 47.37952196281928],
    [0.0, -27.896526289197286, 65.09189467479366, -34.87065786149661],
    [0.0, 1.5, -4.0, 2.5],
])

for _arr in (C, A, B, BHAT, E, R):
    _arr.setflags(write=False)


def dense_weights(theta):
    """b_i(theta) for i = 1..7 (float64 (7,)); b_i(1) = B[i] and b_i(0) = 0."""
    powers = np.array([theta, theta**2, theta**3, theta**4])
    return R @ powers


def check_tableau(c=C, a=A, b=B, bhat=BHAT, tol=1e-14):
    """Assert the structural invariants of an explicit FSAL pair; raise AssertionError naming the broken one."""
    s = len(c)
    if np.any(np.triu(a) != 0):
        raise AssertionError("A is not strictly lower triangular")
    if not np.allclose(a.sum(axis=1), c, atol=tol, rtol=0):
        raise AssertionError("row sums of A differ from c")
    if abs(b.sum() - 1.0) > tol or abs(bhat.sum() - 1.0) > tol:
        raise AssertionError("weights do not sum to 1")
    if not (np.array_equal(a[s - 1, : s - 1], b[: s - 1]) and b[s - 1] == 0.0 and c[s - 1] == 1.0):
        raise AssertionError("not FSAL (last row of A must equal b, b[-1] = 0, c[-1] = 1)")
    return True

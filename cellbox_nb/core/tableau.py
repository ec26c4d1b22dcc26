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

# DOP853 (Dormand & Prince 8(5,3); Hairer, Norsett & Wanner, Solving ODEs I, II.5 and their code DOP853), the
# integrator of the interpolating backward pass for lam (core.adjoint8).  12 stages; row 12 of D8_A is D8_B, so the
# "stage" 13 is the step's result, at which f is the next step's first stage (FSAL).  Two error estimates, 5th and
# 3rd order (D8_E5, D8_E3, weights of h K), combined as in DOP853 (adjoint8.error_norm8).  Coefficients as in
# scipy.integrate's DOP853 (tests/test_tableau.py compares them and checks the order).
D8_NSTAGE = 12
D8_C = np.array([0.0, 0.05260015195876773, 0.0789002279381516, 0.1183503419072274, 0.2816496580927726,
    0.3333333333333333, 0.25, 0.3076923076923077, 0.6512820512820513, 0.6, 0.8571428571428571, 1.0, 1.0])
D8_A = np.zeros((13, 13))
D8_A[1, 0:1] = [0.05260015195876773]
D8_A[2, 0:2] = [0.0197250569845379, 0.0591751709536137]
D8_A[3, [0, 2]] = [0.02958758547680685, 0.08876275643042054]
D8_A[4, [0, 2, 3]] = [0.2413651341592667, -0.8845494793282861, 0.924834003261792]
D8_A[5, [0, 3, 4]] = [0.037037037037037035, 0.17082860872947386, 0.12546768756682242]
D8_A[6, [0, 3, 4, 5]] = [0.037109375, 0.17025221101954405, 0.06021653898045596, -0.017578125]
D8_A[7, [0, 3, 4, 5, 6]] = [0.03709200011850479, 0.17038392571223998, 0.10726203044637328, -0.015319437748624402,
    0.008273789163814023]
D8_A[8, [0, 3, 4, 5, 6, 7]] = [0.6241109587160757, -3.3608926294469414, -0.868219346841726, 27.59209969944671,
    20.154067550477894, -43.48988418106996]
D8_A[9, [0, 3, 4, 5, 6, 7, 8]] = [0.47766253643826434, -2.4881146199716677, -0.590290826836843, 21.230051448181193,
    15.279233632882423, -33.28821096898486, -0.020331201708508627]
D8_A[10, [0, 3, 4, 5, 6, 7, 8, 9]] = [-0.9371424300859873, 5.186372428844064, 1.0914373489967295, -8.149787010746927,
    -18.52006565999696, 22.739487099350505, 2.4936055526796523, -3.0467644718982196]
D8_A[11, [0, 3, 4, 5, 6, 7, 8, 9, 10]] = [2.273310147516538, -10.53449546673725, -2.0008720582248625,
    -17.9589318631188, 27.94888452941996, -2.8589982771350235, -8.87285693353063, 12.360567175794303,
    0.6433927460157636]
D8_B = np.zeros(13)
D8_B[[0, 5, 6, 7, 8, 9, 10, 11]] = [0.054293734116568765, 4.450312892752409, 1.8915178993145003, -5.801203960010585,
    0.3111643669578199, -0.1521609496625161, 0.20136540080403034, 0.04471061572777259]
D8_A[12] = D8_B
D8_E5 = np.zeros(13)
D8_E5[[0, 5, 6, 7, 8, 9, 10, 11]] = [0.01312004499419488, -1.2251564463762044, -0.4957589496572502,
    1.6643771824549864, -0.35032884874997366, 0.3341791187130175, 0.08192320648511571, -0.022355307863886294]
D8_E3 = np.zeros(13)
D8_E3[[0, 5, 6, 7, 8, 9, 10, 11]] = [-0.18980075407240762, 4.450312892752409, 1.8915178993145003, -5.801203960010585,
    -0.4226823213237919, -0.1521609496625161, 0.20136540080403034, 0.02265179219836082]
D8_QUAD = np.array([0, 6, 7, 5, 9, 8, 10, 11])  # the stages with a nonzero weight, in increasing D8_C

for _arr in (D8_C, D8_A, D8_B, D8_E5, D8_E3, D8_QUAD):
    _arr.setflags(write=False)

"""tanh(x) for float64 in a form LLVM can vectorise (libm's tanh is an opaque call, about 9 ns an element here).

    tanh(|x|) = -e / (2 + e),   e = expm1(-2|x|)

expm1 is evaluated with Cody-Waite range reduction, -2|x| = k ln2 + r with |r| <= ln2/2, and a degree-13 Taylor
polynomial for expm1(r) (truncation error below 1e-17 relative on that interval); then expm1 = 2^k expm1(r) + (2^k - 1),
with 2^k built from its bits (exponent field k + 1023; -58 <= k <= 0 here).  Everything is straight-line arithmetic
and selects, so a loop over this function becomes SIMD code, about 3.5 times faster than libm here (2.3 ns an
element at n = 99 against 7.8; building 2^k instead of reading it from a table, a gather, took 10 % off, with the
same results bit for bit).  Accuracy: within 3 ulp of tanh evaluated in extended precision over the whole line
(tests/test_rhs.py); |x| < 1e-9 returns x (tanh x = x - x^3/3 rounds to x there), |x| >= 20 returns +-1
(tanh 20 = 1 - 8e-18 rounds to 1), NaN returns NaN.  Deterministic: the same input gives the same output
whatever the SIMD width, because no reduction is involved.
"""

import math

import numpy as np

from .._jit import leaf

LN2_HI = 6.93147180369123816490e-01  # ln 2 split so that k * LN2_HI is exact for |k| < 2^20
LN2_LO = 1.90821492927058770002e-10
INV_LN2 = 1.44269504088896338700e00
ROUND_SHIFT = 6755399441055744.0  # 1.5 * 2^52: (v + S) - S rounds v to the nearest integer, |v| < 2^51
P2, P3, P4, P5, P6, P7, P8, P9, P10, P11, P12, P13 = (1.0 / math.factorial(k) for k in range(2, 14))


@leaf
def tanh(x):
    """tanh of a float64 scalar; see the module docstring for the method and its accuracy."""
    a = abs(x)
    a = a if a < 20.0 else 20.0  # also maps NaN to 20; fixed by the last select
    y = -2.0 * a
    kf = (y * INV_LN2 + ROUND_SHIFT) - ROUND_SHIFT
    r = (y - kf * LN2_HI) - kf * LN2_LO
    p = r * (1.0 + r * (P2 + r * (P3 + r * (P4 + r * (P5 + r * (P6 + r * (P7 + r * (
        P8 + r * (P9 + r * (P10 + r * (P11 + r * (P12 + r * P13))))))))))))
    s = np.int64((np.int64(kf) + 1023) << 52).view(np.float64)  # 2^k, exact
    em = s * p + (s - 1.0)
    t = -em / (2.0 + em)
    t = t if x > 0.0 else -t
    t = x if a < 1e-9 else t
    return t if x == x else x

"""Evaluation metrics against independent references.

References: scipy.stats.pearsonr, scipy.stats.mannwhitneyu (AUROC = U / (n1 n0)), a brute-force count over all
(positive, negative) pairs, a brute-force average precision written from its definition, and hand-computed small
cases. Floating-point comparisons use an absolute tolerance of 1e-12 unless a test says otherwise.
"""

import numpy as np
import pytest
from scipy import stats

from cellbox_nb.fit.metrics import aupr, auroc, mae, network_recovery, pearson, sign_accuracy

TOL = 1e-12


def brute_auroc(scores, labels):
    pos = scores[labels]
    neg = scores[~labels]
    total = 0.0
    for p in pos:
        for q in neg:
            total += 1.0 if p > q else (0.5 if p == q else 0.0)
    return total / (pos.size * neg.size)


def brute_ap(scores, labels):
    """Mean over positives of the precision among all entries scoring at least as high (ties grouped)."""
    precisions = []
    for i in np.flatnonzero(labels):
        above = scores >= scores[i]
        precisions.append(np.count_nonzero(labels & above) / np.count_nonzero(above))
    return float(np.mean(precisions))


# ---------------------------------------------------------------- pearson

@pytest.mark.parametrize("seed", range(5))
def test_pearson_matches_scipy(seed):
    r = np.random.default_rng(seed)
    a = r.normal(size=(6, 7))
    b = 0.3 * a + r.normal(size=(6, 7))
    assert abs(pearson(a, b) - stats.pearsonr(a.ravel(), b.ravel()).statistic) <= TOL
    assert isinstance(pearson(a, b), float)


def test_pearson_flattens_and_is_exact_on_lines():
    a = np.arange(12.0).reshape(3, 4)
    assert abs(pearson(a, 2.0 * a.ravel() + 1.0) - 1.0) <= TOL
    assert abs(pearson(a, -a) + 1.0) <= TOL


@pytest.mark.parametrize("a, b", [
    (np.full(5, 0.1), np.arange(5.0)),
    (np.arange(5.0), np.full(5, 3.0)),
    (np.zeros(4), np.zeros(4)),
    ([1.0], [2.0]),
])
def test_pearson_constant_side_is_none(a, b):
    assert pearson(a, b) is None


def test_pearson_rejects_bad_input():
    with pytest.raises(ValueError):
        pearson([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError):
        pearson([1.0, np.nan, 3.0], [1.0, 2.0, 3.0])


# ---------------------------------------------------------------- mae

def test_mae_with_and_without_mask():
    r = np.random.default_rng(0)
    p = r.normal(size=(3, 4, 5))
    y = r.normal(size=(3, 4, 5))
    assert abs(mae(p, y) - np.abs(p - y).sum() / p.size) <= TOL
    m = r.random((3, 4, 5)) < 0.5
    y_nan = np.where(m, y, np.nan)  # unobserved entries may be NaN
    expect = sum(abs(p[i] - y[i]) for i in zip(*np.nonzero(m))) / np.count_nonzero(m)
    assert abs(mae(p, y_nan, mask=m) - expect) <= TOL


def test_mae_none_and_errors():
    assert mae(np.ones(3), np.zeros(3), mask=np.zeros(3, dtype=bool)) is None
    with pytest.raises(ValueError):
        mae(np.ones(3), np.zeros(4))
    with pytest.raises(ValueError):
        mae(np.ones(3), np.zeros(3), mask=np.ones(3))  # not boolean
    with pytest.raises(ValueError):
        mae(np.ones(3), np.array([0.0, np.nan, 0.0]))


# ---------------------------------------------------------------- auroc

@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("tied", [False, True])
def test_auroc_matches_mannwhitney_and_brute_force(seed, tied):
    r = np.random.default_rng(seed)
    labels = r.random(40) < 0.3
    labels[:2] = [True, False]  # both classes present
    scores = r.normal(size=40) + labels
    if tied:
        scores = np.round(scores)  # many ties, across classes too
    n1 = np.count_nonzero(labels)
    n0 = labels.size - n1
    u = stats.mannwhitneyu(scores[labels], scores[~labels], alternative="two-sided").statistic
    got = auroc(scores, labels)
    assert abs(got - u / (n1 * n0)) <= TOL
    assert abs(got - brute_auroc(scores, labels)) <= TOL


def test_auroc_hand_cases():
    assert auroc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert auroc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert auroc([0.5, 0.5, 0.5], [1, 0, 0]) == 0.5
    # pairs: (0.8 vs 0.3) 1, (0.8 vs 0.8) 1/2, (0.3 vs 0.3) 1/2, (0.3 vs 0.8) 0 -> 2/4
    assert abs(auroc([0.8, 0.3, 0.3, 0.8], [1, 1, 0, 0]) - 0.5) <= TOL


def test_auroc_one_class_is_none():
    assert auroc([0.1, 0.2, 0.3], [True, True, True]) is None
    assert auroc([0.1, 0.2, 0.3], [0, 0, 0]) is None


def test_auroc_rejects_bad_labels():
    with pytest.raises(ValueError):
        auroc([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError):
        auroc([0.1, 0.2], [0, 1, 1])


# ---------------------------------------------------------------- aupr

def test_aupr_hand_cases():
    # ranks 1..5, positives at ranks 1, 3, 4: precisions 1/1, 2/3, 3/4
    assert abs(aupr([0.9, 0.8, 0.7, 0.6, 0.5], [1, 0, 1, 1, 0]) - (1 + 2 / 3 + 3 / 4) / 3) <= TOL
    # ties: {0.9: neg}, {0.8, 0.8: pos, pos}, {0.3: pos}; both tied positives get precision 2/3, the last 3/4
    assert abs(aupr([0.9, 0.8, 0.8, 0.3], [0, 1, 1, 1]) - 25 / 36) <= TOL
    # a tie that mixes classes: {0.7: pos, neg} gives precision 1/2 whichever order the tie is in
    assert abs(aupr([0.7, 0.7, 0.1], [1, 0, 1]) - (1 / 2 + 2 / 3) / 2) <= TOL
    assert abs(aupr([0.7, 0.7, 0.1], [0, 1, 1]) - (1 / 2 + 2 / 3) / 2) <= TOL
    assert aupr([0.9, 0.1], [1, 0]) == 1.0
    assert aupr([0.4, 0.4], [1, 1]) == 1.0


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("tied", [False, True])
def test_aupr_matches_brute_force(seed, tied):
    r = np.random.default_rng(100 + seed)
    labels = r.random(50) < 0.25
    labels[0] = True
    scores = r.normal(size=50) + labels
    if tied:
        scores = np.round(scores * 2) / 2
    assert abs(aupr(scores, labels) - brute_ap(scores, labels)) <= TOL


def test_aupr_does_not_depend_on_tie_order():
    r = np.random.default_rng(7)
    scores = np.round(r.normal(size=30))
    labels = r.random(30) < 0.4
    labels[0] = True
    perm = r.permutation(30)
    assert abs(aupr(scores, labels) - aupr(scores[perm], labels[perm])) <= TOL


def test_aupr_no_positives_is_none():
    assert aupr([0.1, 0.2, 0.3], [0, 0, 0]) is None


# ---------------------------------------------------------------- sign accuracy

def test_sign_accuracy():
    W_true = np.array([[0.0, 1.0, -2.0], [0.5, -1.0, 0.0], [0.0, 0.0, 3.0]])
    W_hat = np.array([[9.0, 0.2, 0.1], [0.3, 0.0, -5.0], [1.0, 1.0, 2.0]])
    # true nonzero: (0,1)+ ok, (0,2)- wrong, (1,0)+ ok, (1,1)- estimate 0 wrong, (2,2)+ ok -> 3/5
    assert abs(sign_accuracy(W_hat, W_true) - 3 / 5) <= TOL
    assert sign_accuracy(W_hat, np.zeros((3, 3))) is None
    with pytest.raises(ValueError):
        sign_accuracy(np.zeros((2, 2)), np.zeros((3, 3)))


# ---------------------------------------------------------------- network recovery

def _off_diagonal(A):
    return A[~np.eye(A.shape[0], dtype=bool)]


def test_network_recovery_against_references():
    r = np.random.default_rng(3)
    n = 8
    W_true = np.where(r.random((n, n)) < 0.3, r.normal(size=(n, n)), 0.0)
    W_true[0, 1] = 1.0  # at least one edge
    W_true[1, 0] = 0.0  # at least one non-edge
    np.fill_diagonal(W_true, -0.5)  # nonzero diagonal: must not count as edges by default
    W_hat = W_true + 0.4 * r.normal(size=(n, n))
    alpha_true = r.uniform(0.5, 1.5, n)
    alpha_hat = alpha_true + 0.1 * r.normal(size=n)

    out = network_recovery(W_hat, W_true, alpha_hat, alpha_true)
    assert set(out) == {"pearson_W", "pearson_alpha", "auroc", "aupr", "sign_accuracy", "n_edges"}
    assert abs(out["pearson_W"] - stats.pearsonr(W_hat.ravel(), W_true.ravel()).statistic) <= TOL
    assert abs(out["pearson_alpha"] - stats.pearsonr(alpha_hat, alpha_true).statistic) <= TOL
    s, lab = np.abs(_off_diagonal(W_hat)), _off_diagonal(W_true) != 0
    assert abs(out["auroc"] - brute_auroc(s, lab)) <= TOL
    assert abs(out["aupr"] - brute_ap(s, lab)) <= TOL
    o_hat, o_true = _off_diagonal(W_hat), _off_diagonal(W_true)
    e = o_true != 0
    assert abs(out["sign_accuracy"] - np.mean(np.sign(o_hat[e]) == np.sign(o_true[e]))) <= TOL
    assert out["n_edges"] == np.count_nonzero(o_true)

    # diagonal switches
    out2 = network_recovery(W_hat, W_true, include_diagonal=False, edges_include_diagonal=True)
    assert abs(out2["pearson_W"] - stats.pearsonr(o_hat, o_true).statistic) <= TOL
    assert out2["n_edges"] == np.count_nonzero(W_true)
    assert abs(out2["auroc"] - brute_auroc(np.abs(W_hat.ravel()), W_true.ravel() != 0)) <= TOL
    assert out2["pearson_alpha"] is None  # alpha not given


def test_network_recovery_none_cases():
    n = 4
    W_true = np.zeros((n, n))
    np.fill_diagonal(W_true, 1.0)  # only self-loops: no off-diagonal edge
    W_hat = np.arange(16.0).reshape(n, n)
    out = network_recovery(W_hat, W_true, alpha_hat=np.arange(4.0), alpha_true=np.ones(4))
    assert out["pearson_alpha"] is None  # constant true alpha
    assert out["auroc"] is None and out["aupr"] is None and out["sign_accuracy"] is None
    assert out["n_edges"] == 0
    assert out["pearson_W"] is not None  # the diagonal makes W_true non-constant over all entries
    assert network_recovery(W_hat, np.zeros((n, n)))["pearson_W"] is None
    for v in out.values():
        assert v is None or np.isfinite(v)

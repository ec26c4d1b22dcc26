"""Evaluation metrics: fit quality (MAE, Pearson) and recovery of a known network (AUROC, AUPR, signs).

Conventions
-----------
* Every function returns a Python ``float`` (or ``None``), never NaN: a metric that is undefined for the given
  input (a constant vector for Pearson, a single class for AUROC, no positives for AUPR, no true edges for the
  sign accuracy, no observed entries for the MAE) returns ``None``.
* Inputs must be finite where they are used; NaN or Inf raises ``ValueError`` (for :func:`mae`, entries outside
  ``mask`` may be NaN).
* ``W[i, j]`` is the effect of node j on node i, as in :func:`cellbox_nb.solve`. Network recovery scores an edge
  by ``|W_hat[i, j]|`` and calls it present when ``W_true[i, j] != 0``.
"""

import numpy as np

__all__ = ["pearson", "mae", "auroc", "aupr", "sign_accuracy", "network_recovery"]


def _finite(name, arr):
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or Inf")
    return arr


def _vector(name, value):
    arr = np.asarray(value, dtype=np.float64).ravel()
    return _finite(name, arr)


def _labels(labels, size):
    lab = np.asarray(labels).ravel()
    if lab.size != size:
        raise ValueError(f"labels: expected {size} entries, got {lab.size}")
    if lab.dtype != bool:
        if not np.all((lab == 0) | (lab == 1)):
            raise ValueError("labels: must be boolean or 0/1")
        lab = lab == 1
    return lab


def pearson(a, b):
    """Pearson correlation of two arrays, both flattened.

    Parameters
    ----------
    a, b : array_like, any shape with the same number of elements (at least 2), finite.

    Returns
    -------
    float in [-1, 1], or None when either side is constant (every element equal) or has fewer than 2 elements.
    """
    x = _vector("a", a)
    y = _vector("b", b)
    if x.size != y.size:
        raise ValueError(f"pearson: a has {x.size} elements, b has {y.size}")
    if x.size < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return None
    dx = x - x.mean()
    dy = y - y.mean()
    sxx = float(np.dot(dx, dx))
    syy = float(np.dot(dy, dy))
    if sxx == 0.0 or syy == 0.0:  # not constant, but the spread underflows
        return None
    r = float(np.dot(dx, dy)) / np.sqrt(sxx * syy)
    return float(min(1.0, max(-1.0, r)))


def mae(pred, target, mask=None):
    """Mean absolute error over the observed entries.

    Parameters
    ----------
    pred, target : array_like of the same shape, e.g. (M, T, n) model responses and data.
    mask : array_like of bool, same shape, True where ``target`` is observed (default: all entries).
        Entries where the mask is False are ignored and may be NaN.

    Returns
    -------
    float, the mean of ``|pred - target|`` over the observed entries, or None when no entry is observed.
    """
    p = np.asarray(pred, dtype=np.float64)
    q = np.asarray(target, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"mae: pred has shape {p.shape}, target has shape {q.shape}")
    if mask is not None:
        m = np.asarray(mask)
        if m.shape != p.shape:
            raise ValueError(f"mae: mask has shape {m.shape}, expected {p.shape}")
        if m.dtype != bool:
            raise ValueError(f"mae: mask must be boolean, got dtype {m.dtype}")
        p = p[m]
        q = q[m]
    p = _finite("pred", p.ravel())
    q = _finite("target", q.ravel())
    if p.size == 0:
        return None
    return float(np.mean(np.abs(p - q)))


def _average_ranks(x):
    """1-based ranks of ``x`` in increasing order, tied values sharing the mean of their ranks."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    n = xs.size
    # start index of each run of equal values in the sorted order
    starts = np.flatnonzero(np.concatenate(([True], xs[1:] != xs[:-1])))
    ends = np.concatenate((starts[1:], [n]))  # one past the end of each run
    run_rank = (starts + 1 + ends) / 2.0  # mean of the 1-based ranks starts+1 .. ends
    ranks = np.empty(n)
    ranks[order] = np.repeat(run_rank, ends - starts)
    return ranks


def auroc(scores, labels):
    """Area under the ROC curve, by the Mann-Whitney U statistic.

    AUROC = U / (n1 * n0) with U = R1 - n1 (n1 + 1) / 2, where R1 is the sum of the ranks of the positives among
    all scores and tied scores share their average rank. Equivalently, the probability that a random positive
    scores above a random negative, a tie counting 1/2.

    Parameters
    ----------
    scores : array_like, (N,) (flattened), finite; higher means "more likely positive".
    labels : array_like, (N,) bool or 0/1; True (1) marks a positive.

    Returns
    -------
    float in [0, 1], or None when only one class is present.
    """
    s = _vector("scores", scores)
    lab = _labels(labels, s.size)
    n1 = int(np.count_nonzero(lab))
    n0 = s.size - n1
    if n1 == 0 or n0 == 0:
        return None
    r1 = float(np.sum(_average_ranks(s)[lab]))
    u = r1 - n1 * (n1 + 1) / 2.0
    return float(u / (n1 * n0))


def aupr(scores, labels):
    """Area under the precision-recall curve as average precision.

    Entries are ranked by decreasing score; AP = (1 / n_pos) * sum over the positives of the precision at that
    positive's rank. Tied scores form one threshold: every positive in a group of equal scores gets the precision
    computed over all entries with a score >= that score, so the result does not depend on the order of ties.

    Parameters
    ----------
    scores : array_like, (N,) (flattened), finite; higher means "more likely positive".
    labels : array_like, (N,) bool or 0/1; True (1) marks a positive.

    Returns
    -------
    float in (0, 1], or None when there is no positive.
    """
    s = _vector("scores", scores)
    lab = _labels(labels, s.size)
    n_pos = int(np.count_nonzero(lab))
    if n_pos == 0:
        return None
    order = np.argsort(-s, kind="mergesort")
    ss = s[order]
    ls = lab[order]
    # last index of each group of equal scores (decreasing order)
    last = np.flatnonzero(np.concatenate((ss[1:] != ss[:-1], [True])))
    tp = np.cumsum(ls)[last]  # true positives at or above each threshold
    precision = tp / (last + 1.0)
    new_pos = np.diff(np.concatenate(([0], tp)))  # positives in each group
    return float(np.sum(new_pos * precision) / n_pos)


def sign_accuracy(W_hat, W_true):
    """Fraction of the true nonzero entries whose sign is recovered.

    Parameters
    ----------
    W_hat, W_true : array_like of the same shape, e.g. (n, n) estimated and true interaction matrices, or any
        selection of their entries. Every entry where ``W_true != 0`` counts, the diagonal included; pass a
        selection (as :func:`network_recovery` does) to leave entries out.

    Returns
    -------
    float in [0, 1]: the fraction of entries with ``W_true != 0`` and ``sign(W_hat) == sign(W_true)`` (an
    estimate of exactly 0 counts as wrong), or None when ``W_true`` has no nonzero entry.
    """
    a = np.asarray(W_hat, dtype=np.float64)
    b = np.asarray(W_true, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"sign_accuracy: W_hat has shape {a.shape}, W_true has shape {b.shape}")
    a = _finite("W_hat", a.ravel())
    b = _finite("W_true", b.ravel())
    edges = b != 0
    n = int(np.count_nonzero(edges))
    if n == 0:
        return None
    return float(np.count_nonzero(np.sign(a[edges]) == np.sign(b[edges])) / n)


def network_recovery(W_hat, W_true, alpha_hat=None, alpha_true=None, include_diagonal=True,
                     edges_include_diagonal=False):
    """Compare an estimated network with the true one.

    Parameters
    ----------
    W_hat, W_true : (n, n) array_like, estimated and true interaction matrices (W[i, j]: effect of j on i).
    alpha_hat, alpha_true : (n,) array_like or None, estimated and true gains; pearson_alpha is None unless
        both are given.
    include_diagonal : bool, default True
        Whether ``pearson_W`` uses the diagonal. With True it correlates all n * n entries, zeros and diagonal
        included, as CellBox.jl does.
    edges_include_diagonal : bool, default False
        Whether the edge-classification metrics (auroc, aupr, sign_accuracy, n_edges) use the diagonal. By
        default they use the n * (n - 1) off-diagonal entries only: a self-loop W[i, i] competes with the decay
        term -d_i x_i and is not a regulatory edge between two nodes.

    Returns
    -------
    dict with
        pearson_W : float or None, Pearson correlation of W_hat and W_true (entries chosen by include_diagonal);
            None when either is constant over those entries.
        pearson_alpha : float or None, Pearson correlation of alpha_hat and alpha_true; None when either is not
            given or either is constant (e.g. a true alpha of all ones).
        auroc : float or None, AUROC of the scores |W_hat| against the labels W_true != 0 over the edge set;
            None when the edge set has only edges or only non-edges.
        aupr : float or None, average precision of the same scores and labels; None when there is no true edge.
        sign_accuracy : float or None, :func:`sign_accuracy` over the true edges of the edge set.
        n_edges : int, the number of true edges (W_true != 0) in the edge set.
    """
    Wh = _finite("W_hat", np.asarray(W_hat, dtype=np.float64))
    Wt = _finite("W_true", np.asarray(W_true, dtype=np.float64))
    if Wt.ndim != 2 or Wt.shape[0] != Wt.shape[1]:
        raise ValueError(f"network_recovery: W_true must be square, got shape {Wt.shape}")
    if Wh.shape != Wt.shape:
        raise ValueError(f"network_recovery: W_hat has shape {Wh.shape}, W_true has shape {Wt.shape}")
    n = Wt.shape[0]
    off = ~np.eye(n, dtype=bool)
    corr_sel = np.ones((n, n), dtype=bool) if include_diagonal else off
    edge_sel = np.ones((n, n), dtype=bool) if edges_include_diagonal else off

    pearson_alpha = None
    if alpha_hat is not None and alpha_true is not None:
        ah = np.asarray(alpha_hat, dtype=np.float64)
        at = np.asarray(alpha_true, dtype=np.float64)
        if ah.shape != (n,) or at.shape != (n,):
            raise ValueError(f"network_recovery: alpha_hat and alpha_true must have shape ({n},), got "
                             f"{ah.shape} and {at.shape}")
        pearson_alpha = pearson(ah, at)

    scores = np.abs(Wh[edge_sel])
    labels = Wt[edge_sel] != 0
    return {
        "pearson_W": pearson(Wh[corr_sel], Wt[corr_sel]),
        "pearson_alpha": pearson_alpha,
        "auroc": auroc(scores, labels),
        "aupr": aupr(scores, labels),
        "sign_accuracy": sign_accuracy(Wh[edge_sel], Wt[edge_sel]),
        "n_edges": int(np.count_nonzero(labels)),
    }

"""Adam / AdamW with the extras CellBox training needs: clipping, L1 (proximal), L2, masks, alpha positivity.

Per step, in this order:
  1. g_W += 2 * l2 * W                               (L2 penalty, part of the gradient)
  2. clip the global norm of (g_W, g_alpha, g_d) to clip_norm
  3. Adam moments and bias-corrected update  p -= lr * m_hat / (sqrt(v_hat) + eps)
  4. AdamW: W -= lr * weight_decay * W               (decoupled, W only)
  5. L1 as a proximal step: W = sign(W) * max(|W| - lr * l1, 0)   (soft threshold; exact zeros survive)
  6. W[~w_mask] = 0; alpha = max(alpha, alpha_min) when positive_alpha
"""

import numpy as np


def init_moments(params):
    return {k: np.zeros_like(v) for k, v in params.items()}, {k: np.zeros_like(v) for k, v in params.items()}


def grad_norm(grads):
    return float(np.sqrt(sum(float(np.sum(g * g)) for g in grads.values())))


def adam_step(params, grads, m, v, step, lr, cfg, w_mask=None):
    """One optimiser step; returns new params dict (inputs are not modified) and new moments.

    params, grads : dicts of arrays with the same keys (a subset of "W", "alpha", "d").
    step : 1-based step count (bias correction).  cfg : resolved config (beta1, beta2, eps, optimizer,
    weight_decay, l1, l2, clip_norm, positive_alpha, alpha_min).
    """
    grads = dict(grads)
    if cfg["l2"] > 0 and "W" in grads:
        grads["W"] = grads["W"] + 2.0 * cfg["l2"] * params["W"]
    if cfg["clip_norm"] is not None:
        norm = grad_norm(grads)
        if norm > cfg["clip_norm"]:
            scale = cfg["clip_norm"] / norm
            grads = {k: g * scale for k, g in grads.items()}
    b1, b2, eps = cfg["beta1"], cfg["beta2"], cfg["eps"]
    new_p, new_m, new_v = {}, {}, {}
    for k, p in params.items():
        g = grads[k]
        mk = b1 * m[k] + (1 - b1) * g
        vk = b2 * v[k] + (1 - b2) * g * g
        m_hat = mk / (1 - b1**step)
        v_hat = vk / (1 - b2**step)
        new_p[k] = p - lr * m_hat / (np.sqrt(v_hat) + eps)
        new_m[k], new_v[k] = mk, vk
    if "W" in new_p:
        W = new_p["W"]
        if cfg["optimizer"] == "adamw" and cfg["weight_decay"] > 0:
            W = W - lr * cfg["weight_decay"] * params["W"]
        if cfg["l1"] > 0:
            W = np.sign(W) * np.maximum(np.abs(W) - lr * cfg["l1"], 0.0)
        if w_mask is not None:
            W = np.where(w_mask, W, 0.0)
        new_p["W"] = W
    if "alpha" in new_p and cfg["positive_alpha"]:
        new_p["alpha"] = np.maximum(new_p["alpha"], cfg["alpha_min"])
    return new_p, new_m, new_v

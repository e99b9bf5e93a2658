"""Frame and label metrics for Genie evaluation (PSNR, SSIM, Delta_t PSNR, NMI, ...).

Conventions
-----------
* Images/videos are float tensors with values in ``[0, 1]`` and **channels
  last**: ``(..., H, W, C)``, e.g. a frame ``(H, W, C)``, a batch of frames
  ``(B, H, W, C)`` or videos ``(B, T, H, W, C)``.  Per-frame metrics return one
  value per frame, shaped like the leading dims ``(...)``.
* Label metrics take integer arrays (numpy or torch) and are computed with
  numpy in float64; no scikit-learn.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

__all__ = [
    "PSNR_MAX_DB",
    "psnr",
    "ssim",
    "delta_t_psnr",
    "nmi",
    "purity",
    "confusion_table",
    "codebook_usage",
]

#: Cap applied to PSNR values. Identical frames (MSE = 0) give exactly this
#: value instead of ``inf``; any frame with a higher PSNR (MSE < 1e-10 for
#: ``data_range = 1``) is clamped to it too, so means stay finite.
PSNR_MAX_DB = 100.0


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape:
        raise ValueError(f"shape mismatch: {tuple(x.shape)} vs {tuple(y.shape)}")
    if x.ndim < 3:
        raise ValueError(f"expected (..., H, W, C), got {tuple(x.shape)}")


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, max_db: float | None = PSNR_MAX_DB) -> torch.Tensor:
    """Per-frame peak signal-to-noise ratio in dB.

    ``PSNR = 10 * log10(data_range**2 / MSE)`` with the MSE taken over the last
    three dims ``(H, W, C)`` of ``x`` and ``y`` (``(..., H, W, C)``, values in
    ``[0, data_range]``).  The MSE is accumulated in float64.

    Identical frames: the result is clamped to ``max_db`` (default
    :data:`PSNR_MAX_DB` = 100 dB), so ``MSE = 0`` gives exactly 100 dB and
    averages over frames never become ``inf``.  Pass ``max_db=None`` to get
    ``inf`` for identical frames instead (no clamping at all).

    Returns a float64 tensor of shape ``x.shape[:-3]`` (a 0-d tensor for a
    single frame).
    """
    _check_pair(x, y)
    diff = x.to(torch.float64) - y.to(torch.float64)
    mse = diff.pow(2).mean(dim=(-3, -2, -1))
    out = 10.0 * torch.log10(data_range**2 / mse)  # mse == 0 -> +inf
    if max_db is not None:
        out = torch.clamp(out, max=max_db)
    return out


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = 1.0,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Per-frame SSIM (Wang et al. 2004) via torchmetrics, channels-last input.

    Settings (the standard ones; used as is at 64 x 64): Gaussian window with
    ``sigma = 1.5``, which torchmetrics truncates to ``11 x 11``
    (``2 * int(3.5 * sigma + 0.5) + 1``); ``K1 = 0.01``, ``K2 = 0.03``; the
    data range is passed explicitly (``1.0`` for ``[0, 1]`` frames) rather than
    estimated from the data.  Each channel is filtered separately, the frame is
    reflect-padded by 5 pixels so the SSIM map is full size (64 x 64 at 64 x 64,
    torchmetrics >= 1.x behaviour), and the map is averaged over pixels and
    channels.

    ``x, y``: ``(..., H, W, C)`` in ``[0, data_range]``, H and W >= 6 (reflect
    padding by 5).  Returns a tensor of shape ``x.shape[:-3]`` in ``x``'s float
    dtype (float32 for float32 input).
    """
    from torchmetrics.functional.image import structural_similarity_index_measure

    _check_pair(x, y)
    lead = x.shape[:-3]
    h, w, c = x.shape[-3:]
    if not torch.is_floating_point(x):
        x = x.float()
    if not torch.is_floating_point(y):
        y = y.float()
    xf = x.reshape(-1, h, w, c).permute(0, 3, 1, 2)
    yf = y.reshape(-1, h, w, c).permute(0, 3, 1, 2).to(xf.dtype)
    vals = structural_similarity_index_measure(
        xf, yf, gaussian_kernel=True, sigma=sigma, data_range=data_range, k1=k1, k2=k2, reduction="none"
    )
    return vals.reshape(lead)


def delta_t_psnr(
    x_t: torch.Tensor,
    x_hat_t: torch.Tensor,
    x_hat_rand_t: torch.Tensor,
    data_range: float = 1.0,
    max_db: float | None = PSNR_MAX_DB,
) -> torch.Tensor:
    """Controllability metric of Genie: ``Delta_t PSNR = PSNR(x_t, x̂_t) - PSNR(x_t, x̂'_t)``.

    * ``x_t``: ground-truth frame at time ``t``;
    * ``x_hat_t``: the frame generated at time ``t`` from the latent actions
      ``ã_{1:t}`` that the latent action model infers from the ground-truth
      frames;
    * ``x_hat_rand_t``: the same frame generated from latent actions sampled
      at random (uniform categorical) instead.

    Higher means the model reacts more to the (inferred) actions.  The paper
    reports ``t = 4``; selecting frame ``t`` of the rollouts, the number of
    prompt frames and the averaging over samples are the caller's job (this is
    only the per-frame arithmetic).  All inputs ``(..., H, W, C)`` in
    ``[0, data_range]``; returns ``x_t.shape[:-3]`` differences in dB (float64),
    with each PSNR clamped at ``max_db`` as in :func:`psnr`.  Average the
    returned values to report one number.
    """
    return psnr(x_t, x_hat_t, data_range, max_db) - psnr(x_t, x_hat_rand_t, data_range, max_db)


# ----------------------------------------------------------------------------
# Label metrics (numpy)
# ----------------------------------------------------------------------------


def _as_labels(a: Any, name: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    a = np.asarray(a).reshape(-1)
    if a.dtype == np.bool_:
        a = a.astype(np.int64)
    if a.size and not np.issubdtype(a.dtype, np.integer):
        if np.issubdtype(a.dtype, np.floating) and np.all(a == np.round(a)):
            a = a.astype(np.int64)
        else:
            raise ValueError(f"{name} must hold integer labels, got dtype {a.dtype}")
    return a.astype(np.int64, copy=False)


def _contingency(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    na, nb = int(ia.max()) + 1, int(ib.max()) + 1
    return np.bincount(ia * nb + ib, minlength=na * nb).reshape(na, nb)


def _entropy(counts: np.ndarray) -> float:
    n = counts.sum()
    p = counts[counts > 0] / n
    return float(-(p * np.log(p)).sum())


def nmi(labels_a: Any, labels_b: Any) -> float:
    """Normalised mutual information with arithmetic-mean normalisation.

    ``NMI = I(A; B) / ((H(A) + H(B)) / 2)`` (natural logs; the base cancels),
    the same definition as scikit-learn's ``normalized_mutual_info_score``
    default.  Labels are arbitrary integers (only equality matters).  Edge
    cases, as in scikit-learn: both labelings with a single cluster (or empty)
    -> 1.0; otherwise ``I = 0`` -> 0.0.  Result in ``[0, 1]``.
    """
    a = _as_labels(labels_a, "labels_a")
    b = _as_labels(labels_b, "labels_b")
    if a.shape != b.shape:
        raise ValueError(f"label arrays differ in length: {a.size} vs {b.size}")
    if a.size == 0:
        return 1.0
    table = _contingency(a, b)
    if table.shape[0] == 1 and table.shape[1] == 1:
        return 1.0
    n = float(a.size)
    pij = table / n
    pi = pij.sum(axis=1, keepdims=True)
    pj = pij.sum(axis=0, keepdims=True)
    nz = pij > 0
    mi = float((pij[nz] * (np.log(pij[nz]) - np.log((pi @ pj)[nz]))).sum())
    mi = max(mi, 0.0)
    if mi == 0.0:
        return 0.0
    denom = 0.5 * (_entropy(table.sum(axis=1)) + _entropy(table.sum(axis=0)))
    return float(min(mi / max(denom, np.finfo(np.float64).eps), 1.0))


def confusion_table(pred: Any, true: Any, n_pred: int, n_true: int) -> np.ndarray:
    """Counts ``C[i, j] = #{k : pred[k] == i and true[k] == j}``, shape ``(n_pred, n_true)``, int64.

    Labels must lie in ``[0, n_pred)`` and ``[0, n_true)``; rows are e.g. latent
    actions, columns ground-truth actions.
    """
    p = _as_labels(pred, "pred")
    t = _as_labels(true, "true")
    if p.shape != t.shape:
        raise ValueError(f"label arrays differ in length: {p.size} vs {t.size}")
    if p.size and (p.min() < 0 or p.max() >= n_pred):
        raise ValueError(f"pred labels must be in [0, {n_pred}), got [{p.min()}, {p.max()}]")
    if t.size and (t.min() < 0 or t.max() >= n_true):
        raise ValueError(f"true labels must be in [0, {n_true}), got [{t.min()}, {t.max()}]")
    return np.bincount(p * n_true + t, minlength=n_pred * n_true).reshape(n_pred, n_true).astype(np.int64)


def purity(pred: Any, true: Any) -> float:
    """Cluster purity: each predicted cluster votes for its most frequent true label.

    ``purity = sum_i max_j C[i, j] / N`` with ``C`` the contingency table of
    (pred, true).  1.0 when every predicted cluster holds a single true label
    (any relabelling, or a finer clustering); ``max_j P(true = j)`` for a single
    cluster.  Empty input -> 1.0.
    """
    p = _as_labels(pred, "pred")
    t = _as_labels(true, "true")
    if p.shape != t.shape:
        raise ValueError(f"label arrays differ in length: {p.size} vs {t.size}")
    if p.size == 0:
        return 1.0
    return float(_contingency(p, t).max(axis=1).sum() / p.size)


def codebook_usage(indices: Any, num_codes: int) -> dict[str, float | int]:
    """Usage statistics of a VQ codebook from a set of code indices (any shape).

    Returns ``dict(used=..., fraction=..., perplexity=...)``: ``used`` the number
    of distinct codes that occur, ``fraction = used / num_codes``, and
    ``perplexity = exp(H)`` with ``H`` the entropy (nats) of the empirical code
    distribution: ``num_codes`` for perfectly uniform use, 1 for a single code.
    Empty input gives ``used = 0, fraction = 0, perplexity = 0``.
    """
    idx = _as_labels(indices, "indices")
    if idx.size and (idx.min() < 0 or idx.max() >= num_codes):
        raise ValueError(f"indices must be in [0, {num_codes}), got [{idx.min()}, {idx.max()}]")
    if idx.size == 0:
        return {"used": 0, "fraction": 0.0, "perplexity": 0.0}
    counts = np.bincount(idx, minlength=num_codes)
    used = int((counts > 0).sum())
    return {"used": used, "fraction": used / num_codes, "perplexity": float(math.exp(_entropy(counts)))}


def linear_probe_accuracy(features: Any, labels: Any, fit_fraction: float = 0.5, steps: int = 300,
                          weight_decay: float = 1e-4, seed: int = 0) -> float:
    """Held-out accuracy of a multinomial logistic regression from ``features`` (N, D) to ``labels`` (N,).

    The first ``fit_fraction`` of the rows (after a seeded shuffle) fits the probe (standardised
    features, full-batch L-BFGS with a small L2 penalty), the rest scores it.  How much of a label
    a continuous representation holds *linearly*: the probe of a latent action space.
    """
    x = torch.as_tensor(np.asarray(features), dtype=torch.float64)
    y = torch.as_tensor(_as_labels(labels, "labels"))
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"features must be (N, D) with one label per row, got {tuple(x.shape)} and {tuple(y.shape)}")
    if not 0 < fit_fraction < 1 or x.shape[0] < 4:
        raise ValueError("need 0 < fit_fraction < 1 and at least 4 rows")
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(x.shape[0], generator=g)
    x, y = x[perm], y[perm]
    n_fit = max(2, int(round(x.shape[0] * fit_fraction)))
    mu, sd = x[:n_fit].mean(0), x[:n_fit].std(0).clamp_min(1e-8)
    x = (x - mu) / sd
    classes, y = torch.unique(y, return_inverse=True)
    w = torch.zeros(x.shape[1], len(classes), dtype=torch.float64, requires_grad=True)
    b = torch.zeros(len(classes), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x[:n_fit] @ w + b, y[:n_fit]) + weight_decay * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        pred = (x[n_fit:] @ w + b).argmax(-1)
    return float((pred == y[n_fit:]).double().mean())


def kmeans_labels(features: Any, k: int, iters: int = 50, restarts: int = 4, seed: int = 0) -> np.ndarray:
    """Cluster ids (N,) of ``features`` (N, D) by k-means (k-means++ seeding, Lloyd iterations; the best
    of ``restarts`` by inertia). Features are standardised first, as the linear probe's are.

    The unsupervised reading of a continuous latent action space into ``k`` buttons (AdaWorld clusters
    its continuous latents this way): NMI of these ids against the true actions says what a LAM's
    latent gives when its buttons are cut by the latent's own geometry rather than by its codebook."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or not 1 <= k <= x.shape[0]:
        raise ValueError(f"need features (N, D) with 1 <= k <= N, got shape {x.shape} and k={k}")
    if not np.isfinite(x).all():
        raise ValueError("features must be finite")
    x = (x - x.mean(0)) / np.maximum(x.std(0), 1e-8)
    rng = np.random.default_rng(seed)
    best, best_inertia = None, np.inf
    for _ in range(restarts):
        centres = x[rng.integers(len(x))][None]
        for _ in range(1, k):  # k-means++: the next centre drawn with probability ~ squared distance
            d2 = ((x[:, None, :] - centres[None]) ** 2).sum(-1).min(1)
            p = d2 / d2.sum() if d2.sum() > 0 else np.full(len(x), 1.0 / len(x))
            centres = np.concatenate([centres, x[rng.choice(len(x), p=p)][None]])
        for _ in range(iters):
            d2 = ((x[:, None, :] - centres[None]) ** 2).sum(-1)
            labels = d2.argmin(1)
            new = np.stack([x[labels == j].mean(0) if (labels == j).any() else centres[j] for j in range(k)])
            if np.allclose(new, centres):
                break
            centres = new
        d2 = ((x[:, None, :] - centres[None]) ** 2).sum(-1)
        labels, inertia = d2.argmin(1), float(d2.min(1).sum())
        if inertia < best_inertia:
            best, best_inertia = labels, inertia
    return best

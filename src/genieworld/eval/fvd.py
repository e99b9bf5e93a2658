"""Frechet Video Distance (Unterthiner et al. 2019) with the PyTorch I3D port.

Protocol (defaults chosen to match the reference TF implementation,
``google-research/frechet_video_distance``, so numbers are comparable):

* **Input**: videos ``(N, T, H, W, C)`` (numpy or torch), RGB, float in
  ``[0, 1]`` (uint8 ``[0, 255]`` is also accepted and divided by 255).
* **Clip length**: all clips of one call share ``T``.  I3D needs ``T >= 9``
  (three temporal stride-2 stages, then a VALID temporal pool of 2; see
  :mod:`genieworld.eval.i3d`).  Use **16 frames** for reported numbers, the
  usual FVD setting; other lengths give numbers that are not comparable.
* **Resolution**: every frame is resized to **224 x 224** (our 64 x 64 frames
  are upsampled 3.5x) with **bilinear** interpolation.  ``resize="tf1"``
  (default) reproduces TF1 ``tf.image.resize_bilinear`` as used by the
  reference FVD code (``align_corners=False``, no half-pixel offset: source
  coordinate ``i * H_in / 224``, right/bottom edge clamped);
  ``resize="half_pixel"`` is the modern convention (PyTorch
  ``F.interpolate(..., mode="bilinear", align_corners=False)``, no
  antialiasing).  Values are then mapped to ``[-1, 1]`` (``2 x - 1``).
* **Embedding**: ``feature="logits"`` (default): the 400-d time-averaged
  Kinetics-400 logits, which is what the reference FVD computes (TF-Hub
  ``i3d-kinetics-400`` output; checked in ``tests/test_fvd.py``).
  ``feature="pool"``: the 1024-d average-pooled Mixed_5c features feeding the
  logits layer (an affine function of them).  FVD values from the two are on
  different scales; always state which one is reported.
* **Distance**: Frechet distance between Gaussians fitted to the two feature
  sets (mean, unbiased covariance), in float64 (:func:`frechet_distance`).
  With ``N`` smaller than the feature dimension the covariances are singular
  and FVD is strongly biased by ``N``; compare only numbers with the same ``N``
  (reference practice: 256 or more clips per set).

CPU cost (2 cores, batch >= 4): about 0.35 s per 16-frame clip when the cores
are free, 0.8 s when they are shared, plus a few seconds for the first call; a
batch of 1 is ~1.5x slower per clip.  256 clips: roughly 2-4 minutes.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Literal

import numpy as np
import torch

from .i3d import FEATURE_DIM, MIN_FRAMES, NUM_CLASSES, i3d_weights_path, load_i3d

__all__ = [
    "I3D_SIZE",
    "resize_matrix",
    "preprocess_for_i3d",
    "i3d_features",
    "frechet_distance",
    "frechet_distance_from_stats",
    "fvd",
]

I3D_SIZE = 224
Feature = Literal["logits", "pool"]
Resize = Literal["tf1", "half_pixel"]


def resize_matrix(n_in: int, n_out: int, mode: Resize = "tf1") -> np.ndarray:
    """``(n_out, n_in)`` linear-interpolation matrix for one axis (float64).

    ``mode="tf1"``: source coordinate ``i * n_in / n_out`` (TF1
    ``resize_bilinear``, ``align_corners=False``, ``half_pixel_centers=False``).
    ``mode="half_pixel"``: ``(i + 0.5) * n_in / n_out - 0.5`` clamped at 0
    (PyTorch/TF2 bilinear without antialiasing).  Indices past the last input
    sample are clamped to it.  Bilinear resizing of an image is
    ``A_h @ img @ A_w.T`` per channel.
    """
    scale = n_in / n_out
    i = np.arange(n_out, dtype=np.float64)
    if mode == "tf1":
        src = i * scale
    elif mode == "half_pixel":
        src = np.maximum((i + 0.5) * scale - 0.5, 0.0)
    else:
        raise ValueError(f"unknown resize mode {mode!r}")
    i0 = np.floor(src).astype(np.int64)
    frac = src - i0
    i0 = np.minimum(i0, n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    m = np.zeros((n_out, n_in), dtype=np.float64)
    np.add.at(m, (np.arange(n_out), i0), 1.0 - frac)
    np.add.at(m, (np.arange(n_out), i1), frac)
    return m


def _to_float01(videos: Any) -> torch.Tensor:
    x = torch.as_tensor(videos) if not isinstance(videos, torch.Tensor) else videos
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    if not torch.is_floating_point(x):
        raise ValueError(f"videos must be float in [0, 1] or uint8, got {x.dtype}")
    x = x.float()
    if x.numel():
        lo, hi = float(x.min()), float(x.max())
        if lo < -1e-3 or hi > 1.0 + 1e-3:
            raise ValueError(f"videos must be in [0, 1] (got values in [{lo:.3g}, {hi:.3g}]); "
                             "pass uint8 frames or divide by 255 / rescale from [-1, 1]")
    return x


def preprocess_for_i3d(videos: Any, resize: Resize = "tf1") -> torch.Tensor:
    """``(N, T, H, W, 3)`` in ``[0, 1]`` (or uint8) -> ``(N, T, 224, 224, 3)`` float32 in ``[-1, 1]``."""
    x = _to_float01(videos)
    if x.ndim != 5 or x.shape[-1] != 3:
        raise ValueError(f"expected videos (N, T, H, W, 3), got {tuple(x.shape)}")
    h, w = x.shape[2], x.shape[3]
    if (h, w) != (I3D_SIZE, I3D_SIZE):
        ah = torch.from_numpy(resize_matrix(h, I3D_SIZE, resize)).to(x)
        aw = torch.from_numpy(resize_matrix(w, I3D_SIZE, resize)).to(x)
        x = torch.einsum("oh,nthwc->ntowc", ah, x)
        x = torch.einsum("pw,ntowc->ntopc", aw, x)
    return x * 2.0 - 1.0


@functools.lru_cache(maxsize=2)
def _cached_model(path: str, device: str) -> torch.nn.Module:
    return load_i3d(path, device=device)


def i3d_features(
    videos: Any,
    batch_size: int = 8,
    feature: Feature = "logits",
    resize: Resize = "tf1",
    device: str | torch.device | None = None,
    weights: str | os.PathLike | None = None,
) -> np.ndarray:
    """I3D embeddings of a set of videos, ``(N, 400)`` for ``feature="logits"``, ``(N, 1024)`` for ``"pool"``.

    ``videos``: ``(N, T, H, W, 3)`` numpy/torch, float in ``[0, 1]`` or uint8,
    ``T >= 9`` (16 recommended).  Frames are resized to 224 x 224 (bilinear,
    see ``resize`` and the module docstring) and scaled to ``[-1, 1]`` batch by
    batch (``batch_size`` clips at a time).  ``weights`` defaults to
    :func:`genieworld.eval.i3d.i3d_weights_path` (raises with instructions if
    the converted weights are missing).  Returns float32 numpy.
    """
    if feature not in ("logits", "pool"):
        raise ValueError(f"feature must be 'logits' or 'pool', got {feature!r}")
    n = len(videos)
    if n and np.shape(videos[0])[0] < MIN_FRAMES:
        raise ValueError(f"I3D needs clips of at least {MIN_FRAMES} frames, got {np.shape(videos[0])[0]}")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    path = str(weights) if weights is not None else str(i3d_weights_path())
    model = _cached_model(path, str(dev))
    dim = NUM_CLASSES if feature == "logits" else FEATURE_DIM
    out = np.empty((n, dim), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            x = preprocess_for_i3d(videos[start:start + batch_size], resize=resize).to(dev)
            logits, pooled = model(x)
            out[start:start + len(x)] = (logits if feature == "logits" else pooled).float().cpu().numpy()
    return out


def frechet_distance_from_stats(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2})`` in float64.

    ``tr((S1 S2)^{1/2})`` is computed as the sum of square roots of the
    eigenvalues of the symmetric PSD matrix ``S1^{1/2} S2 S1^{1/2}`` (same
    spectrum as ``S1 S2``), with ``S1^{1/2}`` from a symmetric eigen-
    decomposition; round-off negative eigenvalues are clipped to 0.  No complex
    arithmetic is involved, so there are no imaginary parts to discard, and
    singular covariances (N <= D) are handled.
    """
    mu1 = np.asarray(mu1, dtype=np.float64)
    mu2 = np.asarray(mu2, dtype=np.float64)
    s1 = np.asarray(sigma1, dtype=np.float64)
    s2 = np.asarray(sigma2, dtype=np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != mu1.shape * 2:
        raise ValueError(f"inconsistent shapes: mu {mu1.shape}/{mu2.shape}, sigma {s1.shape}/{s2.shape}")
    s1 = 0.5 * (s1 + s1.T)
    s2 = 0.5 * (s2 + s2.T)
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    m = root1 @ s2 @ root1
    ev = np.linalg.eigvalsh(0.5 * (m + m.T))
    tr_covmean = float(np.sqrt(np.clip(ev, 0.0, None)).sum())
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)


def frechet_distance(feats_a: Any, feats_b: Any) -> float:
    """Frechet distance between Gaussians fitted to two feature sets ``(N_a, D)``, ``(N_b, D)``.

    Means and unbiased (``N - 1``) covariances in float64, then
    :func:`frechet_distance_from_stats`.  Needs ``N >= 2`` per set.  The result
    is >= 0 up to round-off (about 1e-10 relative for identical sets).
    """
    a = np.asarray(feats_a, dtype=np.float64)
    b = np.asarray(feats_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected (N, D) feature arrays with the same D, got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError("need at least 2 samples per set to estimate a covariance")
    return frechet_distance_from_stats(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


def fvd(
    real: Any,
    fake: Any,
    batch_size: int = 8,
    feature: Feature = "logits",
    resize: Resize = "tf1",
    device: str | torch.device | None = None,
    weights: str | os.PathLike | None = None,
) -> float:
    """Frechet Video Distance between two sets of videos ``(N, T, H, W, 3)`` in ``[0, 1]``.

    See the module docstring for the protocol (16 frames, 224 x 224 bilinear
    upsampling, 400-d logits by default).  ``real`` and ``fake`` may differ in
    ``N`` but should share ``T`` and resolution.
    """
    fa = i3d_features(real, batch_size=batch_size, feature=feature, resize=resize, device=device, weights=weights)
    fb = i3d_features(fake, batch_size=batch_size, feature=feature, resize=resize, device=device, weights=weights)
    return frechet_distance(fa, fb)

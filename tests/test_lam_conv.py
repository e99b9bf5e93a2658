"""Convolutional LAM: shapes, causality (action k sees frames up to k+2 only), the decoder's use of the
action, the global-shift warp, loss weights, and that it finds the actions of a toy game."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from fixtures_genie import colour_switch_clips, one_thread, tiny_lam_cfg  # noqa: F401

from genieworld.config import ConvLAMConfig
from genieworld.eval.metrics import nmi
from genieworld.lam import build_lam
from genieworld.lam_conv import ConvLatentActionModel, shift_images

pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(**conv):
    base = tiny_lam_cfg()
    return replace(base, arch="conv", conv=ConvLAMConfig(channels=8, hidden=32, fdm_channels=8, **conv))


def _lam(seed=0, **conv):
    torch.manual_seed(seed)
    return build_lam(_cfg(**conv)).eval()


def _frames(b=2, t=5, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, t, size, size, 3), generator=g, dtype=torch.uint8)


def test_build_lam_picks_the_architecture_and_rejects_unknown_ones():
    assert isinstance(_lam(), ConvLatentActionModel)
    with pytest.raises(ValueError, match="arch"):
        build_lam(replace(tiny_lam_cfg(), arch="mlp"))
    with pytest.raises(ValueError, match="power-of-two"):
        build_lam(replace(_cfg(), image_size=24))
    with pytest.raises(ValueError, match="centre_weight"):
        build_lam(_cfg(centre_weight=-1.0))


def test_shapes_codebook_lookup_and_errors():
    lam = _lam()
    x = _frames()
    idx, vec = lam.encode_actions(x)
    assert idx.shape == (2, 4) and idx.dtype == torch.long and vec.shape == (2, 4, 8)
    torch.testing.assert_close(vec, lam.action_vectors(idx))
    pred, info = lam.train()(x)
    assert pred.shape == (2, 4, 16, 16, 3)
    assert info["indices"].shape == (2, 4) and info["vectors"].shape == (2, 4, 8)
    assert torch.isfinite(info["loss"]) and info["loss"].requires_grad
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        lam.action_vectors(torch.tensor([4]))
    with pytest.raises(ValueError, match="at least 2 frames"):
        lam.encode_actions(x[:, :1])


def test_action_k_depends_on_frames_k_to_k_plus_2_only():
    """a_k (transition x_k -> x_{k+1}, 0-based) reads x_{k-1}, x_k, x_{k+1}: nothing later, nothing earlier."""
    lam = _lam()
    x = _frames(t=7)
    z = lam.encode_latents(x)
    for j in range(7):  # flip frame j alone: only actions j-1, j, j+1 (those that read it) may move
        y = x.clone()
        y[:, j] = 255 - y[:, j]
        moved = ((lam.encode_latents(y) - z).abs().amax(dim=(0, 2)) > 1e-4).nonzero().flatten().tolist()
        reads = [k for k in range(6) if j in (max(k - 1, 0), k, k + 1)]
        assert moved == reads, (j, moved, reads)


def test_decoder_uses_the_action_and_starts_as_copying():
    lam = _lam()
    prev, cur, _ = lam._windows(_frames(t=3))
    a = torch.randn(prev.shape[0], 8)
    torch.testing.assert_close(lam.fdm(prev, cur, a), cur)  # zero-initialised output: "nothing moves"
    with torch.no_grad():
        for p in lam.fdm.parameters():
            p.add_(0.05 * torch.randn_like(p))
    assert (lam.fdm(prev, cur, a) - lam.fdm(prev, cur, -a)).abs().max() > 1e-3


def test_shift_images_moves_content_by_whole_pixels():
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 3, 4] = 1.0
    # grid coordinates span [-1, 1]: on 8 pixels one pixel is 0.25, and + moves the content left
    y = shift_images(x, torch.tensor([[0.25, 0.0]]))
    assert float(y[0, 0, 3, 3]) == pytest.approx(1.0)
    lam = _lam(global_motion=True)
    prev, cur, _ = lam._windows(_frames(t=3))
    torch.testing.assert_close(lam.fdm(prev, cur, torch.randn(prev.shape[0], 8)), cur)  # zero shift at init


def test_change_weight_puts_the_loss_on_pixels_that_changed():
    lam = _lam(change_weight=10.0)
    cur = torch.zeros(1, 3, 16, 16)
    nxt = cur.clone()
    nxt[:, :, :4, :4] = 1.0
    w = lam._loss_weights(cur, nxt)
    assert float(w[0, 0, 0, 0]) > 5 * float(w[0, 0, 10, 10])
    assert float(w.mean()) == pytest.approx(1.0, rel=1e-5)
    centre = _lam(centre_weight=20.0)._loss_weights(cur, nxt)
    assert float(centre[0, 0, 8, 8]) > 5 * float(centre[0, 0, 0, 0])


def test_finds_the_actions_of_a_toy_game():
    """Next frame's colour is set by the action: the conv LAM recovers the 4 actions (NMI > 0.95)."""
    frames, actions = colour_switch_clips(64, 3, seed=1)
    torch.manual_seed(0)
    lam = build_lam(replace(_cfg(), vq=replace(_cfg().vq, dead_code_steps=100)))
    opt = torch.optim.AdamW(lam.parameters(), lr=3e-3)
    x = torch.from_numpy(frames)
    for _ in range(300):
        _, info = lam(x)
        opt.zero_grad()
        info["loss"].backward()
        opt.step()
    idx, _ = lam.eval().encode_actions(x)
    assert nmi(idx[:, 1].numpy(), actions[:, 1]) > 0.95
    assert len(np.unique(idx.numpy())) == 4


def test_a_one_frame_decoder_ignores_the_frame_before():
    lam = _lam(fdm_frames=1)
    with torch.no_grad():
        for p in lam.fdm.parameters():
            p.add_(0.05 * torch.randn_like(p))
    prev, cur, _ = lam._windows(_frames(t=3))
    a = torch.randn(prev.shape[0], 8)
    torch.testing.assert_close(lam.fdm(prev, cur, a), lam.fdm(torch.rand_like(prev), cur, a))
    assert (lam.fdm(prev, cur, a) - _lam(fdm_frames=2).fdm(prev, cur, a)).abs().max() > 0  # a different model
    with pytest.raises(ValueError, match="fdm_frames"):
        _lam(fdm_frames=3)

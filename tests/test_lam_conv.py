"""Convolutional LAM: shapes, causality (action k sees frames up to k+2 only), the decoder's use of the
action, the InfoNCE loss and its settings, and that it finds the actions of a toy game."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from fixtures_genie import colour_switch_clips, one_thread, tiny_lam_cfg  # noqa: F401

from genieworld.config import ConvLAMConfig
from genieworld.eval.metrics import nmi
from genieworld.lam import build_lam
from genieworld.lam_conv import ConvLatentActionModel

pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(**conv):
    base = tiny_lam_cfg()
    return replace(base, arch="conv", conv=ConvLAMConfig(channels=8, hidden=32, fdm_channels=8, **conv))


def _lam(seed=0, **conv):
    torch.manual_seed(seed)
    return build_lam(_cfg(**conv)).eval()


def _wake_decoder(lam) -> None:
    """Move the decoder off its zero-initialised "nothing moves" start, so every input it takes shows."""
    with torch.no_grad():
        for p in lam.fdm.parameters():
            p.add_(0.05 * torch.randn_like(p))


def _frames(b=2, t=5, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, t, size, size, 3), generator=g, dtype=torch.uint8)


def test_build_lam_picks_the_architecture_and_rejects_unknown_ones():
    assert isinstance(_lam(), ConvLatentActionModel)
    with pytest.raises(ValueError, match="arch"):
        build_lam(replace(tiny_lam_cfg(), arch="mlp"))
    with pytest.raises(ValueError, match="power-of-two"):
        build_lam(replace(_cfg(), image_size=24))
    with pytest.raises(ValueError, match="nce_weight"):
        build_lam(_cfg(nce_weight=-1.0))


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
    _wake_decoder(lam)
    assert (lam.fdm(prev, cur, a) - lam.fdm(prev, cur, -a)).abs().max() > 1e-3


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


def test_nce_loss_picks_the_true_next_frame_and_trains_the_encoder():
    lam = _lam(nce_weight=1.0).train()
    frames = _frames(b=4, t=3)
    info = lam(frames)[1]
    n = 8  # 4 windows x 2 transitions, against 2n candidates: chance is log(2n)
    assert abs(float(info["nce"]) - np.log(2 * n)) < 1.5
    info["loss"].backward()
    assert lam.idm.head[-1].weight.grad.abs().sum() > 0  # through the quantised action
    opt = torch.optim.Adam(lam.parameters(), lr=3e-3)
    for _ in range(60):
        loss = lam._nce_loss(*lam._windows(frames), lam.vq(lam.idm(*lam._windows(frames)))[0])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.5  # it learns to tell this batch's next frames apart
    assert not hasattr(_lam(), "nce_head")  # off by default: no extra weights


def test_nce_crop_embeds_only_the_central_square():
    frames = _frames(b=2, t=3, size=32)
    lam = build_lam(replace(_cfg(nce_weight=1.0, nce_crop=16), image_size=32)).train()
    seen = []
    hook = lam.nce_target.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape)))
    info = lam(frames)[1]
    hook.remove()
    assert seen == [(8, 3, 16, 16)]  # 4 next + 4 current frames, cut to the central 16 px
    assert float(info["nce"]) > 0
    # what lies outside the central square cannot change the loss; what lies inside does
    prev, cur, nxt = lam._windows(frames)
    zq = lam.vq(lam.idm(prev, cur, nxt))[0].detach()
    base = lam._nce_loss(prev, cur, nxt, zq)
    edge, mid = nxt.clone(), nxt.clone()
    edge[..., :8, :] = -edge[..., :8, :]
    mid[..., 12:20, 12:20] = -mid[..., 12:20, 12:20]
    torch.testing.assert_close(lam._nce_loss(prev, cur, edge, zq), base)
    assert not torch.allclose(lam._nce_loss(prev, cur, mid, zq), base)
    with pytest.raises(ValueError, match="nce_crop"):
        _lam(nce_weight=1.0, nce_crop=12)


def test_nce_can_read_the_continuous_latent_instead_of_the_code():
    frames = _frames(b=2, t=3)
    for where in ("quantized", "continuous"):
        lam = _lam(nce_weight=1.0, nce_latent=where).eval()
        with torch.no_grad():
            info = lam(frames)[1]
            w = lam._windows(frames)
            z = lam.idm(*w)
            zq = lam.vq(z)[0]
            on_z, on_zq = lam._nce_loss(*w, z), lam._nce_loss(*w, zq)
        assert not torch.allclose(on_z, on_zq)
        torch.testing.assert_close(info["nce"], on_z if where == "continuous" else on_zq)
    # with the continuous latent, the InfoNCE gradient reaches the encoder without the straight-through code
    lam = _lam(nce_weight=1.0, nce_latent="continuous").train()
    w = lam._windows(frames)
    lam._nce_loss(*w, lam.idm(*w)).backward()
    assert lam.idm.head[-1].weight.grad.abs().sum() > 0


def test_nce_settings_are_validated_by_name():
    from genieworld.config import ConfigError, validate_config

    for conv, words in [(dict(nce_weight=-1.0), "conv.nce_weight"),
                        (dict(nce_crop=8), "conv.nce_crop"),
                        (dict(nce_crop=24), "conv.nce_crop"),
                        (dict(nce_latent="both"), "conv.nce_latent")]:
        with pytest.raises(ConfigError, match=words):
            validate_config(_cfg(**conv), where="lam")


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
    _wake_decoder(lam)
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
    _wake_decoder(lam)
    prev, cur, _ = lam._windows(_frames(t=3))
    a = torch.randn(prev.shape[0], 8)
    torch.testing.assert_close(lam.fdm(prev, cur, a), lam.fdm(torch.rand_like(prev), cur, a))
    assert (lam.fdm(prev, cur, a) - _lam(fdm_frames=2).fdm(prev, cur, a)).abs().max() > 0  # a different model
    with pytest.raises(ValueError, match="fdm_frames"):
        _lam(fdm_frames=3)


def _texture(b=3, size=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.avg_pool2d(torch.rand(b, 3, size, size, generator=g) * 2 - 1, 3, 1, 1)


def test_measure_shift_finds_whole_and_sub_pixel_shifts():
    from genieworld.lam_conv import measure_shift

    big = _texture(4, 48)
    a = big[:, :, 8:40, 8:40]
    shifts = [(2, -5), (-3, 6), (0, 0), (4, 7)]  # (dx, dy): the view moved right 2 px and up 5 px, ...
    b = torch.stack([big[i, :, 8 + dy:40 + dy, 8 + dx:40 + dx] for i, (dx, dy) in enumerate(shifts)])
    torch.testing.assert_close(measure_shift(a, b, 4, 8), torch.tensor(shifts, dtype=torch.float32),
                               atol=0.02, rtol=0)
    sub = shift_images(a, torch.tensor([[1.5, -2.25]]).repeat(4, 1) * 2 / 32)  # pixels -> grid units
    err = (measure_shift(a, sub, 4, 8) - torch.tensor([1.5, -2.25])).abs()
    assert float(err.max()) < 0.3, err


@pytest.mark.parametrize("mode", ["given", "previous"])
def test_camera_shift_moves_the_last_frame_by_the_measured_shift_at_init(mode):
    """Before training, the decoder predicts x_t moved by the camera: this step's measured shift
    ("given") or the previous step's ("previous": the view keeps its velocity)."""
    from genieworld.lam_conv import measure_shift

    lam = _lam(camera_shift=mode, camera_dx=3, camera_dy=3)
    big = _texture(2, 32, seed=1)
    frames = torch.stack([big[:, :, 8 + 2 * k:24 + 2 * k, 8 + k:24 + k] for k in range(3)], 1)  # the view moves (1, 2) px a step
    frames = ((frames.permute(0, 1, 3, 4, 2) + 1) * 127.5).round().to(torch.uint8)
    prev, cur, nxt = lam._windows(frames)
    cam = lam.camera_shift(prev, cur, nxt)
    k = 1  # the second transition of each clip has a real x_{t-1}
    torch.testing.assert_close(cam.view(2, 2, 2)[:, k], torch.tensor([[1.0, 2.0]] * 2), atol=0.1, rtol=0)
    moved = shift_images(cur, cam * 2 / 16)
    torch.testing.assert_close(lam.fdm(prev, cur, torch.randn(prev.shape[0], 8), cam), moved)
    # the moved frame matches x_{t+1} away from the border it had to invent
    err = (moved - nxt).view(2, 2, 3, 16, 16)[:, k, :, 3:-3, 3:-3].abs().max()
    assert float(err) < 0.1
    assert torch.equal(measure_shift(prev, cur, 3, 3), cam) == (mode == "previous")


def test_inertia_decoder_moves_by_a_gain_on_the_previous_shift_and_an_action_term_alone():
    """camera_shift="inertia": base = x_t moved by gain * (x_{t-1} -> x_t shift) + f(action); the measured
    shift does not reach FiLM, so with the same action two different velocities differ only by the move."""
    from genieworld.lam_conv import measure_shift

    lam = _lam(camera_shift="inertia", camera_dx=3, camera_dy=3)
    prev, cur, nxt = lam._windows(_frames(t=3, size=16))
    assert torch.equal(lam.camera_shift(prev, cur, nxt), measure_shift(prev, cur, 3, 3))  # the previous step's
    a = torch.randn(prev.shape[0], 8)
    cam = torch.tensor([[2.0, -2.0]]).expand(prev.shape[0], -1)
    half = shift_images(cur, 0.5 * cam * 2 / 16)  # gain starts at 0.5, the action term at 0
    torch.testing.assert_close(lam.fdm(prev, cur, a, cam), half)
    with torch.no_grad():
        lam.fdm.step_motion[-1].weight.normal_(0, 0.1)  # the action now moves the view
    assert lam.fdm.film[0].in_features == 8  # the action only
    a2 = a.clone()
    a2[0] += 1.0
    assert (lam.fdm(prev, cur, a2, cam) - lam.fdm(prev, cur, a, cam)).abs().max() > 0  # the action matters
    assert lam.fdm.inertia.requires_grad


def test_hidden_centre_is_not_seen_by_the_decoder():
    lam = _lam(fdm_hide_centre=6, camera_shift="given", camera_dx=2, camera_dy=2)
    _wake_decoder(lam)
    prev, cur, _ = lam._windows(_frames(t=3))
    a, cam = torch.randn(prev.shape[0], 8), torch.zeros(prev.shape[0], 2)
    scribbled = [x.clone() for x in (prev, cur)]
    for x in scribbled:
        x[..., 5:11, 5:11] = torch.rand_like(x[..., 5:11, 5:11])
    torch.testing.assert_close(lam.fdm(prev, cur, a, cam), lam.fdm(*scribbled, a, cam))
    outside = cur.clone()
    outside[..., 0, 0] += 1.0
    assert (lam.fdm(prev, outside, a, cam) - lam.fdm(prev, cur, a, cam)).abs().max() > 0


def test_next_frame_outside_the_centre_reaches_the_decoder_and_the_inside_does_not():
    lam = _lam(fdm_next_outside=6)
    _wake_decoder(lam)
    prev, cur, nxt = lam._windows(_frames(t=3))
    a = torch.randn(prev.shape[0], 8)
    inside = nxt.clone()
    inside[..., 5:11, 5:11] = torch.rand_like(inside[..., 5:11, 5:11])  # the 6-px centre square of 16
    torch.testing.assert_close(lam.fdm(prev, cur, a, None, nxt), lam.fdm(prev, cur, a, None, inside))
    outside = nxt.clone()
    outside[..., 0, 0] += 1.0
    assert (lam.fdm(prev, cur, a, None, outside) - lam.fdm(prev, cur, a, None, nxt)).abs().max() > 0
    with pytest.raises(ValueError, match="fdm_next_outside"):
        lam.fdm(prev, cur, a)
    loss = lam.train()(_frames(t=3))[1]["loss"]  # the training forward hands x_{t+1} over
    assert torch.isfinite(loss)


def test_shift_rank_loss_prefers_the_true_next_frame_to_its_moves():
    lam = _lam(shift_rank_weight=0.5)
    prev, cur, nxt = lam._windows(_frames(t=3))
    right = lam._shift_rank_loss(nxt, cur, nxt)  # a perfect prediction
    moved = shift_images(nxt, nxt.new_tensor([2 / 16, 0.0]).expand(len(nxt), 2))  # 1 px off
    wrong = lam._shift_rank_loss(moved, cur, nxt)
    assert float(right.detach()) < 0.1 < float(wrong.detach())
    info = lam.train()(_frames(t=3))[1]
    assert "shift_rank" in info and torch.isfinite(info["loss"])
    info["loss"].backward()
    assert lam.log_rank_temp.grad is not None and lam.log_rank_temp.grad.abs() > 0
    assert _lam().log_rank_temp is None  # off by default: no extra parameter, the same weights as before


def test_best_code_loss_pulls_the_latent_toward_the_code_that_draws_the_next_frame_best():
    lam = _lam(best_code_weight=1.0, best_code_samples=64)
    _wake_decoder(lam)
    prev, cur, nxt = lam._windows(_frames(t=3))
    cb = lam.vq.normalized_codebook().detach()
    with torch.no_grad():
        err = torch.stack([((lam.fdm(prev, cur, c.expand(len(cur), -1)) - nxt) ** 2).mean((1, 2, 3)) for c in cb], 1)
    best, worst = err.argmin(1), err.argmax(1)
    assert (best != worst).all()
    at_best = lam._best_code_loss(prev, cur, nxt, cb[best], None)  # the latent on the code that draws x_{t+1} best
    at_worst = lam._best_code_loss(prev, cur, nxt, cb[worst], None)
    assert float(at_best.detach()) + 1.0 < float(at_worst.detach())
    lam.train()
    info = lam(_frames(t=3))[1]
    info["loss"].backward()
    assert "best_code" in info and lam.idm.head[-1].weight.grad.abs().sum() > 0
    assert "best_code" not in _lam().train()(_frames(t=3))[1]  # off by default


def test_slow_loss_is_the_distance_between_consecutive_latents():
    lam = _lam(slow_weight=1.0).train()
    frames = _frames(t=4)
    info = lam(frames)[1]
    z = torch.nn.functional.normalize(lam.encode_latents(frames).detach(), dim=-1)
    z = z[:, 1:]  # the first transition, without its x_{t-1}, is left out
    expected = (z[:, 1:] - z[:, :-1]).pow(2).sum(-1).mean()
    assert torch.allclose(info["slow"], expected, atol=1e-5) and float(expected) > 0
    still = frames[:, :1].expand(-1, 4, -1, -1, -1)  # nothing moves: every transition is the same, so is its latent
    assert float(lam(still)[1]["slow"]) < 1e-8
    with pytest.raises(ValueError, match="slow_weight"):
        lam(_frames(t=2))
    assert "slow" not in _lam().train()(frames)[1]


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


def test_camera_settings_are_validated_by_name():
    from genieworld.config import ConfigError, validate_config

    for conv, words in [(dict(camera_shift="sideways"), "one of"),
                        (dict(camera_shift="given", camera_dx=5), "conv.camera_dx"),
                        (dict(camera_shift="given", global_motion=True), "conv.camera_shift"),
                        (dict(fdm_hide_centre=17), "conv.fdm_hide_centre"),
                        (dict(fdm_next_outside=17), "conv.fdm_next_outside"),
                        (dict(shift_rank_weight=-1.0), "conv.shift_rank_weight"),
                        (dict(best_code_weight=-1.0), "conv.best_code_weight"),
                        (dict(best_code_samples=0), "conv.best_code_samples"),
                        (dict(slow_weight=-1.0), "conv.slow_weight"),
                        (dict(nce_weight=-1.0), "conv.nce_weight"),
                        (dict(nce_crop=8), "conv.nce_crop"),
                        (dict(nce_crop=24), "conv.nce_crop"),
                        (dict(nce_latent="both"), "conv.nce_latent")]:
        with pytest.raises(ConfigError, match=words):
            validate_config(_cfg(**conv), where="lam")


def test_persistence_loss_scores_the_frame_after_next_with_the_same_action():
    lam = _lam(persist_weight=0.5).train()
    x = _frames(t=4)
    _, info = lam(x)
    assert "persist_mse" in info
    torch.testing.assert_close(info["loss"], info["mse"] + info["vq_loss"] + 0.5 * info["persist_mse"])
    # only x_2.. are targets of the persistence loss: x_{k+2} for k = 0, 1
    y = x.clone()
    y[:, 3] = 255 - y[:, 3]
    assert float(lam(y)[1]["persist_mse"]) != float(info["persist_mse"])
    # the action of x_0 -> x_1 gets a gradient from predicting x_2 (through the forward model)
    _wake_decoder(lam)
    prev, cur, nxt = lam._windows(x)
    zq = lam.vq(lam.idm(prev, cur, nxt))[0].detach().requires_grad_(True)
    lam._persistence_loss(cur, nxt, zq, 2).backward()
    g = zq.grad.view(2, 3, -1).abs().sum(-1)
    assert bool((g[:, :2] > 0).all()) and bool((g[:, 2] == 0).all())  # the last transition has no x_{k+2}
    with pytest.raises(ValueError, match="at least 3 frames"):
        lam(x[:, :2])
    assert "persist_mse" not in _lam().train()(x)[1]

"""Latent action model: shapes, causality, action/frame alignment, collapse guard."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from fixtures_genie import one_thread, colour_switch_clips, tiny_lam_cfg

from genieworld.lam import LatentActionModel

pytestmark = pytest.mark.usefixtures("one_thread")


def _lam(seed=0, **kw):
    torch.manual_seed(seed)
    return LatentActionModel(tiny_lam_cfg(layers=2, **kw)).eval()


def _frames(b=2, t=5, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, t, size, size, 3), generator=g, dtype=torch.uint8)


def test_shapes_and_codebook_lookup():
    lam = _lam()
    x = _frames()
    idx, vec = lam.encode_actions(x)
    assert idx.shape == (2, 4) and idx.dtype == torch.long
    assert vec.shape == (2, 4, 8)
    assert int(idx.min()) >= 0 and int(idx.max()) < lam.num_actions
    torch.testing.assert_close(vec, lam.action_vectors(idx))
    torch.testing.assert_close(lam.action_vectors(torch.arange(4)), F.normalize(lam.vq.codebook, dim=-1))
    pred, info = lam.train()(x)
    pred = pred.detach()
    assert pred.shape == (2, 4, 16, 16, 3) and float(pred.min()) >= 0 and float(pred.max()) <= 1
    assert info["indices"].shape == (2, 4) and info["vectors"].shape == (2, 4, 8)
    assert torch.isfinite(info["loss"]) and info["loss"].requires_grad
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        lam.action_vectors(torch.tensor([4]))
    with pytest.raises(ValueError, match="at least 2 frames"):
        lam.encode_actions(x[:, :1])
    with pytest.raises(ValueError, match="16, 16, 3"):
        lam.encode_actions(torch.zeros(1, 3, 8, 8, 3, dtype=torch.uint8))


def test_pixels_are_centred_before_the_patch_embedding():
    lam = _lam()
    grey = torch.full((1, 2, 16, 16, 3), 0.5)
    assert torch.count_nonzero(lam._patches(grey)) == 0
    assert float(lam._patches(torch.zeros(1, 2, 16, 16, 3)).min()) == -1.0


@pytest.mark.parametrize("difference", [False, True])
def test_encoder_is_causal_action_k_sees_frames_up_to_k_plus_1(difference):
    """a_k (transition x_k -> x_{k+1}, 0-based) depends on frames 0..k+1 only, and does depend on x_{k+1}."""
    lam = _lam(latent_difference=difference)
    x = _frames(t=6)
    z = lam.encode_latents(x)
    for j in range(1, 6):  # change frames j.. : actions 0..j-2 must not move, action j-1 must
        y = x.clone()
        y[:, j:] = 255 - y[:, j:]
        zy = lam.encode_latents(y)
        torch.testing.assert_close(zy[:, : j - 1], z[:, : j - 1], rtol=0, atol=1e-5)
        assert (zy[:, j - 1] - z[:, j - 1]).abs().max() > 1e-3


def test_decoder_alignment_action_k_only_affects_prediction_of_frame_k_plus_1_onwards():
    lam = _lam()
    x = _frames(t=6)
    _, vec = lam.encode_actions(x)
    base = lam.decode(x, vec)  # index k predicts frame k+1
    for k in range(5):
        v2 = vec.clone()
        v2[:, k] = -v2[:, k]
        pred = lam.decode(x, v2)
        torch.testing.assert_close(pred[:, :k], base[:, :k], rtol=0, atol=1e-6)
        assert (pred[:, k] - base[:, k]).abs().max() > 1e-4, f"a_{k} must change the prediction of frame {k + 1}"
    # and the prediction of frame k+1 uses frame k (the decoder is causal over its input frames too)
    for j in range(5):
        y = x.clone()
        y[:, j] = 255 - y[:, j]
        pred = lam.decode(y, vec)
        torch.testing.assert_close(pred[:, :j], base[:, :j], rtol=0, atol=1e-6)
        assert (pred[:, j] - base[:, j]).abs().max() > 1e-4


def test_latents_are_not_collapsed_at_initialisation():
    """Regression: without pre-VQ standardisation all latent actions start near-parallel (cos > 0.999)."""
    lam = _lam().train()
    frames, _ = colour_switch_clips(8, 5)
    with torch.no_grad():
        z = F.normalize(lam.encode_latents(torch.from_numpy(frames)).reshape(-1, 8), dim=-1)
    cos = z @ z.t()
    off_diag = cos[~torch.eye(len(z), dtype=torch.bool)]
    assert float(off_diag.mean()) < 0.5
    _, info = lam(torch.from_numpy(frames))
    assert int(info["codes_used"]) >= 3


def test_single_transition_batch_trains_and_inference_is_batch_independent():
    lam = _lam().train()
    x = _frames(b=1, t=2)
    _, info = lam(x)  # one latent vector: no batch statistics, must not crash
    assert torch.isfinite(info["loss"])
    lam.eval()
    x4 = _frames(b=4, t=3, seed=3)
    idx_all, _ = lam.encode_actions(x4)
    idx_one, _ = lam.encode_actions(x4[2:3])
    assert torch.equal(idx_all[2:3], idx_one)


def test_context_masking_hides_decoder_frames_after_the_first_in_training_only():
    """With context_mask_rate=1 a training-mode prediction depends on frame 1 and the actions only."""
    lam = _lam(context_mask_rate=1.0)
    x = _frames(t=6)
    _, vec = lam.encode_actions(x)
    y = x.clone()
    y[:, 1:] = 255 - y[:, 1:]
    lam.train()
    torch.testing.assert_close(lam.decode(y, vec), lam.decode(x, vec), rtol=0, atol=1e-6)
    z = x.clone()
    z[:, 0] = 255 - z[:, 0]
    assert (lam.decode(z, vec) - lam.decode(x, vec)).abs().max() > 1e-4  # frame 1 is never hidden
    lam.eval()  # inference sees every frame again
    assert (lam.decode(y, vec)[:, 1:] - lam.decode(x, vec)[:, 1:]).abs().max() > 1e-4
    with pytest.raises(ValueError, match="context_mask_rate"):
        _lam(context_mask_rate=1.5)


def test_difference_readout_cancels_what_a_static_clip_shares():
    """latent_difference: two clips that each show one unchanging (but different) picture get the
    same latent actions; the plain readout tells the two pictures apart."""
    still = _frames(b=2, t=1).expand(2, 5, 16, 16, 3).contiguous()
    with torch.no_grad():
        same = _lam(latent_difference=True).encode_latents(still)
        plain = _lam(latent_difference=False).encode_latents(still)
    torch.testing.assert_close(same[0], same[1], rtol=0, atol=1e-5)
    assert (plain[0] - plain[1]).abs().max() > 1e-3


def test_residual_decoder_predicts_the_change_from_the_last_visible_frame():
    """residual_decoder: with a zero output layer the prediction of x_{k+2} is exactly x_{k+1}
    (or, with context masking in training, the last frame the decoder was allowed to see)."""
    lam = _lam(residual_decoder=True)
    torch.nn.init.zeros_(lam.dec_out.weight)
    torch.nn.init.zeros_(lam.dec_out.bias)
    x = _frames(t=6)
    _, vec = lam.encode_actions(x)
    torch.testing.assert_close(lam.decode(x, vec), x[:, :-1].float() / 255, rtol=0, atol=1e-6)
    plain = _lam(residual_decoder=False)
    torch.nn.init.zeros_(plain.dec_out.weight)
    torch.nn.init.zeros_(plain.dec_out.bias)
    torch.testing.assert_close(plain.decode(x, vec), torch.full_like(x[:, :-1], 0.5, dtype=torch.float32))
    masked = _lam(residual_decoder=True, context_mask_rate=1.0).train()
    torch.nn.init.zeros_(masked.dec_out.weight)
    torch.nn.init.zeros_(masked.dec_out.bias)
    first = (x[:, :1].float() / 255).expand(-1, 5, -1, -1, -1)
    torch.testing.assert_close(masked.decode(x, vec), first, rtol=0, atol=1e-6)  # only frame 1 is visible

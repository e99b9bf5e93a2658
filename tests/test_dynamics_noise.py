"""Context-noise training (DynamicsConfig.context_noise_max): only the clean context frames are corrupted, at
the level the model is told; targets stay the true tokens; play announces context_noise_play; the KV-cached
step equals the full pass; an old config without the fields loads as before."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from genieworld.config import DynamicsConfig, STConfig
from genieworld.dynamics import CONTEXT_NOISE_BUCKETS, DynamicsModel


def _cfg(**kw) -> DynamicsConfig:
    base = dict(num_codes=32, tokens_per_frame=16, action_dim=8, max_frames=4, action_injection="prepend",
                transformer=STConfig(num_layers=1, d_model=32, num_heads=2, head_dim=16, qk_norm=True),
                train_clean_prefix=True, prev_frame_warp=1, context_noise_max=0.5)
    base.update(kw)
    return DynamicsConfig(**base)


def test_only_the_clean_context_is_corrupted_and_the_level_reaches_the_model(monkeypatch):
    torch.manual_seed(0)
    m = DynamicsModel(_cfg())
    seen = {}
    real_forward = DynamicsModel.forward

    def spy(self, tokens, actions, prev_btn=None, noise_level_b=None, drop_action_bt=None):
        seen.update(tokens=tokens.clone(), prev=prev_btn.clone(), level=noise_level_b.clone())
        return real_forward(self, tokens, actions, prev_btn=prev_btn, noise_level_b=noise_level_b,
                            drop_action_bt=drop_action_bt)

    monkeypatch.setattr(DynamicsModel, "forward", spy)
    tok = torch.randint(0, 32, (64, 4, 16))
    loss, info = m.loss(tok, torch.randn(64, 3, 8))
    mask, inputs, level = info["mask"], seen["tokens"], seen["level"]
    assert ((level >= 0) & (level <= 0.5)).all() and level.std() > 0.05
    context = ~mask.any(dim=2)  # (B, T): frames given whole
    changed = (inputs != tok) & ~mask
    assert not (changed & ~context[:, :, None]).any()  # visible tokens of target frames are the true ones
    assert (inputs[mask] == m.mask_id).all()
    share = changed.float().sum((1, 2)) / (context.float().sum(1) * 16).clamp_min(1)
    # the share of context tokens replaced follows the sample's level (a random code equals the true one 1/32)
    assert torch.corrcoef(torch.stack([share, level]))[0, 1] > 0.8
    # the warp copies the corrupted previous frame (what play's own frames look like)
    torch.testing.assert_close(seen["prev"][:, 1:], torch.where(mask[:, :-1], tok[:, :-1], inputs[:, :-1]))
    loss.backward()
    assert m.noise_embed.weight.grad.abs().sum() > 0


def test_cached_play_equals_the_full_pass_at_the_play_level():
    torch.manual_seed(1)
    m = DynamicsModel(_cfg(context_noise_play=0.2)).eval()
    tok, act = torch.randint(0, 32, (2, 4, 16)), torch.randn(2, 3, 8)
    full = m(tok, act)
    assert not torch.allclose(full, m(tok, act, noise_level_b=torch.zeros(2)))  # the level matters
    cache = m.new_cache(2)
    steps = [m.step_logits(tok[:, k], None if k == 0 else act[:, k - 1], cache, advance=True) for k in range(4)]
    torch.testing.assert_close(torch.stack(steps, 1), full, atol=1e-5, rtol=1e-5)


def test_noise_buckets_and_off_by_default():
    m = DynamicsModel(_cfg())
    b = m.noise_bucket(torch.tensor([0.0, 0.25, 0.4999, 0.5]))
    assert b.tolist() == [0, CONTEXT_NOISE_BUCKETS // 2, CONTEXT_NOISE_BUCKETS - 1, CONTEXT_NOISE_BUCKETS - 1]
    off = DynamicsModel(_cfg(context_noise_max=0.0))
    assert off.noise_embed is None and not any("noise" in k for k in off.state_dict())
    with pytest.raises(ValueError):
        DynamicsModel(_cfg(context_noise_max=1.5))
    assert dataclasses.asdict(DynamicsConfig())["context_noise_max"] == 0.0

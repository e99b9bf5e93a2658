"""Self-forcing (DynamicsConfig.self_forcing): the context of a share of the training samples is the model's own
rollout, made exactly as play makes frames (KV cache, the action that produced each frame), the last frame stays
real, the targets stay real, and an own past is announced at play's noise level with no random codes added."""

from __future__ import annotations

from dataclasses import replace

import torch

from genieworld.config import DynamicsConfig, SamplingConfig, STConfig
from genieworld.dynamics import DynamicsModel
from genieworld.sampling import sample_frame
from genieworld.tokenizer import VideoTokenizer

from fixtures_genie import tiny_lam_cfg, tiny_tokenizer_cfg


def _cfg(**kw) -> DynamicsConfig:
    base = dict(num_codes=32, tokens_per_frame=16, action_dim=8, max_frames=4, action_injection="prepend",
                transformer=STConfig(num_layers=2, d_model=32, num_heads=2, head_dim=16, qk_norm=True),
                train_clean_prefix=True, prev_frame_warp=1, context_noise_max=0.5, self_forcing=0.5,
                self_forcing_steps=3)
    base.update(kw)
    return DynamicsConfig(**base)


def _task(**kw):
    from genieworld.train.dynamics_task import DynamicsTask

    torch.manual_seed(0)
    tok = VideoTokenizer(tiny_tokenizer_cfg(max_frames=1))
    sampling = SamplingConfig(temperature=0.0, order="confidence", context_frames=4)
    return DynamicsTask(tok, tiny_lam_cfg(), _cfg(**kw), sampling=sampling)


def test_the_own_rollout_is_plays_rollout_under_the_windows_actions():
    task = _task(self_forcing=1.0)
    dyn = task.dynamics
    tokens, actions = torch.randint(0, 32, (3, 4, 16)), torch.randn(3, 3, 8)
    own = task.own_rollout(tokens, actions)
    assert torch.equal(own[:, 0], tokens[:, 0]) and torch.equal(own[:, 3], tokens[:, 3])  # last frame: no one's context
    assert (own[:, 1:3] != tokens[:, 1:3]).any()
    # reference: the full pass without a cache, frame k made after the action a_{k-1}
    dyn.eval()
    ref = tokens[:, :1]
    for k in (1, 2):
        def logits_fn(tok, ref=ref, k=k):
            return dyn(torch.cat([ref, tok[:, None]], 1), actions[:, :k])[:, -1]
        new = sample_frame(logits_fn, 3, 16, dyn.mask_id, 3, 0.0, torch.Generator(), "cosine", order="confidence")
        ref = torch.cat([ref, new[:, None]], 1)
    assert torch.equal(own[:, 1:3], ref[:, 1:3])
    assert task.dynamics.training is False  # own_rollout restores the mode it found (eval here)


def test_a_share_of_the_samples_is_rolled_out_and_the_rest_stays_real():
    task = _task(self_forcing=0.5)
    task.train()
    tokens, actions = torch.randint(0, 32, (64, 4, 16)), torch.randn(64, 3, 8)
    own = task.own_rollout(tokens, actions)
    rolled = (own != tokens).flatten(1).any(1)
    assert 16 <= int(rolled.sum()) <= 48
    assert task.dynamics.training
    off = _task(self_forcing=0.0)
    calls = []
    off.own_rollout = lambda *a: calls.append(a)
    off.train()
    off.training_step({"frames": torch.randint(0, 256, (2, 4, 16, 16, 3), dtype=torch.uint8)}, 0)
    assert calls == []


def test_own_context_replaces_the_clean_frames_only_and_gets_plays_level(monkeypatch):
    torch.manual_seed(0)
    m = DynamicsModel(_cfg(context_noise_play=0.1))
    seen = {}
    real_forward = DynamicsModel.forward

    def spy(self, tokens, actions, prev_btn=None, noise_level_b=None):
        seen.update(tokens=tokens.clone(), prev=prev_btn.clone(), level=noise_level_b.clone())
        return real_forward(self, tokens, actions, prev_btn=prev_btn, noise_level_b=noise_level_b)

    monkeypatch.setattr(DynamicsModel, "forward", spy)
    tok = torch.randint(0, 32, (64, 4, 16))
    own = tok.clone()
    rolled = torch.arange(64) % 2 == 0
    own[rolled, 1:3] = torch.randint(0, 32, (32, 2, 16))
    loss, info = m.loss(tok, torch.randn(64, 3, 8), own_btn=own)
    mask, inputs, level = info["mask"], seen["tokens"], seen["level"]
    clean = ~mask.any(dim=2)
    want = torch.where(clean[:, :, None], own, tok)  # rolled samples: exactly their own past, no noise
    assert torch.equal(torch.where(mask, tok, inputs)[rolled], want[rolled])
    assert (inputs[mask] == m.mask_id).all()
    assert torch.allclose(level[rolled], torch.full((32,), 0.1))
    assert level[~rolled].std() > 0.05  # the others keep their random noise level
    torch.testing.assert_close(seen["prev"][rolled][:, 1:], want[rolled][:, :-1])  # the warp copies the own past
    loss.backward()


def test_bad_own_tokens_are_refused():
    m = DynamicsModel(_cfg())
    tok = torch.randint(0, 32, (2, 4, 16))
    for bad in (tok[:, :3], torch.full_like(tok, m.mask_id)):
        try:
            m.loss(tok, torch.randn(2, 3, 8), own_btn=bad)
        except ValueError:
            continue
        raise AssertionError("accepted bad own tokens")
    assert replace(_cfg(), self_forcing=0.0) != _cfg() and DynamicsConfig().self_forcing == 0.0

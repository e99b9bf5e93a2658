"""``DynamicsConfig.prev_frame_warp``: each frame's input gets the previous frame shifted by an offset
its action chooses. Play (KV cache, sliding window, reference path) must compute what training does."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from fixtures_genie import one_thread, predict_last_frame_after_training, tiny_dyn_cfg, tiny_genie  # noqa: F401  (fixture)

from genieworld.config import ConfigError, validate_config
from genieworld.dynamics import DynamicsModel, PrevFrameWarp

pytestmark = pytest.mark.usefixtures("one_thread")


def _randomise_warp(dyn: DynamicsModel, seed: int = 0) -> None:
    """The warp starts switched off (zero output map); give it weights so the tests can see it."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in dyn.warp.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)


def _dyn(injection="add", warp=1, **kw):
    torch.manual_seed(0)
    dyn = DynamicsModel(tiny_dyn_cfg(injection=injection, warp=warp, **kw)).eval()
    _randomise_warp(dyn)
    return dyn


def test_warp_copies_the_previous_frame_from_the_chosen_offset_and_starts_switched_off():
    w = PrevFrameWarp(d_model=2, tokens_per_frame=16, radius=1)
    w.reset_parameters()
    prev = torch.randn(1, 2, 16, 2)
    act = torch.randn(1, 2, 2)
    assert w(prev, act).abs().max() == 0  # a new model is the paper's
    with torch.no_grad():
        w.kernel.bias[5] = 50.0  # offset index 5 of the 3x3 window: row 1 (dy = 0), column 2 (dx = +1)
        w.proj.weight.copy_(torch.eye(2))
    out = w(prev, act).reshape(1, 2, 4, 4, 2)
    grid = prev.reshape(1, 2, 4, 4, 2)
    torch.testing.assert_close(out[:, :, :, :3], grid[:, :, :, 1:])  # out[y, x] = prev[y, x + 1]
    torch.testing.assert_close(out[:, :, :, 3], torch.zeros_like(out[:, :, :, 3]), atol=1e-6, rtol=0)  # outside: zero
    assert w.weights(act).shape == (1, 2, 3, 3)


@pytest.mark.parametrize("motion", [False, True])
@pytest.mark.parametrize("injection", ["add", "prepend"])
@pytest.mark.parametrize("window", [8, 3])
def test_warp_logits_equal_on_the_kv_cache_and_in_the_full_pass(injection, window, motion):
    dyn = _dyn(injection, max_frames=window, motion=motion)
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 32, (2, 7, 16), generator=g)
    act = torch.randn(2, 6, 8, generator=g)
    act_btd = dyn.frame_action_embeddings(act, 7)
    cache = dyn.new_cache(2, window=window)
    for t in range(7):
        a = None if t == 0 else act[:, t - 1]
        step = dyn.step_logits(tokens[:, t], a, cache, advance=True)
        lo = max(0, t - 2 * (window - 1))  # every frame that can reach frame t through 2 layers of the band
        seq = tokens[:, lo: t + 1]
        prev = dyn.prev_tokens(seq, tokens[:, lo - 1] if lo > 0 else None)
        prev2 = dyn.prev_tokens(prev, tokens[:, lo - 2] if lo > 1 else None)
        full = dyn.forward_embedded(seq, act_btd[:, lo: t + 1], window=window, prev_btn=prev, prev2_btn=prev2)[:, -1]
        torch.testing.assert_close(step, full, rtol=1e-4, atol=1e-4)
        if motion and lo > 1:  # the window's first frame reads the frame two before the window
            right = dyn.forward_embedded(seq, act_btd[:, lo: t + 1], window=window, prev_btn=prev, prev2_btn=prev2)
            wrong = dyn.forward_embedded(seq, act_btd[:, lo: t + 1], window=window, prev_btn=prev)
            assert (wrong[:, 0] - right[:, 0]).abs().max() > 1e-3
    clone = cache.clone()
    assert torch.equal(clone.extra["prev_tokens"], tokens[:, -1])
    assert ("prev2_tokens" in clone.extra) == motion
    if motion:
        assert torch.equal(clone.extra["prev2_tokens"], tokens[:, -2])
    cache.reset()
    assert cache.extra == {} and "prev_tokens" in clone.extra


def test_warp_is_causal_and_reads_only_the_previous_frame():
    dyn = _dyn()
    g = torch.Generator().manual_seed(2)
    tokens = torch.randint(0, 32, (2, 5, 16), generator=g)
    act = torch.randn(2, 4, 8, generator=g)
    base = dyn(tokens, act)
    for t in range(5):
        t2 = tokens.clone()
        t2[:, t] = (t2[:, t] + 7) % 32
        out = dyn(t2, act)
        torch.testing.assert_close(out[:, :t], base[:, :t], rtol=0, atol=1e-5)
    # the warp path alone: a different previous frame changes frame 3's input, nothing before it
    prev = dyn.prev_tokens(tokens)
    p2 = prev.clone()
    p2[:, 3] = (p2[:, 3] + 7) % 32
    a = dyn.forward(tokens, act, prev_btn=prev)
    b = dyn.forward(tokens, act, prev_btn=p2)
    torch.testing.assert_close(a[:, :3], b[:, :3], rtol=0, atol=1e-5)
    assert (a[:, 3] - b[:, 3]).abs().max() > 1e-4


def test_warp_training_copies_the_clean_previous_frame_and_trains_the_warp():
    torch.manual_seed(0)
    dyn = DynamicsModel(tiny_dyn_cfg(warp=1)).train()
    tokens = torch.randint(0, 32, (4, 6, 16))
    loss, info = dyn.loss(tokens, torch.randn(4, 5, 8))
    loss.backward()
    assert torch.isfinite(loss)
    assert dyn.warp.proj.weight.grad.abs().sum() > 0  # zero-initialised, but it learns from the first step


@pytest.mark.parametrize("injection,motion", [("add", False), ("prepend", False), ("add", True)])
def test_world_rollouts_with_the_warp_match_on_cache_reference_and_bounded_history(injection, motion):
    genie = tiny_genie(injection=injection, context=3, steps=2, warp=1, motion=motion)
    _randomise_warp(genie.dynamics)
    prompt = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    worlds = [genie.world(prompt, seed=5, use_cache=True), genie.world(prompt, seed=5, use_cache=False),
              genie.world(prompt, seed=5, use_cache=False, max_history=2)]
    for a in [0, 3, 1, 1, 2, 0, 3, 2]:
        frames = [w.step(a) for w in worlds]
        assert np.array_equal(frames[0], frames[1]) and np.array_equal(frames[0], frames[2])
    assert torch.equal(worlds[0].tokens, worlds[1].tokens)


def test_warp_config_is_validated():
    with pytest.raises(ConfigError, match="prev_frame_warp"):
        validate_config(replace(tiny_dyn_cfg(), tokens_per_frame=15, prev_frame_warp=1))
    with pytest.raises(ConfigError, match="prev_frame_warp"):
        validate_config(replace(tiny_dyn_cfg(), prev_frame_warp=-1))
    validate_config(replace(tiny_dyn_cfg(), prev_frame_warp=2))
    with pytest.raises(ConfigError, match="warp_motion"):
        validate_config(replace(tiny_dyn_cfg(), warp_motion=True))
    validate_config(replace(tiny_dyn_cfg(), prev_frame_warp=1, warp_motion=True))


def test_velocity_finds_the_last_shift_and_steers_a_new_warp_along_it():
    """``warp_motion``: v_t scores each token offset by how well frame t-2, shifted, explains frame t-1.
    A new warp (identity motion map) then already leans toward repeating that shift; unknown frames
    (mask ids: a rollout's first two frames) give no evidence."""
    w = PrevFrameWarp(d_model=2, tokens_per_frame=36, radius=1, motion=True)
    w.reset_parameters()
    g = torch.Generator().manual_seed(0)
    prev2 = torch.randint(0, 50, (1, 1, 6, 6), generator=g)
    prev = torch.cat([prev2[..., 1:], torch.randint(0, 50, (1, 1, 6, 1), generator=g)], -1)  # content moved left
    v = w.velocity(prev.flatten(2), prev2.flatten(2), mask_id=99)
    assert v.shape == (1, 1, 9) and int(v.argmax()) == 5  # row 1 (dy = 0), column 2 (dx = +1): prev[p] = prev2[p + (0, 1)]
    weights = w.weights(torch.zeros(1, 1, 2), v).detach()
    assert int(weights.flatten(2).argmax()) == 5 and float(weights[0, 0, 1, 2]) > 0.5
    unknown = torch.full_like(prev2.flatten(2), 99)
    assert w.velocity(prev.flatten(2), unknown, mask_id=99).abs().max() == 0
    with pytest.raises(ValueError, match="velocity"):
        w.weights(torch.zeros(1, 1, 2))


def test_warp_with_motion_learns_to_follow_a_scroll_its_actions_do_not_announce():
    """Each toy clip scrolls one column per frame in a direction of its own (left, right or none) while
    its actions are noise. After training, the motion warp's chosen offset is the clip's scroll on
    frames with two known frames before them; the action-only warp, which cannot know it, picks the
    right offset on at most about a third of them (the share of any one direction)."""
    g = torch.Generator().manual_seed(0)

    def batch(n, t=4):
        s = torch.randint(0, 3, (n, 1, 1), generator=g)
        frames = [torch.randint(0, 32, (n, 4, 4), generator=g)]
        for _ in range(t - 1):
            f, new = frames[-1], torch.randint(0, 32, (n, 4, 1), generator=g)
            left, right = torch.cat([f[:, :, 1:], new], 2), torch.cat([new, f[:, :, :-1]], 2)
            frames.append(torch.where(s == 0, left, torch.where(s == 2, right, f)))
        return torch.stack(frames, 1).flatten(2), torch.eye(8)[torch.randint(0, 3, (n, t - 1), generator=g)], s

    def follows(motion):
        torch.manual_seed(0)
        dyn = DynamicsModel(replace(tiny_dyn_cfg(max_frames=4, warp=1, motion=motion), train_clean_prefix=True))
        opt = torch.optim.AdamW(dyn.parameters(), lr=2e-3)
        for _ in range(150):
            tok, act, _ = batch(16)
            loss, _ = dyn.loss(tok, act)
            opt.zero_grad()
            loss.backward()
            opt.step()
        tok, act, s = batch(256)
        with torch.no_grad():
            prev = dyn.prev_tokens(tok)
            vel = dyn.warp.velocity(prev, dyn.prev_tokens(prev), dyn.mask_id) if motion else None
            w = dyn.warp.weights(dyn.frame_action_embeddings(act, 4), vel)[:, 2:]  # frames 3, 4
        # offset index: row 1 (dy = 0), column 0 / 1 / 2 for content from the left / still / from the right
        want = torch.tensor([5, 4, 3])[s.flatten()][:, None].expand(-1, 2)
        return (w.flatten(2).argmax(-1) == want).float().mean().item()

    action_only, with_motion = follows(False), follows(True)
    assert with_motion > 0.9 and action_only < 0.5, (action_only, with_motion)

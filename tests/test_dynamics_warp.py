"""``DynamicsConfig.prev_frame_warp``: each frame's input gets the previous frame shifted by an offset
its action chooses. Play (KV cache, sliding window, reference path) must compute what training does."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from fixtures_genie import one_thread, tiny_dyn_cfg, tiny_genie  # noqa: F401  (fixture)

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


@pytest.mark.parametrize("injection", ["add", "prepend"])
@pytest.mark.parametrize("window", [8, 3])
def test_warp_logits_equal_on_the_kv_cache_and_in_the_full_pass(injection, window):
    dyn = _dyn(injection, max_frames=window)
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
        full = dyn.forward_embedded(seq, act_btd[:, lo: t + 1], window=window, prev_btn=prev)[:, -1]
        torch.testing.assert_close(step, full, rtol=1e-4, atol=1e-4)
    clone = cache.clone()
    assert torch.equal(clone.extra["prev_tokens"], tokens[:, -1])
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


@pytest.mark.parametrize("injection", ["add", "prepend"])
def test_world_rollouts_with_the_warp_match_on_cache_reference_and_bounded_history(injection):
    genie = tiny_genie(injection=injection, context=3, steps=2, warp=1)
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


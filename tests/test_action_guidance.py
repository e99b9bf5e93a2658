"""Classifier-free guidance on actions: action dropout in training, guided logits in sampling."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from fixtures_genie import one_thread, tiny_dyn_cfg, tiny_genie  # noqa: F401

from genieworld.dynamics import DynamicsModel

pytestmark = pytest.mark.usefixtures("one_thread")


def test_action_dropout_replaces_frame_actions_by_no_action():
    torch.manual_seed(0)
    dyn = DynamicsModel(replace(tiny_dyn_cfg(injection="prepend", max_frames=4), action_dropout=0.5)).eval()
    tokens = torch.randint(0, 32, (2, 4, 16))
    actions = torch.randn(2, 3, dyn.cfg.action_dim)
    drop = torch.tensor([[False, True, False, False], [False, False, False, True]])
    dropped = dyn(tokens, actions, drop_action_bt=drop)
    # the same as giving those frames the "no action" embedding by hand
    act = dyn.frame_action_embeddings(actions, 4).clone()
    act[0, 1] = dyn.no_action
    act[1, 3] = dyn.no_action
    assert torch.allclose(dropped, dyn.forward_embedded(tokens, act), atol=1e-6)
    assert not torch.allclose(dropped, dyn(tokens, actions), atol=1e-4)  # and it changes the logits
    # the loss draws the mask from the generator: reproducible, and dropout-free configs draw nothing extra
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(dyn.loss(tokens, actions, g1)[0], dyn.loss(tokens, actions, g2)[0])
    with pytest.raises(ValueError, match="action_dropout"):
        DynamicsModel(replace(tiny_dyn_cfg(), action_dropout=1.0))


@pytest.mark.parametrize("injection", ["add", "prepend"])
def test_guided_sampling_cached_equals_reference_and_differs_from_unguided(injection):
    genie = tiny_genie(injection=injection, context=4, steps=3)
    prompt = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    actions = [0, 3, 1, 1, 2, 0]  # 6 frames through a 4-frame ring buffer
    guided = [genie.world(prompt, seed=5, use_cache=c, action_guidance=3.0) for c in (True, False)]
    plain = genie.world(prompt, seed=5, action_guidance=1.0)
    for a in actions:
        for w in guided + [plain]:
            w.step(a)
    assert torch.equal(guided[0].tokens, guided[1].tokens)
    assert not torch.equal(guided[0].tokens, plain.tokens)


def test_guidance_one_is_the_unguided_sampler_and_zero_ignores_the_action():
    genie = tiny_genie(injection="prepend", context=4, steps=2)
    prompt = np.random.default_rng(1).integers(0, 256, (1, 16, 16, 3), dtype=np.uint8)
    a = genie.world(prompt, seed=2)
    b = genie.world(prompt, seed=2, action_guidance=1.0)
    for act in (1, 2, 3):
        assert np.array_equal(a.step(act), b.step(act))
    # w = 0 is the unconditional model: every button gives the same next frame
    frames = [genie.world(prompt, seed=2, action_guidance=0.0).step(act) for act in range(4)]
    assert all(np.array_equal(frames[0], f) for f in frames[1:])

"""MaskGIT schedule, one-frame sampling, and the World rollout (cache vs reference, validation)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from fixtures_genie import one_thread, tiny_genie  # noqa: F401

from genieworld.sampling import maskgit_schedule, sample_frame

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- schedule
@pytest.mark.parametrize("kind", ["cosine", "linear"])
@pytest.mark.parametrize("total,n", [(1, 16), (4, 16), (8, 256), (25, 16), (25, 256), (12, 7)])
def test_schedule_is_monotone_and_ends_unmasked(kind, total, n):
    counts = [maskgit_schedule(s, total, n, kind) for s in range(total)]
    assert len(counts) == total
    assert counts[-1] == 0
    assert all(0 <= c <= n for c in counts)
    assert all(a >= b for a, b in zip(counts, counts[1:]))


def test_cosine_counts():
    # masked after step s of S: ceil(N cos(pi/2 (s+1)/S)), exactly 0 at the end (cos(pi/2) is 6e-17, not 0)
    assert [maskgit_schedule(s, 4, 16) for s in range(4)] == [15, 12, 7, 0]
    assert [maskgit_schedule(s, 2, 256) for s in range(2)] == [182, 0]  # 256 cos(pi/4) = 181.02
    assert [maskgit_schedule(s, 3, 16) for s in range(3)] == [14, 8, 0]  # 16 cos(pi/3) = 8 exactly
    for s in range(24):
        assert maskgit_schedule(s, 25, 256) == math.ceil(256 * math.cos(math.pi / 2 * (s + 1) / 25) - 1e-9)
    assert [maskgit_schedule(s, 4, 16, "linear") for s in range(4)] == [12, 8, 4, 0]
    with pytest.raises(ValueError):
        maskgit_schedule(0, 4, 16, "sqrt")
    with pytest.raises(ValueError):
        maskgit_schedule(4, 4, 16)


# ----------------------------------------------------------------------------- one frame
def test_sample_frame_takes_exactly_s_steps_and_follows_the_schedule():
    g = torch.Generator().manual_seed(0)
    fixed = torch.randn(3, 16, 10, generator=g)
    seen = []

    def logits_fn(tok):
        seen.append(tok.clone())
        return fixed

    out = sample_frame(logits_fn, 3, 16, mask_id=10, steps=5, temperature=1.0, generator=g)
    assert len(seen) == 5
    assert out.shape == (3, 16) and int(out.max()) < 10  # nothing left masked
    assert (seen[0] == 10).all()
    for s in range(1, 5):
        n_masked = (seen[s] == 10).sum(dim=1)
        assert (n_masked == maskgit_schedule(s - 1, 5, 16)).all()
        revealed = seen[s - 1] != 10
        assert torch.equal(seen[s][revealed], seen[s - 1][revealed])  # fixed tokens are never changed
    assert torch.equal(out[seen[-1] != 10], seen[-1][seen[-1] != 10])


def test_greedy_sampling_is_argmax_and_reveals_most_confident_first():
    logits = torch.zeros(1, 4, 6)
    logits[0, torch.arange(4), torch.tensor([1, 2, 3, 4])] = torch.tensor([1.0, 4.0, 2.0, 3.0])
    seen = []

    def logits_fn(tok):
        seen.append(tok.clone())
        return logits

    out = sample_frame(logits_fn, 1, 4, mask_id=6, steps=4, temperature=0.0, generator=torch.Generator(),
                       schedule="linear")
    assert out.tolist() == [[1, 2, 3, 4]]
    assert seen[1].tolist() == [[6, 2, 6, 6]]  # position 1 is the most confident
    assert seen[2].tolist() == [[6, 2, 6, 4]]



def test_random_order_reveals_a_uniform_subset_on_the_same_schedule():
    """order="random": which tokens are revealed ignores confidence (position 1 is by far the surest,
    yet every position comes first about equally often), and the schedule is unchanged."""
    logits = torch.zeros(1, 4, 6)
    logits[0, torch.arange(4), torch.tensor([1, 2, 3, 4])] = torch.tensor([1.0, 9.0, 2.0, 3.0])
    first = []
    for seed in range(200):
        seen = []

        def logits_fn(tok):
            seen.append(tok.clone())
            return logits

        out = sample_frame(logits_fn, 1, 4, mask_id=6, steps=4, temperature=0.0,
                           generator=torch.Generator().manual_seed(seed), schedule="linear", order="random")
        assert out.tolist() == [[1, 2, 3, 4]]  # temperature 0: still the argmax tokens
        assert [int((t == 6).sum()) for t in seen] == [4, 3, 2, 1]
        first.append(int((seen[1] != 6).nonzero()[0, 1]))
    counts = np.bincount(first, minlength=4)
    assert counts.min() >= 30, counts  # uniform: 50 each expected; confidence order would give [0, 200, 0, 0]


@pytest.mark.parametrize("steps", [1, 3])
def test_both_orders_draw_each_token_from_softmax_of_logits_over_temperature(steps):
    """In the random order a token is drawn from softmax(logits / T) at any number of steps (it draws only the
    tokens a step reveals); in one step every token is drawn at once, so the confidence order does the same
    (over several steps it reveals the surest draws first, which favours likely codes)."""
    base = torch.tensor([2.0, 1.0, 0.0, -1.0])
    logits_nv = torch.stack([base.roll(p % 4) for p in range(8)])  # position p likes code p % 4 best
    want = torch.softmax(logits_nv / 0.7, -1).double()
    for order in ("confidence", "random") if steps == 1 else ("random",):
        toks = sample_frame(lambda tok: logits_nv.expand(tok.shape[0], -1, -1), 800, 8, mask_id=4, steps=steps,
                            temperature=0.7, generator=torch.Generator().manual_seed(3), order=order)
        freq = torch.stack([torch.bincount(toks[:, p], minlength=4) for p in range(8)]).double() / len(toks)
        assert torch.allclose(freq, want, atol=0.05), (order, freq, want)
    # temperature 0: the argmax everywhere, in either order
    for order in ("confidence", "random"):
        toks = sample_frame(lambda tok: logits_nv.expand(tok.shape[0], -1, -1), 3, 8, mask_id=4, steps=steps,
                            temperature=0.0, generator=torch.Generator().manual_seed(3), order=order)
        assert (toks == torch.arange(8) % 4).all()


def test_bad_order_is_rejected():
    g_logits = torch.randn(2, 16, 10, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="order must be one of"):
        sample_frame(lambda tok: g_logits, 2, 16, mask_id=10, steps=2, temperature=1.0,
                     generator=torch.Generator(), order="sideways")


# ----------------------------------------------------------------------------- World
@pytest.mark.parametrize("injection,order", [("add", "confidence"), ("prepend", "confidence"), ("add", "random")])
def test_cached_and_reference_paths_give_identical_tokens(injection, order):
    """context 4, 7 generated frames: the ring buffer wraps around and must still match the reference."""
    genie = tiny_genie(injection=injection, context=4, steps=3)
    prompt = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)  # 2 prompt frames
    actions = [0, 3, 1, 1, 2, 0, 3]
    worlds = [genie.world(prompt, seed=5, use_cache=c, order=order) for c in (True, False)]
    for a in actions:
        frames = [w.step(a) for w in worlds]
        assert np.array_equal(frames[0], frames[1])
    assert torch.equal(worlds[0].tokens, worlds[1].tokens)
    assert worlds[0].tokens.shape == (1, 9, 16)
    assert worlds[0].actions.shape == (1, 8) and worlds[0].actions[0, 1:].tolist() == actions


def test_world_step_validation_and_reproducibility():
    genie = tiny_genie()
    img = np.random.default_rng(1).integers(0, 256, (40, 30, 3), dtype=np.uint8)  # resized to 16x16
    w = genie.world(img, seed=3)
    first = w.frames[-1][0]
    assert first.shape == (16, 16, 3) and first.dtype == np.uint8
    f = w.step(2)
    assert f.shape == (16, 16, 3) and f.dtype == np.uint8
    w.step(np.int64(1))
    for bad in (4, -1, 1.0, True, "1", None):
        with pytest.raises(ValueError, match=r"\[0, 4\)"):
            w.step(bad)
    assert w.num_frames == 3  # failed steps change nothing
    video = w.video()
    assert video.shape == (1, 3, 16, 16, 3)
    w.reset()
    assert w.num_frames == 1 and np.array_equal(w.frames[0], video[:, 0])
    assert np.array_equal(w.step(2), video[0, 1]) and np.array_equal(w.step(1), video[0, 2])
    other = genie.world(img, seed=4)
    tokens_other = [other.step(2), other.step(1)]
    assert len(tokens_other) == 2
    w.reset(np.zeros((16, 16, 3), dtype=np.uint8))
    assert w.num_frames == 1
    with pytest.raises(TypeError, match="unknown sampling option"):
        genie.world(img, steps=3)
    with pytest.raises(ValueError, match="context_frames"):
        genie.world(img, context_frames=9)
    with pytest.raises(ValueError, match="order"):
        genie.world(img, order="sideways")


def test_cache_memory_is_constant_per_frame():
    genie = tiny_genie(context=3, steps=1)
    w = genie.world(np.zeros((16, 16, 3), dtype=np.uint8), seed=0)
    shapes = [t.shape for t in w.cache.k]
    for a in [0, 1, 2, 3] * 3:
        w.step(a)
    assert [t.shape for t in w.cache.k] == shapes and w.cache.window == 3
    assert len(w._act_emb) <= genie.dynamics.cfg.transformer.num_layers * 2 + 1
    assert w.num_frames == 13


def test_sampling_seed_controls_the_rollout():
    genie = tiny_genie(steps=2)
    prompt = np.full((16, 16, 3), 128, dtype=np.uint8)
    runs = []
    for seed in (0, 0, 1):
        w = genie.world(prompt, seed=seed)
        for a in (0, 1, 2):
            w.step(a)
        runs.append(w.tokens)
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


def test_max_history_bounds_memory_without_changing_the_rollout():
    genie = tiny_genie(context=3, steps=1)
    prompt = np.full((16, 16, 3), 60, dtype=np.uint8)
    full = genie.world(prompt, seed=2)
    short = genie.world(prompt, seed=2, max_history=2)
    short_ref = genie.world(prompt, seed=2, max_history=2, use_cache=False)
    for a in [0, 1, 2, 3, 3, 2, 1]:
        f = full.step(a)
        assert np.array_equal(short.step(a), f) and np.array_equal(short_ref.step(a), f)
    assert short.num_frames == full.num_frames == 8
    assert len(short.frames) == 2 and short.actions.shape == (1, 2) and short.tokens.shape[1] <= 5
    assert torch.equal(short.actions, full.actions[:, -2:])
    with pytest.raises(ValueError, match="max_history"):
        genie.world(prompt, max_history=0)

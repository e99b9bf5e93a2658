"""The per-frame play path under torch.compile and in bf16, against the eager fp32 reference: the compiled step
gives the same tokens in fp32 (across the ring buffer's wrap), bf16 stays within a stated tolerance, and a
machine without native bf16 plays in fp32 with one line saying so."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fixtures_genie import tiny_genie

from genieworld.commands.play import prepare_play
from genieworld.eval.metrics import psnr


def _rollout(g, frames: int = 10, seed: int = 3):
    rng = np.random.default_rng(seed)
    prompt = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    w = g.world(prompt, seed=seed, temperature=0.0, order="confidence", context_frames=4)
    for a in rng.integers(0, g.num_actions, frames):
        w.step(int(a))
    return w.tokens, w.video()


def test_compiled_play_gives_the_eager_tokens_and_frames():
    eager = tiny_genie(seed=0, warp=1)
    compiled = tiny_genie(seed=0, warp=1)
    assert not compiled.play_compiled
    compiled.compile_play()
    assert compiled.play_compiled
    t_ref, v_ref = _rollout(eager)
    t_c, v_c = _rollout(compiled)
    assert t_ref.shape[1] == 11  # the prompt + 10 frames: the 4-frame ring buffer wraps twice
    assert torch.equal(t_c, t_ref)
    assert np.abs(v_c.astype(int) - v_ref.astype(int)).max() <= 1  # decoding: float rounding only


def test_bf16_play_stays_within_tolerance_of_fp32():
    ref, low = tiny_genie(seed=1, warp=1), tiny_genie(seed=1, warp=1).set_play_precision("bf16")
    tok = torch.randint(0, 32, (2, 16))
    out = []
    for g in (ref, low):
        cache = g.dynamics.new_cache(2, window=4)
        g.dynamics.step_logits(tok, None, cache, advance=True)
        out.append(g.dynamics.step_logits(tok.flip(1), g.lam.action_vectors(torch.tensor([0, 1])), cache,
                                          advance=False).float())
    cos = torch.nn.functional.cosine_similarity(out[0].flatten(), out[1].flatten(), dim=0)
    assert cos > 0.99
    frames = [g.tokenizer.decode_step(tok, g.tokenizer.new_decode_cache(2)) for g in (ref, low)]
    assert psnr(frames[1].float(), frames[0].float()).min() > 35.0  # dB, the same tokens decoded in bf16
    assert low.dynamics.head.weight.dtype == torch.bfloat16 and low.lam.action_vectors(torch.tensor([0])).dtype \
        == torch.float32  # prompt encoding and the LAM stay fp32


def test_without_native_bf16_play_falls_back_to_fp32_and_says_so(monkeypatch):
    monkeypatch.setenv("GENIEWORLD_NO_BF16", "1")
    g = tiny_genie(seed=2)
    said = []
    prepare_play(g, "bf16", compile=False, log=said.append)
    assert getattr(g, "play_precision", "fp32") == "fp32" and g.dynamics.head.weight.dtype == torch.float32
    assert len(said) == 1 and "no native bf16" in said[0] and "fp32" in said[0]


def test_prepare_play_compiles_before_serving():
    g = tiny_genie(seed=4)
    said = []
    prepare_play(g, "fp32", compile=True, log=said.append)
    assert g.play_compiled and said[-1].startswith("genie play: compiled in")
    with pytest.raises(ValueError):
        g.set_play_precision("fp16")


def test_decomposed_attention_equals_the_fused_kernel():
    from genieworld.nn.st_transformer import Attention

    torch.manual_seed(5)
    att = Attention(32, 2, 16).eval()
    q, k, v = torch.randn(3, 2, 7, 16), torch.randn(3, 2, 7, 16), torch.randn(3, 2, 7, 16)
    band = torch.rand(7, 7) < 0.6
    band |= torch.eye(7, dtype=torch.bool)  # every query sees at least itself
    for kw in ({}, {"is_causal": True}, {"attn_mask": band}, {"attn_mask": band[:1]}):
        fused = att.attend(q, k, v, **kw)
        att.math_attention = True
        torch.testing.assert_close(att.attend(q, k, v, **kw), fused, atol=1e-5, rtol=1e-5)
        att.train()  # training keeps the fused kernel whatever the flag says
        torch.testing.assert_close(att.attend(q, k, v, **kw), fused, atol=0, rtol=0)
        att.eval()
        att.math_attention = False


def test_commit_leaves_the_cache_exactly_as_a_full_step_does():
    """Play commits each frame with ``commit`` (no last-layer tail, no head); the cache it leaves, and so every
    later frame's logits, must be bit-identical to committing with ``step_logits(advance=True)``."""
    g = tiny_genie(seed=6, warp=1)
    dyn = g.dynamics
    torch.manual_seed(6)
    tok = torch.randint(0, 32, (2, 7, 16))
    acts = g.lam.action_vectors(torch.randint(0, g.num_actions, (2, 6)))
    full, fast = dyn.new_cache(2, window=4), dyn.new_cache(2, window=4)
    for t in range(7):  # past the 4-frame ring buffer's wrap
        a = None if t == 0 else acts[:, t - 1]
        dyn.step_logits(tok[:, t], a, full, advance=True)
        dyn.commit(tok[:, t], a, fast)
        assert full.length == fast.length == t + 1
        for layer in range(len(full.k)):
            assert torch.equal(full.k[layer], fast.k[layer]) and torch.equal(full.v[layer], fast.v[layer])
        assert torch.equal(full.extra["prev_tokens"], fast.extra["prev_tokens"])
    nxt = torch.full_like(tok[:, 0], dyn.mask_id)
    assert torch.equal(dyn.step_logits(nxt, acts[:, 0], full, advance=False),
                       dyn.step_logits(nxt, acts[:, 0], fast, advance=False))


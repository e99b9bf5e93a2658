"""ST-transformer: causal temporal attention, factorised attention, KV cache equals the full pass."""

import pytest
import torch
import torch.nn.functional as F

from genieworld.config import STConfig
from genieworld.nn import st_transformer as stt
from genieworld.nn.st_transformer import STTransformer, banded_causal_mask


def make(window=16, qk_norm=False, layers=2, spatial=5):
    torch.manual_seed(0)
    cfg = STConfig(num_layers=layers, d_model=32, num_heads=2, head_dim=16, qk_norm=qk_norm)
    return STTransformer(cfg, num_spatial=spatial, window=window).eval()


@pytest.mark.parametrize("qk_norm", [False, True])
def test_future_frames_do_not_change_past_outputs(qk_norm):
    m = make(qk_norm=qk_norm)
    x = torch.randn(2, 8, 5, 32)
    y = m(x)
    x2 = x.clone()
    x2[:, 5:] = torch.randn_like(x2[:, 5:])
    y2 = m(x2)
    assert torch.equal(y[:, :5], y2[:, :5])
    assert not torch.allclose(y[:, 5:], y2[:, 5:])


def test_spatial_attention_mixes_tokens_within_a_frame_only():
    m = make()
    x = torch.randn(1, 4, 5, 32)
    y = m(x)
    x2 = x.clone()
    x2[:, 2, 0] = torch.randn(32)  # one token of frame 2 (random: a constant shift would be erased by LayerNorm)
    y2 = m(x2)
    changed = (y - y2).abs().amax(dim=-1) > 1e-6  # (1, T, S)
    assert changed[0, 2].all(), "every token of the frame should see the change through spatial attention"
    assert not changed[0, :2].any(), "earlier frames must not change"
    assert changed[0, 3].all()  # later frames see it through temporal attention (+ spatial)


def test_positions_matter_on_both_axes():
    m = make()
    x = torch.randn(1, 3, 5, 32)
    # temporal: swapping the order of the two past frames changes the last frame's output (RoPE).
    # Without positional information attention is permutation-invariant over keys and this would be equal.
    swapped = x[:, [1, 0, 2]]
    assert not torch.allclose(m(x)[:, 2], m(swapped)[:, 2], atol=1e-5), "temporal order must be visible"
    # spatial: identical tokens in a frame get different outputs (learned spatial positions)
    flat = x[:, :, :1].expand(1, 3, 5, 32).contiguous()
    y = m(flat)
    assert not torch.allclose(y[:, :, 0], y[:, :, 1], atol=1e-5), "spatial position must be visible"


def test_no_attention_over_all_space_time_tokens(monkeypatch):
    """Memory linear in T: every attention call is over S (spatial) or T (temporal) tokens, never T*S."""
    lengths = []
    real = F.scaled_dot_product_attention

    def spy(q, k, v, *a, **kw):
        lengths.append(k.shape[-2])
        return real(q, k, v, *a, **kw)

    monkeypatch.setattr(stt.F, "scaled_dot_product_attention", spy)
    m = make(spatial=6)
    m(torch.randn(2, 7, 6, 32))
    assert lengths and set(lengths) <= {6, 7}, lengths


@pytest.mark.parametrize("qk_norm", [False, True])
def test_cached_step_equals_full_pass(qk_norm):
    m = make(qk_norm=qk_norm)
    x = torch.randn(2, 9, 5, 32)
    full = m(x)
    cache = m.new_cache(2)
    outs = []
    for t in range(9):
        m.step(torch.randn(2, 1, 5, 32), cache, advance=False)  # a refinement pass that is overwritten
        outs.append(m.step(x[:, t : t + 1], cache))
    inc = torch.cat(outs, 1)
    torch.testing.assert_close(inc, full, atol=1e-5, rtol=1e-5)


def test_sliding_window_cache_equals_banded_full_pass():
    window = 4
    m = make(window=window)
    x = torch.randn(1, 11, 5, 32)
    full = m(x)  # T > window: banded causal mask
    cache = m.new_cache(1)
    inc = torch.cat([m.step(x[:, t : t + 1], cache) for t in range(11)], 1)
    torch.testing.assert_close(inc, full, atol=1e-5, rtol=1e-5)
    # and frames older than the window are really forgotten
    x2 = x.clone()
    x2[:, 0] = torch.randn_like(x2[:, 0])
    y2 = m(x2)
    # with 2 layers, frame 0 reaches frames up to 2*(window-1) = 6 through stacked windows, never beyond
    assert torch.equal(y2[:, 7:], full[:, 7:])
    assert not torch.allclose(y2[:, 3], full[:, 3])
    assert not torch.allclose(y2[:, 6], full[:, 6])


def test_cache_buffers_are_fixed_size():
    m = make(window=4)
    cache = m.new_cache(1)
    ptrs = [k.data_ptr() for k in cache.k]
    for _ in range(10):
        m.step(torch.randn(1, 1, 5, 32), cache)
    assert [k.data_ptr() for k in cache.k] == ptrs
    assert cache.k[0].shape[2] == 4 and cache.length == 10


def test_banded_mask():
    mask = banded_causal_mask(5, 2)
    expected = torch.tensor(
        [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 1, 1, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 1, 1]], dtype=torch.bool
    )
    assert torch.equal(mask, expected)


def test_wrong_token_count_is_a_clear_error():
    m = make(spatial=5)
    with pytest.raises(ValueError, match="expected 5 tokens per frame"):
        m(torch.randn(1, 2, 4, 32))

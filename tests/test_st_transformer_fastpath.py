"""The faster RoPE / q-k-v projection of the ST-transformer give bit-identical outputs and gradients.

``apply_rope`` (rotate-half form) and ``Attention.project`` (split + view) replaced an
einops rearrange + four half-width multiplies for speed (bench/bench_train.py --profile);
the originals are kept here as the reference.
"""

import pytest
import torch
from einops import rearrange

from genieworld.config import STConfig
from genieworld.nn import st_transformer as stt


def rope_reference(x_bhld, cos_ld, sin_ld):
    half = x_bhld.shape[-1] // 2
    x1, x2 = x_bhld[..., :half], x_bhld[..., half : 2 * half]
    cos, sin = cos_ld.to(x_bhld.dtype), sin_ld.to(x_bhld.dtype)
    rot = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    if x_bhld.shape[-1] > 2 * half:
        rot = torch.cat([rot, x_bhld[..., 2 * half :]], dim=-1)
    return rot


def project_reference(self, x_bld):
    q, k, v = rearrange(self.qkv(x_bld), "b l (three h d) -> three b h l d", three=3, h=self.num_heads)
    return self.q_norm(q), self.k_norm(k), v


@pytest.mark.parametrize("head_dim", [16, 9])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_apply_rope_is_bit_identical(head_dim, dtype):
    x = torch.randn(3, 2, 7, head_dim).to(dtype)
    cos, sin = stt.rope_angles(torch.arange(7), head_dim)
    assert torch.equal(stt.apply_rope(x, cos, sin), rope_reference(x, cos, sin))


def _run(model, x):
    model.zero_grad(set_to_none=True)
    y = model(x)
    (y * torch.linspace(-1, 1, y.shape[-1])).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    with torch.no_grad():
        cache = model.new_cache(x.shape[0])
        steps = torch.cat([model.step(x[:, t : t + 1], cache) for t in range(x.shape[1])], 1)
    return y.detach(), grads, steps


@pytest.mark.parametrize("qk_norm", [False, True])
@pytest.mark.parametrize("head_dim", [16, 9])
def test_st_transformer_outputs_and_grads_unchanged(monkeypatch, qk_norm, head_dim):
    torch.manual_seed(0)
    cfg = STConfig(num_layers=2, d_model=32, num_heads=3, head_dim=head_dim, qk_norm=qk_norm)
    model = stt.STTransformer(cfg, num_spatial=5, window=4)
    x = torch.randn(2, 6, 5, 32)  # longer than the window: banded mask path too
    new = _run(model, x)
    monkeypatch.setattr(stt, "apply_rope", rope_reference)
    monkeypatch.setattr(stt.Attention, "project", project_reference)
    ref = _run(model, x)
    assert torch.equal(new[0], ref[0])
    assert new[1].keys() == ref[1].keys() and all(torch.equal(new[1][k], ref[1][k]) for k in ref[1])
    assert torch.equal(new[2], ref[2])

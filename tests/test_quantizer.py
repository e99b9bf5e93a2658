"""Vector quantizer: straight-through gradients, losses, dead-code restart, usage statistics."""

import math

import pytest
import torch
import torch.nn.functional as F

from genieworld.config import VQConfig
from genieworld.nn.quantizer import VectorQuantizer


def vq(**kw):
    torch.manual_seed(0)
    cfg = dict(num_codes=16, code_dim=8, beta=0.25, l2_normalize=True, dead_code_steps=5)
    cfg.update(kw)
    return VectorQuantizer(VQConfig(**cfg))


@pytest.mark.parametrize("l2", [True, False])
def test_straight_through_gradient_reaches_the_encoder(l2):
    q = vq(l2_normalize=l2).train()
    z = torch.randn(4, 10, 8, requires_grad=True)
    zq, idx, info = q(z)
    assert idx.shape == (4, 10) and zq.shape == z.shape
    w = torch.randn_like(zq)
    (zq * w).sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    if not l2:  # identity straight-through: dL/dz == dL/dzq exactly
        torch.testing.assert_close(z.grad, w)


def test_forward_value_is_the_nearest_code():
    q = vq(l2_normalize=True).eval()
    z = torch.randn(32, 8)
    zq, idx, _ = q(z)
    cb = F.normalize(q.codebook, dim=-1)
    torch.testing.assert_close(zq, cb[idx])
    sims = F.normalize(z, dim=-1) @ cb.t()
    assert torch.equal(idx, sims.argmax(-1))
    torch.testing.assert_close(zq.norm(dim=-1), torch.ones(32))


def test_codebook_and_commitment_losses_have_gradients():
    q = vq(l2_normalize=False).train()
    z = torch.randn(64, 8, requires_grad=True)
    _, _, info = q(z)
    info["loss"].backward()
    assert q.codebook.grad is not None and q.codebook.grad.abs().sum() > 0
    assert z.grad.abs().sum() > 0


def test_first_training_batch_seeds_the_codebook():
    q = vq(l2_normalize=True).train()
    assert int(q.initialized) == 0
    z = torch.randn(200, 8)
    q(z)
    assert int(q.initialized) == 1
    # every code is (close to) one of the inputs
    sims = F.normalize(q.codebook, dim=-1) @ F.normalize(z, dim=-1).t()
    assert sims.max(dim=1).values.min() > 0.99


def test_dead_codes_are_restarted():
    q = vq(dead_code_steps=3).train()
    q(torch.randn(100, 8))  # data init
    target = q.codebook[0].detach().clone()
    before = q.codebook.detach().clone()
    z = target.expand(50, 8).clone()  # every input selects code 0: all others are unused
    for _ in range(3):
        q(z + 1e-4 * torch.randn_like(z))
    changed = (q.codebook.detach() - before).abs().sum(-1) > 0
    assert q.restarts_total >= 15
    assert changed[1:].all(), "all unused codes should have been re-seeded"
    assert not changed[0], "the used code is left alone"


def test_usage_statistics():
    q = vq(l2_normalize=True, dead_code_steps=0).eval()
    cb = F.normalize(q.codebook.detach(), dim=-1)
    z = cb.repeat(3, 1)  # each code exactly 3 times
    _, idx, info = q(z)
    assert int(info["codes_used"]) == 16
    assert math.isclose(float(info["perplexity"]), 16.0, rel_tol=1e-4)
    _, _, info = q(cb[:1].repeat(10, 1))
    assert int(info["codes_used"]) == 1 and math.isclose(float(info["perplexity"]), 1.0, rel_tol=1e-4)


def test_eval_mode_never_touches_the_codebook():
    q = vq(dead_code_steps=1).eval()
    before = q.codebook.detach().clone()
    for _ in range(3):
        q(torch.randn(10, 8))
    assert torch.equal(before, q.codebook.detach())


def test_wrong_dim_is_a_clear_error():
    with pytest.raises(ValueError, match="expected last dim 8"):
        vq()(torch.randn(3, 7))

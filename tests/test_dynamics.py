"""Dynamics model: mask token, training mask and loss, causality, action alignment, cache, co-training task."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fixtures_genie import one_thread, colour_switch_clips, tiny_dyn_cfg, tiny_lam_cfg, tiny_tokenizer_cfg

from genieworld.dynamics import DynamicsModel, align_actions_to_frames, masked_cross_entropy, sample_train_mask
from genieworld.genie import ModelDirError, save_component
from genieworld.tokenizer import VideoTokenizer

INJECTIONS = ["add", "prepend"]

pytestmark = pytest.mark.usefixtures("one_thread")


def _dyn(injection="add", seed=0, **kw):
    torch.manual_seed(seed)
    return DynamicsModel(tiny_dyn_cfg(injection=injection, **kw)).eval()


def _inputs(b=2, t=6, seed=0, with_masks=True):
    g = torch.Generator().manual_seed(seed)
    tok = torch.randint(0, 33 if with_masks else 32, (b, t, 16), generator=g)
    act = torch.randn(b, t - 1, 8, generator=g)
    return tok, act


# ----------------------------------------------------------------------------- tied output layer
def test_tied_head_reads_the_token_embedding_and_is_saved_once(tmp_path):
    from genieworld.genie import load_component
    from genieworld.config import DynamicsConfig

    dyn = DynamicsModel(replace(tiny_dyn_cfg(codes=32, d_model=64), tie_embeddings=True)).eval()
    emb = dyn.token_embed.weight
    # an embedding row fed to the head scores highest for its own code: the head IS the embedding
    logits = dyn.head(emb[:32])
    assert (logits.argmax(-1) == torch.arange(32)).all()
    with torch.no_grad():
        emb[5] += 1.0  # changing the embedding changes the head
    assert dyn.head(emb[5:6]).argmax() == 5 and torch.equal(dyn.head.weight[5], emb[5])
    assert "head.weight" not in dyn.state_dict() and "head.bias" in dyn.state_dict()
    tok, act = _inputs()
    save_component(dyn, dyn.cfg, tmp_path / "dyn")
    back = load_component(DynamicsModel, DynamicsConfig, tmp_path / "dyn").eval()
    torch.testing.assert_close(back(tok, act), dyn(tok, act), rtol=0, atol=0)
    untied = DynamicsModel(tiny_dyn_cfg(codes=32, d_model=64))
    assert "head.weight" in untied.state_dict()


# ----------------------------------------------------------------------------- mask token
def test_mask_token_is_not_a_code():
    dyn = _dyn()
    assert dyn.mask_id == dyn.num_codes == 32
    assert dyn.token_embed.num_embeddings == 33
    emb = dyn.token_embed.weight
    assert not any(torch.allclose(emb[32], emb[i]) for i in range(32))
    tok, act = _inputs()
    logits = dyn(tok, act)
    assert logits.shape == (2, 6, 16, 32)  # only real codes can be predicted
    with pytest.raises(ValueError, match="token ids"):
        dyn(torch.full((1, 2, 16), 33), act[:1, :1])
    with pytest.raises(ValueError, match="real codes"):
        dyn.loss(torch.full((1, 2, 16), 32), act[:1, :1])


def test_masked_inputs_use_the_mask_embedding_not_code_0():
    dyn = _dyn()
    tok, act = _inputs(with_masks=False)
    masked = tok.clone()
    masked[:, 1:] = dyn.mask_id
    zeros = tok.clone()
    zeros[:, 1:] = 0
    assert (dyn(masked, act) - dyn(zeros, act)).abs().max() > 1e-4


# ----------------------------------------------------------------------------- training mask and loss
def test_train_mask_first_frame_never_masked_and_rate_in_range():
    g = torch.Generator().manual_seed(0)
    mask, rate = sample_train_mask(4000, 4, 64, 0.5, 1.0, generator=g)
    assert mask.dtype == torch.bool and mask.shape == (4000, 4, 64)
    assert not mask[:, 0].any()
    assert float(rate.min()) >= 0.5 and float(rate.max()) <= 1.0
    assert abs(float(rate.mean()) - 0.75) < 0.02 and float(rate.std()) > 0.12  # ~U(0.5, 1): std 0.144
    realised = mask[:, 1:].float().mean(dim=(1, 2))
    assert float((realised - rate).abs().mean()) < 0.05  # Bernoulli(p) per token, p per sample
    assert float(realised.min()) > 0.3
    # same generator seed -> same mask (the trainer relies on the global RNG the same way)
    m2, r2 = sample_train_mask(4000, 4, 64, 0.5, 1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(mask, m2) and torch.equal(rate, r2)
    with pytest.raises(ValueError):
        sample_train_mask(1, 2, 3, 0.8, 0.5)


def test_clean_prefix_mask_leaves_a_random_number_of_leading_frames_clean():
    g = torch.Generator().manual_seed(0)
    mask, rate = sample_train_mask(4000, 6, 64, 0.5, 1.0, generator=g, clean_prefix=True)
    frame_masked = mask.any(dim=2)  # (B, T)
    assert not frame_masked[:, 0].any()
    first = torch.where(frame_masked.any(1), frame_masked.float().argmax(1), torch.full((4000,), 6))
    # after the first masked frame every later frame is masked at the sample's rate (never clean at p >= 0.5)
    later = torch.arange(6)[None, :] >= first[:, None]
    assert bool(frame_masked[later].all())
    counts = torch.bincount(first, minlength=7)[1:6].float()  # clean prefix 1..5 frames, each ~1/5
    assert float(counts.min()) > 700 and float(counts.max()) < 900
    assert int(counts.sum()) == 4000  # the last frame is always a target
    # the paper's schedule is unchanged when the option is off
    m0, r0 = sample_train_mask(4000, 6, 64, 0.5, 1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(r0, rate) and bool(m0[:, 1:].any(dim=2).all())


def test_dynamics_loss_uses_the_clean_prefix_option():
    dyn = DynamicsModel(replace(_dyn().cfg, train_clean_prefix=True)).train()
    tok, act = _inputs(with_masks=False)
    torch.manual_seed(7)
    _, info = dyn.loss(tok, act)
    torch.manual_seed(7)
    mask, _ = sample_train_mask(2, 6, 16, 0.5, 1.0, clean_prefix=True)
    assert torch.equal(info["mask"], mask)


def test_loss_counts_masked_positions_only():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 16, 32, generator=g)
    targets = torch.randint(0, 32, (2, 4, 16), generator=g)
    mask, _ = sample_train_mask(2, 4, 16, generator=g)
    loss, acc = masked_cross_entropy(logits, targets, mask)
    expected = F.cross_entropy(logits[mask], targets[mask])
    torch.testing.assert_close(loss, expected)
    # changing logits and targets where nothing is masked changes nothing
    logits2, targets2 = logits.clone(), targets.clone()
    logits2[~mask] = torch.randn(int((~mask).sum()), 32, generator=g) * 10
    targets2[~mask] = (targets2[~mask] + 1) % 32
    loss2, acc2 = masked_cross_entropy(logits2, targets2, mask)
    assert float(loss2) == float(loss) and float(acc2) == float(acc)
    # and changing a masked position does
    b, t, n = mask.nonzero()[0].tolist()
    logits2[b, t, n, targets2[b, t, n]] += 5.0
    assert float(masked_cross_entropy(logits2, targets2, mask)[0]) != float(loss)
    # nothing masked: a zero loss that still backpropagates
    z, _ = masked_cross_entropy(logits.requires_grad_(), targets, torch.zeros_like(mask))
    assert float(z.detach()) == 0.0 and z.requires_grad


def test_dynamics_loss_uses_the_train_mask_and_detaches_actions():
    dyn = _dyn().train()
    tok, act = _inputs(with_masks=False)
    act.requires_grad_(True)
    torch.manual_seed(123)
    loss, info = dyn.loss(tok, act)
    torch.manual_seed(123)
    mask, _ = sample_train_mask(2, 6, 16, 0.5, 1.0)
    assert torch.equal(info["mask"], mask)
    inputs = torch.where(mask, torch.full_like(tok, dyn.mask_id), tok)
    expected, _ = masked_cross_entropy(dyn(inputs, act), tok, mask)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert act.grad is None  # stop-gradient: the LAM is not trained through the dynamics loss
    assert dyn.action_proj.weight.grad is not None and dyn.action_proj.weight.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- causality and alignment
def test_align_actions_to_frames():
    emb = torch.randn(3, 4, 5)
    none = torch.randn(5)
    out = align_actions_to_frames(emb, 5, none)
    assert out.shape == (3, 5, 5)
    assert torch.equal(out[:, 0], none.expand(3, 5))
    for t in range(1, 5):  # frame t is produced by action t-1 (x_{t-1} -> x_t)
        assert torch.equal(out[:, t], emb[:, t - 1])
    with pytest.raises(ValueError, match="exactly 4 actions"):
        align_actions_to_frames(emb[:, :3], 5, none)


@pytest.mark.parametrize("injection", INJECTIONS)
def test_future_frames_never_change_earlier_logits(injection):
    dyn = _dyn(injection)
    tok, act = _inputs()
    base = dyn(tok, act)
    for t in range(1, 6):
        tok2, act2 = tok.clone(), act.clone()
        tok2[:, t:] = (tok2[:, t:] + 7) % 33
        act2[:, t - 1:] = torch.randn_like(act2[:, t - 1:])  # action t-1 produces frame t
        out = dyn(tok2, act2)
        torch.testing.assert_close(out[:, :t], base[:, :t], rtol=0, atol=1e-5)
        assert (out[:, t] - base[:, t]).abs().max() > 1e-4


@pytest.mark.parametrize("injection", INJECTIONS)
def test_action_k_conditions_frame_k_plus_1(injection):
    """a_k is the transition x_k -> x_{k+1}; it may change logits of frames k+1.. and must change frame k+1."""
    dyn = _dyn(injection)
    tok, act = _inputs()
    base = dyn(tok, act)
    for k in range(5):
        act2 = act.clone()
        act2[:, k] = -act2[:, k]
        out = dyn(tok, act2)
        torch.testing.assert_close(out[:, : k + 1], base[:, : k + 1], rtol=0, atol=1e-5)
        assert (out[:, k + 1] - base[:, k + 1]).abs().max() > 1e-4


@pytest.mark.parametrize("injection", INJECTIONS)
def test_incremental_steps_equal_the_full_pass(injection):
    dyn = _dyn(injection, max_frames=8)
    tok, act = _inputs(t=7)
    full = dyn(tok, act)
    cache = dyn.new_cache(2)
    outs = [dyn.step_logits(tok[:, t], None if t == 0 else act[:, t - 1], cache, advance=True) for t in range(7)]
    torch.testing.assert_close(torch.stack(outs, 1), full, rtol=1e-4, atol=1e-4)
    # a 3-frame ring buffer equals the full pass with a 3-frame band, also after it wrapped around
    emb = dyn.frame_action_embeddings(act, 7)
    banded = dyn.forward_embedded(tok, emb, window=3)
    cache = dyn.new_cache(2, window=3)
    for t in range(7):
        # MaskGIT-style refinement: repeated advance=False calls rewrite the same slot
        dyn.step_logits(torch.full_like(tok[:, t], dyn.mask_id), None if t == 0 else act[:, t - 1], cache, False)
        step = dyn.step_logits(tok[:, t], None if t == 0 else act[:, t - 1], cache, advance=True)
        torch.testing.assert_close(step, banded[:, t], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="max_frames"):
        dyn.new_cache(1, window=9)


# ----------------------------------------------------------------------------- co-training task
def _save_tokenizer(path, **kw):
    torch.manual_seed(0)
    tok = VideoTokenizer(tiny_tokenizer_cfg(**kw))
    save_component(tok, tok.cfg, path / "tokenizer")
    return tok


def _tiny_preset(**dyn_kw):
    from genieworld.config import Preset, SamplingConfig

    return Preset(tokenizer=tiny_tokenizer_cfg(), lam=tiny_lam_cfg(), dynamics=tiny_dyn_cfg(**dyn_kw),
                  sampling=SamplingConfig(maskgit_steps=2, context_frames=8))


def test_build_task_checks_compatibility_and_keeps_the_tokenizer_out_of_checkpoints(tmp_path):
    from genieworld.train.dynamics_task import build_dynamics_task

    _save_tokenizer(tmp_path)
    task = build_dynamics_task(_tiny_preset(), tmp_path, seq_len=4)  # RUN folder
    task2 = build_dynamics_task(_tiny_preset(), tmp_path / "tokenizer", seq_len=12, action_injection="prepend")
    assert task.tokenizer.cfg.image_size == 16
    assert task2.dynamics.cfg.action_injection == "prepend" and task2.dynamics.cfg.max_frames == 12
    keys = list(task.state_dict())
    assert keys and all(k.startswith(("lam.", "dynamics.")) for k in keys)
    assert all(not p.requires_grad for p in task.tokenizer.parameters())
    assert set(task.model_configs()) == {"tokenizer", "lam", "dynamics", "action_source", "lam_frozen"}
    assert task.model_configs()["action_source"] == "lam" and task.model_configs()["lam_frozen"] is False
    task.train()
    assert not task.tokenizer.training and task.lam.training
    with pytest.raises(ModelDirError, match="dynamics expects 64 codes but the tokenizer has 32"):
        build_dynamics_task(_tiny_preset(codes=64), tmp_path, seq_len=4)
    with pytest.raises(ModelDirError, match="tokens per frame"):
        build_dynamics_task(_tiny_preset(tokens=64), tmp_path, seq_len=4)
    with pytest.raises(ModelDirError, match="action vectors of size 16"):
        build_dynamics_task(_tiny_preset(action_dim=16), tmp_path, seq_len=4)
    with pytest.raises(FileNotFoundError):
        build_dynamics_task(_tiny_preset(), tmp_path / "nope", seq_len=4)
    (tmp_path / "unfinished" / "checkpoints").mkdir(parents=True)
    with pytest.raises(ModelDirError, match="not finished"):
        build_dynamics_task(_tiny_preset(), tmp_path / "unfinished", seq_len=4)


def test_cotraining_learns_controllable_latent_actions():
    """A tiny LAM + dynamics co-trained for 150 steps (~10 s) on a toy game where each action sets the
    next frame's colour: the actions the LAM infers must predict the next frame (LAM decoder MSE)
    and the next tokens (dynamics CE) much better than the same actions shuffled across the batch.
    (The moving-square store is too slow to learn here: on CPU even a decoder given the true
    actions did not beat copying the last frame within 600 steps.)"""
    from genieworld.train.dynamics_task import DynamicsTask

    torch.manual_seed(0)
    frames, true_actions = colour_switch_clips(64, 12, seed=0)
    tok = VideoTokenizer(tiny_tokenizer_cfg(max_frames=1))  # frozen, untrained: a fixed per-frame code map
    task = DynamicsTask(tok, tiny_lam_cfg(), tiny_dyn_cfg())
    opt = torch.optim.AdamW(task.parameters(), lr=3e-3)
    rng = np.random.default_rng(1)

    def batch(n, t=4):
        i, s = rng.integers(0, 64, n), rng.integers(0, 12 - t + 1, n)
        return (torch.from_numpy(np.stack([frames[a, b:b + t] for a, b in zip(i, s)])),
                torch.from_numpy(np.stack([true_actions[a, b:b + t - 1] for a, b in zip(i, s)])))

    task.train()
    for step in range(150):
        loss, logs = task.training_step({"frames": batch(16)[0]}, step)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert set(logs) >= {"lam_mse", "lam_codes_used", "lam_perplexity", "dyn_ce", "dyn_acc", "mask_rate"}

    task.eval()
    x, _ = batch(64)
    with torch.no_grad():
        idx, vec = task.lam.encode_actions(x)
        shuffled = vec[torch.randperm(64, generator=torch.Generator().manual_seed(0))]
        target = x[:, 1:].float() / 255
        mse_inferred = F.mse_loss(task.lam.decode(x, vec), target).item()
        mse_shuffled = F.mse_loss(task.lam.decode(x, shuffled), target).item()
        tokens = tok.encode(x)
        inputs = tokens.clone()
        inputs[:, 1:] = task.dynamics.mask_id
        ce_inferred = F.cross_entropy(task.dynamics(inputs, vec)[:, 1:].reshape(-1, 32), tokens[:, 1:].flatten())
        ce_shuffled = F.cross_entropy(task.dynamics(inputs, shuffled)[:, 1:].reshape(-1, 32), tokens[:, 1:].flatten())
    assert idx.unique().numel() >= 2
    assert mse_inferred < 0.6 * mse_shuffled, (mse_inferred, mse_shuffled)
    assert float(ce_inferred) < float(ce_shuffled) - 0.3, (float(ce_inferred), float(ce_shuffled))


def test_trainer_resume_is_exact_and_exports_a_model(tmp_path):
    """tiny preset + synthetic store: 4 steps straight == 2 steps, then a new process-like Trainer resuming."""
    from genieworld.config import load_preset
    from genieworld.data.synthetic import make_synthetic_store
    from genieworld.genie import Genie
    from genieworld.train.data import open_training_data
    from genieworld.train.dynamics_task import build_dynamics_task
    from genieworld.train.trainer import Trainer
    from genieworld.utils import seed_everything

    preset = load_preset("tiny")
    torch.manual_seed(0)
    tok = VideoTokenizer(preset.tokenizer)
    save_component(tok, tok.cfg, tmp_path / "tok" / "tokenizer")
    make_synthetic_store(tmp_path / "data", episodes=3, length=10, size=preset.tokenizer.image_size)
    cfg = replace(preset.dynamics_train, steps=4, batch_size=2, seq_len=3, checkpoint_every=100, log_every=1,
                  warmup_steps=1)

    def run(out, stop_after=None, seed=0):
        seed_everything(seed)
        task = build_dynamics_task(preset, tmp_path / "tok", cfg.seq_len)
        loader = open_training_data(tmp_path / "data", cfg.seq_len, cfg.batch_size, cfg.seed)
        info = {"component": "dynamics", "preset": "tiny", "model_configs": task.model_configs()}
        trainer = Trainer(task, loader, cfg, out, info, progress=False, stop_after=stop_after)
        logs = trainer.fit()
        return task, trainer, logs

    straight, _, logs = run(tmp_path / "a")
    assert 0.5 <= logs["mask_rate"] <= 1.0 and logs["lam_codes_used"] >= 1 and np.isfinite(logs["dyn_ce"])
    _, t1, _ = run(tmp_path / "b", stop_after=2)
    assert t1.step == 2
    resumed, t2, _ = run(tmp_path / "b", seed=99)  # different init: everything must come from the checkpoint
    assert t2.step == 4
    a, b = straight.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the finished run exports a self-contained model directory
    genie = Genie.from_pretrained(tmp_path / "b")
    assert genie.num_actions == preset.lam.vq.num_codes
    meta = json.loads((tmp_path / "b" / "model" / "genie.json").read_text())
    assert meta["sampling"]["context_frames"] <= genie.dynamics.cfg.max_frames
    for k, v in genie.dynamics.state_dict().items():
        assert torch.equal(v, b["dynamics." + k])

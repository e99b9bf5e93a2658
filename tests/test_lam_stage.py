"""The separate LAM stage: `genie train lam`, then `genie train dynamics --lam` on a token cache, with the
quick controllability check, and the ground-truth-action mode."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fixtures_models import micro_preset_dict, synthetic_store_dir, torch_threads  # noqa: F401

from genieworld.cli import main
from genieworld.config import LAMConfig
from genieworld.data.loader import WindowLoader
from genieworld.data.store import EpisodeStore
from genieworld.genie import Genie, load_component
from genieworld.lam import build_lam
from genieworld.lam_conv import ConvLatentActionModel
from genieworld.train.token_cache import (CachedWindowLoader, TokenCache, build_token_cache, encode_episode_actions,
                                          encode_episode_tokens)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def one_torch_thread():
    with torch_threads(1):
        yield


def _conv_preset(tmp_path):
    d = micro_preset_dict()
    d["lam"].update(arch="conv", max_frames=8)
    d["lam"]["conv"].update(channels=8, hidden=32, fdm_channels=8)
    d["lam_train"].update(steps=4, batch_size=8, seq_len=3, warmup_steps=1, checkpoint_every=1000)
    d["dynamics_train"].update(batch_size=2, seq_len=4, warmup_steps=1)
    p = tmp_path / "conv-preset.json"
    p.write_text(json.dumps(d))
    return p


@pytest.fixture
def trained(tmp_path, synthetic_store_dir):
    preset = _conv_preset(tmp_path)
    common = ["--data", str(synthetic_store_dir), "--preset", str(preset), "--no-progress"]
    assert main(["train", "tokenizer", "--out", str(tmp_path / "tok"), "--steps", "2", *common]) == 0
    assert main(["train", "lam", "--out", str(tmp_path / "lam"), *common]) == 0
    return tmp_path, preset, common


def test_train_lam_exports_a_conv_lam_that_a_frozen_dynamics_run_uses_from_a_cache(trained, synthetic_store_dir):
    tmp_path, preset, common = trained
    lam = load_component(build_lam, LAMConfig, tmp_path / "lam" / "lam")
    assert isinstance(lam, ConvLatentActionModel)
    world = tmp_path / "world"
    assert main(["train", "dynamics", "--tokenizer", str(tmp_path / "tok"), "--lam", str(tmp_path / "lam"),
                 "--out", str(world), "--steps", "3", "--eval-data", str(synthetic_store_dir), "--eval-every", "2",
                 *common]) == 0
    genie = Genie.from_pretrained(world / "model")
    assert isinstance(genie.lam, ConvLatentActionModel)
    # the exported LAM is the frozen one, unchanged by dynamics training
    for k, v in lam.state_dict().items():
        torch.testing.assert_close(genie.lam.state_dict()[k], v)
    cache = TokenCache(world / "cache")
    assert cache.meta["frames"] == EpisodeStore(synthetic_store_dir).num_frames
    lines = [json.loads(x) for x in (world / "control.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [2, 3]
    assert all(np.isfinite(x["delta_t_psnr"]) for x in lines)


def test_cache_matches_direct_encoding_follows_the_loader_order_and_is_rebuilt_when_the_lam_changes(
        trained, synthetic_store_dir, capsys):
    tmp_path, _, _ = trained
    from genieworld.config import TokenizerConfig
    from genieworld.tokenizer import VideoTokenizer

    tok = load_component(VideoTokenizer, TokenizerConfig, tmp_path / "tok" / "tokenizer")
    lam = load_component(build_lam, LAMConfig, tmp_path / "lam" / "lam")
    store = EpisodeStore(synthetic_store_dir)
    cache = build_token_cache(tmp_path / "cache", store, tok, lam, progress=False)
    frames = store.read_frames(1)
    # chunked encoding == one pass over the whole episode (the temporal band keeps chunks exact)
    full = tok.encode(torch.from_numpy(frames)[None])[0].numpy()
    np.testing.assert_array_equal(encode_episode_tokens(tok, frames), full)
    for chunk in (3, 8, 13):  # chunk boundaries inside the episode: each chunk gets its preceding context
        np.testing.assert_array_equal(encode_episode_tokens(tok, frames, chunk=chunk), full)
    lo = int(cache.offsets[1])
    np.testing.assert_array_equal(cache.tokens[lo:lo + len(frames)], full)
    acts = lam.encode_actions(torch.from_numpy(frames)[None])[0][0].numpy()
    np.testing.assert_array_equal(encode_episode_actions(lam, frames), acts)
    assert int(cache.actions[lo + len(frames) - 1]) == -1
    # same windows as the frame loader with the same seed
    plain = WindowLoader(store, seq_len=4, batch_size=3, seed=5)
    cached = CachedWindowLoader(store, cache, seq_len=4, batch_size=3, seed=5)
    for k in range(3):
        a, b = plain.make_batch(k), cached.make_batch(k)
        torch.testing.assert_close(a["episode"], b["episode"])
        torch.testing.assert_close(a["actions"], b["actions"])
        e, s = int(b["episode"][0]), int(b["start"][0])
        want = cache.tokens[int(cache.offsets[e]) + s:int(cache.offsets[e]) + s + 4].astype(np.int64)
        np.testing.assert_array_equal(b["tokens"][0].numpy(), want)
    # reopened when nothing changed (a store rewritten with the same content, only newer timestamps,
    # included), rebuilt (and said so) when the LAM's weights change
    capsys.readouterr()
    import shutil

    copy = tmp_path / "store-copy"
    shutil.copytree(store.path, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["updated"] = "2099-01-01T00:00:00+0000"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    build_token_cache(tmp_path / "cache", EpisodeStore(copy), tok, lam, progress=False)
    assert "rebuilding" not in capsys.readouterr().out
    # a new LAM: the latent actions are re-encoded, the tokens (same store, same tokenizer) kept
    old_tokens, old_actions = np.array(cache.tokens), np.array(cache.actions)
    with torch.no_grad():
        lam.vq.codebook.copy_(lam.vq.codebook.flip(0))  # the same codes, renumbered
    del cache
    relam = build_token_cache(tmp_path / "cache", store, tok, lam, progress=False)
    assert "keeping the tokens" in capsys.readouterr().out
    np.testing.assert_array_equal(relam.tokens, old_tokens)
    assert not np.array_equal(relam.actions, old_actions)  # renumbered codes: new action ids were written
    np.testing.assert_array_equal(relam.actions[lo:lo + len(frames) - 1], encode_episode_actions(lam, frames))
    assert relam.key["lam"] != cached.cache.key["lam"]
    # a new tokenizer: everything is rebuilt
    with torch.no_grad():
        next(tok.parameters()).add_(0.1)
    del relam
    rebuilt = build_token_cache(tmp_path / "cache", store, tok, lam, progress=False)
    assert "rebuilding" in capsys.readouterr().out
    assert rebuilt.key["tokenizer"] != cached.cache.key["tokenizer"]
    assert not (tmp_path / "cache.tmp").exists()


def test_ground_truth_mode_trains_on_recorded_actions_and_writes_no_playable_model(trained, synthetic_store_dir):
    tmp_path, _, common = trained
    world = tmp_path / "world-true"
    assert main(["train", "dynamics", "--tokenizer", str(tmp_path / "tok"), "--actions", "true", "--out", str(world),
                 "--steps", "2", "--eval-data", str(synthetic_store_dir), "--eval-every", "2",
                 "--lam", str(tmp_path / "lam"), "--cache", str(tmp_path / "shared-cache"), *common]) == 0
    assert (tmp_path / "shared-cache" / "cache.json").is_file() and not (world / "cache").exists()
    assert (world / "dynamics-true-actions" / "true_action_table.safetensors").is_file()
    assert not (world / "model").exists()
    line = json.loads((world / "control.jsonl").read_text().splitlines()[-1])
    assert np.isfinite(line["delta_t_psnr"])


def test_resuming_with_another_lam_is_refused(trained, synthetic_store_dir, capsys):
    tmp_path, _, common = trained
    world = tmp_path / "world"
    args = ["train", "dynamics", "--tokenizer", str(tmp_path / "tok"), "--out", str(world), "--stop-after", "1",
            "--steps", "3", *common]
    assert main(args + ["--lam", str(tmp_path / "lam")]) == 0
    assert main(args + ["--lam", str(tmp_path / "lam" / "lam")]) == 0  # the same LAM, named by its folder
    assert main(["train", "lam", "--out", str(tmp_path / "lam2"), "--seed", "1", *common]) == 0
    capsys.readouterr()
    assert main(args + ["--lam", str(tmp_path / "lam2")]) == 2
    assert "lam_digest" in capsys.readouterr().err


def test_init_from_starts_the_dynamics_from_a_model_and_a_longer_window_lengthens_play_context(
        trained, synthetic_store_dir, capsys):
    tmp_path, preset, common = trained
    d = json.loads(preset.read_text())
    d["dynamics"]["max_frames"] = 4
    d["sampling"]["context_frames"] = 4
    short = tmp_path / "preset-4.json"
    short.write_text(json.dumps(d))
    common = [x if x != str(preset) else str(short) for x in common]
    base = ["train", "dynamics", "--tokenizer", str(tmp_path / "tok"), "--lam", str(tmp_path / "lam"),
            "--cache", str(tmp_path / "cache"), *common]
    assert main(base + ["--out", str(tmp_path / "a"), "--steps", "2"]) == 0
    a = Genie.from_pretrained(tmp_path / "a" / "model")
    # one step at a vanishing rate: the exported dynamics is the one it started from, now on 6-frame windows
    # and playing 6 frames
    assert main(base + ["--out", str(tmp_path / "b"), "--steps", "1", "--lr", "1e-12", "--seq-len", "6",
                        "--init-from", str(tmp_path / "a")]) == 0
    b = Genie.from_pretrained(tmp_path / "b" / "model")
    assert b.dynamics.cfg.max_frames == 6 and b.sampling.context_frames == 6
    for k, v in a.dynamics.state_dict().items():
        torch.testing.assert_close(b.dynamics.state_dict()[k], v)
    run = json.loads((tmp_path / "b" / "run.json").read_text())
    assert len(run["init_from"]["dynamics_digest"]) == 64
    # resuming loads the checkpoint, not the start: the same command runs on after the start is gone,
    # and run.json keeps the record of where the run began
    import shutil

    shutil.copytree(tmp_path / "a" / "model", tmp_path / "start")
    resume = base + ["--out", str(tmp_path / "r"), "--steps", "2", "--init-from", str(tmp_path / "start")]
    assert main(resume + ["--stop-after", "1"]) == 0
    began = json.loads((tmp_path / "r" / "run.json").read_text())["init_from"]
    shutil.rmtree(tmp_path / "start")
    assert main(resume) == 0
    assert json.loads((tmp_path / "r" / "run.json").read_text())["init_from"] == began
    assert (tmp_path / "r" / "model" / "genie.json").is_file()
    # without --init-from the same run starts elsewhere
    assert main(base + ["--out", str(tmp_path / "c"), "--steps", "1", "--lr", "1e-12", "--seq-len", "6"]) == 0
    c = Genie.from_pretrained(tmp_path / "c" / "model")
    assert any(not torch.equal(c.dynamics.state_dict()[k], v) for k, v in a.dynamics.state_dict().items())
    # a model of another shape: one clear line, nothing written
    d["dynamics"]["transformer"]["d_model"] = 48
    d["dynamics"]["transformer"]["num_heads"] = 3
    wide = tmp_path / "preset-wide.json"
    wide.write_text(json.dumps(d))
    capsys.readouterr()
    wide_args = [x if x != str(short) else str(wide) for x in base]
    assert main(wide_args + ["--out", str(tmp_path / "w"), "--steps", "1", "--init-from", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "--init-from" in err and "d_model" not in err and "is (" in err
    assert not (tmp_path / "w").exists()
    # not a model folder
    assert main(base + ["--out", str(tmp_path / "x"), "--steps", "1", "--init-from", str(tmp_path / "lam")]) == 2
    assert "not a genieworld model directory" in capsys.readouterr().err


def test_a_new_setting_at_its_old_value_keeps_the_digest_of_caches_and_runs():
    """module_digest (token caches, run.json's lam_digest) must not change when a setting listed in
    config.ADDED_SETTINGS holds its old value, and must change when it does not; nor when a setting
    is removed (config.RETIRED_SETTINGS: digested at its off value, as before its removal)."""
    import hashlib
    from dataclasses import asdict, fields, replace

    from genieworld.config import ADDED_SETTINGS, RETIRED_SETTINGS, ConvLAMConfig, DynamicsConfig, SamplingConfig
    from genieworld.train.token_cache import module_digest

    classes = {"ConvLAMConfig": ConvLAMConfig, "LAMConfig": LAMConfig, "DynamicsConfig": DynamicsConfig,
               "SamplingConfig": SamplingConfig}
    for key, value in ADDED_SETTINGS.items():  # each listed at its default, the value older runs had
        cls, name = key.split(".")
        assert getattr(classes[cls](), name) == value, key
    for key in RETIRED_SETTINGS:  # gone from the dataclass, and never both added and retired
        cls, name = key.split(".")
        assert name not in {f.name for f in fields(classes[cls])} and key not in ADDED_SETTINGS, key
    cfg = LAMConfig(arch="conv", image_size=16, conv=ConvLAMConfig(channels=8, hidden=32, fdm_channels=8))
    torch.manual_seed(0)
    lam = build_lam(cfg)
    digest = module_digest(lam, cfg)
    old = asdict(cfg)
    for key in ADDED_SETTINGS:  # the LAM config as digested before these settings existed
        cls, name = key.split(".")
        if cls in ("ConvLAMConfig", "LAMConfig"):
            (old["conv"] if cls == "ConvLAMConfig" else old).pop(name)
    for key, retired in RETIRED_SETTINGS.items():  # ... and before these were removed
        cls, name = key.split(".")
        if cls in ("ConvLAMConfig", "LAMConfig") and retired.digested:
            (old["conv"] if cls == "ConvLAMConfig" else old)[name] = retired.off
    h = hashlib.sha256(json.dumps(old, sort_keys=True).encode())
    for name, t in sorted(lam.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    assert digest == h.hexdigest()
    assert module_digest(lam, replace(cfg, conv=replace(cfg.conv, nce_crop=16))) != digest
    assert module_digest(lam, replace(cfg, merge="context")) != digest


def test_spread_episodes_picks_an_evenly_spread_share():
    from genieworld.data.loader import spread_episodes

    np.testing.assert_array_equal(spread_episodes(10, 0.5), [0, 2, 4, 6, 8])
    np.testing.assert_array_equal(spread_episodes(10, 0.3), [0, 3, 6])
    np.testing.assert_array_equal(spread_episodes(3, 0.01), [0])  # never none at all
    assert spread_episodes(10, 1.0) is None
    for bad in (0.0, -0.5, 1.5, float("nan")):
        with pytest.raises(ValueError, match="data fraction"):
            spread_episodes(10, bad)


def test_a_data_fraction_trains_on_and_caches_only_its_episodes(trained, synthetic_store_dir, capsys):
    from genieworld.data.loader import spread_episodes

    tmp_path, _, common = trained
    store = EpisodeStore(synthetic_store_dir)
    half = spread_episodes(store.num_episodes, 0.5)
    assert 0 < len(half) < store.num_episodes
    cache_dir = tmp_path / "shared-cache"
    base = ["train", "dynamics", "--tokenizer", str(tmp_path / "tok"), "--lam", str(tmp_path / "lam"),
            "--cache", str(cache_dir), "--steps", "2", *common]
    assert main(base + ["--out", str(tmp_path / "w-half"), "--data-fraction", "0.5"]) == 0
    cache = TokenCache(cache_dir)
    np.testing.assert_array_equal(cache.encoded, half)
    skipped = np.setdiff1d(np.arange(store.num_episodes), half)
    for e in (int(half[1]), int(skipped[0])):
        lo, hi = int(cache.offsets[e]), int(cache.offsets[e + 1])
        if e in half:
            assert cache.tokens[lo:hi].any() and (cache.actions[lo:hi - 1] >= 0).all()
        else:  # never encoded, never read
            assert not cache.tokens[lo:hi].any() and (cache.actions[lo:hi] == -1).all()
    # a loader over the subset reads only its episodes; one over the whole store refuses this cache
    sub = CachedWindowLoader(store, cache, seq_len=4, batch_size=4, seed=0, episodes=half)
    for k in range(5):
        assert set(sub.make_batch(k)["episode"].tolist()) <= set(half.tolist())
    with pytest.raises(ValueError, match="did not encode every episode"):
        CachedWindowLoader(store, cache, seq_len=4, batch_size=4, seed=0)
    genie_json = json.loads((tmp_path / "w-half" / "model" / "genie.json").read_text())
    assert f"{len(half)} of {store.num_episodes}" in json.dumps(genie_json)

    # the whole store next: the cache is rebuilt with every episode, and then serves the half run as is
    capsys.readouterr()
    assert main(base + ["--out", str(tmp_path / "w-all")]) == 0
    assert "rebuilding" in capsys.readouterr().out
    assert TokenCache(cache_dir).encoded is None
    assert main(base + ["--out", str(tmp_path / "w-half2"), "--data-fraction", "0.5"]) == 0
    assert "rebuilding" not in capsys.readouterr().out

    # resuming the half run on the whole store is refused: the batch order would differ
    assert main(base[:-len(common) - 2] + ["--steps", "3", *common, "--out", str(tmp_path / "w-half")]) == 2
    assert "data-fraction" in capsys.readouterr().err
    assert main(base + ["--out", str(tmp_path / "w-bad"), "--data-fraction", "1.5"]) == 2
    assert "--data-fraction: 1.5 is outside the allowed range" in capsys.readouterr().err

"""genieworld deletes, replaces or fills only folders it made (genieworld.owned), and every place that
removes or replaces a folder goes through that gate: token caches, checkpoints, stores, eval reports,
model directories, prompts, the recipe's tokenizer copy and the demo's output."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fixtures_models import micro_preset_dict, synthetic_store_dir, torch_threads, untrained_model_dir  # noqa: F401

from genieworld import owned
from genieworld.cli import main
from genieworld.data.store import EpisodeStore
from genieworld.errors import UserError


def _victim(path):
    path.mkdir(parents=True)
    (path / "thesis.txt").write_text("years of work\n")
    (path / "sub").mkdir()
    (path / "sub" / "data.bin").write_bytes(b"\x00" * 10)
    return path


def _intact(path):
    assert (path / "thesis.txt").read_text() == "years of work\n"
    assert (path / "sub" / "data.bin").stat().st_size == 10


def _snapshot(path):
    return sorted((p.relative_to(path).as_posix(), p.stat().st_size) for p in path.rglob("*") if p.is_file())


# --- the mechanism -----------------------------------------------------------------------------------

def test_claim_creates_marks_and_refuses_a_foreign_folder(tmp_path):
    out = owned.claim(tmp_path / "a" / "cache", "token-cache")
    assert owned.marked_kind(out) == "token-cache" and owned.is_ours(out, "token-cache")
    assert not owned.is_ours(out, "checkpoint")  # marked as another kind
    victim = _victim(tmp_path / "victim")
    with pytest.raises(owned.NotOursError, match="thesis.txt"):
        owned.claim(victim, "token-cache")
    with pytest.raises(owned.NotOursError):
        owned.remove(victim, "eval-report")
    _intact(victim)
    assert not (victim / owned.MARKER).exists()


def test_a_marked_folder_that_holds_a_foreign_file_is_not_deleted(tmp_path):
    cache = owned.claim(tmp_path / "cache", "token-cache")
    (cache / "tokens.npy").write_bytes(b"x")
    (cache / "notes.md").write_text("mine")
    with pytest.raises(owned.NotOursError, match="notes.md"):
        owned.remove(cache, "token-cache")
    assert (cache / "notes.md").read_text() == "mine"


def test_a_symlink_and_a_planted_fifo_marker_are_refused(tmp_path):
    victim = _victim(tmp_path / "victim")
    link = tmp_path / "link"
    link.symlink_to(victim)
    with pytest.raises(owned.NotOursError, match="symbolic link"):
        owned.remove(link, "token-cache")
    d = tmp_path / "d"
    d.mkdir()
    import os

    os.mkfifo(d / owned.MARKER)
    assert owned.marked_kind(d) is None  # never blocks on the FIFO
    with pytest.raises(owned.NotOursError, match="damaged"):
        owned.remove(d, "token-cache")
    _intact(victim)


def test_a_folder_made_before_the_marker_is_recognised_by_its_entries(tmp_path):
    legacy = tmp_path / "old-cache"
    legacy.mkdir()
    for n in ("cache.json", "tokens.npy", "actions.npy"):
        (legacy / n).write_bytes(b"x")
    assert owned.is_ours(legacy, "token-cache")
    owned.remove(legacy, "token-cache")
    assert not legacy.exists()
    owned.remove(legacy, "token-cache")  # absent: nothing to do


# --- every place that removes or replaces a folder ---------------------------------------------------

@pytest.fixture
def tiny_parts(untrained_model_dir):
    from genieworld.genie import Genie

    g = Genie.from_pretrained(untrained_model_dir)
    return g.tokenizer, g.lam


@pytest.mark.parametrize("target", ["victim", "store"])
def test_token_cache_never_deletes_a_folder_named_as_cache(tmp_path, synthetic_store_dir, tiny_parts, target):
    from genieworld.train.token_cache import build_token_cache

    import shutil

    store_dir = tmp_path / "store"
    shutil.copytree(synthetic_store_dir, store_dir)
    before_store = _snapshot(store_dir)
    cache = _victim(tmp_path / "victim") if target == "victim" else store_dir
    before = _snapshot(cache)
    with torch_threads(1), pytest.raises(owned.NotOursError):
        build_token_cache(cache, EpisodeStore(store_dir), *tiny_parts, progress=False)
    assert _snapshot(cache) == before
    assert _snapshot(store_dir) == before_store
    EpisodeStore(store_dir).verify()


def test_token_cache_never_deletes_a_foreign_tmp_folder(tmp_path, synthetic_store_dir, tiny_parts):
    from genieworld.train.token_cache import build_token_cache

    victim = _victim(tmp_path / "cache.tmp")
    with torch_threads(1), pytest.raises(owned.NotOursError):
        build_token_cache(tmp_path / "cache", EpisodeStore(synthetic_store_dir), *tiny_parts, progress=False)
    _intact(victim)


def test_train_dynamics_cache_victim_exits_2_and_loses_nothing(tmp_path, synthetic_store_dir, untrained_model_dir,
                                                                capsys):
    import shutil

    store_dir = tmp_path / "store"
    shutil.copytree(synthetic_store_dir, store_dir)
    preset = tmp_path / "p.json"
    preset.write_text(json.dumps(micro_preset_dict()))
    for target in (_victim(tmp_path / "victim"), store_dir):
        before = _snapshot(target)
        with torch_threads(1):
            rc = main(["train", "dynamics", "--data", str(store_dir), "--tokenizer", str(untrained_model_dir / "tokenizer"),
                       "--lam", str(untrained_model_dir / "lam"), "--out", str(tmp_path / "run"), "--cache", str(target),
                       "--steps", "1", "--preset", str(preset), "--no-progress"])
        assert rc == 2
        assert "refusing" in capsys.readouterr().err
        assert _snapshot(target) == before


def test_checkpoint_save_never_replaces_or_prunes_a_foreign_step_folder(tmp_path):
    from genieworld.train.checkpoint import save_checkpoint

    run = tmp_path / "run"
    m = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    sch = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    victim = _victim(run / "checkpoints" / "step_00000005")
    with pytest.raises(owned.NotOursError):
        save_checkpoint(run, 5, m, {}, opt, sch, {})
    _intact(victim)
    # retention: the foreign folder counts as old but is never removed
    for s in (6, 7, 8, 9):
        save_checkpoint(run, s, m, {}, opt, sch, {}, keep=2)
    _intact(victim)
    assert sorted(p.name for p in (run / "checkpoints").glob("step_*")) == [
        "step_00000005", "step_00000008", "step_00000009"]
    assert not list((run / "checkpoints").glob(".tmp-*"))


def test_eval_report_model_dir_and_prompts_refuse_a_foreign_folder(tmp_path, untrained_model_dir, synthetic_store_dir):
    from genieworld.genie import Genie
    from genieworld.prompts import write_prompts

    g = Genie.from_pretrained(untrained_model_dir)
    victim = _victim(tmp_path / "victim")
    with pytest.raises(owned.NotOursError):
        g.save_pretrained(victim)
    _intact(victim)
    assert not (victim / "genie.json").exists()
    # a model directory whose prompts/ folder is someone else's
    model = tmp_path / "model"
    g.save_pretrained(model)
    _victim(model / "prompts")
    with pytest.raises(owned.NotOursError):
        write_prompts(model, EpisodeStore(synthetic_store_dir), n=2)
    _intact(model / "prompts")
    # genie eval --out VICTIM: one line, exit 2, nothing written
    before = _snapshot(victim)
    with torch_threads(1):
        rc = main(["eval", str(untrained_model_dir), "--data", str(synthetic_store_dir), "--out", str(victim),
                   "--episodes", "1", "--horizon", "3", "--no-fvd"])
    assert rc == 2 and _snapshot(victim) == before


def test_synthetic_store_overwrite_and_recipe_tokenizer_copy_only_remove_their_own(tmp_path, untrained_model_dir):
    from genieworld.commands.recipe import _copy_tokenizer
    from genieworld.data.synthetic import make_synthetic_store

    fake = _victim(tmp_path / "fake-store")
    (fake / "manifest.json").write_text("{}")
    with pytest.raises(UserError):
        make_synthetic_store(fake, episodes=1, length=4, size=16, overwrite=True)
    _intact(fake)
    real = make_synthetic_store(tmp_path / "s", episodes=1, length=4, size=16)
    make_synthetic_store(real.path, episodes=2, length=4, size=16, overwrite=True)
    assert EpisodeStore(real.path).num_episodes == 2

    dst = _victim(tmp_path / "recipe" / "tokenizer" / "tokenizer")
    with pytest.raises(UserError):
        _copy_tokenizer(untrained_model_dir / "tokenizer", tmp_path / "recipe" / "tokenizer")
    _intact(dst)


def test_demo_out_refuses_a_foreign_folder(tmp_path):
    from genieworld.demo import main as demo_main

    victim = _victim(tmp_path / "victim")
    before = _snapshot(victim)
    assert demo_main(["--out", str(victim), "--no-play"]) == 2
    assert _snapshot(victim) == before


def test_a_damaged_cache_is_rebuilt_and_says_so(tmp_path, synthetic_store_dir, tiny_parts, capsys):
    from genieworld.train.token_cache import TokenCache, build_token_cache

    store = EpisodeStore(synthetic_store_dir)
    with torch_threads(1):
        good = build_token_cache(tmp_path / "c", store, *tiny_parts, progress=False)
    ref_tokens, ref_actions = np.array(good.tokens), np.array(good.actions)
    del good
    n_codes = tiny_parts[0].cfg.vq.num_codes

    def damage(kind):
        t = np.array(ref_tokens)
        a = np.array(ref_actions)
        if kind == "shape":
            np.save(tmp_path / "c" / "tokens.npy", t[:-1])
        elif kind == "token-range":
            t[3, 2] = n_codes
            np.save(tmp_path / "c" / "tokens.npy", t)
        elif kind == "action-range":
            a[1] = 99
            np.save(tmp_path / "c" / "actions.npy", a)
        elif kind == "swapped":
            np.save(tmp_path / "c" / "tokens.npy", a)
            np.save(tmp_path / "c" / "actions.npy", t)
        elif kind == "not-npy":
            (tmp_path / "c" / "tokens.npy").write_bytes(b"garbage")

    for kind in ("shape", "token-range", "action-range", "swapped", "not-npy"):
        damage(kind)
        capsys.readouterr()
        with torch_threads(1):
            c = build_token_cache(tmp_path / "c", store, *tiny_parts, progress=False)
        assert "rebuilding" in capsys.readouterr().out, kind
        np.testing.assert_array_equal(c.tokens, ref_tokens)
        np.testing.assert_array_equal(c.actions, ref_actions)
        del c
    TokenCache(tmp_path / "c").check(n_codes)

"""Tests for `genie eval`: the evaluation protocol (genieworld.eval.evaluate) and its report.

Model tests use the session's tiny trained model (``tiny_model_dir``, trained on the
synthetic moving-square store) with few, short clips; FVD runs once, on 2 clips.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from fixtures_models import _tiny_model_cached, synthetic_store_dir, tiny_model_dir  # noqa: F401  (fixtures)
from genieworld.cli import main
from genieworld.data.store import EpisodeStore, EpisodeWriter
from genieworld.eval.evaluate import (
    EvalConfig,
    data_overlap,
    delta_t_summary,
    evaluate,
    latent_action_summary,
    per_step_summary,
    random_actions,
    select_clips,
    training_data_paths,
)
from genieworld.eval.report import FILES


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # the tiny models are far faster single-threaded, above all on shared, oversubscribed cores
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _quick(**kw) -> EvalConfig:
    base = dict(episodes=2, horizon=5, fvd=False, grid_frames=0, progress=False, batch_size=4)
    base.update(kw)
    return EvalConfig(**base)


def _level_store(path: Path, levels: list[int], length: int = 6) -> Path:
    rng = np.random.default_rng(0)
    with EpisodeWriter(path, resolution=(8, 8), fps=15.0, source="test", num_actions=3) as w:
        for lv in levels:
            w.add_episode(rng.integers(0, 255, size=(length, 8, 8, 3), dtype=np.uint8),
                          rng.integers(0, 3, size=length - 1), meta={"level": lv})
    return path


def _model_in_run(tmp_path: Path, model_dir: Path, data: Path) -> Path:
    """A training-run layout RUN/model + RUN/run.json naming the training data (as `genie train` writes)."""
    run = tmp_path / "run"
    shutil.copytree(model_dir, run / "model")
    (run / "run.json").write_text(json.dumps({"component": "dynamics", "data": str(data)}))
    return run / "model"


# ----------------------------------------------------------------------------- pure parts


def test_select_clips_deterministic_disjoint_in_bounds() -> None:
    lengths = [40, 5, 100, 16, 64, 30]
    a = select_clips(lengths, episodes=4, horizon=16, seed=3, clips_per_episode=3)
    assert a == select_clips(lengths, episodes=4, horizon=16, seed=3, clips_per_episode=3)
    assert a != select_clips(lengths, episodes=4, horizon=16, seed=4, clips_per_episode=3)
    assert {ep for ep, _ in a} <= {0, 2, 3, 4, 5} and len({ep for ep, _ in a}) == 4  # episode 1 is too short
    for ep, s in a:
        assert 0 <= s and s + 16 <= lengths[ep]
    for ep in {ep for ep, _ in a}:  # clips of one episode never overlap
        starts = sorted(s for e, s in a if e == ep)
        assert len(starts) == min(3, lengths[ep] // 16)
        assert all(b - x >= 16 for x, b in zip(starts, starts[1:]))
    assert len(select_clips(lengths, episodes=99, horizon=16, seed=0)) == 5  # capped at the eligible episodes
    from genieworld.errors import UserError

    with pytest.raises(UserError, match="no episode has 101 frames"):
        select_clips(lengths, episodes=2, horizon=101, seed=0)
    r = random_actions(5, 7, 4, seed=1)
    assert r.shape == (5, 7) and r.min() >= 0 and r.max() < 4 and np.array_equal(r, random_actions(5, 7, 4, seed=1))


def test_summaries_on_known_arrays() -> None:
    vals = np.array([[30.0, 10.0, 20.0, 40.0], [30.0, 20.0, 30.0, 60.0]])
    s = per_step_summary(vals, prompt_frames=1, callouts=(4, 16))
    assert s["per_step"] == [30.0, 15.0, 25.0, 50.0]
    assert s["mean"] == pytest.approx(30.0)  # generated frames t = 2..4 only
    assert s["t4"] == 50.0 and s["t16"] is None
    # Delta_t PSNR from frames: random rollout = real + noise, inferred = real exactly -> capped 100 dB
    rng = np.random.default_rng(0)
    real = rng.random((3, 5, 8, 8, 3)).astype(np.float32)
    noise = np.clip(real + 0.1 * rng.standard_normal(real.shape).astype(np.float32), 0, 1)
    d = delta_t_summary(real, real, noise, t=4)
    from genieworld.eval.metrics import psnr

    expect = 100.0 - psnr(torch.from_numpy(real[:, 3]), torch.from_numpy(noise[:, 3])).mean().item()
    assert d["value"] == pytest.approx(expect) and d["t"] == 4 and d["clips"] == 3
    assert delta_t_summary(real, noise, noise, t=4)["value"] == 0.0
    # latent actions: a relabelling of the truth is perfect; one cluster is at chance
    true = np.array([0, 1, 2, 2, 1, 0, 2, 2])
    la = latent_action_summary((true + 1) % 3, true, num_latent=4, num_true=3)
    assert la["nmi"] == pytest.approx(1.0) and la["purity"] == 1.0 and la["transitions"] == 8
    assert np.asarray(la["confusion"]).shape == (4, 3) and np.asarray(la["confusion"]).sum() == 8
    one = latent_action_summary(np.zeros(8, int), true, num_latent=4, num_true=3)
    assert one["nmi"] == 0.0 and one["purity"] == one["purity_chance"] == 0.5


def test_training_data_paths_and_level_overlap(tmp_path: Path) -> None:
    train = _level_store(tmp_path / "train", [0, 1, 2])
    held_out = _level_store(tmp_path / "test", [100, 101])
    leaky = _level_store(tmp_path / "leaky", [2, 100])
    model = tmp_path / "run" / "model"
    model.mkdir(parents=True)
    (model / "genie.json").write_text(json.dumps({"provenance": {"tokenizer": str(tmp_path / "tok" / "tokenizer")}}))
    (tmp_path / "run" / "run.json").write_text(json.dumps({"data": str(train), "tokenizer": str(tmp_path / "tok")}))
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "run.json").write_text(json.dumps({"data": str(tmp_path / "tokdata")}))
    assert training_data_paths(model) == [str(train), str(tmp_path / "tokdata")]

    clean = data_overlap([str(train)], EpisodeStore(held_out), held_out)
    assert not clean["overlap"] and clean["warning"] is None and clean["details"][0]["shared_levels"] == 0
    bad = data_overlap([str(train), str(tmp_path / "tokdata")], EpisodeStore(leaky), leaky)
    assert bad["overlap"] and "1 of its 2 levels are training levels" in bad["warning"]
    assert bad["details"][1]["checked"] is False  # missing store: reported, not fatal
    same = data_overlap([str(train)], EpisodeStore(train), train)
    assert same["overlap"] and "training store" in same["warning"] and "itself" in same["warning"]
    assert data_overlap([], EpisodeStore(train), train)["note"]


# ----------------------------------------------------------------------------- with the tiny model


def test_delta_t_psnr_is_zero_when_dynamics_ignores_actions(tiny_model_dir, synthetic_store_dir) -> None:
    from genieworld.genie import Genie

    genie = Genie.from_pretrained(tiny_model_dir)
    store = EpisodeStore(synthetic_store_dir)
    x = torch.from_numpy(store.read_frames(0, 0, 1))[None]
    # sanity: as trained, the model's frames depend on the action (so the check below is not vacuous)
    a = genie.rollout(x, torch.zeros(1, 3, dtype=torch.long), seed=0)
    b = genie.rollout(x, torch.full((1, 3), genie.num_actions - 1, dtype=torch.long), seed=0)
    assert not torch.equal(a, b)

    with torch.no_grad():  # actions enter the dynamics only through this projection
        genie.dynamics.action_proj.weight.zero_()
        genie.dynamics.action_proj.bias.zero_()
    res = evaluate(genie, store, _quick(episodes=3, horizon=6, seed=1))
    d = res.metrics["delta_t_psnr"]
    assert d["t"] == 4 and d["generated_steps_at_t"] == 3 and d["clips"] == 3
    assert (res.random_actions != res.inferred_actions[:, :5]).any()  # the two rollouts got different actions
    assert abs(d["value"]) < 1e-6
    assert max(abs(v) for v in d["per_step"]) < 1e-6
    assert np.array_equal(res.generated, res.generated_random)


def test_evaluate_is_deterministic_given_seed(tiny_model_dir, synthetic_store_dir) -> None:
    from genieworld.genie import Genie

    genie = Genie.from_pretrained(tiny_model_dir)
    store = EpisodeStore(synthetic_store_dir)
    r1 = evaluate(genie, store, _quick(seed=5))
    r2 = evaluate(genie, store, _quick(seed=5))
    assert np.array_equal(r1.generated, r2.generated) and np.array_equal(r1.generated_random, r2.generated_random)
    strip = lambda m: {k: v for k, v in m.items() if k not in ("timing",)}  # noqa: E731
    assert json.dumps(strip(r1.metrics), sort_keys=True) == json.dumps(strip(r2.metrics), sort_keys=True)
    r3 = evaluate(genie, store, _quick(seed=6))
    assert r3.metrics["settings"]["clips"] != r1.metrics["settings"]["clips"]


def test_evaluate_without_ground_truth_actions(tiny_model_dir, synthetic_store_dir, tmp_path) -> None:
    from genieworld.genie import Genie

    src = EpisodeStore(synthetic_store_dir)
    with EpisodeWriter(tmp_path / "noact", resolution=src.resolution, fps=src.fps, source="video") as w:
        for i in range(2):
            w.add_episode(src.read_frames(i, 0, 8))
    res = evaluate(Genie.from_pretrained(tiny_model_dir), EpisodeStore(tmp_path / "noact"), _quick())
    assert "skipped" in res.metrics["latent_actions"] and res.metrics["codebook_usage"]["lam"]["transitions"] == 8
    assert res.metrics["fvd"]["value"] is None and "--no-fvd" in res.metrics["fvd"]["skipped"]
    assert res.metrics["data_overlap"]["note"]  # no model path given: overlap not checked


def test_eval_cli_report_with_fvd_and_overlap_warning(tiny_model_dir, synthetic_store_dir, tmp_path, capsys) -> None:
    from PIL import Image

    model = _model_in_run(tmp_path, tiny_model_dir, synthetic_store_dir)  # trained on synthetic_store_dir
    # the run folder is passed (RUN, not RUN/model): the model and its run.json are still found
    out = tmp_path / "report"
    rc = main(["eval", str(model.parent), "--data", str(synthetic_store_dir), "--episodes", "2", "--horizon", "10",
               "--seed", "0", "--out", str(out), "--no-progress", "--device", "cpu"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "warning: the evaluation data overlaps the training data" in cap.err  # eval data = training data
    assert "report:" in cap.out and "Delta_t PSNR" in cap.out

    for name in FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    for name in ("rollouts.png", "action_grid.png", "psnr_per_step.png"):
        with Image.open(out / name) as im:
            im.load()
            assert im.format == "PNG" and im.width > 100 and im.height > 50
    with Image.open(out / "rollouts.gif") as im:
        assert im.format == "GIF" and im.n_frames == 10  # one GIF frame per t = 1..horizon

    m = json.loads((out / "metrics.json").read_text())
    for key in ("settings", "tokenizer_reconstruction", "generation", "delta_t_psnr", "fvd", "latent_actions",
                "codebook_usage", "data_overlap", "versions", "warnings"):
        assert key in m, key
    s = m["settings"]
    assert s["prompt_frames"] == 1 and s["horizon"] == 10 and s["num_clips"] == 2 and s["seed"] == 0
    assert s["model"] == str(model.resolve()) and s["data"] == str(Path(synthetic_store_dir).resolve())
    for key in ("maskgit_steps", "temperature", "frame_indexing", "seeds", "episodes_used", "clips"):
        assert s[key] is not None, key
    g = m["generation"]
    assert len(g["psnr"]["per_step"]) == 10 and len(g["ssim"]["per_step"]) == 10
    assert g["psnr"]["t4"] is not None and g["psnr"]["t16"] is None  # horizon 10 < 16
    still = g["still_prompt"]["psnr"]  # the prompt held still: at t = 1 it is the rollout's own first frame
    assert still["t4"] is not None and still["per_step"][0] == pytest.approx(g["psnr"]["per_step"][0], abs=0.5)
    assert 0 < g["psnr"]["mean"] <= 100 and -1 <= g["ssim"]["mean"] <= 1
    assert 0 < m["tokenizer_reconstruction"]["psnr"] <= 100
    assert m["delta_t_psnr"]["t"] == 4 and np.isfinite(m["delta_t_psnr"]["value"])
    fv = m["fvd"]
    assert fv["clips"] == 2 and fv["clip_length"] == 10 and fv["feature"] == "logits" and fv["feature_dim"] == 400
    assert np.isfinite(fv["value"]) and fv["value"] >= -1e-6 and fv["biased"] and "biased" in fv["note"]
    la = m["latent_actions"]  # the synthetic store has ground-truth actions
    assert 0 <= la["nmi"] <= 1 and 0 <= la["purity"] <= 1 and la["transitions"] == 2 * 9
    assert np.asarray(la["confusion"]).sum() == 18
    cb = m["codebook_usage"]
    assert cb["tokenizer"]["used"] >= 1 and cb["lam"]["num_codes"] == s["num_actions"]
    assert m["data_overlap"]["overlap"] and m["warnings"]
    gm = m["grid_motion"]  # what each action of the grid does to the view
    assert len(gm["actions"]) == s["num_actions"] and gm["prompts"] >= 1 and gm["steps"] >= 1
    md = (out / "report.md").read_text()
    for text in ("ΔtPSNR", "FVD", "NMI", "Codebook usage", "prompt held still", "rollouts.gif", "action_grid.png", "psnr_per_step.png",
                 "Warning", "moves the view"):
        assert text in md, text


def test_eval_cli_rejects_bad_input(tiny_model_dir, synthetic_store_dir, tmp_path, capsys) -> None:
    rc = main(["eval", str(tmp_path / "nope"), "--data", str(synthetic_store_dir), "--out", str(tmp_path / "r")])
    assert rc == 2 and "no such model folder" in capsys.readouterr().err
    rc = main(["eval", str(tiny_model_dir), "--data", str(tmp_path), "--out", str(tmp_path / "r")])
    assert rc == 2 and "genie: error:" in capsys.readouterr().err
    rc = main(["eval", str(tiny_model_dir), "--data", str(synthetic_store_dir), "--out", str(tmp_path / "r"),
               "--horizon", "500", "--no-progress"])
    assert rc == 2 and "no episode has 500 frames" in capsys.readouterr().err
    rc = main(["eval", str(tiny_model_dir), "--data", str(synthetic_store_dir), "--out", str(tmp_path / "r"),
               "--action-guidance", "-1"])
    assert rc == 2 and "--action-guidance: -1.0 is outside the allowed range [0, 100]" in capsys.readouterr().err
    assert not (tmp_path / "r" / "metrics.json").exists()

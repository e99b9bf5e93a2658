"""Play-quality evaluation: drivers, FVD against the real floor, drift blocks, and the action judge
(a supervised IDM on real frames) with its cache, naming and following summary."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from fixtures_models import synthetic_store_dir, torch_threads, untrained_model_dir  # noqa: F401

from genieworld.data.store import EpisodeStore
from genieworld.eval import play_quality as pq
from genieworld.eval.judge import JudgeConfig, judge_accuracy, load_or_train_judge, train_judge, triples_of


def test_button_names_say_direction_and_jump():
    assert pq.intended("Right+Jump#2") == (2, 1)
    assert pq.intended("Fall Left") == (0, 0)
    assert pq.intended("Stay") == (1, 0)
    assert pq.intended("Jump") == (1, 1)
    assert pq.judge_name([0.1, 0.2, 0.7], 0.9) == "Right+Jump"
    assert pq.judge_name([0.2, 0.7, 0.1], 0.1) == "Stay"
    assert pq._agrees("Fall Right", "Right") and not pq._agrees("Right+Jump#2", "Jump")


def test_player_actions_hold_each_press_two_to_five_steps():
    a = pq.player_actions(np.random.default_rng(0), 50, 40, 8)
    assert a.shape == (50, 40) and a.min() >= 0 and a.max() < 8
    runs = []
    for row in a:
        k = 0
        while k < len(row):
            j = k
            while j < len(row) and row[j] == row[k]:
                j += 1
            runs.append(j - k)
            k = j
    assert min(runs) >= 1 and np.mean(runs) >= 2.5  # presses last; a repeat of the same latent only lengthens one


def test_triples_are_consecutive_and_start_where_asked():
    v = np.arange(2 * 6).reshape(2, 6, 1, 1, 1).astype(np.uint8) * np.ones((1, 1, 2, 2, 3), np.uint8)
    t = triples_of(v, start=2)
    assert t.shape == (2 * 3, 3, 2, 2, 3)
    assert [int(x) for x in t[0, :, 0, 0, 0]] == [1, 2, 3]


def test_real_clips_are_disjoint_windows(synthetic_store_dir):
    store = EpisodeStore(synthetic_store_dir)
    clips = pq.real_clips(store, 3, length=8, seed=0)
    assert clips.shape[:3] == (2, 3, 8)
    flat = clips.reshape(6, -1)
    assert len({row.tobytes() for row in flat}) == 6
    with pytest.raises(ValueError, match="windows"):
        pq.real_clips(store, 1000, length=8)


def test_judge_learns_real_actions_and_is_cached_by_store(tmp_path, synthetic_store_dir, capsys):
    store = EpisodeStore(synthetic_store_dir)
    cfg = JudgeConfig(image_size=store.resolution[0], steps=150, batch_size=32, channels=8)
    with torch_threads(1):
        net, info = load_or_train_judge(tmp_path / "judge", store, store, cfg, progress=False)
        acc = info["heldout"]
        assert acc["acc"] > acc["majority"] + 0.15, acc  # the moving square's direction is readable
        again, info2 = load_or_train_judge(tmp_path / "judge", store, store, cfg, progress=False)
    assert info2 == info  # reused, not retrained
    for k, v in net.state_dict().items():
        torch.testing.assert_close(again.state_dict()[k], v)
    # a damaged judge is trained again, and says so
    (tmp_path / "judge" / "model.safetensors").write_bytes(b"junk")
    with torch_threads(1):
        load_or_train_judge(tmp_path / "judge", store, store, JudgeConfig(image_size=store.resolution[0], steps=2,
                                                                          batch_size=4, channels=8), progress=False)
    assert "training again" in capsys.readouterr().out


def test_following_summary_averages_direction_buttons_and_scores_left_and_right_alone():
    def button(latent, name, follows, jump=0.0):
        d, j = pq.intended(name)
        return {"latent": latent, "intended": {"direction": ("left", "none", "right")[d], "jump": bool(j)},
                "following_direction": follows, "judge_jump": jump, "agrees": True}

    per = {"Left": button(0, "Left", 0.8), "Fall Left": button(1, "Fall Left", 0.6),
           "Right": button(2, "Right", 0.9), "Right+Jump": button(3, "Right+Jump", 0.5, jump=0.95),
           "Jump": button(4, "Jump", 0.9, jump=0.9)}
    real = {"real_following_direction": {"Left": 1.0, "Right": 0.9}}
    s = pq.summarise_following(per, real)
    assert s["left_following"] == 0.7 and s["left_following_vs_game"] == 0.7  # Left and Fall Left
    assert s["right_following"] == 0.9 and s["right_following_vs_game"] == 1.0  # Right alone (a jump excluded)
    assert s["left_button_vs_game"] == 0.8 and s["right_button_vs_game"] == 1.0
    assert s["jump_buttons_read_as_jump_min"] == 0.9 and s["names_agreeing"] == 5 == s["buttons"]
    assert "left_button_vs_game" not in pq.summarise_following({"Fall Left": per["Fall Left"]}, real)


def test_play_quality_reports_every_driver_drift_and_following(synthetic_store_dir, untrained_model_dir):
    from genieworld.genie import Genie

    store = EpisodeStore(synthetic_store_dir)
    g = Genie.from_pretrained(untrained_model_dir)
    with torch_threads(1):
        judge = train_judge(store, JudgeConfig(image_size=store.resolution[0], steps=2, batch_size=4, channels=8))
        info = {"heldout": judge_accuracy(judge, store, n=50)}
        r = pq.play_quality(g, store, n=3, length=10, long_length=21, judge=judge, judge_info=info, hold_prompts=2,
                            hold_steps=4, progress=False)
    for d in pq.DRIVERS:
        assert np.isfinite(r[f"fvd_{d}"]) and r[f"excess_{d}"] == pytest.approx(r[f"fvd_{d}"] - r["fvd_floor"], abs=0.11)
    assert r["fvd_player_long_block_ends"] == [11, 21] and len(r["fvd_player_long_blocks"]) == 2
    assert r["drift_ratio"] == pytest.approx(r["fvd_player_long_blocks"][-1] / r["fvd_player_long_blocks"][0], rel=1e-2)
    assert len(r["psnr_own_by_t"]) == 9
    assert len(r["following"]) == g.num_actions
    s = r["following_summary"]
    assert s["buttons"] == g.num_actions and 0 <= s["names_agreeing"] <= g.num_actions
    json.dumps(r)  # JSON-able


def test_play_quality_measures_only_the_drivers_asked_for(synthetic_store_dir, untrained_model_dir):
    from genieworld.genie import Genie

    store = EpisodeStore(synthetic_store_dir)
    g = Genie.from_pretrained(untrained_model_dir)
    with torch_threads(1):
        r = pq.play_quality(g, store, n=3, length=10, long_length=0, progress=False, drivers=("player",))
        assert "fvd_player" in r and not any(f"fvd_{d}" in r for d in ("own", "random", "held"))
        assert "drift_ratio" not in r
        with pytest.raises(ValueError, match="unknown driver"):
            pq.play_quality(g, store, n=3, length=10, long_length=0, progress=False, drivers=("walk",))


def test_with_gravity_the_player_presses_play_as_genie_play_plays_them(synthetic_store_dir, untrained_model_dir,
                                                                      monkeypatch):
    """The player driver and the drift rollouts step the latents gravity chooses for the presses, given
    the latents played before and whether the view fell in the step before (closed loop); the other
    drivers are untouched."""
    from genieworld.controls import FALL, Descent, view_dy
    from genieworld.genie import Genie
    from genieworld.sampling import World

    g = Genie.from_pretrained(untrained_model_dir)

    class AlwaysFall:  # a stand-in for play's Gravity: every press after the first plays latent 0, a fall
        def __init__(self):
            self.calls = []
            self.effects = [FALL] * g.num_actions

        def choose(self, pressed, history, falling=False):
            self.calls.append((len(history), bool(falling)))
            return 0 if history else int(pressed)

    stepped, frames, orig = [], [], World.step_batch

    level = np.kron(np.random.default_rng(0).integers(0, 255, (64, 64, 3)), np.ones((4, 4, 1))).astype(np.uint8)

    def spy(self, actions_b):  # what the rollouts see: a textured view that stands, rises 8 px, comes down 8
        stepped.append(np.asarray(actions_b).copy())
        out = orig(self, actions_b)
        y = (40, 40, 36, 32, 36)[(len(stepped) - 1) % 5]
        out = np.broadcast_to(level[y:y + out.shape[1], :out.shape[2]], out.shape).copy()
        frames.append(out)
        return out

    monkeypatch.setattr(World, "step_batch", spy)
    store = EpisodeStore(synthetic_store_dir)
    gravity = AlwaysFall()
    with torch_threads(1):
        r = pq.play_quality(g, store, n=3, length=10, long_length=21, progress=False, drivers=("player",),
                            gravity=gravity)
    assert r["gravity"] is True and np.isfinite(r["fvd_player"]) and len(r["fvd_player_long_blocks"]) == 2
    player, long = np.stack(stepped[:9], 1), np.stack(stepped[9:], 1)  # 9 player steps, then 20 drift steps
    assert (player[:, 1:] == 0).all() and (long[:, 1:] == 0).all()
    # the history holds the two latents played last, and ``falling`` is the Descent of the frames so far
    assert [h for h, _ in gravity.calls[:9 * 3:3]] == [0, 1] + [2] * 7
    descent, falls = Descent(), []  # from the second step on (the view stands still there), what step 3... sees
    for j in range(1, 8):
        descent.seen(FALL, int(view_dy(frames[j - 1], frames[j])[0]))
        falls.append(descent.falling)
    assert any(falls) and not all(falls)
    assert [f for _, f in gravity.calls[6:27:3]] == falls
    with torch_threads(1):
        stepped.clear()
        r = pq.play_quality(g, store, n=3, length=10, long_length=0, progress=False, drivers=("player",))
    assert r["gravity"] is False and np.stack(stepped, 1)[:, 1:].any()  # as pressed: not all zeros


def test_genie_eval_play_writes_play_quality_with_the_judge(tmp_path, synthetic_store_dir, untrained_model_dir,
                                                            monkeypatch, capsys):
    from genieworld.cli import main
    from genieworld.eval import judge as judge_mod

    fast = JudgeConfig(image_size=EpisodeStore(synthetic_store_dir).resolution[0], steps=3, batch_size=4, channels=8)
    monkeypatch.setattr(judge_mod, "JudgeConfig", lambda **kw: fast)
    out = tmp_path / "report"
    with torch_threads(1):
        rc = main(["eval", str(untrained_model_dir), "--data", str(synthetic_store_dir), "--out", str(out),
                   "--episodes", "2", "--horizon", "10", "--no-fvd", "--play", "3", "--judge-data",
                   str(synthetic_store_dir), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    r = json.loads((out / "play_quality.json").read_text())
    assert r["n"] == 3 and "fvd_player" in r and "following_summary" in r
    assert (out / "judge" / "judge.json").is_file()  # cached beside the eval
    assert "action judge" in capsys.readouterr().out


def test_a_judge_store_without_actions_is_one_line(tmp_path, untrained_model_dir, synthetic_store_dir, capsys):
    from genieworld.cli import main
    from genieworld.data.store import EpisodeWriter

    bare = tmp_path / "bare"
    with EpisodeWriter(bare, resolution=(16, 16)) as w:
        w.add_episode(np.zeros((20, 16, 16, 3), np.uint8))
    with torch_threads(1):
        rc = main(["eval", str(untrained_model_dir), "--data", str(synthetic_store_dir), "--out", str(tmp_path / "r"),
                   "--episodes", "1", "--horizon", "10", "--no-fvd", "--play", "2", "--judge-data", str(bare),
                   "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "--judge-data" in err and "recorded actions" in err, err


def test_genie_actions_name_judge_names_name_the_buttons_after_the_judge(tmp_path, synthetic_store_dir,
                                                                         untrained_model_dir, monkeypatch, capsys):
    from genieworld.cli import main
    from genieworld.data.synthetic import make_synthetic_store
    from genieworld.eval import judge as judge_mod

    fast = JudgeConfig(image_size=EpisodeStore(synthetic_store_dir).resolution[0], steps=3, batch_size=4, channels=8)
    monkeypatch.setattr(judge_mod, "JudgeConfig", lambda **kw: fast)
    store = tmp_path / "store"  # 24 prompts, each from its own 16-frame window
    make_synthetic_store(store, episodes=12, length=32, size=64, num_actions=4, seed=1)
    run = tmp_path / "run"
    shutil.copytree(untrained_model_dir, run / "model")
    assert main(["actions", "name", str(run), "--data", str(synthetic_store_dir), "--judge-names"]) == 2
    assert "--judge-names needs --judge-data" in capsys.readouterr().err
    with torch_threads(1):  # a training RUN folder: the files go to RUN/model, as Genie.from_pretrained reads it
        rc = main(["actions", "name", str(run), "--data", str(store), "--episodes", "2",
                   "--judge-data", str(store), "--judge-names"])
    assert rc == 0, capsys.readouterr().err
    data = json.loads((run / "model" / "actions.json").read_text())
    read = {r["latent"]: r for r in data["judge_names"]}
    named = 0
    for m, name in zip(data["mapping"], data["names"]):
        assert m["name"] == name
        if m["true_action"] is None:  # never inferred: keeps its number
            assert name == str(m["latent"]) and "counts_name" not in m
            continue
        named += 1
        want = read[m["latent"]]["judge_name"]
        assert "counts_name" in m and (name.startswith("Fall") if m.get("effect") == "fall"
                                       else name.split("#")[0] == want)
    assert named >= 1
    assert data["source"]["named_by"] == "judge"
    assert (run / "model" / "judge" / "judge.json").is_file() and not (run / "actions.json").exists()


def test_drift_plot_draws_every_model_with_drift_and_the_floor():
    import io

    from PIL import Image

    from genieworld.eval.report import drift_plot_png

    a = {"fvd_floor": 94.3, "fvd_own": 141.0, "fvd_player": 201.5, "fvd_random": 219.1,
         "fvd_player_long_block_ends": [17, 33, 49, 64], "fvd_player_long_blocks": [199.4, 214.4, 232.3, 220.0],
         "drift_ratio": 1.10}
    b = {"fvd_floor": 94.3, "fvd_player": 163.3}  # no drift measured: bars only
    one = drift_plot_png({"a": a})
    two = drift_plot_png({"a": a, "b": b})
    for png in (one, two):
        with Image.open(io.BytesIO(png)) as im:
            assert im.format == "PNG" and im.size == (1000, 380)
    assert one != two

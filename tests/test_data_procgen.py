"""`genie data procgen GAME`: any of the 16 Procgen games, and each game's effective actions, measured."""

from __future__ import annotations

import json

import numpy as np
import pytest

from genieworld.cli import main
from genieworld.data.coinrun import effective_action as coinrun_effective_action
from genieworld.data.procgen import (PROCGEN_GAMES, _read_cache, effective_action_of, effective_actions,
                                     effective_actions_of, generate_procgen, measure_effective_actions, random_actions)
from genieworld.data.store import EpisodeStore, StoreError

ARROWS = [[0], [1], [2], [3], [4, 9, 10, 11, 12, 13, 14], [5], [6], [7], [8]]  # 8 directions + Stay, keys inert


def _classes_of(amap):
    amap = np.asarray(amap)
    return sorted(np.flatnonzero(amap == k).tolist() for k in np.unique(amap))


def test_coinrun_measured_partition_refines_coinrun_effective_action():
    m = measure_effective_actions("coinrun", "hard", 4)
    # the extra keys act as NOOP, as coinrun.effective_action says; but Down is not Stay: an agent standing on a crate
    # and pressing Down drops through it (procgen coinrun.cpp: is_blocked_ents lets a crate pass when action_vy < 0),
    # so Left+Down, Down and Right+Down are classes of their own
    assert m["classes"] == ARROWS
    assert m["names"] == ["Left+Down", "Left", "Left+Up", "Down", "Stay", "Up", "Right+Down", "Right", "Right+Up"]
    assert m["measured"]["states_kept"] == 48 and m["measured"]["steps_per_action"] == 4
    six = _classes_of(coinrun_effective_action(np.arange(15)))
    assert len(six) == 6
    for c in m["classes"]:  # every measured class lies inside one of coinrun.effective_action's 6
        assert any(set(c) <= set(s) for s in six), c
    down_merged = {0: 1, 3: 4, 6: 7}  # ignoring Down, the measurement gives exactly the 6
    assert _classes_of([m["map"][down_merged.get(a, a)] for a in range(15)]) == six


def test_bigfish_has_nine_classes_with_the_extra_keys_joining_noop():
    m = measure_effective_actions("bigfish", "hard", 1)
    assert m["classes"] == ARROWS and m["measured"]["steps_per_action"] == 2  # at least 2 steps even at frame skip 1
    assert m["map"] == [0, 1, 2, 3, 4, 5, 6, 7, 8] + [4] * 6 and m["representatives"] == list(range(9))
    assert m["names"][4] == "Stay"


def test_the_shipped_cache_holds_every_game_and_agrees_with_a_fresh_measurement():
    cache = _read_cache()
    assert {k.split("/")[0] for k in cache} == set(PROCGEN_GAMES) and len(cache) == 16 * 2 * 3
    for game, k in (("bigfish", 2), ("fruitbot", 4)):
        fresh = measure_effective_actions(game, "hard", k)
        assert effective_actions(game, "hard", k)["classes"] == fresh["classes"] == cache[f"{game}/hard/{k}"]["classes"]
    fb = effective_actions("fruitbot", "hard", 4)
    assert fb["names"] == ["Left", "Stay", "Right", "Fire(D)"] and fb["representatives"] == [0, 3, 6, 9]
    ninja = effective_actions("ninja", "hard", 1)  # D, Q, E throw the same star; A, W, S throw at other angles
    assert ninja["names"][6:] == ["Fire(D,Q,E)", "Fire(A)", "Fire(W)", "Fire(S)"]


def test_hold_policy_draws_over_the_representatives():
    reps = [0, 3, 6, 9]
    a = random_actions(np.random.default_rng(0), 8000, "hold", 4.0, reps)
    assert set(a.tolist()) == set(reps)
    assert np.all(np.abs(np.bincount(a, minlength=10)[reps] / len(a) - 0.25) < 0.03)
    switches = np.count_nonzero(a[1:] != a[:-1])
    assert len(a) / (switches + 1) == pytest.approx(4.0 * 4 / 3, rel=0.1)
    assert set(random_actions(np.random.default_rng(0), 3000, "uniform").tolist()) == set(range(15))


def test_bigfish_recording_resumes_and_refuses_other_settings(tmp_path):
    out = tmp_path / "bf"
    kw = dict(levels=2, start_level=3, steps_per_level=20, frame_skip=2, policy="hold", hold=3.0, progress=False)
    s1 = generate_procgen(out, "bigfish", **kw)
    assert s1["levels_done"] == 2 and s1["effective_actions"] == 9
    st = EpisodeStore(out)
    assert st.source == "procgen:bigfish" and st.num_actions == 15 and st.has_actions and st.fps == 7.5
    pg = st.extra["procgen"]
    assert pg["game"] == "bigfish" and pg["frame_skip"] == 2 and pg["policy_name"] == "hold" and pg["backgrounds"]
    assert pg["level_ranges"] == [[3, 5]]
    assert pg["effective_actions"]["classes"] == ARROWS
    levels = set()
    for i in range(st.num_episodes):
        meta = st.episode_meta(i)
        levels.add(meta["level"])
        assert {"episode_in_level", "mode", "terminated"} <= set(meta)
        a = st.read_actions(i)
        assert a.min() >= 0 and a.max() <= 14 and set(a.tolist()) <= set(range(9))  # the 9 representatives
    assert levels == {3, 4} and st.num_frames >= 2 * 20
    to_class = effective_action_of(st)
    assert to_class(np.array([-1, 4, 9, 14, 8])).tolist() == [-1, 4, 4, 4, 8]
    digest = [e["sha256"] for e in st.shards]

    s2 = generate_procgen(out, "bigfish", **kw)  # resumes: nothing recorded twice
    assert s2["levels_done"] == 0 and s2["levels_skipped"] == 2
    st2 = EpisodeStore(out)
    assert st2.num_episodes == st.num_episodes and [e["sha256"] for e in st2.shards] == digest

    with pytest.raises(StoreError, match="frame_skip=2, not 4"):
        generate_procgen(out, "bigfish", **{**kw, "frame_skip": 4})
    with pytest.raises(StoreError, match="policy_name"):
        generate_procgen(out, "bigfish", **{**kw, "policy": "uniform"})
    with pytest.raises(StoreError, match="'procgen:bigfish' recordings, not 'procgen:ninja'"):
        generate_procgen(out, "ninja", **kw)
    from genieworld.data.coinrun import generate_coinrun

    with pytest.raises(StoreError, match="not CoinRun"):
        generate_coinrun(out, levels=2, start_level=3, steps_per_level=20, frame_skip=2, policy="hold", hold=3.0,
                         progress=False)
    assert EpisodeStore(out).extra.keys() == {"procgen"}


def test_effective_action_of_a_coinrun_store(tmp_path):
    from genieworld.data.coinrun import generate_coinrun

    generate_coinrun(tmp_path / "cr", levels=1, steps_per_level=5, progress=False)
    ea = effective_actions_of(tmp_path / "cr")
    assert len(ea["classes"]) == 6 and ea["names"][2] == "Stay"
    np.testing.assert_array_equal(effective_action_of(tmp_path / "cr")(np.arange(-1, 15)),
                                  coinrun_effective_action(np.arange(-1, 15)))


def test_cli_procgen_list_unknown_game_and_info(tmp_path, capsys):
    assert main(["data", "procgen", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in lines] == list(PROCGEN_GAMES)
    assert main(["data", "procgen", "mario", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unknown Procgen game 'mario'" in err and "starpilot" in err
    assert not (tmp_path / "m").exists()
    assert main(["data", "procgen", "ninja"]) == 2 and "need GAME and OUT" in capsys.readouterr().err
    assert main(["data", "procgen", "Maze", str(tmp_path / "mz"), "--levels", "1", "--steps-per-level", "6",
                 "--frame-skip", "3", "--no-progress", "--no-backgrounds", "--policy", "hold"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["game"] == "maze" and out["effective_actions"] == 5
    assert main(["data", "info", str(tmp_path / "mz"), "--verify"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["levels"] == {"count": 1, "min": 0, "max": 0} and info["verify"]["ok"]
    pg = info["extra"]["procgen"]
    assert pg["backgrounds"] is False and pg["effective_actions"]["names"] == ["Left", "Down", "Stay", "Up", "Right"]
    assert pg["effective_actions"]["measured"]["frame_skip"] == 3  # not in the cache: measured at record time
    with pytest.raises(SystemExit) as e:
        main(["data", "procgen", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and "effective_actions" in text and "--frame-skip" in text

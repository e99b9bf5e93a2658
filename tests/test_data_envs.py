"""CoinRun (procgen) and Atari (ale-py) generation, small."""

from __future__ import annotations

import numpy as np
import pytest

from genieworld.data.coinrun import frame_skip_of, generate_coinrun, level_overlap, levels_of
from genieworld.data.store import EpisodeStore, EpisodeWriter, StoreError


def test_coinrun_small_generation_and_resume(tmp_path):
    out = tmp_path / "cr"
    summary = generate_coinrun(out, levels=2, start_level=5, steps_per_level=50, progress=False)
    assert summary["levels_done"] == 2
    s = EpisodeStore(out)
    assert s.resolution == (64, 64) and s.has_actions and s.num_actions == 15 and s.source == "coinrun"
    assert levels_of(s) == {5, 6}
    assert s.extra["coinrun"]["distribution_mode"] == "hard"
    assert s.extra["coinrun"]["level_ranges"] == [[5, 7]]
    for i in range(s.num_episodes):
        frames, actions = s.read_frames(i), s.read_actions(i)
        assert frames.shape[1:] == (64, 64, 3) and frames.dtype == np.uint8
        assert len(actions) == len(frames) - 1
        assert actions.min() >= 0 and actions.max() < 15
        assert s.episode_meta(i)["level"] in (5, 6)
        assert frames.std() > 0  # real rendered frames
    # every env step yields one frame: K + 1 frames per level minus dropped 1-frame tails
    per_level = {lv: sum(s.episode_length(i) for i in range(s.num_episodes) if s.episode_meta(i)["level"] == lv)
                 for lv in (5, 6)}
    assert all(50 <= n <= 51 for n in per_level.values())
    # deterministic given seed
    generate_coinrun(tmp_path / "cr2", levels=1, start_level=5, steps_per_level=50, progress=False)
    s2 = EpisodeStore(tmp_path / "cr2")
    np.testing.assert_array_equal(s2.read_frames(0), s.read_frames(0))
    np.testing.assert_array_equal(s2.read_actions(0), s.read_actions(0))
    # resume / extend: only the new level is generated
    summary = generate_coinrun(out, levels=3, start_level=5, steps_per_level=50, progress=False)
    assert summary["levels_done"] == 1 and summary["levels_skipped"] == 2
    assert levels_of(out) == {5, 6, 7}
    assert level_overlap(out, tmp_path / "cr2") == {5}
    with pytest.raises(StoreError, match="steps_per_level"):
        generate_coinrun(out, levels=1, start_level=9, steps_per_level=60, progress=False)


def test_atari_smoke(tmp_path):
    from genieworld.data.atari import generate_atari, resolve_game

    assert resolve_game("pong") == "ALE/Pong-v5"
    with pytest.raises(StoreError, match="unknown Atari game"):
        resolve_game("NoSuchGame")
    summary = generate_atari("Pong", tmp_path / "pong", episodes=2, steps_per_episode=30, size=32, progress=False)
    s = EpisodeStore(tmp_path / "pong")
    assert summary["num_actions"] == s.num_actions == 6
    assert s.num_episodes == 2 and s.resolution == (32, 32) and s.fps == 15.0 and s.has_actions
    for i in range(2):
        f, a = s.read_frames(i), s.read_actions(i)
        assert f.shape == (31, 32, 32, 3) and len(a) == 30 and 0 <= a.min() and a.max() < 6
    assert s.verify() == []
    # --frame-skip 16: Procgen's time step at frame skip 4 (3.75 fps), so the two stores merge
    from genieworld.cli import main

    assert main(["data", "atari", "Pong", str(tmp_path / "pong16"), "--episodes", "1", "--steps-per-episode", "5",
                 "--size", "32", "--frame-skip", "16", "--no-progress"]) == 0
    s16 = EpisodeStore(tmp_path / "pong16")
    assert s16.fps == 3.75 and s16.extra["atari"]["frameskip"] == 16


def test_coinrun_frame_skip_holds_each_action_and_records_every_kth_frame(tmp_path):
    def mean_change(path):
        s = EpisodeStore(path)
        diffs = [np.square(np.diff(s.read_frames(i).astype(np.float32) / 255, axis=0)).mean()
                 for i in range(s.num_episodes) if s.episode_length(i) > 1]
        return float(np.mean(diffs)), s

    generate_coinrun(tmp_path / "k1", levels=2, start_level=5, steps_per_level=40, progress=False)
    generate_coinrun(tmp_path / "k4", levels=2, start_level=5, steps_per_level=40, progress=False, frame_skip=4)
    d1, s1 = mean_change(tmp_path / "k1")
    d4, s4 = mean_change(tmp_path / "k4")
    assert s4.extra["coinrun"]["frame_skip"] == 4 and "held 4 steps" in s4.extra["coinrun"]["policy"]
    assert frame_skip_of(s4) == 4 and frame_skip_of(tmp_path / "k1") == 1
    assert s4.fps == s1.fps / 4
    # steps_per_level counts recorded transitions, whatever the skip
    assert 2 * 40 - 2 <= sum(len(s4.read_actions(i)) for i in range(s4.num_episodes)) <= 2 * 40
    assert d4 > 1.5 * d1, (d4, d1)  # four game steps per transition move the picture further than one
    # replaying the recorded actions, each held 4 steps, in the same game reproduces the recorded frames
    from procgen import ProcgenGym3Env

    from genieworld.data.coinrun import _rand_seed

    env = ProcgenGym3Env(num=1, env_name="coinrun", num_levels=1, start_level=5, distribution_mode="hard",
                         rand_seed=_rand_seed(0, 5))
    ep = next(i for i in range(s4.num_episodes) if s4.episode_meta(i)["level"] == 5)
    frames, actions = s4.read_frames(ep), s4.read_actions(ep)
    assert len(actions) == 40
    np.testing.assert_array_equal(env.observe()[1]["rgb"][0], frames[0])
    for t, a in enumerate(actions):
        for _ in range(4):
            env.act(np.array([a], dtype=np.int32))
        np.testing.assert_array_equal(env.observe()[1]["rgb"][0], frames[t + 1])
    with pytest.raises(StoreError, match="frame_skip"):
        generate_coinrun(tmp_path / "k1", levels=1, start_level=9, steps_per_level=40, progress=False, frame_skip=4)
    with pytest.raises(ValueError, match="frame_skip"):
        generate_coinrun(tmp_path / "k0", levels=1, steps_per_level=40, progress=False, frame_skip=0)


@pytest.mark.parametrize("extra, expected", [({}, None), ({"coinrun": {"mode": "hard"}}, 1),
                                             ({"coinrun": {"frame_skip": 3}}, 3), ({"coinrun": {"frame_skip": "4"}}, None),
                                             ({"coinrun": {"frame_skip": 0}}, None), ({"coinrun": "x"}, None)])
def test_frame_skip_of_reads_only_valid_coinrun_settings(tmp_path, extra, expected):
    with EpisodeWriter(tmp_path / "s", resolution=(8, 8), source="unit", extra_manifest=extra) as w:
        w.add_episode(np.zeros((3, 8, 8, 3), np.uint8))
    assert frame_skip_of(tmp_path / "s") == expected

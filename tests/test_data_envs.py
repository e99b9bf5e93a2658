"""CoinRun (procgen) and Atari (ale-py) generation, small."""

from __future__ import annotations

import numpy as np
import pytest

from genieworld.data.coinrun import generate_coinrun, level_overlap, levels_of
from genieworld.data.store import EpisodeStore, StoreError


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

"""genie data merge: several stores' episodes in one, resumable, refusing what cannot be merged."""

from __future__ import annotations

import json

import numpy as np
import pytest

from genieworld.cli import main
from genieworld.data.merge import merge_stores
from genieworld.data.store import EpisodeStore, EpisodeWriter
from genieworld.data.synthetic import make_synthetic_store


def _frames_only(path, episodes=2, length=9, size=16, fps=10.0, source="ingest"):
    rng = np.random.default_rng(1)
    with EpisodeWriter(path, resolution=(size, size), fps=fps, source=source) as w:
        for _ in range(episodes):
            w.add_episode(rng.integers(0, 255, (length, size, size, 3), dtype=np.uint8))
    return EpisodeStore(path)


def test_merge_copies_every_episode_with_where_it_came_from(tmp_path, capsys):
    a = make_synthetic_store(tmp_path / "a", episodes=3, length=12, size=16, seed=0)
    b = make_synthetic_store(tmp_path / "b", episodes=2, length=10, size=16, seed=1)
    assert main(["data", "merge", str(tmp_path / "m"), str(tmp_path / "a"), str(tmp_path / "b"),
                 "--no-progress"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["episodes"] == 5 and r["copied"] == 5 and r["actions"] and r["frames"] == 3 * 12 + 2 * 10
    m = EpisodeStore(tmp_path / "m")
    assert m.has_actions and m.num_actions == a.num_actions and m.source == a.source
    for j, (s, i) in enumerate([(a, 0), (a, 1), (a, 2), (b, 0), (b, 1)]):
        f0, a0, _ = s.read_episode(i)
        f1, a1, meta = m.read_episode(j)
        assert np.array_equal(f0, f1) and np.array_equal(a0, a1)
        assert meta["from"] == ("a" if s is a else "b") and meta["game"] == s.source
    assert [x["store"] for x in m.extra["merged_from"]] == ["a", "b"]
    # a second run copies nothing more
    assert merge_stores(tmp_path / "m", [tmp_path / "a", tmp_path / "b"], progress=False)["copied"] == 0
    assert EpisodeStore(tmp_path / "m").num_episodes == 5


def test_a_killed_merge_continues_without_duplicates(tmp_path, monkeypatch):
    make_synthetic_store(tmp_path / "a", episodes=4, length=12, size=16, seed=0)
    make_synthetic_store(tmp_path / "b", episodes=3, length=12, size=16, seed=1)
    real = EpisodeStore.read_episode
    calls = {"n": 0}

    def dies_on_the_fifth(self, i):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(self, i)

    import functools

    import genieworld.data.merge as merge_mod

    # a shard per episode, so that what was copied before the kill is committed
    monkeypatch.setattr(merge_mod, "EpisodeWriter", functools.partial(EpisodeWriter, shard_bytes=1))
    monkeypatch.setattr(EpisodeStore, "read_episode", dies_on_the_fifth)
    with pytest.raises(KeyboardInterrupt):
        merge_stores(tmp_path / "m", [tmp_path / "a", tmp_path / "b"], progress=False)
    monkeypatch.setattr(EpisodeStore, "read_episode", real)
    r = merge_stores(tmp_path / "m", [tmp_path / "a", tmp_path / "b"], progress=False)
    m = EpisodeStore(tmp_path / "m")
    assert m.num_episodes == 7 and r["copied"] == 3  # the 4 copied before the kill are kept
    sources = [(m.episode_meta(j)["from"], m.read_episode(j)[0]) for j in range(7)]
    want = [("a", EpisodeStore(tmp_path / "a").read_episode(i)[0]) for i in range(4)] + \
           [("b", EpisodeStore(tmp_path / "b").read_episode(i)[0]) for i in range(3)]
    assert [s for s, _ in sources] == [s for s, _ in want]
    assert all(np.array_equal(x, y) for (_, x), (_, y) in zip(sources, want))


def test_actions_are_dropped_unless_every_store_has_them_with_one_meaning(tmp_path):
    make_synthetic_store(tmp_path / "a", episodes=2, length=9, size=16)
    _frames_only(tmp_path / "v")
    r = merge_stores(tmp_path / "m", [tmp_path / "a", tmp_path / "v"], progress=False)
    m = EpisodeStore(tmp_path / "m")
    assert not r["actions"] and not m.has_actions and m.num_episodes == 4 and m.source == "merge"
    assert m.read_episode(0)[1] is None


def test_bad_merges_are_one_line_and_touch_nothing(tmp_path, capsys):
    make_synthetic_store(tmp_path / "a", episodes=2, length=9, size=16)
    _frames_only(tmp_path / "big", size=32)
    _frames_only(tmp_path / "slow", fps=5.0)
    _frames_only(tmp_path / "other")
    for stores, out, msg in ((["a", "big"], "m1", "32x32"), (["a", "slow"], "m2", "fps"),
                             (["a", "a"], "m3", "named twice"), (["a", "other"], "a", "also one of the stores"),
                             (["a"], "other", "not a merge of these stores")):
        before = sorted(p.name for p in (tmp_path / out).iterdir()) if (tmp_path / out).exists() else None
        rc = main(["data", "merge", str(tmp_path / out), *[str(tmp_path / s) for s in stores], "--no-progress"])
        err = capsys.readouterr().err
        assert rc == 2 and msg in err and len(err.strip().splitlines()) == 1, (stores, err)
        after = sorted(p.name for p in (tmp_path / out).iterdir()) if (tmp_path / out).exists() else None
        assert before == after
    assert EpisodeStore(tmp_path / "other").num_episodes == 2

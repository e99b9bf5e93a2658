"""Episode store: round trip, checksums, crash safety, resume, CLI info."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from genieworld.data.store import MANIFEST, EpisodeStore, EpisodeWriter, StoreError
from genieworld.data.synthetic import make_synthetic_store, synthetic_episode

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _episodes(n=5, size=16, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        length = int(rng.integers(2, 60))
        frames = rng.integers(0, 256, size=(length, size, size, 3), dtype=np.uint8)
        frames[:, : size // 2] = 7  # some compressible structure
        actions = rng.integers(0, 5, size=length - 1)
        out.append((frames, actions, {"i": i, "level": 100 + i}))
    return out


def _run_cli(*argv):
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    code = "import sys; from genieworld.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env, timeout=120)


def test_round_trip_frames_actions_meta(tmp_path):
    eps = _episodes()
    with EpisodeWriter(tmp_path / "s", resolution=(16, 16), fps=12.5, source="unit", num_actions=5,
                       chunk_frames=4, shard_bytes=20_000) as w:
        for frames, actions, meta in eps:
            w.add_episode(frames, actions, meta)
        w.add_episode(eps[0][0][:10], None, {"no": "actions"})
    s = EpisodeStore(tmp_path / "s")
    assert s.num_episodes == len(eps) + 1
    assert len(s.shards) > 1  # small shard_bytes forced several shards
    assert s.resolution == (16, 16) and s.fps == 12.5 and s.num_actions == 5
    assert s.num_frames == sum(len(f) for f, _, _ in eps) + 10
    assert not s.has_actions  # the last episode has none
    for i, (frames, actions, meta) in enumerate(eps):
        assert s.episode_length(i) == len(frames)
        np.testing.assert_array_equal(s.read_frames(i), frames)
        np.testing.assert_array_equal(s.read_actions(i), actions)
        assert s.read_actions(i).dtype == np.int64
        m = s.episode_meta(i)
        assert m["level"] == meta["level"] and m["source"] == "unit" and m["fps"] == 12.5
        # windows crossing chunk boundaries
        for a, b in [(0, 1), (3, 9), (1, len(frames)), (len(frames) - 2, None)]:
            np.testing.assert_array_equal(s.read_frames(i, a, b), frames[a:b])
            np.testing.assert_array_equal(s.read_actions(i, a, b), actions[a:b])
    assert s.read_actions(len(eps)) is None
    np.testing.assert_array_equal(s.episode_lengths, [len(f) for f, _, _ in eps] + [10])
    assert s.verify() == []
    with pytest.raises(IndexError):
        s.read_frames(99)


def test_writer_validates_input(tmp_path):
    with EpisodeWriter(tmp_path / "s", resolution=(8, 8), fps=10, num_actions=3) as w:
        good = np.zeros((4, 8, 8, 3), np.uint8)
        with pytest.raises(ValueError):
            w.add_episode(good.astype(np.float32))
        with pytest.raises(ValueError):
            w.add_episode(np.zeros((4, 9, 8, 3), np.uint8))
        with pytest.raises(ValueError, match="expected 3 actions"):
            w.add_episode(good, [0, 1])
        with pytest.raises(ValueError, match=r"in \[0, 3\)"):
            w.add_episode(good, [0, 1, 3])
        w.add_episode(good, [0, 1, 2])
    assert EpisodeStore(tmp_path / "s").num_episodes == 1
    with pytest.raises(StoreError, match="resolution"):
        EpisodeWriter(tmp_path / "s", resolution=(16, 16), fps=10)


def test_not_a_store(tmp_path):
    with pytest.raises(StoreError, match="not an episode store"):
        EpisodeStore(tmp_path)
    with pytest.raises(StoreError, match="no such directory"):
        EpisodeStore(tmp_path / "missing")
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(StoreError, match="unreadable manifest"):
        EpisodeStore(tmp_path)
    (tmp_path / MANIFEST).write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(StoreError, match="not a genieworld"):
        EpisodeStore(tmp_path)


def test_verify_catches_flipped_byte_and_names_shard(tmp_path):
    store = make_synthetic_store(tmp_path / "s", episodes=4, length=20, size=16)
    with EpisodeWriter(tmp_path / "s", resolution=(16, 16), fps=10) as w:  # append a second shard
        frames, actions = synthetic_episode(20, 16)
        w.add_episode(frames, actions)
    store = EpisodeStore(tmp_path / "s")
    assert len(store.shards) == 2 and store.verify() == []
    bad = store.shards[1]["file"]
    path = tmp_path / "s" / bad
    data = bytearray(path.read_bytes())
    data[40] ^= 0xFF  # inside the first compressed chunk
    path.write_bytes(bytes(data))
    assert EpisodeStore(tmp_path / "s").verify() == [bad]
    with pytest.raises(StoreError):
        EpisodeStore(tmp_path / "s").read_frames(4)  # the corrupt chunk does not decode silently
    np.testing.assert_array_equal(EpisodeStore(tmp_path / "s").read_frames(0), store.read_frames(0))

    r = _run_cli("data", "info", str(tmp_path / "s"), "--verify")
    assert r.returncode == 1, r.stderr
    assert bad in r.stderr
    info = json.loads(r.stdout)
    assert info["verify"]["ok"] is False and info["verify"]["bad_shards"][0]["shard"] == bad
    os.unlink(tmp_path / "s" / store.shards[0]["file"])
    assert EpisodeStore(tmp_path / "s").verify() == [store.shards[0]["file"], bad]


def test_info_cli_json(tmp_path):
    make_synthetic_store(tmp_path / "s", episodes=3, length=17, size=32)
    r = _run_cli("data", "info", str(tmp_path / "s"), "--verify")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["episodes"] == 3 and info["frames"] == 51 and info["resolution"] == [32, 32]
    assert info["fps"] == 10.0 and info["has_actions"] is True and info["bytes_on_disk"] > 0
    assert info["verify"]["ok"] is True
    r = _run_cli("data", "info", str(tmp_path))
    assert r.returncode == 2 and "not an episode store" in r.stderr


def test_exception_mid_shard_keeps_complete_shards_and_resume(tmp_path):
    path = tmp_path / "s"
    units = {f"u{i}": synthetic_episode(30, 16, rng=np.random.default_rng(i)) for i in range(6)}

    def write(fail_at=None):
        with EpisodeWriter(path, resolution=(16, 16), fps=10, shard_bytes=1, chunk_frames=8) as w:
            for n, (key, (frames, actions)) in enumerate(units.items()):
                if key in w.done_keys:
                    continue
                if n == fail_at:
                    w.begin_episode({"key": key}, key=key)
                    w.append(frames[:12], actions[:11])
                    raise RuntimeError("simulated crash mid-shard")
                w.add_episode(frames, actions, {"key": key}, key=key)
                w.mark_done(key)  # shard_bytes=1: each unit closes its own shard

    with pytest.raises(RuntimeError, match="simulated"):
        write(fail_at=3)
    s = EpisodeStore(path)
    assert s.num_episodes == 3 and s.verify() == []
    assert [s.episode_meta(i)["key"] for i in range(3)] == ["u0", "u1", "u2"]
    assert not [p for p in path.iterdir() if p.name.startswith(".tmp")]
    write()  # resume
    s = EpisodeStore(path)
    assert [s.episode_meta(i)["key"] for i in range(s.num_episodes)] == list(units)
    for i, (frames, actions) in enumerate(units.values()):
        np.testing.assert_array_equal(s.read_frames(i), frames)
        np.testing.assert_array_equal(s.read_actions(i), actions)


def test_hard_crash_leaves_valid_store(tmp_path):
    """A process killed mid-shard (no cleanup at all) leaves the last committed manifest in force."""
    path = tmp_path / "s"
    script = textwrap.dedent(f"""
        import os, numpy as np
        from genieworld.data.store import EpisodeWriter
        from genieworld.data.synthetic import synthetic_episode
        w = EpisodeWriter({str(path)!r}, resolution=(16, 16), fps=10, shard_bytes=1)
        for i in range(2):
            f, a = synthetic_episode(20, 16, rng=np.random.default_rng(i))
            w.add_episode(f, a, key=f"k{{i}}"); w.mark_done(f"k{{i}}")
        w.begin_episode(key="k2")
        f, a = synthetic_episode(40, 16)
        w.append(f, a)
        os._exit(3)
    """)
    env = dict(os.environ, PYTHONPATH=SRC)
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 3, r.stderr
    assert any(p.name.startswith(".tmp") for p in path.iterdir())  # the half shard is still there
    s = EpisodeStore(path)
    assert s.num_episodes == 2 and s.verify() == [] and s.done_keys == {"k0", "k1"}
    with EpisodeWriter(path, resolution=(16, 16), fps=10) as w:  # next writer cleans up and appends
        assert w.done_keys == {"k0", "k1"}
        w.add_episode(*synthetic_episode(20, 16), key="k2")
        w.mark_done("k2")
    assert not any(p.name.startswith(".tmp") for p in path.iterdir())
    assert EpisodeStore(path).num_episodes == 3


def test_writer_refuses_foreign_non_empty_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("my files")
    with pytest.raises(StoreError, match="not empty"):
        EpisodeWriter(tmp_path, resolution=(8, 8), fps=10)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_second_writer_is_refused(tmp_path):
    with EpisodeWriter(tmp_path / "s", resolution=(8, 8), fps=10):
        with pytest.raises(StoreError, match="another process"):
            EpisodeWriter(tmp_path / "s", resolution=(8, 8), fps=10)


def test_streaming_abort_and_unit_rules(tmp_path):
    f, a = synthetic_episode(50, 16)
    with EpisodeWriter(tmp_path / "s", resolution=(16, 16), fps=10, chunk_frames=8) as w:
        w.begin_episode({"x": 1}, key="a")
        w.append(f[:20], a[:19])
        w.abort_episode()  # e.g. a video that turned out truncated
        w.begin_episode({"x": 2}, key="b")
        w.append(f[:20], a[:19])
        w.append(f[20:], a[19:])  # later appends carry one linking action per frame
        w.end_episode({"done": True})
        w.mark_done("b")
    s = EpisodeStore(tmp_path / "s")
    assert s.num_episodes == 1 and s.done_keys == {"b"}
    np.testing.assert_array_equal(s.read_frames(0), f)
    np.testing.assert_array_equal(s.read_actions(0), a)
    assert s.episode_meta(0)["done"] is True and s.verify() == []


def test_synthetic_store_actions_move_the_square(tmp_path):
    s = make_synthetic_store(tmp_path / "s", episodes=2, length=24, size=64, seed=3)
    s2 = make_synthetic_store(tmp_path / "s2", episodes=2, length=24, size=64, seed=3)
    np.testing.assert_array_equal(s.read_frames(1), s2.read_frames(1))  # deterministic
    frames, actions = s.read_frames(0), s.read_actions(0)
    assert set(np.unique(actions)) <= {0, 1, 2, 3}

    def centre(img):  # top-left corner of the bright square, modulo wrap
        mask = img.max(axis=2) >= 150
        ys, xs = np.nonzero(mask)
        return ys, xs

    step = 64 // 16
    for t, act in enumerate(actions):
        y0, x0 = centre(frames[t])
        y1, x1 = centre(frames[t + 1])
        dy, dx = {0: (0, -1), 1: (0, 1), 2: (-1, 0), 3: (1, 0)}[int(act)]
        assert set(((y0 + dy * step) % 64).tolist()) == set(y1.tolist())
        assert set(((x0 + dx * step) % 64).tolist()) == set(x1.tolist())


def test_full_disk_during_shard_or_manifest_write_keeps_store_valid(tmp_path, monkeypatch):
    import errno

    import genieworld.data.store as store_mod

    path = tmp_path / "s"
    eps = {f"k{i}": synthetic_episode(20, 16, rng=np.random.default_rng(i)) for i in range(3)}

    def write_units(keys):
        with EpisodeWriter(path, resolution=(16, 16), fps=10, shard_bytes=1) as w:
            for k in keys:
                if k not in w.done_keys:
                    w.add_episode(*eps[k], {"key": k}, key=k)
                    w.mark_done(k)

    write_units(["k0"])

    def no_space(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError):  # the disk fills up while a shard's chunks are written
        with EpisodeWriter(path, resolution=(16, 16), fps=10, shard_bytes=1) as w, monkeypatch.context() as m:
            w.begin_episode(key="k1")
            w.append(eps["k1"][0][:16], eps["k1"][1][:15])  # one chunk written fine
            assert any(p.name.startswith(".tmp") for p in path.iterdir())
            m.setattr(store_mod, "_write_all", no_space)
            w.append(eps["k1"][0][16:], eps["k1"][1][15:])
            w.end_episode()
    s = EpisodeStore(path)
    assert s.done_keys == {"k0"} and s.num_episodes == 1 and s.verify() == []
    assert not [p for p in path.iterdir() if p.name.startswith(".tmp")]

    real = store_mod.atomic_write_json
    calls = {"n": 0}

    def manifest_fails(root, name, obj):
        calls["n"] += 1
        if calls["n"] > 1:  # the writer's opening manifest rewrite succeeds, the commit's fails
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(root, name, obj)

    with monkeypatch.context() as m:  # the shard is renamed into place, then the manifest write fails
        m.setattr(store_mod, "atomic_write_json", manifest_fails)
        with pytest.raises(OSError):
            write_units(["k1"])
    s = EpisodeStore(path)
    assert s.done_keys == {"k0"} and s.verify() == []
    assert (path / "shard-000001.gws").exists()  # orphan, not referenced by the manifest
    write_units(["k1", "k2"])  # resume overwrites the orphan
    s = EpisodeStore(path)
    assert [s.episode_meta(i)["key"] for i in range(s.num_episodes)] == ["k0", "k1", "k2"]
    assert s.verify() == []
    np.testing.assert_array_equal(s.read_frames(1), eps["k1"][0])

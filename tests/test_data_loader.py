"""WindowLoader: content, seeded order, rank/worker splits, resume."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from genieworld.data.loader import FeistelPermutation, WindowLoader
from genieworld.data.store import EpisodeStore, EpisodeWriter
from genieworld.data.synthetic import make_synthetic_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("loader") / "s"
    rng = np.random.default_rng(0)
    with EpisodeWriter(path, resolution=(8, 8), fps=10, num_actions=6, chunk_frames=4) as w:
        for i, length in enumerate([5, 20, 9, 33, 12, 8, 17, 3, 40]):
            frames = rng.integers(0, 256, size=(length, 8, 8, 3), dtype=np.uint8)
            actions = rng.integers(0, 6, size=length - 1) if i != 4 else None  # episode 4: no actions
            w.add_episode(frames, actions, {"i": i})
    return EpisodeStore(path)


def _windows(batches):
    return [(int(e), int(s)) for b in batches for e, s in zip(b["episode"], b["start"])]


def test_feistel_is_a_permutation():
    for n in [1, 2, 3, 7, 64, 65, 1000, 4097]:
        p = FeistelPermutation(n, seed=5, epoch=2)(np.arange(n))
        assert sorted(p.tolist()) == list(range(n))
    a = FeistelPermutation(1000, 0, 0)(np.arange(1000))
    assert not np.array_equal(a, FeistelPermutation(1000, 0, 1)(np.arange(1000)))
    assert not np.array_equal(a, FeistelPermutation(1000, 1, 0)(np.arange(1000)))
    assert not np.array_equal(a, np.arange(1000))


def test_batch_content_matches_store(store):
    loader = WindowLoader(store, seq_len=8, batch_size=4, seed=1)
    batch = next(iter(loader))
    assert batch["frames"].dtype == torch.uint8 and batch["frames"].shape == (4, 8, 8, 8, 3)
    assert batch["actions"].dtype == torch.int64 and batch["actions"].shape == (4, 7)
    for b in range(4):
        e, s = int(batch["episode"][b]), int(batch["start"][b])
        np.testing.assert_array_equal(batch["frames"][b].numpy(), store.read_frames(e, s, s + 8))
        acts = store.read_actions(e, s, s + 7)
        expect = np.full(7, -1) if acts is None else acts
        np.testing.assert_array_equal(batch["actions"][b].numpy(), expect)


def test_epoch_covers_every_window_once_and_skips_short_episodes(store):
    t = 8
    lengths = store.episode_lengths
    all_windows = {(e, s) for e in range(len(lengths)) for s in range(lengths[e] - t + 1)}
    loader = WindowLoader(store, seq_len=t, batch_size=1, seed=3)
    assert loader.num_windows == len(all_windows)
    epoch = _windows(itertools.islice(iter(loader), len(all_windows)))
    assert len(set(epoch)) == len(epoch) and set(epoch) == all_windows
    assert all(lengths[e] >= t for e, _ in epoch)  # episode 7 (3 frames) and 0 (5) never appear
    nxt = _windows(itertools.islice(iter(loader), len(all_windows)))  # epoch 2: fresh order, same set
    assert set(nxt) == all_windows and nxt != epoch


@pytest.mark.parametrize("world,workers", [(3, 1), (2, 2)])
def test_rank_and_worker_splits_are_disjoint_and_cover(store, world, workers):
    t, bs = 6, 3
    per_rank = []
    for rank in range(world):
        loader = WindowLoader(store, seq_len=t, batch_size=bs, seed=7, rank=rank, world_size=world,
                              num_workers=0, drop_last=False)
        per_rank.append(_windows(itertools.islice(iter(loader), len(loader))))
        assert len(loader) == len(WindowLoader(store, seq_len=t, batch_size=bs, seed=7, rank=0, world_size=world,
                                               drop_last=False))
    flat = [w for r in per_rank for w in r]
    assert len(flat) == len(set(flat))  # no overlap between ranks
    total = WindowLoader(store, seq_len=t, batch_size=1).num_windows
    assert len(flat) == (total // world) * world  # everything but the < world_size dropped tail
    # workers: same rank, the multi-worker stream equals the single-process stream (round-robin)
    single = WindowLoader(store, seq_len=t, batch_size=bs, seed=7, rank=1, world_size=world, num_workers=0)
    multi = WindowLoader(store, seq_len=t, batch_size=bs, seed=7, rank=1, world_size=world, num_workers=workers)
    n = 2 * len(single) + 1
    a = list(itertools.islice(iter(single), n))
    b = list(itertools.islice(iter(multi), n))
    assert _windows(a) == _windows(b)
    for x, y in zip(a, b):
        assert torch.equal(x["frames"], y["frames"]) and torch.equal(x["actions"], y["actions"])
    # within an epoch the batches built by different workers are disjoint
    per_worker = [set(_windows(a[w:len(single):workers])) for w in range(workers)]
    for i, j in itertools.combinations(range(workers), 2):
        assert not per_worker[i] & per_worker[j]


def test_resume_continues_same_sequence(store):
    ref = WindowLoader(store, seq_len=8, batch_size=4, seed=11)
    n = len(ref) * 2 + 3  # crosses epoch boundaries
    full = _windows(itertools.islice(iter(ref), n))
    k = 5
    first = WindowLoader(store, seq_len=8, batch_size=4, seed=11)
    head = _windows(itertools.islice(iter(first), k))
    state = json.loads(json.dumps(first.state_dict()))  # JSON-serialisable
    assert state["step"] == k
    resumed = WindowLoader(store, seq_len=8, batch_size=4, seed=11, num_workers=1)
    resumed.load_state_dict(state)
    tail = _windows(itertools.islice(iter(resumed), n - k))
    assert head + tail == full
    with pytest.raises(ValueError, match="seed"):
        WindowLoader(store, seq_len=8, batch_size=4, seed=12).load_state_dict(state)


def test_too_little_data_is_a_clear_error(tmp_path):
    s = make_synthetic_store(tmp_path / "s", episodes=1, length=10, size=8)
    with pytest.raises(ValueError, match="windows"):
        WindowLoader(s, seq_len=16, batch_size=2)


def test_a_data_fraction_reads_only_its_clips_from_a_npy_array(tmp_path):
    from genieworld.train.data import open_training_data

    clips = np.repeat(np.arange(10, dtype=np.uint8)[:, None, None, None, None], 6, axis=1)
    clips = np.broadcast_to(clips, (10, 6, 8, 8, 3)).copy()  # clip i is filled with the value i
    path = tmp_path / "clips.npy"
    np.save(path, clips)
    loader = open_training_data(path, seq_len=3, batch_size=4, seed=0, data_fraction=0.3)
    np.testing.assert_array_equal(loader.episodes, [0, 3, 6])
    seen = set()
    for _, batch in zip(range(6), loader):
        seen |= set(np.unique(batch["frames"].numpy()).tolist())
    assert seen == {0, 3, 6}
    whole = open_training_data(path, seq_len=3, batch_size=4, seed=0)
    assert whole.episodes is None
    with pytest.raises(ValueError, match="another subset"):  # a resume on another share is refused
        whole.load_state_dict(loader.state_dict())
    again = open_training_data(path, seq_len=3, batch_size=4, seed=0, data_fraction=0.3)
    again.load_state_dict(loader.state_dict())
    assert again.state_dict() == loader.state_dict()

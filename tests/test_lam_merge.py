"""Training more LAM codes than play offers actions, then merging them (LAMConfig.merged_actions)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from fixtures_models import micro_preset_dict, synthetic_store_dir, torch_threads  # noqa: F401

from genieworld.cli import main
from genieworld.config import ConfigError, LAMConfig, load_preset, validate_config
from genieworld.genie import load_component, save_component
from genieworld.lam import build_lam
from genieworld.lam_codebook import merge_by_context, merge_by_cooccurrence, merge_by_counts, merge_by_vectors


@pytest.fixture(autouse=True)
def one_torch_thread():
    with torch_threads(1):
        yield


def _held_key_videos(rng, n_videos=30, length=40):
    """Codes of a LAM that saw two actions, each in two physical states: action a shows as codes
    {2a, 2a + 1}, the state flips every frame or two, and the action is held for 5-10 frames."""
    out = []
    for _ in range(n_videos):
        seq, t = [], 0
        while t < length:
            a, hold = int(rng.integers(2)), int(rng.integers(5, 11))
            for _ in range(hold):
                seq.append(2 * a + int(rng.random() < 0.5))
            t += hold
        out.append(np.array(seq[:length]))
    return out


def test_cooccurrence_merge_groups_the_codes_of_one_held_action_deterministically():
    seqs = _held_key_videos(np.random.default_rng(0))
    groups = merge_by_cooccurrence(seqs, 5, 2)  # code 4 is never used
    assert groups[0] == groups[1] and groups[2] == groups[3] and groups[0] != groups[2]
    assert sorted(set(groups.tolist())) == [0, 1]
    np.testing.assert_array_equal(groups, merge_by_cooccurrence(seqs, 5, 2))
    # as many actions as codes: nothing merged
    assert sorted(merge_by_cooccurrence(seqs, 4, 4).tolist()) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="cannot merge"):
        merge_by_cooccurrence(seqs, 4, 5)
    with pytest.raises(ValueError, match=r"codes must be in \[0, 3\)"):
        merge_by_cooccurrence(seqs, 3, 2)


def test_context_merge_groups_codes_that_share_their_neighbours_in_time():
    seqs = _held_key_videos(np.random.default_rng(0))
    groups = merge_by_context(seqs, 5, 2)  # code 4 is never used: it goes to group 0
    assert groups[0] == groups[1] and groups[2] == groups[3] and groups[0] != groups[2]
    assert groups[4] == 0 and sorted(set(groups.tolist())) == [0, 1]
    np.testing.assert_array_equal(groups, merge_by_context(seqs, 5, 2))
    # codes that never follow one another but have the same neighbours are one action too
    a, b = np.array([0, 2, 0, 2, 0]), np.array([1, 3, 1, 3, 1])
    c = np.array([4, 4, 4, 4])
    g = merge_by_context([a, b, c] * 5, 5, 3)
    assert g[0] == g[1] and g[2] == g[3] and len({g[0], g[2], g[4]}) == 3
    with pytest.raises(ValueError, match="cannot merge"):
        merge_by_context(seqs, 4, 5)
    with pytest.raises(ValueError, match=r"codes must be in \[0, 3\)"):
        merge_by_context(seqs, 3, 2)


def test_count_merge_joins_codes_seen_with_the_same_features_first():
    """merge_by_counts (the information bottleneck under the context merge, and the camera merge of the
    retired bench/bench_lam_merge.py, which runs at commit f029ad5): rows that are the same distribution
    cost nothing to join, whatever their mass."""
    counts = np.array([[90, 10, 0], [9, 1, 0], [0, 10, 90], [0, 50, 450], [0, 0, 0]])
    g = merge_by_counts(counts, 2)
    assert g[0] == g[1] and g[2] == g[3] and g[0] != g[2] and g[4] == 0
    assert len(set(merge_by_counts(counts, 4).tolist())) == 4  # the unseen code counts as group 0's
    with pytest.raises(ValueError, match="non-negative"):
        merge_by_counts(-counts, 2)
    with pytest.raises(ValueError, match="cannot merge"):
        merge_by_counts(counts, 6)


def test_vector_merge_joins_the_nearest_codes_into_exactly_the_asked_number_of_actions():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8)) * 5
    cb = np.concatenate([c + 0.1 * rng.normal(size=(3, 8)) for c in centres])  # 3 clusters of 3 codes
    cb = cb[[0, 3, 6, 1, 4, 7, 2, 5, 8]]  # interleaved
    groups = merge_by_vectors(cb, 3)
    np.testing.assert_array_equal(groups, [0, 1, 2, 0, 1, 2, 0, 1, 2])  # numbered by their lowest code
    assert len(set(merge_by_vectors(cb, 5).tolist())) == 5
    np.testing.assert_array_equal(merge_by_vectors(cb, 9), np.arange(9))
    with pytest.raises(ValueError, match="cannot merge 9 codes into 10"):
        merge_by_vectors(cb, 10)


def _merged_cfg(codes=8, actions=4) -> LAMConfig:
    d = micro_preset_dict()["lam"]
    d.update(arch="conv", max_frames=8, merged_actions=actions)
    d["conv"].update(channels=8, hidden=32, fdm_channels=8)
    d["vq"].update(num_codes=codes)
    from genieworld.config import from_dict
    return from_dict(LAMConfig, d)


def test_a_merged_lam_speaks_its_merged_actions_and_round_trips(tmp_path):
    cfg = _merged_cfg()
    torch.manual_seed(0)
    lam = build_lam(cfg)
    assert lam.num_actions == 4 and cfg.num_actions == 4
    frames = torch.randint(0, 256, (3, 5, cfg.image_size, cfg.image_size, 3), dtype=torch.uint8)
    lam.train()
    _, info = lam(frames)
    info["loss"].backward()  # training uses all 8 codes
    lam.eval()
    with pytest.raises(ValueError, match="has not been merged yet"):
        lam.encode_actions(frames)
    groups = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    lam.merge_codes(groups)
    ids, vecs = lam.encode_actions(frames)
    np.testing.assert_array_equal(ids.numpy(), groups[lam.encode_codes(frames).numpy()])
    assert int(ids.max()) < 4 and vecs.shape == (3, 4, cfg.vq.code_dim)
    # each action's vector is the normalised mean of its codes' vectors
    cb = lam.vq.normalized_codebook()
    want = torch.nn.functional.normalize(cb[0] + cb[1], dim=-1)
    torch.testing.assert_close(lam.action_vectors(torch.tensor([0]))[0], want)
    with pytest.raises(ValueError, match=r"action ids must be in \[0, 4\)"):
        lam.action_vectors(torch.tensor([5]))
    with pytest.raises(ValueError, match="one of 4 actions"):
        lam.merge_codes(np.arange(8))
    save_component(lam, cfg, tmp_path / "lam")
    back = load_component(build_lam, LAMConfig, tmp_path / "lam")
    back.eval()
    np.testing.assert_array_equal(back.encode_actions(frames)[0].numpy(), ids.numpy())


def test_merged_actions_is_validated():
    with pytest.raises(ConfigError, match="merged_actions 8 must be below vq.num_codes 8"):
        _merged_cfg(codes=8, actions=8)
    transformer = dataclasses.replace(load_preset("tiny").lam, merged_actions=2)
    with pytest.raises(ConfigError, match="needs the conv LAM"):
        validate_config(transformer)


def _merging_preset(tmp_path, **lam):
    """A micro preset whose conv LAM trains 4 codes and merges them into 2 actions (``lam``: more settings)."""
    d = micro_preset_dict()
    d["lam"].update(arch="conv", max_frames=8, merged_actions=2, **lam)
    d["lam"]["conv"].update(channels=8, hidden=32, fdm_channels=8)
    d["lam"]["vq"].update(num_codes=4)
    d["lam_train"].update(steps=4, batch_size=8, seq_len=3, warmup_steps=1, checkpoint_every=1000)
    preset = tmp_path / "p.json"
    preset.write_text(json.dumps(d))
    return preset


def test_genie_train_lam_merges_its_codes_when_it_finishes(tmp_path, synthetic_store_dir, capsys):
    preset = _merging_preset(tmp_path)
    assert main(["train", "lam", "--data", str(synthetic_store_dir), "--preset", str(preset), "--out",
                 str(tmp_path / "lam"), "--no-progress"]) == 0
    assert "merged 4 codes into 2 actions" in capsys.readouterr().out
    lam = load_component(build_lam, LAMConfig, tmp_path / "lam" / "lam")
    assert lam.num_actions == 2 and lam.is_merged
    cb = lam.vq.normalized_codebook().detach().numpy()
    np.testing.assert_array_equal(lam.merge_map.numpy(), merge_by_vectors(cb, 2))
    # such a LAM cannot be co-trained with the dynamics: refused with one line
    common = ["--data", str(synthetic_store_dir), "--preset", str(preset), "--no-progress"]
    assert main(["train", "tokenizer", "--out", str(tmp_path / "tok"), "--steps", "1", *common]) == 0
    capsys.readouterr()
    assert main(["train", "dynamics", "--tokenizer", str(tmp_path / "tok"), "--out", str(tmp_path / "world"),
                 "--steps", "1", *common]) == 2
    assert "cannot be co-trained" in capsys.readouterr().err


def test_genie_train_lam_can_merge_by_context(tmp_path, synthetic_store_dir, capsys):
    from genieworld.data.store import EpisodeStore
    from genieworld.train.lam_task import store_codes

    preset = _merging_preset(tmp_path, merge="context")
    assert main(["train", "lam", "--data", str(synthetic_store_dir), "--preset", str(preset), "--out",
                 str(tmp_path / "lam"), "--no-progress"]) == 0
    assert "merged 4 codes into 2 actions by context" in capsys.readouterr().out
    lam = load_component(build_lam, LAMConfig, tmp_path / "lam" / "lam")
    assert lam.cfg.merge == "context" and lam.is_merged
    store = EpisodeStore(synthetic_store_dir)
    seqs = store_codes(lam, store, progress=False)
    assert [len(s) for s in seqs] == [n - 1 for n in store.episode_lengths.tolist()]
    np.testing.assert_array_equal(lam.merge_map.numpy(), merge_by_context(seqs, 4, 2))
    assert sum(len(s) for s in store_codes(lam, store, max_transitions=5, progress=False)) == 5
    # clips in a .npy have no videos to read in order: refused before training, with one line
    clips = tmp_path / "clips.npy"
    size = store.read_frames(0).shape[1]
    np.save(clips, np.zeros((4, 3, size, size, 3), dtype=np.uint8))
    assert main(["train", "lam", "--data", str(clips), "--preset", str(preset), "--out", str(tmp_path / "x"),
                 "--no-progress"]) == 2
    assert "needs an episode store" in capsys.readouterr().err


def test_genie_train_lam_can_merge_by_the_camera_motion_of_each_code(tmp_path, synthetic_store_dir, capsys):
    """lam.merge = "camera": codes are grouped by how the picture moved during their transitions, counted
    on every transition that has a frame before it (the LAM's full window)."""
    from types import SimpleNamespace

    from genieworld.data.store import EpisodeStore
    from genieworld.train.lam_task import camera_counts

    preset = _merging_preset(tmp_path, merge="camera")
    assert main(["train", "lam", "--data", str(synthetic_store_dir), "--preset", str(preset), "--out",
                 str(tmp_path / "lam"), "--no-progress"]) == 0
    assert "merged 4 codes into 2 actions by camera" in capsys.readouterr().out
    lam = load_component(build_lam, LAMConfig, tmp_path / "lam" / "lam")
    store = EpisodeStore(synthetic_store_dir)
    counts = camera_counts(lam, store, 4)
    assert counts.sum() == sum(n - 2 for n in store.episode_lengths.tolist() if n >= 3)
    np.testing.assert_array_equal(lam.merge_map.numpy(), merge_by_counts(counts, 2))
    assert camera_counts(lam, store, 4, max_transitions=5).sum() == 5
    # a texture whose view pans right 2 px per frame: every transition in one class, dx > 0 and dy = 0
    size = store.read_frames(0).shape[1]
    tex = np.random.default_rng(0).integers(0, 256, (size, 3 * size, 3), dtype=np.uint8)
    pan = np.stack([tex[:, 2 * t: 2 * t + size] for t in range(6)])
    moving = camera_counts(lam, SimpleNamespace(num_episodes=1, read_frames=lambda i: pan), 4)
    assert moving.sum() == 4 and moving[:, 3 * 2 + 1].sum() == 4

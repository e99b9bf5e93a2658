"""MODEL/prompts/: prompt frames picked from a (held-out) store and written as small PNGs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from fixtures_models import synthetic_store_dir  # noqa: F401

from genieworld.data.store import EpisodeStore, EpisodeWriter
from genieworld.prompts import PROMPT_FILE_RE, pick_prompt_frames, read_prompt_labels, write_prompts


def test_write_prompts_writes_real_frames_deterministically(synthetic_store_dir, tmp_path):
    store = EpisodeStore(synthetic_store_dir)
    paths = write_prompts(tmp_path / "a", store, n=6, seed=3)
    assert [p.name for p in paths] == [f"prompt-{k:02d}.png" for k in range(6)]
    assert all(PROMPT_FILE_RE.match(p.name) for p in paths)
    index = json.loads((tmp_path / "a" / "prompts" / "index.json").read_text())
    assert [e["file"] for e in index["prompts"]] == [p.name for p in paths]
    assert index["store"] == synthetic_store_dir.name and "/" not in index["store"]  # no absolute paths
    eps = [e["episode"] for e in index["prompts"]]
    assert len(set(eps)) == 6, "distinct episodes while the store has enough"
    frames = []
    for p, e in zip(paths, index["prompts"]):
        img = np.asarray(Image.open(p))
        assert img.dtype == np.uint8 and img.shape == (64, 64, 3)
        assert img.std() > 4, "a prompt must be a real frame, not a uniform one"
        assert np.array_equal(img, store.read_frames(e["episode"], e["frame"], e["frame"] + 1)[0])  # lossless
        assert e["frame"] < store.episode_length(e["episode"]) // 2 + 1
        frames.append(img)
    assert len({f.tobytes() for f in frames}) == 6
    assert read_prompt_labels(tmp_path / "a" / "prompts")["prompt-00.png"] == index["prompts"][0]["label"]

    # the same seed: the same files; another seed: another choice; a rewrite replaces older files
    again = write_prompts(tmp_path / "b", synthetic_store_dir, n=6, seed=3)  # a path works too
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(paths, again))
    other = write_prompts(tmp_path / "a", store, n=2, seed=4)
    assert sorted(p.name for p in (tmp_path / "a" / "prompts").glob("*.png")) == ["prompt-00.png", "prompt-01.png"]
    assert [p["index"] for p in pick_prompt_frames(store, 6, seed=3)] != [p["index"] for p in
                                                                        pick_prompt_frames(store, 6, seed=4)]
    assert len(other) == 2


def test_prompts_skip_uniform_frames_and_reuse_small_stores(tmp_path):
    w = EpisodeWriter(tmp_path / "store", resolution=(64, 64))
    rng = np.random.default_rng(0)
    w.begin_episode({"level": 100007})
    w.append(np.zeros((10, 64, 64, 3), dtype=np.uint8))  # a fade: never a prompt
    w.end_episode()
    w.begin_episode({"level": 100008})
    w.append(rng.integers(0, 256, size=(10, 64, 64, 3), dtype=np.uint8))
    w.end_episode()
    w.close()
    store = EpisodeStore(tmp_path / "store")
    picks = pick_prompt_frames(store, n=4, seed=0)
    assert len(picks) == 4 and {p["episode"] for p in picks} == {1}
    assert len({p["index"] for p in picks}) == 4 and all(p["index"] < 5 for p in picks)
    assert picks[0]["label"].startswith("level 100008, frame ")

    blank = EpisodeWriter(tmp_path / "blank", resolution=(64, 64))
    blank.begin_episode()
    blank.append(np.full((4, 64, 64, 3), 7, dtype=np.uint8))
    blank.end_episode()
    blank.close()
    with pytest.raises(ValueError, match="no usable"):
        write_prompts(tmp_path / "m", tmp_path / "blank")


def test_rewriting_store_prompts_keeps_the_drawn_ones(synthetic_store_dir, tmp_path):
    """A gallery with sketches (genieworld.sketches) can pick its real frames again: the sketches, their
    files and their index entries stay; only the prompt-*.png frames are replaced."""
    from genieworld.sketches import write_drawn_prompts

    write_prompts(tmp_path / "m", synthetic_store_dir, n=3, seed=0)
    drawn = write_drawn_prompts(tmp_path / "m", size=64)
    write_prompts(tmp_path / "m", synthetic_store_dir, n=2, seed=1)
    folder = tmp_path / "m" / "prompts"
    names = [e["file"] for e in json.loads((folder / "index.json").read_text())["prompts"]]
    assert names[:2] == ["prompt-00.png", "prompt-01.png"] and not (folder / "prompt-02.png").exists()
    assert sorted(names[2:]) == sorted(p.name for p in drawn) and all(p.is_file() for p in drawn)

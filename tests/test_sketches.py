"""genieworld.sketches: drawn prompts (sketches, photo-like pictures) for a model's gallery, and the grid
bench's --prompt-files option that plays from them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from fixtures_models import load_script

from genieworld.errors import UserError
from genieworld.prompts import MIN_STD, PROMPT_FILE_RE, read_prompt_labels
from genieworld.sketches import DRAWINGS, drawn_prompts, model_image_size, write_drawn_prompts


@pytest.fixture(scope="module")
def drawn():
    return drawn_prompts(64)


def _model(tmp_path, size=64):
    """A model folder as far as prompts go: the tokenizer's frame size and one real prompt with its index."""
    model = tmp_path / "model"
    (model / "tokenizer").mkdir(parents=True)
    (model / "tokenizer" / "config.json").write_text(json.dumps({"image_size": size, "patch_size": 4}))
    (model / "prompts").mkdir()
    real = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(real).save(model / "prompts" / "prompt-00.png")
    index = {"prompts": [{"file": "prompt-00.png", "label": "level 7, frame 3", "episode": 2, "frame": 3}],
             "seed": 0, "store": "test", "source": "coinrun"}
    (model / "prompts" / "index.json").write_text(json.dumps(index))
    return model, index


def test_six_sketches_and_two_photos_are_deterministic_distinct_frames(drawn):
    kinds = [d.kind for d in DRAWINGS]
    assert kinds.count("sketch") == 6 and kinds.count("photo") == 2
    assert [n for n, _, _ in drawn] == [f"sketch-{k:02d}" for k in range(6)] + ["snapshot-00", "snapshot-01"]
    again = drawn_prompts(64)
    for (name, label, frame), (_, label2, frame2) in zip(drawn, again):
        assert frame.dtype == np.uint8 and frame.shape == (64, 64, 3) and frame.flags["C_CONTIGUOUS"]
        assert np.array_equal(frame, frame2) and label == label2, f"{name} is not deterministic"
        assert float(frame.std()) > 5 * MIN_STD, f"{name} is nearly uniform"
        assert PROMPT_FILE_RE.match(f"{name}.png") and 0 < len(label) <= 80
        # a sketch is drawn on light paper: most of its top half is bright
        if name.startswith("sketch"):
            assert np.median(frame[:32].astype(np.float32).mean(-1)) > 200, f"{name}: not on light paper"
    frames = [f.astype(np.int16) for _, _, f in drawn]
    for i in range(len(frames)):
        for j in range(i + 1, len(frames)):
            assert np.abs(frames[i] - frames[j]).mean() > 8, f"{drawn[i][0]} and {drawn[j][0]} look alike"
    small = drawn_prompts(32, kinds=("photo",))
    assert [n for n, _, _ in small] == ["snapshot-00", "snapshot-01"] and small[0][2].shape == (32, 32, 3)
    with pytest.raises(ValueError, match="size must be"):
        drawn_prompts(7)
    with pytest.raises(ValueError, match="unknown prompt kind"):
        drawn_prompts(64, kinds=("painting",))


def test_writing_adds_entries_keeps_the_real_ones_and_is_idempotent(tmp_path, drawn):
    model, index = _model(tmp_path)
    assert model_image_size(model) == 64
    paths = write_drawn_prompts(model)
    assert [p.name for p in paths] == [f"{n}.png" for n, _, _ in drawn]
    for p, (_, _, frame) in zip(paths, drawn):
        assert np.array_equal(np.asarray(Image.open(p).convert("RGB")), frame), f"{p.name} is not lossless"
    assert sum(p.stat().st_size for p in paths) < 24_000, "the drawn prompts should stay small"
    new = json.loads((model / "prompts" / "index.json").read_text())
    assert new["prompts"][0] == index["prompts"][0] and new["store"] == "test" and new["source"] == "coinrun"
    added = new["prompts"][1:]
    assert [e["file"] for e in added] == [p.name for p in paths]
    assert [e["kind"] for e in added] == ["sketch"] * 6 + ["photo"] * 2
    labels = read_prompt_labels(model / "prompts")
    assert labels["prompt-00.png"] == "level 7, frame 3" and labels["sketch-00.png"] == drawn[0][1]

    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (model / "prompts").glob("*.png")}
    write_drawn_prompts(model)  # again: nothing rewritten, no entry doubled
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (model / "prompts").glob("*.png")} == before
    assert json.loads((model / "prompts" / "index.json").read_text()) == new

    # genie play lists them after the real frames, so it still opens on a real frame
    from genieworld.play.server import _load_model_prompts

    ids = [p.id for p in _load_model_prompts(model, 64, 24)]
    assert ids == ["prompt-00"] + [n for n, _, _ in drawn]


def test_writing_never_overwrites_a_foreign_file_and_refuses_bad_folders(tmp_path):
    model, index = _model(tmp_path)
    foreign = model / "prompts" / "sketch-03.png"
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(foreign)
    mine = foreign.read_bytes()
    with pytest.raises(UserError, match="sketch-03.png: exists .* refusing to overwrite"):
        write_drawn_prompts(model)
    assert foreign.read_bytes() == mine, "a file it did not write was changed"
    assert not (model / "prompts" / "sketch-00.png").exists(), "it wrote before checking everything"
    assert json.loads((model / "prompts" / "index.json").read_text()) == index

    foreign.unlink()
    (model / "prompts" / "index.json").write_text('["not", "an", "index"]')
    with pytest.raises(UserError, match="not a prompt index"):
        write_drawn_prompts(model)
    with pytest.raises(UserError, match="no such model folder"):
        write_drawn_prompts(tmp_path / "missing")
    (tmp_path / "bare").mkdir()
    with pytest.raises(UserError, match="config.json: no such JSON file; pass the frame size"):
        model_image_size(tmp_path / "bare")
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "prompts").symlink_to(model / "prompts")
    with pytest.raises(UserError, match="not a plain folder"):
        write_drawn_prompts(linked, size=64)
    fresh = tmp_path / "fresh"  # no prompts/ yet: it is made, with an index of the drawn prompts alone
    fresh.mkdir()
    assert len(write_drawn_prompts(fresh, size=32)) == 8
    assert len(json.loads((fresh / "prompts" / "index.json").read_text())["prompts"]) == 8


@pytest.fixture(scope="module")
def bench():
    return load_script("bench/bench_grid.py")


def test_grid_bench_refuses_missing_and_non_png_prompt_files(bench, tmp_path):
    args = ["--model", str(tmp_path / "no-model"), "--data", str(tmp_path / "no-data"), "--prompt-files"]
    with pytest.raises(SystemExit, match="missing.png: no such file"):
        bench.main(args + [str(tmp_path / "missing.png")])
    jpeg = tmp_path / "shot.png"  # a JPEG under a PNG name
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(jpeg, "JPEG")
    with pytest.raises(SystemExit, match="shot.png: not a PNG file"):
        bench.main(args + [str(jpeg)])
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 32)
    with pytest.raises(SystemExit, match="broken.png: cannot decode it"):
        bench.main(args + [str(broken)])
    with pytest.raises(SystemExit, match="need --data"):
        bench.main(["--model", "m", "--prompt-files", str(broken)])


def test_grid_bench_per_prompt_verdicts_follow_the_view(bench):
    """A fake grid cut from one large picture: Left slides the view left, Right right, Jump up, Stay holds."""
    rng = np.random.default_rng(1)
    big = np.asarray(Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).resize((160, 160),
                                                                                               Image.BICUBIC))
    moves = {"Left": (-3, 0), "Right": (3, 0), "Jump": (0, -3), "Stay": (0, 0)}
    grid = np.zeros((2, 3, 4, 5, 64, 64, 3), np.uint8)  # (P, S, A, 1 + k, H, W, C)
    for p in range(2):
        for s in range(3):
            for a, (dx, dy) in enumerate(moves.values()):
                for t in range(5):
                    y, x = 48 + 10 * p + dy * t, 48 + dx * t
                    grid[p, s, a, t] = big[y:y + 64, x:x + 64]
    per = bench.per_prompt_motion(grid, list(moves), ["a.png", "b.png"])
    assert [q["prompt"] for q in per] == ["a.png", "b.png"] and per[0]["draws"] == 3
    acts = per[1]["actions"]
    assert acts["Left"]["moves"] == ["left"] and acts["Left"]["dx"] == [-12] * 3 and acts["Left"]["kept"] == 3
    assert acts["Right"]["moves"] == ["right"] and acts["Jump"]["moves"] == ["up"] and acts["Stay"]["moves"] == []
    keys = bench.key_actions(list(moves), "no-model")
    assert keys == {"Left": "Left", "Right": "Right", "Jump": "Jump"}
    summary = bench.key_action_summary(per, keys)
    assert summary["left_moves_left"] == summary["right_moves_right"] == summary["jump_moves_up"] == 2
    assert summary["left_and_right_scroll"] == 2 and summary["prompts"] == 2

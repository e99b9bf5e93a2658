"""`make demo` evaluates the model on held-out CoinRun recorded the way its training data was."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from fixtures_models import tiny_model_dir  # noqa: F401  (pytest fixture)

from genieworld import demo
from genieworld.data.coinrun import frame_skip_of, generate_coinrun, levels_of
from genieworld.data.store import EpisodeStore
from genieworld.genie import Genie

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "coinrun-cpu"


def test_frame_skip_comes_from_the_model_provenance(tiny_model_dir):
    assert demo.model_frame_skip(Genie.from_pretrained(SHIPPED)) == 4  # trained by the cpu recipe (skip 4)
    genie = Genie.from_pretrained(tiny_model_dir)
    for recorded, expected in ((None, 1), (3, 3), ("4", 1), (0, 1), (True, 1)):
        genie.provenance.pop("frame_skip", None)
        if recorded is not None:
            genie.provenance["frame_skip"] = recorded
        assert demo.model_frame_skip(genie) == expected, recorded


def test_held_out_clip_is_recorded_with_the_models_frame_skip(tmp_path):
    out = tmp_path / "demo"
    clip = demo.held_out_clip(out, frame_skip=3, length=8)
    assert clip.shape == (8, 64, 64, 3) and clip.dtype == np.uint8
    store = out / "data" / "coinrun-heldout-skip3"
    assert frame_skip_of(store) == 3 and min(levels_of(store)) >= 100000  # held-out levels only
    # a test store from the tiny pipeline (recorded with skip 1) is not used for a skip-3 model ...
    generate_coinrun(out / "data" / "coinrun-test", levels=1, start_level=100000, steps_per_level=20, progress=False)
    again = demo.held_out_clip(out, frame_skip=3, length=8)
    np.testing.assert_array_equal(again, clip)  # ... the skip-3 store is reused, deterministically
    assert not np.array_equal(demo.held_out_clip(out, frame_skip=1, length=8), clip)  # the skip-1 store is used


def test_held_out_clip_passes_over_an_unreadable_store(tmp_path):
    out = tmp_path / "demo"
    (out / "data" / "coinrun-test").mkdir(parents=True)
    (out / "data" / "coinrun-test" / "manifest.json").write_text("{ not json")
    clip = demo.held_out_clip(out, frame_skip=1, length=8)
    assert clip.shape == (8, 64, 64, 3)
    assert frame_skip_of(out / "data" / "coinrun-heldout-skip1") == 1


def test_held_out_clip_is_recorded_with_the_models_policy_and_backdrop(tmp_path, tiny_model_dir):
    genie = Genie.from_pretrained(tiny_model_dir)
    assert demo.model_recording(genie) == {"policy": "uniform", "hold": 1.0, "backgrounds": True}
    genie.provenance["coinrun"] = {"policy_name": "hold", "hold": 4.0, "backgrounds": False}
    rec = demo.model_recording(genie)
    assert rec == {"policy": "hold", "hold": 4.0, "backgrounds": False}
    out = tmp_path / "demo"
    clip = demo.held_out_clip(out, frame_skip=2, length=8, **rec)
    store = out / "data" / "coinrun-heldout-skip2-hold4-nobg"
    extra = EpisodeStore(store).extra["coinrun"]
    assert extra["policy_name"] == "hold" and extra["backgrounds"] is False and clip.shape == (8, 64, 64, 3)
    # a uniform-policy store with the same frame skip is not taken for it
    assert not np.array_equal(demo.held_out_clip(out, frame_skip=2, length=8), clip)

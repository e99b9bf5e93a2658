"""The model shipped in models/coinrun-cpu (what `make demo` plays) loads with this code and plays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fixtures_genie import one_thread

from genieworld.genie import Genie

pytestmark = pytest.mark.usefixtures("one_thread")

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "coinrun-cpu"


def test_shipped_model_is_small_complete_and_named():
    files = [p for p in SHIPPED.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 50 * 2**20  # the limit
    assert {p.relative_to(SHIPPED).as_posix() for p in files} >= {
        "genie.json", "actions.json", "tokenizer/model.safetensors", "lam/model.safetensors",
        "dynamics/model.safetensors"}
    assert not [p for p in files if p.suffix in (".pt", ".pth", ".pkl", ".bin")]  # nothing to unpickle
    genie = Genie.from_pretrained(SHIPPED)
    assert 6 <= genie.num_actions <= 8 and genie.image_size == 64  # the paper's 6-8 latent actions
    names = genie.action_names
    assert len(names) == genie.num_actions and len(set(names)) == len(names)  # one distinct name each
    assert not any(n.isdigit() for n in names)  # named after the game's actions, not raw indices


def test_shipped_model_plays_deterministically_at_play_settings():
    genie = Genie.from_pretrained(SHIPPED)
    prompt = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    runs = []
    for _ in range(2):
        world = genie.world(prompt, seed=3, **genie.play_overrides())
        runs.append(np.stack([world.step(a) for a in (0, 5, 2)]))
    assert runs[0].shape == (3, 64, 64, 3) and runs[0].dtype == np.uint8
    np.testing.assert_array_equal(runs[0], runs[1])

"""bench/bench_lam_probe.py: the camera-motion labels it scores the LAM against, and a short run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fixtures_models import load_script, synthetic_store_dir  # noqa: F401  (pytest fixture)


@pytest.fixture(scope="module")
def probe():
    return load_script("bench/bench_lam_probe.py")


def test_camera_moves_reads_the_direction_of_a_whole_picture_shift(probe):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)]
    steps = [(3, -5), (0, 0), (-2, 8), (0, 1)]  # (dx, dy) the picture moves: + = right / down
    for dx, dy in steps:
        frames.append(np.roll(frames[-1], (dy, dx), axis=(0, 1)))
    moves = probe.camera_moves(np.stack(frames), max_dx=6, max_dy=10)
    assert moves.tolist() == [[1, -1], [0, 0], [-1, 1], [0, 1]]


def test_probe_runs_and_reports(probe, synthetic_store_dir, capsys):  # noqa: F811
    assert probe.main(["--data", str(synthetic_store_dir), "--preset", "tiny", "--steps", "3", "--seq-len", "4",
                       "--eval-episodes", "2", "--set", "lam.vq.num_codes=5", "--continuous"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["continuous"] and r["set"] == {"vq.num_codes": 5} and len(r["codes"]) == 5
    assert r["eval_transitions"] == sum(c["transitions"] for c in r["codes"]) > 0
    for key in ("nmi_true", "nmi_true_shuffled", "nmi_camera_x", "nmi_camera_y", "nmi_camera_xy"):
        assert 0.0 <= r[key] <= 1.0, key
    assert r["mse_last100"] > 0 and r["copy_mse_last100"] > 0
    with pytest.raises(SystemExit, match="unknown LAM setting"):
        probe.main(["--data", str(synthetic_store_dir), "--preset", "tiny", "--steps", "1", "--set", "lam.nope=1"])

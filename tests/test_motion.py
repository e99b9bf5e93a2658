"""The view-motion measurement behind the action-grid target (genieworld.eval.motion)."""

from __future__ import annotations

import numpy as np
import pytest

from genieworld.eval.motion import frame_shifts, grid_motion, rollout_motion, scene_kept


def _scene(seed=0, size=64):
    rng = np.random.default_rng(seed)
    big = rng.integers(0, 256, (size // 4 + 16, size // 4 + 16, 3), dtype=np.uint8)
    return np.kron(big, np.ones((4, 4, 1), dtype=np.uint8))  # blocky texture, larger than a frame


def _view(scene, x, y, size=64):
    return scene[32 + y:32 + y + size, 32 + x:32 + x + size]


def test_frame_shifts_reads_the_views_motion_and_its_sign():
    s = _scene()
    a = np.stack([_view(s, 0, 0)] * 3)
    b = np.stack([_view(s, 3, 0), _view(s, -2, 0), _view(s, 0, -5)])  # view right, left, up
    shift, psnr = frame_shifts(a, b)
    assert shift.tolist() == [[3, 0], [-2, 0], [0, -5]]
    assert (psnr > 40).all()
    with pytest.raises(ValueError):
        frame_shifts(a, b[:2])


def test_a_blanked_or_unrelated_last_frame_does_not_count_as_the_scene_moved():
    s, other = _scene(0), _scene(1)
    first = _view(s, 0, 0)
    rollouts = np.stack([np.stack([first, _view(s, 2, 0), _view(s, 4, 0)]),
                         np.stack([first, first, np.full_like(first, 120)]),  # emptied picture
                         np.stack([first, first, _view(other, 0, 0)])])  # a different scene
    m = rollout_motion(rollouts)
    assert m["displacement"][0].tolist() == [4, 0]
    assert scene_kept(m).tolist() == [True, False, False]


def test_grid_motion_finds_the_actions_that_move_the_view_consistently():
    s = [_scene(i) for i in range(4)]
    moves = {"Right": (2, 0), "Left": (-2, 0), "Jump": (0, -3), "Stay": (0, 0)}
    grid = np.stack([np.stack([np.stack([_view(sc, k * dx, k * dy) for k in range(4)]) for dx, dy in moves.values()])
                     for sc in s])  # (P=4, A=4, 1 + 3, H, W, 3)
    g = grid_motion(grid, list(moves))
    assert g["moves"] == {"left": ["Left"], "right": ["Right"], "up": ["Jump"], "down": []}
    assert g["actions"]["Right"]["mean_dx"] == 6 and g["actions"]["Stay"]["horizontal"] is None
    # two prompts are not enough to call a direction (MIN_PROMPTS = 3)
    assert grid_motion(grid[:2], list(moves))["distinct_directions"] == []

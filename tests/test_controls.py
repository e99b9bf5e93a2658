"""Gravity for play (genieworld.controls): what a pressed key plays after the latents played before it."""

from __future__ import annotations

import numpy as np
import pytest

from genieworld.controls import AIR_DY, FALLING_DY, HOLD, RISE, Descent, Gravity, count_sequences, vertical_effect, view_dy
from genieworld.controls import FALL as FALLS

# latents: 0 Stay, 1 Jump (rise), 2 Fall; real actions: 0 Stay, 1 Jump
STAY, JUMP, FALL = 0, 1, 2
EFFECTS = [HOLD, RISE, FALLS]
MOTION = [{"down": 0.02, "up": 0.01}, {"down": 0.0, "up": 0.9}, {"down": 0.8, "up": 0.05}]


def test_count_sequences_counts_each_transition_after_its_two_predecessors():
    lat = [np.array([STAY, JUMP, JUMP, FALL, FALL, STAY]), np.array([JUMP, FALL])]
    true = [np.array([0, 1, 1, 0, 0, 0]), np.array([1, 0])]
    c = count_sequences(lat, true, num_true=2, num_latent=3)
    assert c.shape == (2, 3, 3, 3) and c.sum() == 4  # 6 - 2 transitions with two before; the short episode none
    assert c[1, STAY, JUMP, JUMP] == 1 and c[0, JUMP, JUMP, FALL] == 1
    assert c[0, JUMP, FALL, FALL] == 1 and c[0, FALL, FALL, STAY] == 1
    # unrecorded real actions (-1) and out-of-range latents are left out
    c = count_sequences([np.array([0, 1, 1, 7])], [np.array([0, 1, -1, 0])], 2, 3)
    assert c.sum() == 0
    with pytest.raises(ValueError, match="differ in length"):
        count_sequences([np.array([0, 1, 2])], [np.array([0, 1])], 2, 3)


def _table():
    c = np.zeros((2, 3, 3, 3), dtype=np.int64)
    c[0, JUMP, JUMP, FALL] = 30   # holding Stay after two rises: mostly a fall
    c[0, JUMP, JUMP, STAY] = 5
    c[1, JUMP, JUMP, FALL] = 20   # holding Jump after two rises: a fall too (no double jump)
    c[1, JUMP, JUMP, JUMP] = 4
    c[0, STAY, STAY, STAY] = 50   # on the ground Stay stays
    c[0, STAY, STAY, FALL] = 2
    c[0, FALL, STAY, FALL] = 3    # a rare context
    return c


_RAW = _table()


def _gravity(min_count=10):
    return Gravity(_RAW, true_of_latent=[0, 1, 0], effects=EFFECTS, falling=[FALL], min_count=min_count)


def test_gravity_plays_a_fall_where_the_recordings_show_one():
    g = _gravity()
    assert g.choose(STAY, [JUMP, JUMP]) == FALL and g.choose(JUMP, [STAY, JUMP, JUMP]) == FALL
    assert g.choose(STAY, [STAY, STAY]) == STAY  # on the ground: as pressed
    assert g.choose(STAY, [FALL, STAY]) == STAY  # a context seen 3 < 10 times: as pressed
    assert _gravity(min_count=1).choose(STAY, [FALL, STAY]) == FALL
    assert g.choose(STAY, [JUMP]) == STAY and g.choose(STAY, []) == STAY  # before the first step: standing
    assert g.choose(FALL, [STAY, STAY]) == FALL  # a fall plays as pressed when there is no rest latent...
    rested = Gravity(_RAW, true_of_latent=[0, 1, 0], effects=EFFECTS, falling=[FALL], rest=STAY)
    assert rested.choose(FALL, [STAY, STAY]) == STAY and rested.choose(FALL, []) == STAY  # ...on the ground: rest
    assert rested.choose(FALL, [JUMP, JUMP]) == FALL  # after two rises the recordings fall: as pressed
    with pytest.raises(ValueError, match="holds the height"):
        Gravity(_RAW, true_of_latent=[0, 1, 0], effects=EFFECTS, falling=[FALL], rest=JUMP)
    assert g.choose(STAY, [9, JUMP]) == STAY  # a history the table does not know
    # a whole sequence of presses from a reset: each choice sees the ones played before it
    assert g.play([JUMP, JUMP, STAY, STAY]) == [JUMP, JUMP, FALL, STAY]
    no_true = Gravity(_RAW, true_of_latent=[None, 1, 0], effects=EFFECTS, falling=[FALL])
    assert no_true.choose(STAY, [JUMP, JUMP]) == STAY  # a latent with no real action: as pressed


def test_while_the_view_falls_every_key_plays_a_fall_until_it_lands():
    """Closed loop: the table alone lets a jump pressed after a fall rise again; with ``falling`` (the view
    moved down in the last step) any key plays the fall its real action shows most."""
    c = np.zeros((2, 4, 4, 4), dtype=np.int64)
    c[:, :3, :3, :3] = _table()
    c[0, STAY, STAY, 3] = 40  # a second falling latent, the one Stay (real action 0) shows most
    c[1, JUMP, JUMP, FALL] = 25
    g = Gravity(c, true_of_latent=[0, 1, 0, 0], effects=[HOLD, RISE, FALLS, FALLS], falling=[FALL, 3])
    assert g.fall_for(STAY) == 3 and g.fall_for(JUMP) == FALL
    assert g.choose(JUMP, [FALL, FALL]) == JUMP and g.choose(STAY, [STAY, STAY]) == STAY  # open loop: as pressed
    assert g.choose(JUMP, [FALL, FALL], falling=True) == FALL  # no jump in the air
    assert g.choose(STAY, [STAY, STAY], falling=True) == 3
    assert g.choose(FALL, [STAY, STAY], falling=True) == FALL  # a fall pressed plays as pressed
    assert g.choose(STAY, [JUMP, JUMP], falling=True) == FALL  # the table's own fall is kept
    assert g.choose(9, [], falling=True) == 9  # a latent the model does not have: as pressed


def test_descent_falls_while_the_view_comes_down_above_where_it_stood():
    d = Descent()
    steps = [(RISE, -8, 8, False), (RISE, -8, 16, False),  # a jump: the view rises 16 px
             (FALLS, 6, 10, True), (HOLD, 6, 4, True),      # coming down, whatever was played
             (FALLS, 6, 0, False),                          # back at the height it left
             (RISE, -8, 8, False), (FALLS, 0, 0, False),    # a jump onto a ledge: a fall that does not move lands
             (HOLD, 1, 0, False), (HOLD, 8, 0, False)]      # walking off a ledge: below where it stood, no forcing
    for effect, dy, above, falling in steps:
        d.seen(effect, dy)
        assert (d.above, d.falling) == (above, falling), (effect, dy)
    assert AIR_DY == 4 and FALLING_DY == 2  # the numbers the steps above are written for


def test_view_dy_reads_how_far_the_view_moved_down():
    rng = np.random.default_rng(0)
    level = np.kron(rng.integers(0, 255, (24, 24, 3)), np.ones((4, 4, 1))).astype(np.uint8)  # blocky, 96 x 96
    view = lambda x, y: level[16 + y:16 + y + 64, 16 + x:16 + x + 64]
    for dx, dy in ((0, 0), (0, 4), (0, -6), (4, 8), (-6, -2), (2, 12)):
        assert int(view_dy(view(0, 0), view(dx, dy))) == dy, (dx, dy)
    batch = view_dy(np.stack([view(0, 0)] * 2), np.stack([view(0, 2), view(0, -4)]))
    assert batch.tolist() == [2, -4] and (batch >= FALLING_DY).tolist() == [True, False]
    flat = np.full((64, 64, 3), 90, dtype=np.uint8)
    assert int(view_dy(flat, flat)) == 0  # matches every shift: the smallest wins
    assert int(view_dy(view(0, 0)[:63, :63], view(0, 4)[:63, :63])) == 4  # an odd size: the last row is left out
    with pytest.raises(ValueError, match="at least 8 x 8"):
        view_dy(view(0, 0)[:4, :4], view(0, 0)[:4, :4])
    with pytest.raises(ValueError, match="one shape"):
        view_dy(view(0, 0), view(0, 0)[:32])


def test_vertical_effects_and_the_history_read_by_them():
    assert [vertical_effect(m) for m in MOTION] == EFFECTS
    assert vertical_effect({"down": 0.5, "up": 0.5}) == HOLD
    assert vertical_effect({"down": float("nan"), "up": 0}) == HOLD
    assert vertical_effect(None) == HOLD and vertical_effect({"down": "x", "up": 0}) == HOLD
    # two rising latents share their statistics: a second jump (latent 3) after the first falls as well
    c = np.zeros((2, 4, 4, 4), dtype=np.int64)
    c[0, JUMP, JUMP, FALL] = 30
    g = Gravity(c, [0, 1, 0, 1], [HOLD, RISE, FALLS, RISE], falling=[FALL])
    assert g.choose(STAY, [3, 3]) == FALL and g.choose(STAY, [JUMP, 3]) == FALL and g.choose(STAY, [0, 3]) == STAY


def test_gravity_from_actions_json_trusts_nothing():
    good = {"mapping": [{"latent": 0, "true_action": 0}, {"latent": 1, "true_action": 1},
                        {"latent": 2, "true_action": 0, "effect": "fall"}], "sequence_counts": _RAW.tolist(),
            "motion": MOTION}
    loaded = Gravity.from_actions(good, 3)
    assert loaded is not None and loaded.falling == [FALL] and loaded.choose(STAY, [JUMP, JUMP]) == FALL
    assert loaded.rest is None  # no view shifts (dx, dy) in this motion table: no rest latent
    shifts = [{**m, "dx": dx, "dy": 0.1} for m, dx in zip(MOTION, (0.3, 0.0, 0.0))]
    assert Gravity.from_actions({**good, "motion": shifts}, 3).rest == STAY  # the only latent that holds
    assert Gravity.from_actions(good, 4) is None  # another number of actions
    no_fall = {**good, "mapping": [{k: v for k, v in m.items() if k != "effect"} for m in good["mapping"]]}
    bad_counts = [(-np.ones((2, 3, 3, 3), dtype=int)).tolist(), [[1, 2], [3]], "x", np.zeros((2, 3, 3)).tolist()]
    for bad in [None, [], {}, {"mapping": good["mapping"]}, no_fall, {**good, "mapping": "x"},
                {**good, "motion": MOTION[:2]}, {**good, "motion": "x"}, {**good, "motion": [*MOTION[:2], {"up": 1}]},
                {**good, "motion": [*MOTION[:2], {"down": float("inf"), "up": 0}]},
                {k: v for k, v in good.items() if k != "motion"},
                {**good, "mapping": [{"latent": "a"}]},
                *({**good, "sequence_counts": c} for c in bad_counts)]:
        assert Gravity.from_actions(bad, 3) is None, bad
    with pytest.raises(ValueError):
        Gravity(_RAW, [0, 1, 0], EFFECTS, falling=[5])
    with pytest.raises(ValueError):
        Gravity(_RAW, [0, 1], EFFECTS, falling=[2])
    with pytest.raises(ValueError):
        Gravity(_RAW, [0, 1, 0], [0, 1, 7], falling=[2])

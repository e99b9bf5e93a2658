"""Gravity for play (genieworld.controls): what a pressed key plays after the latents played before it."""

from __future__ import annotations

import numpy as np
import pytest

from genieworld.controls import HOLD, RISE, Gravity, count_sequences, vertical_effect
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

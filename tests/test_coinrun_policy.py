"""CoinRun's effective actions and the random policies that record it (uniform, as the paper; hold)."""

from __future__ import annotations

import numpy as np
import pytest

from genieworld.data.coinrun import EFFECTIVE_ACTIONS, EFFECTIVE_NAMES, effective_action, random_actions


def test_effective_action_collapses_the_15_buttons_to_6():
    eff = effective_action(np.arange(15))
    # LEFT-DOWN, LEFT -> Left; LEFT-UP -> Left+Jump; DOWN, NOOP -> Stay; UP -> Jump; RIGHT-DOWN, RIGHT -> Right;
    # RIGHT-UP -> Right+Jump; D, A, W, S, Q, E do nothing in CoinRun -> Stay
    assert eff.tolist() == [0, 0, 1, 2, 2, 3, 4, 4, 5] + [2] * 6
    assert [EFFECTIVE_NAMES[effective_action(a)] for a in EFFECTIVE_ACTIONS] == list(EFFECTIVE_NAMES)
    assert effective_action(np.array([-1, 8])).tolist() == [-1, 5]


def test_uniform_policy_draws_all_15_actions():
    a = random_actions(np.random.default_rng(0), 6000, "uniform")
    assert set(a.tolist()) == set(range(15))
    assert abs(np.mean(effective_action(a) == 2) - 8 / 15) < 0.03  # 53% do nothing


def test_hold_policy_holds_effective_actions_for_the_mean_number_of_steps():
    a = random_actions(np.random.default_rng(0), 20000, "hold", hold=4.0)
    assert set(a.tolist()) == set(EFFECTIVE_ACTIONS)
    counts = np.bincount(effective_action(a), minlength=6) / len(a)
    assert np.all(np.abs(counts - 1 / 6) < 0.03)
    # runs of one drawn action: geometric with mean 4 (a redraw of the same action continues the run)
    switches = np.count_nonzero(a[1:] != a[:-1])
    assert len(a) / (switches + 1) == pytest.approx(4.0 * 6 / 5, rel=0.1)
    np.testing.assert_array_equal(a, random_actions(np.random.default_rng(0), 20000, "hold", hold=4.0))


def test_bad_policy_settings_are_refused():
    with pytest.raises(ValueError, match="policy"):
        random_actions(np.random.default_rng(0), 3, "sticky")
    with pytest.raises(ValueError, match="hold"):
        random_actions(np.random.default_rng(0), 3, "hold", hold=0.5)


def test_a_store_refuses_to_be_extended_with_another_policy(tmp_path):
    from genieworld.data.coinrun import generate_coinrun
    from genieworld.data.store import EpisodeStore, StoreError

    out = tmp_path / "cr"
    generate_coinrun(out, levels=1, steps_per_level=12, policy="hold", hold=3.0, backgrounds=False, progress=False,
                     frame_skip=2)
    extra = EpisodeStore(out).extra["coinrun"]
    assert extra["policy_name"] == "hold" and extra["hold"] == 3.0 and extra["backgrounds"] is False
    with pytest.raises(StoreError, match="policy_name"):
        generate_coinrun(out, levels=1, start_level=1, steps_per_level=12, progress=False, frame_skip=2,
                         backgrounds=False)

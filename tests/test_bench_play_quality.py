"""bench/bench_play_quality.py: real-clip features are cached by store contents, N and seed; variants parse."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_models import load_script, synthetic_store_dir  # noqa: F401  (pytest fixture)


@pytest.fixture(scope="module")
def bench():
    return load_script("bench/bench_play_quality.py")


def test_real_features_are_cached_and_a_damaged_cache_is_recomputed(bench, synthetic_store_dir, tmp_path,  # noqa: F811
                                                                   monkeypatch, capsys):
    import genieworld.eval.fvd as fvd
    from genieworld.data.store import EpisodeStore

    calls = []

    def fake_features(videos, *a, **k):  # the I3D pass is minutes on a CPU: count calls instead
        calls.append(len(videos))
        return np.arange(len(videos) * 3, dtype=np.float64).reshape(len(videos), 3) + len(calls)

    monkeypatch.setattr(fvd, "i3d_features", fake_features)
    store = EpisodeStore(synthetic_store_dir)
    first = bench.real_features(store, 3, 0, tmp_path)
    assert calls == [3, 3] and len(list(tmp_path.glob("real-*-n3-seed0.npz"))) == 1
    again = bench.real_features(store, 3, 0, tmp_path)
    assert calls == [3, 3] and all(np.array_equal(a, b) for a, b in zip(first, again))  # read back, not recomputed
    bench.real_features(store, 3, 1, tmp_path)  # another seed is another file
    assert len(calls) == 4
    path = next(tmp_path.glob("real-*-n3-seed0.npz"))
    path.write_bytes(b"not an npz")
    capsys.readouterr()
    bench.real_features(store, 3, 0, tmp_path)
    assert len(calls) == 6 and "unreadable" in capsys.readouterr().err
    bench.real_features(store, 3, 0, None)  # no cache: always computed
    assert len(calls) == 8


def test_variants_parse_sampling_settings_and_reject_unknown_keys(bench):
    assert bench.parse_variant("temperature=0.3,order=random") == {"temperature": 0.3, "order": "random"}
    assert bench.parse_variant("action_guidance=2") == {"action_guidance": 2}
    with pytest.raises(SystemExit, match="sampling settings"):
        bench.parse_variant("guidance=2")


def test_true_actions_needs_one_model_and_drivers_without_the_lams_reading(bench):
    base = ["--model", "m", "--data", "d", "--true-actions", "t"]
    for extra in ([], ["--drivers", "own", "player"], ["--model", "m2", "--drivers", "player"]):
        with pytest.raises(SystemExit, match="--true-actions takes one --model"):
            bench.main(base + extra)


def test_drivers_without_own_never_ask_the_lam_and_draw_the_same_actions():
    from types import SimpleNamespace

    from genieworld.eval.play_quality import driver_actions

    def no_lam(*a, **k):
        raise AssertionError("the LAM was asked")

    clips = np.zeros((5, 6, 8, 8, 3), dtype=np.uint8)
    fake = SimpleNamespace(num_actions=4, lam=SimpleNamespace(encode_actions=no_lam))
    got = driver_actions(fake, clips, seed=3, drivers=("random", "held", "player"))
    assert set(got) == {"random", "held", "player"}
    import torch

    with_lam = SimpleNamespace(num_actions=4, lam=SimpleNamespace(
        encode_actions=lambda x: (torch.zeros(x.shape[0], x.shape[1] - 1, dtype=torch.long),)))
    full = driver_actions(with_lam, clips, seed=3)
    assert full["own"].shape == (5, 5)
    assert all(np.array_equal(full[k], got[k]) for k in got)  # the random drivers do not depend on 'own'

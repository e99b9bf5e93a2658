"""bench/bench_lam.py: a short run end to end, fine-tuning from a trained LAM's merged actions, and the
ceiling of the past alone."""

from __future__ import annotations

import json

import pytest
import torch
from fixtures_models import load_script, synthetic_store_dir  # noqa: F401  (pytest fixture)


@pytest.fixture(scope="module")
def bench():
    return load_script("bench/bench_lam.py")


def _last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_trains_saves_fine_tunes_from_merged_actions_and_reads_the_past_ceiling(
        bench, synthetic_store_dir, tmp_path, capsys):  # noqa: F811
    from dataclasses import replace

    from genieworld.config import LAMConfig, load_preset
    from genieworld.genie import load_component
    from genieworld.lam import build_lam

    torch.set_num_threads(1)
    store = str(synthetic_store_dir)
    common = ["--data", store, "--eval-data", store, "--batch-size", "4", "--eval-transitions", "60", "--threads", "1"]
    assert bench.main(common + ["--steps", "2", "--no-ceiling", "--save", str(tmp_path / "lam")]) == 0
    r = _last_json(capsys)
    assert r["lam"]["num_codes"] == 16 and r["lam"]["actions"] == 8 and r["eval_transitions"] == 60
    assert 0 <= r["nmi_eff"] <= 1 and 0 <= r["probe_eff"] <= 1 and r["init"] is None
    assert r["effective_actions"] == ["0", "1", "2", "3"]  # a store without a measured partition: its raw ids

    src = load_component(build_lam, LAMConfig, tmp_path / "lam")
    assert src.is_merged
    cfg = load_preset("cpu").lam
    lam = build_lam(replace(cfg, vq=replace(cfg.vq, num_codes=8), merged_actions=0))
    bench.init_from(lam, tmp_path / "lam")
    assert torch.equal(lam.vq.codebook, src.merged_codebook)  # the 8 merged actions become the 8 codes
    assert torch.equal(lam.idm.head[-1].weight, src.idm.head[-1].weight)
    with pytest.raises(SystemExit, match="do not fit"):
        bench.init_from(build_lam(replace(cfg, conv=replace(cfg.conv, channels=8))), tmp_path / "lam")

    assert bench.main(["--model", str(tmp_path / "lam"), "--steps", "2", "--past-ceiling"] + common) == 0
    r = _last_json(capsys)
    for key in ("ceiling", "ceiling_past"):
        assert 0 <= r[key]["acc_eff"] <= 1 and r[key]["seconds"] > 0, key


def test_merges_by_context_when_the_config_says_so(bench, synthetic_store_dir, tmp_path, capsys):  # noqa: F811
    from genieworld.config import LAMConfig
    from genieworld.data.store import EpisodeStore
    from genieworld.genie import load_component
    from genieworld.lam import build_lam
    from genieworld.lam_codebook import merge_by_context
    from genieworld.train.lam_task import store_codes

    torch.set_num_threads(1)
    store = str(synthetic_store_dir)
    assert bench.main(["--data", store, "--eval-data", store, "--batch-size", "4", "--eval-transitions", "60",
                       "--threads", "1", "--steps", "2", "--no-ceiling", "--set", "lam.merge=context",
                       "--save", str(tmp_path / "lam")]) == 0
    lam = load_component(build_lam, LAMConfig, tmp_path / "lam")
    assert lam.cfg.merge == "context" and lam.is_merged
    seqs = store_codes(lam, EpisodeStore(store), progress=False)
    assert lam.merge_map.tolist() == merge_by_context(seqs, 16, 8).tolist()


def test_scores_a_procgen_game_against_its_own_effective_actions(bench, tmp_path, capsys):
    """A game other than CoinRun is scored against its measured partition, not CoinRun's 6: FruitBot's 4
    classes (Left, Stay, Right, Fire) for the probe and the ceiling; a store of another game is refused."""
    import numpy as np

    from genieworld.data.procgen import effective_action_of, generate_procgen

    torch.set_num_threads(1)
    kw = dict(levels=2, steps_per_level=40, frame_skip=2, policy="hold", hold=3.0, progress=False)
    generate_procgen(tmp_path / "fb", "fruitbot", **kw)
    generate_procgen(tmp_path / "bf", "bigfish", **kw)
    acts = bench.Actions(tmp_path / "fb")
    raw = np.arange(15)
    np.testing.assert_array_equal(acts.eff(raw), effective_action_of(tmp_path / "fb")(raw))
    assert acts.num_classes == 4 and acts.names == ["Left", "Stay", "Right", "Fire(D)"]
    horizontal, up = acts.axes(np.array([0, 2, 4, 7, 8, 9]))  # L+Down, L+Up, Stay, R, R+Up, key D
    assert horizontal.tolist() == [0, 0, 1, 2, 2, 1] and up.tolist() == [0, 1, 0, 0, 1, 0]

    store = str(tmp_path / "fb")
    assert bench.main(["--data", store, "--eval-data", store, "--batch-size", "4", "--eval-transitions", "40",
                       "--threads", "1", "--steps", "2"]) == 0
    r = _last_json(capsys)
    assert r["effective_actions"] == acts.names and 0 <= r["ceiling"]["acc_eff"] <= 1
    assert r["probe_vs_ceiling"] >= 0 and {"nmi_direction", "nmi_jump", "acc_direction"} <= {*r, *r["ceiling"]}
    with pytest.raises(SystemExit, match="not the same game"):
        bench.main(["--data", str(tmp_path / "bf"), "--eval-data", store, "--steps", "1"])


def test_trains_on_a_store_without_actions_and_scores_on_one_with_them(bench, synthetic_store_dir, tmp_path, capsys):  # noqa: F811
    """The path of a user's own videos: the LAM trains on frames alone (``genie data ingest`` records no
    actions); only the supervised ceiling needs them, and says so."""
    from genieworld.data.store import EpisodeStore, EpisodeWriter

    src = EpisodeStore(synthetic_store_dir)
    with EpisodeWriter(tmp_path / "videos", resolution=src.resolution, fps=src.fps, source="ingest") as w:
        for i in range(src.num_episodes):
            w.add_episode(src.read_episode(i)[0], None)
    torch.set_num_threads(1)
    common = ["--data", str(tmp_path / "videos"), "--eval-data", str(synthetic_store_dir), "--batch-size", "4",
              "--eval-transitions", "40", "--threads", "1", "--steps", "2"]
    assert bench.main(common + ["--no-ceiling"]) == 0
    assert 0 <= _last_json(capsys)["nmi_eff"] <= 1
    with pytest.raises(SystemExit, match="with recorded actions"):
        bench.main(common)

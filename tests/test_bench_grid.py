"""bench/bench_grid.py: the action-grid measurement runs on a model and on a ground-truth-action dynamics."""

from __future__ import annotations

import json

import pytest
import torch
from fixtures_models import load_script, synthetic_store_dir, untrained_model_dir  # noqa: F401  (pytest fixtures)


@pytest.fixture(scope="module")
def bench():
    return load_script("bench/bench_grid.py")


def test_grid_bench_scores_every_action_of_a_model(bench, untrained_model_dir, synthetic_store_dir, tmp_path,  # noqa: F811
                                                   capsys):
    from genieworld.genie import Genie

    out = tmp_path / "grid.json"
    assert bench.main(["--model", str(untrained_model_dir), "--data", str(synthetic_store_dir), "--prompts", "3",
                       "--steps", "2", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == res
    n = Genie.from_pretrained(untrained_model_dir).num_actions
    assert len(res["grid"]["actions"]) == n and res["grid"]["prompts"] == 3 and res["grid"]["steps"] == 2
    assert all(len(a["dx"]) == 3 for a in res["grid"]["actions"].values())
    assert isinstance(res["target_met"], bool) and "actions" in res["real"]


def test_grid_bench_plays_a_ground_truth_action_dynamics_with_the_six_effective_actions(
        bench, untrained_model_dir, synthetic_store_dir, tmp_path, capsys):  # noqa: F811
    from genieworld.genie import Genie, save_component
    from genieworld.weights import save_tensors

    genie = Genie.from_pretrained(untrained_model_dir)
    true_dir = tmp_path / "dynamics-true-actions"
    save_component(genie.dynamics, genie.dynamics.cfg, true_dir)
    save_tensors({"true_action_table": torch.randn(6, genie.dynamics.cfg.action_dim)},
                 true_dir / "true_action_table.safetensors")
    assert bench.main(["--model", str(untrained_model_dir), "--data", str(synthetic_store_dir), "--prompts", "2",
                       "--steps", "1", "--no-real", "--true-actions", str(true_dir)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert list(res["grid"]["actions"]) == bench.EFFECTIVE_NAMES and res["real"] is None


def test_true_action_bench_scores_a_ground_truth_action_dynamics_on_eval_clips(
        untrained_model_dir, synthetic_store_dir, tmp_path, capsys):  # noqa: F811
    from genieworld.genie import Genie, save_component
    from genieworld.weights import save_tensors

    bench = load_script("bench/bench_true_actions.py")
    genie = Genie.from_pretrained(untrained_model_dir)
    true_dir = tmp_path / "dynamics-true-actions"
    save_component(genie.dynamics, genie.dynamics.cfg, true_dir)
    save_tensors({"true_action_table": torch.randn(6, genie.dynamics.cfg.action_dim)},
                 true_dir / "true_action_table.safetensors")
    out = tmp_path / "true.json"
    assert bench.main(["--model", str(untrained_model_dir), "--true-actions", str(true_dir), "--data",
                       str(synthetic_store_dir), "--episodes", "2", "--horizon", "5", "--t", "3",
                       "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == res and res["clips"] == 2
    per, rand = res["gen_psnr_per_step"], res["random_psnr_per_step"]
    assert len(per) == len(rand) == 5 and per[0] == rand[0]  # the same prompt reconstruction
    assert res["gen_psnr_t4"] == per[3] and res["gen_psnr_t16"] == per[-1]
    assert res["delta_t_psnr"] == pytest.approx(per[2] - rand[2], abs=2e-3)
    with pytest.raises(SystemExit, match="true actions"):  # a table that is not CoinRun's 6 actions
        save_tensors({"true_action_table": torch.randn(4, genie.dynamics.cfg.action_dim)},
                     true_dir / "true_action_table.safetensors")
        bench.main(["--model", str(untrained_model_dir), "--true-actions", str(true_dir), "--data",
                    str(synthetic_store_dir), "--episodes", "2", "--horizon", "5"])

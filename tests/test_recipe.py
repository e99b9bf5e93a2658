"""`genie recipe coinrun`: every stage runs once, the run resumes at the stage it reached, and a
folder holding other settings is refused by name."""

from __future__ import annotations

import json
import os

import pytest
from fixtures_models import tiny_model_dir  # noqa: F401  (pytest fixture)

from genieworld.cli import main
from genieworld.data.store import EpisodeStore
from genieworld.genie import Genie

ARGS = ["recipe", "coinrun", "--preset", "tiny", "--levels", "2", "--steps-per-level", "40", "--test-levels", "1",
        "--tokenizer-steps", "3", "--dynamics-steps", "3", "--eval-episodes", "1", "--no-fvd", "--no-progress"]
STAGES = ["data-train", "data-test", "tokenizer", "lam", "dynamics", "name-actions", "prompts", "eval", "summary"]


def test_recipe_runs_every_stage_once_and_resumes_where_it_stopped(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(ARGS + ["--out", str(out), "--frame-skip", "2"]) == 0
    state = json.loads((out / "recipe.json").read_text())
    assert list(state["done"]) == STAGES
    assert state["settings"]["frame_skip"] == 2
    assert EpisodeStore(out / "data" / "train").extra["coinrun"]["frame_skip"] == 2
    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["frame_skip"] == 2 and results["data"]["train_levels"] == [0, 2]
    genie = Genie.from_pretrained(out / "world" / "model")
    assert results["parameters"]["dynamics"] == sum(p.numel() for p in genie.dynamics.parameters())
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    assert not [w for w in metrics["warnings"] if "frame skip" in w]  # test data recorded like the training data
    # the model records what it was trained on, so prompts and test data can be recorded the same way
    assert genie.provenance["frame_skip"] == 2
    # ... by paths relative to the model directory and content digests, never this machine's absolute paths
    model_dir = (out / "world" / "model").resolve()
    assert os.path.normpath(model_dir / genie.provenance["data"]) == str((out / "data" / "train").resolve())
    assert os.path.normpath(model_dir / genie.provenance["tokenizer"]) == str((out / "tokenizer" / "tokenizer").resolve())
    for name in ("genie.json", "actions.json", "prompts/index.json"):
        assert str(tmp_path) not in (out / "world" / "model" / name).read_text(), name
    assert len(genie.provenance["data_manifest_sha256"]) == 64
    assert len(list((out / "world" / "model" / "prompts").glob("prompt-*.png"))) >= 1  # play opens on a real frame
    capsys.readouterr()

    # a rerun skips everything
    assert main(ARGS + ["--out", str(out), "--frame-skip", "2"]) == 0
    log = capsys.readouterr().out
    assert all(f"[recipe] {s}: done earlier, skipping" in log for s in STAGES)
    assert "[recipe] genie " not in log

    # interrupted after training: only the stages it had not reached run again
    state["done"] = {k: v for k, v in state["done"].items() if k not in ("eval", "summary")}
    (out / "recipe.json").write_text(json.dumps(state))
    (out / "results.json").unlink()
    assert main(ARGS + ["--out", str(out), "--frame-skip", "2"]) == 0
    log = capsys.readouterr().out
    assert "[recipe] genie eval" in log and "[recipe] genie train" not in log and "[recipe] genie data" not in log
    assert (out / "results.json").is_file()

    # other settings in the same folder: refused, naming the setting, nothing touched
    before = (out / "recipe.json").read_text()
    assert main(ARGS + ["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "frame_skip" in err and "other settings" in err
    assert (out / "recipe.json").read_text() == before
    assert state["settings"]["dynamics_data_fraction"] == 1.0
    assert main(ARGS + ["--out", str(out), "--frame-skip", "2", "--dynamics-data-fraction", "0.5"]) == 2
    assert "dynamics_data_fraction" in capsys.readouterr().err
    assert main(ARGS + ["--out", str(tmp_path / "bad"), "--dynamics-data-fraction", "0"]) == 2
    assert "--dynamics-data-fraction: 0.0 is outside the allowed range" in capsys.readouterr().err
    assert (out / "recipe.json").read_text() == before



def test_eval_warns_when_the_test_data_has_another_frame_skip(tiny_model_dir, tmp_path, capsys):
    from genieworld.data.coinrun import frame_skip_of

    model = tmp_path / "model"
    genie = Genie.from_pretrained(tiny_model_dir)
    genie.provenance["frame_skip"] = 4
    genie.save_pretrained(model)
    data = tmp_path / "skip1"
    assert main(["data", "coinrun", str(data), "--levels", "1", "--start-level", "100000", "--steps-per-level", "20",
                 "--no-progress"]) == 0
    assert frame_skip_of(data) == 1
    capsys.readouterr()
    assert main(["eval", str(model), "--data", str(data), "--episodes", "1", "--horizon", "5", "--no-fvd",
                 "--no-progress", "--device", "cpu", "--out", str(tmp_path / "report")]) == 0
    err = capsys.readouterr().err
    assert "frame skip 4" in err and "--frame-skip 4" in err
    warnings = json.loads((tmp_path / "report" / "metrics.json").read_text())["warnings"]
    assert any("frame skip 4" in w for w in warnings)


def test_previous_recipe_preset_differs_from_cpu_only_where_the_readme_says():
    from dataclasses import asdict

    from genieworld.config import RETIRED_SETTINGS, ConfigError, Preset, configs_dir, from_dict, load_preset

    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    current = flat(asdict(load_preset("cpu")))
    # the shipped model's preset: the one shipped before it with the LAM of configs/previous/cpu-agent-nce.json
    # (12) whose InfoNCE head reads the continuous latent, its codes merged by the camera's motion (14)
    plain = flat(asdict(load_preset(str(configs_dir() / "previous" / "cpu-plain-lam-warp.json"))))
    # ... and, since issue 31, the dynamics trained with context noise (docs/experiments.md, "A world that holds together")
    assert {k for k in current if current[k] != plain.get(k)} - {"name"} == {
        "lam.conv.nce_weight", "lam.conv.nce_crop", "lam.conv.nce_latent", "lam.merge", "lam_train.steps",
        "lam_train.batch_size", "lam_train.min_lr", "lam_train.beta2", "dynamics.context_noise_max"}
    assert current["dynamics.context_noise_max"] == 0.3
    before = flat(asdict(load_preset(str(configs_dir() / "previous" / "cpu-latent-nce.json"))))
    assert {k for k in current if current[k] != before.get(k)} - {"name"} == {"dynamics.context_noise_max"}
    assert current["lam.conv.nce_latent"] == "continuous" and current["lam.merge"] == "camera"
    cpu = flat(asdict(load_preset(str(configs_dir() / "previous" / "cpu-16to8-seq16.json"))))
    # the preset before that: the model before it, with the dynamics on 4-frame windows at batch 8
    # (same tokens per step), 4 frames of play context, and the previous-frame warp
    changed = {k for k in plain if plain[k] != cpu.get(k)} - {"name"}
    # ... and decoding with random order at temperature 0 (docs/experiments.md, "The separate LAM stage", 10)
    assert changed == {"dynamics.max_frames", "dynamics.prev_frame_warp", "sampling.context_frames",
                       "dynamics_train.batch_size", "dynamics_train.seq_len", "sampling.order", "sampling.temperature"}
    assert plain["sampling.order"] == "random" and plain["sampling.temperature"] == 0
    assert plain["dynamics.prev_frame_warp"] == 3 and plain["dynamics_train.seq_len"] == 4
    seq4 = flat(asdict(load_preset(str(configs_dir() / "previous" / "cpu-seq4-dynamics.json"))))
    assert {k for k in plain if plain[k] != seq4.get(k)} - {"name"} == {"dynamics.prev_frame_warp", "sampling.order",
                                                                        "sampling.temperature"}
    # the InfoNCE-on-the-agent LAM stage (docs/experiments.md, "The separate LAM stage", 12), and its world
    # with the warp that reads the camera's last shift (13)
    agent = flat(asdict(load_preset(str(configs_dir() / "previous" / "cpu-agent-nce.json"))))
    assert {k for k in plain if plain[k] != agent.get(k)} - {"name"} == {
        "lam.conv.nce_weight", "lam.conv.nce_crop", "lam.merge", "lam_train.steps", "lam_train.batch_size",
        "lam_train.min_lr", "lam_train.beta2"}
    # (that one needs dynamics.warp_motion, removed in issue 35: it runs at the commit the error names)
    motion_json = json.loads((configs_dir() / "previous" / "cpu-agent-nce-warp-motion.json").read_text())
    with pytest.raises(ConfigError, match=r"dynamics\.warp_motion=True: this option was removed.* commit "
                                          + RETIRED_SETTINGS["DynamicsConfig.warp_motion"].commit):
        from_dict(Preset, motion_json)
    assert motion_json["dynamics"].pop("warp_motion") is True
    motion = flat(asdict(from_dict(Preset, motion_json)))
    assert {k for k in agent if agent[k] != motion.get(k)} - {"name"} == set()
    assert {k for k in agent if agent[k] != current.get(k)} - {"name"} == {"lam.conv.nce_latent", "lam.merge",
                                                                          "dynamics.context_noise_max"}
    skip4 = flat(asdict(load_preset(str(configs_dir() / "previous" / "cpu-skip4.json"))))
    skip1 = flat(asdict(load_preset(str(configs_dir() / "previous" / "cpu-skip1.json"))))
    changed = {k for k in skip4 if skip4[k] != skip1.get(k)} - {"name"}
    assert changed == {"lam.context_mask_rate", "lam.residual_decoder", "dynamics.tie_embeddings"}
    # the frame-skip-4 model's preset: co-trained transformer LAM; its successors train a conv LAM first
    changed = {k for k in cpu if cpu[k] != skip4.get(k)} - {"name"}
    assert {k.split(".")[0] for k in changed} == {"lam", "lam_train", "tokenizer_train", "dynamics_train",
                                                  "dynamics"}
    assert {k for k in changed if k.startswith("lam.")} == {"lam.arch", "lam.vq.num_codes", "lam.merged_actions"}
    assert {k for k in changed if k.startswith("dynamics.")} == {"dynamics.action_injection"}
    assert {k for k in changed if k.startswith("dynamics_train.")} == {"dynamics_train.eval_every",
                                                                        "dynamics_train.steps"}
    assert {k for k in changed if k.startswith("tokenizer_train.")} == {"tokenizer_train.steps"}
    assert skip4["lam_train.steps"] == skip1["lam_train.steps"] == 0 and cpu["lam.arch"] == "conv"
    # the first conv-LAM model's preset (8 codes, additive actions): the next preset trains 16 codes,
    # merges them into 8 actions, in half the steps, and prepends the action token (docs/experiments.md)
    eight = flat(asdict(load_preset(str(configs_dir() / "previous" / "cpu-8codes-add.json"))))
    changed = {k for k in cpu if cpu[k] != eight.get(k)} - {"name"}
    assert changed == {"lam.vq.num_codes", "lam.merged_actions", "dynamics.action_injection", "lam_train.steps"}
    assert (eight["lam.vq.num_codes"], cpu["lam.vq.num_codes"], cpu["lam.merged_actions"]) == (8, 16, 8)
    assert (eight["lam_train.steps"], cpu["lam_train.steps"]) == (4000, 2000)

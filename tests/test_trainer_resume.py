"""Trainer: checkpoints are atomic, a SIGKILLed run resumes to the same weights, mismatches are refused."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fixtures_data import coinrun_clips, coinrun_npy  # noqa: F401
from genieworld.train.checkpoint import latest_checkpoint

MICRO_PRESET = {
    "tokenizer": {
        "image_size": 64, "patch_size": 8, "max_frames": 4,
        "encoder": {"num_layers": 1, "d_model": 32, "num_heads": 2, "head_dim": 16},
        "decoder": {"num_layers": 1, "d_model": 32, "num_heads": 2, "head_dim": 16},
        "vq": {"num_codes": 32, "code_dim": 8, "dead_code_steps": 3},
    },
    "tokenizer_train": {"steps": 12, "batch_size": 2, "seq_len": 4, "lr": 1e-3, "min_lr": 1e-4,
                        "warmup_steps": 2, "checkpoint_every": 2, "log_every": 1, "seed": 7},
}


@pytest.fixture()
def micro_preset(tmp_path) -> Path:
    p = tmp_path / "micro.json"
    p.write_text(json.dumps(MICRO_PRESET))
    return p


def genie_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "genieworld.cli", *args]


def final_weights(run: Path) -> dict:
    return load_file(str(run / "tokenizer" / "model.safetensors"))


def train_args(data, out, preset):
    return ["train", "tokenizer", "--data", str(data), "--out", str(out), "--preset", str(preset), "--no-progress"]


def test_sigkill_then_resume_gives_the_same_weights(tmp_path, coinrun_npy, micro_preset):  # noqa: F811
    env = dict(os.environ, OMP_NUM_THREADS="1")
    ref = tmp_path / "ref"
    subprocess.run(genie_cmd(*train_args(coinrun_npy, ref, micro_preset)), check=True, env=env,
                   capture_output=True, timeout=300)

    run = tmp_path / "killed"
    proc = subprocess.Popen(genie_cmd(*train_args(coinrun_npy, run, micro_preset)), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline:
        ck = latest_checkpoint(run)
        if ck is not None and ck.name >= "step_00000004":
            break
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed; the test proves nothing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = latest_checkpoint(run)
    assert killed_at is not None and not (run / "tokenizer").exists()
    done = subprocess.run(genie_cmd(*train_args(coinrun_npy, run, micro_preset)), env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resumed" in done.stdout
    a, b = final_weights(ref), final_weights(run)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after kill+resume (killed at {killed_at.name})"


def test_in_process_stop_and_resume_is_exact(tmp_path, coinrun_npy, micro_preset, capsys):  # noqa: F811
    from genieworld.cli import main

    assert main(train_args(coinrun_npy, tmp_path / "a", micro_preset)) == 0
    # without a progress bar, one line per checkpoint (every 2 of 12 steps) says where the run is
    said = [x for x in capsys.readouterr().out.splitlines() if x.startswith("step ")]
    assert [x.split()[1] for x in said] == [f"{k}/12" for k in range(2, 13, 2)]
    assert all("s/step" in x and "loss=" in x for x in said)
    assert main(train_args(coinrun_npy, tmp_path / "b", micro_preset) + ["--stop-after", "5"]) == 0
    ck = latest_checkpoint(tmp_path / "b")
    assert ck.name == "step_00000005" and not (tmp_path / "b" / "tokenizer").exists()
    assert main(train_args(coinrun_npy, tmp_path / "b", micro_preset)) == 0
    a, b = final_weights(tmp_path / "a"), final_weights(tmp_path / "b")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    state = json.loads((latest_checkpoint(tmp_path / "b") / "state.json").read_text())
    assert state["step"] == 12 and state["data"]["pos"] >= 0
    assert (tmp_path / "b" / "tb").is_dir()


def test_partial_checkpoint_folders_are_ignored(tmp_path, coinrun_npy, micro_preset):  # noqa: F811
    from genieworld.cli import main

    run = tmp_path / "r"
    assert main(train_args(coinrun_npy, run, micro_preset) + ["--stop-after", "2"]) == 0
    ck = run / "checkpoints"
    # a crash while writing step 4 leaves a temp folder; a crash before `latest` was updated leaves a stale pointer
    (ck / ".tmp-step_00000004").mkdir()
    (ck / ".tmp-step_00000004" / "model.safetensors").write_bytes(b"garbage")
    assert latest_checkpoint(run).name == "step_00000002"
    (ck / "latest").write_text("step_00000099\n")
    assert latest_checkpoint(run).name == "step_00000002"


def test_resuming_into_a_different_run_is_refused(tmp_path, coinrun_npy, micro_preset, capsys):  # noqa: F811
    from genieworld.cli import main

    run = tmp_path / "r"
    assert main(train_args(coinrun_npy, run, micro_preset) + ["--stop-after", "2"]) == 0
    other = json.loads(micro_preset.read_text())
    other["tokenizer"]["vq"]["num_codes"] = 64
    other_path = tmp_path / "other.json"
    other_path.write_text(json.dumps(other))
    assert main(train_args(coinrun_npy, run, other_path)) == 2
    err = capsys.readouterr().err
    assert "already holds a run with other model_configs" in err
    assert "vq.num_codes: " in err and "64 here" in err  # the mismatch is named, not truncated away


def test_a_run_from_before_a_setting_existed_still_resumes(tmp_path, coinrun_npy, micro_preset, capsys):  # noqa: F811
    """run.json written before a setting was added (it lacks the key; the default is the old behaviour)
    resumes; the same setting at a non-default value is still a named mismatch."""
    from genieworld.cli import main

    run = tmp_path / "r"
    assert main(train_args(coinrun_npy, run, micro_preset) + ["--stop-after", "2"]) == 0
    info = json.loads((run / "run.json").read_text())
    tok = info["model_configs"]["tokenizer"]
    assert "vq" in tok and "num_codes" in tok["vq"]
    removed = sorted(k for k in tok if k not in ("vq", "encoder", "decoder"))[0]
    default = tok.pop(removed)  # as if this run predated the setting
    (run / "run.json").write_text(json.dumps(info))
    assert main(train_args(coinrun_npy, run, micro_preset) + ["--stop-after", "1"]) == 0
    out = capsys.readouterr()
    assert "from step_00000002 (step 2)" in out.out + out.err  # resumed, not refused or restarted
    assert latest_checkpoint(run).name == "step_00000003"
    info = json.loads((run / "run.json").read_text())
    info["model_configs"]["tokenizer"].pop(removed, None)
    info["model_configs"]["tokenizer"]["vq"]["num_codes"] += 1  # a real difference next to the missing key
    (run / "run.json").write_text(json.dumps(info))
    assert main(train_args(coinrun_npy, run, micro_preset)) == 2
    err = capsys.readouterr().err
    assert "vq.num_codes" in err and f"tokenizer.{removed}" not in err, (removed, default, err)


def test_bad_arguments_are_clear_errors(tmp_path, coinrun_npy, capsys):  # noqa: F811
    from genieworld.cli import main

    assert main(["train", "tokenizer", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["train", "tokenizer", "--data", str(coinrun_npy), "--out", str(tmp_path / "o"),
                 "--preset", "nosuch"]) == 2
    assert "unknown preset 'nosuch'" in capsys.readouterr().err
    assert main(["train", "tokenizer", "--data", str(coinrun_npy), "--out", str(tmp_path / "o"),
                 "--steps", "0"]) == 2
    assert "--steps must be positive" in capsys.readouterr().err

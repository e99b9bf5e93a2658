"""scripts/gpu_check.py: what a GPU run brings back fits the device tool's limits and unpacks into a model."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from fixtures_models import load_script, tiny_model_dir  # noqa: F401  (pytest fixture)

MIB = 2**20


def test_gpu_preset_fits_the_ship_limit_and_differs_from_cpu_only_in_size():
    from genieworld.config import load_preset
    from genieworld.dynamics import DynamicsModel
    from genieworld.lam import build_lam
    from genieworld.tokenizer import VideoTokenizer

    gpu, cpu = load_preset(str(Path(__file__).resolve().parents[1] / "configs/gpu.json")), load_preset("cpu")
    assert gpu.tokenizer == cpu.tokenizer  # the GPU run reuses the tokenizer made on the CPU

    def count(m):
        return sum(p.numel() for p in m.parameters())

    lam, dyn = count(build_lam(gpu.lam)), count(DynamicsModel(gpu.dynamics))
    assert lam > 2 * count(build_lam(cpu.lam)) and dyn > 2 * count(DynamicsModel(cpu.dynamics))
    total_bytes = 4 * (lam + dyn + count(VideoTokenizer(gpu.tokenizer)))
    assert total_bytes <= 50e6, f"a GPU model of {total_bytes / 1e6:.1f} MB could not be shipped (50 MB)"
    # the same design: only widths, depths and the training sizes change
    assert gpu.lam.arch == cpu.lam.arch and gpu.lam.conv.nce_latent == cpu.lam.conv.nce_latent
    assert gpu.lam.merge == cpu.lam.merge and gpu.dynamics.action_injection == cpu.dynamics.action_injection
    assert gpu.lam_train.steps > 0  # a LAM stage of its own, as on the CPU


def test_pack_splits_under_the_limit_and_unpack_restores_the_model(tiny_model_dir, tmp_path, monkeypatch):  # noqa: F811
    gpu = load_script("scripts/gpu_check.py")
    model = tmp_path / "world" / "model"
    shutil.copytree(tiny_model_dir, model)
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setattr(gpu, "PART_BYTES", 64 * 1024)
    parts = gpu.pack(model, out)
    assert len(parts) >= 2 and parts == sorted(parts)
    assert all((out / p).stat().st_size <= 64 * 1024 for p in parts)
    assert sorted(x.name for x in out.iterdir()) == parts  # only the parts go to $OUT
    assert not (model.parent / "model.tar").exists()  # and the whole tar is not left behind
    # unpacked with the tokenizer kept here, the weights are the same
    dest = tmp_path / "back" / "model"
    assert gpu.main(["unpack", str(out), "--to", str(dest), "--tokenizer", str(model / "tokenizer")]) == 0
    for part in ("lam", "dynamics", "tokenizer"):
        a, b = load_file(model / part / "model.safetensors"), load_file(dest / part / "model.safetensors")
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    # refuses to overwrite, and says when nothing was brought back
    assert gpu.main(["unpack", str(out), "--to", str(dest), "--tokenizer", str(model / "tokenizer")]) == 2
    assert gpu.main(["unpack", str(tmp_path), "--to", str(tmp_path / "x"), "--tokenizer", str(model)]) == 2


def test_run_refuses_without_cuda_unless_dry_run(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    gpu = load_script("scripts/gpu_check.py")
    assert gpu.main(["run", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work")]) == 2
    assert "no CUDA device" in (tmp_path / "out" / "log.txt").read_text()

"""bench/bench_scaling.py: size specs, per-cell presets, and the grid's resumable bookkeeping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures_models import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("bench/bench_scaling.py")


def test_size_specs_parse_and_bad_ones_are_one_line(bench):
    assert bench.parse_size("m=192x6") == ("m", 192, 6)
    for bad in ("m=100x2", "m=192", "192x6", "m=axb", "m=0x2"):
        with pytest.raises(SystemExit, match="NAME=WIDTHxLAYERS"):
            bench.parse_size(bad)


def test_cell_preset_resizes_only_the_dynamics_transformer(bench, tmp_path):
    base = json.loads(Path("configs/cpu.json").read_text())
    p = bench.cell_preset(base, 192, 6)
    tr = p["dynamics"]["transformer"]
    assert (tr["d_model"], tr["num_layers"], tr["num_heads"], tr["head_dim"]) == (192, 6, 6, 32)
    for section in ("tokenizer", "lam", "sampling", "dynamics_train"):
        assert p[section] == base[section]
    assert base["dynamics"]["transformer"]["d_model"] == 128  # the base is not modified
    from genieworld.config import load_preset

    path = tmp_path / "preset.json"
    path.write_text(json.dumps(p))
    assert load_preset(str(path)).dynamics.transformer.d_model == 192  # a valid preset


def test_report_only_trains_nothing_and_reports_scored_cells(bench, tmp_path, capsys):
    cell = tmp_path / "xs-10"
    (cell / "eval").mkdir(parents=True)
    (cell / "eval" / "metrics.json").write_text(json.dumps({
        "generation": {"psnr": {"t4": 15.0, "t16": 11.0}},
        "delta_t_psnr": {"value": 5.0, "psnr_inferred": 15.0, "psnr_random": 10.0},
        "fvd": {"value": 400.0, "clips": 32}}))
    (cell / "timing.json").write_text(json.dumps({"train_s": 36.0, "eval_s": 1.0}))
    import torch
    from safetensors.torch import save_file

    (cell / "run" / "model" / "dynamics").mkdir(parents=True)  # 6 parameters, counted from the header
    save_file({"w": torch.zeros(2, 2), "b": torch.zeros(2)}, str(cell / "run" / "model" / "dynamics" / "model.safetensors"))
    assert bench.main(["--data", "d", "--eval-data", "e", "--tokenizer", "t", "--lam", "l", "--out", str(tmp_path),
                       "--sizes", "xs=64x2", "--steps", "10", "20", "--report-only"]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out[out.index('{\n'):])
    assert [c["cell"] for c in summary["cells"]] == ["xs@10"] and summary["best_psnr_t4"] == "xs@10"
    c = summary["cells"][0]
    assert c["psnr_t16"] == 11.0 and c["fvd"] == 400.0 and c["train_h"] == 0.01 and c["params"] == 6
    assert not (tmp_path / "xs-20").exists()  # report-only creates nothing

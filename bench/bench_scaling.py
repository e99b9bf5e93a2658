"""What does more compute buy the dynamics? A grid of model sizes x training steps, each cell trained
on the same tokenizer, LAM and token cache and scored on the same held-out clips; prints JSON.

    python bench/bench_scaling.py --data runs/cpu/data/train --eval-data runs/cpu/data/test \\
        --tokenizer models/coinrun-cpu/tokenizer --lam models/coinrun-cpu/lam --cache runs/cache-shipped \\
        --out runs/scaling --sizes xs=64x2 s=128x4 m=192x6 --steps 375 750 1500
    python bench/bench_scaling.py ... --cells s@1500 m@750      # only these cells
    python bench/bench_scaling.py ... --report-only --json bench/results/dynamics/scaling.json

Each cell is a run of ``genie train dynamics`` with the base preset (default ``configs/cpu.json``) whose
dynamics transformer is resized (``NAME=WIDTHxLAYERS``, 32-wide heads) and whose cosine schedule
ends at the cell's step count, so every cell is a finished run, not a mid-schedule checkpoint.
Then ``genie eval`` on the held-out store (PSNR at t=4 and t=16 under the LAM's actions, FVD, ΔtPSNR
and, with ``--play N``, play quality: FVD under a player's presses and drift over 64 frames).

Everything is resumable: rerunning the command continues an unfinished run and skips cells that
are scored. Training seconds are summed over invocations (``OUT/CELL/timing.json``); the analytic
training FLOPs (bench/common.py's model-FLOP convention) make cells comparable across machines.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import device_info, dynamics_model_train_flops, emit_json, git_rev, now_iso  # noqa: E402

HEAD_DIM = 32


def parse_size(spec: str) -> tuple[str, int, int]:
    """``NAME=WIDTHxLAYERS`` -> (name, width, layers); the width is a multiple of 32 (the head size)."""
    name, sep, shape = spec.partition("=")
    width, x, layers = shape.partition("x")
    try:
        w, n = int(width), int(layers)
    except ValueError:
        w = n = 0
    if not sep or not name or not x or w <= 0 or n <= 0 or w % HEAD_DIM:
        raise SystemExit(f"--sizes {spec!r}: expected NAME=WIDTHxLAYERS with WIDTH a multiple of {HEAD_DIM} "
                         "(e.g. s=128x4)")
    return name, w, n


def cell_preset(base: dict, width: int, layers: int) -> dict:
    preset = json.loads(json.dumps(base))
    tr = preset["dynamics"]["transformer"]
    tr.update(d_model=width, num_layers=layers, head_dim=HEAD_DIM, num_heads=width // HEAD_DIM)
    preset["name"] = f"{base.get('name', 'preset')}-dyn{width}x{layers}"
    return preset


def run(cmd: list[str], log: Path) -> float:
    """Run a genie command, appending its output to LOG; its wall seconds."""
    t0 = time.time()
    with open(log, "a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)
    if rc != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} failed (exit {rc}); see {log}")
    return time.time() - t0


def score(eval_dir: Path) -> dict:
    m = json.loads((eval_dir / "metrics.json").read_text())
    psnr = m["generation"]["psnr"]
    out = {"psnr_t4": psnr["t4"], "psnr_t16": psnr["t16"], "delta_t_psnr": m["delta_t_psnr"]["value"],
           "psnr_t4_random": m["delta_t_psnr"]["psnr_random"],
           "fvd": (m.get("fvd") or {}).get("value"), "fvd_clips": (m.get("fvd") or {}).get("clips")}
    pq = eval_dir / "play_quality.json"
    if pq.exists():
        p = json.loads(pq.read_text())
        out["play"] = {k: p.get(k) for k in ("n", "fvd_floor", "fvd_own", "fvd_player", "fvd_random", "fvd_held",
                                            "fvd_player_long_blocks", "drift_ratio", "following_summary")}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="training store")
    ap.add_argument("--eval-data", required=True, help="held-out store")
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--lam", required=True)
    ap.add_argument("--cache", help="token cache shared by every cell (genie train dynamics --cache)")
    ap.add_argument("--out", required=True, help="folder of the cells (resumable)")
    ap.add_argument("--preset", default="configs/cpu.json", help="base preset .json (default configs/cpu.json)")
    ap.add_argument("--sizes", nargs="+", default=["xs=64x2", "s=128x4", "m=192x6"], help="NAME=WIDTHxLAYERS")
    ap.add_argument("--steps", nargs="+", type=int, default=[375, 750, 1500])
    ap.add_argument("--cells", nargs="*", help="only these cells, as NAME@STEPS (default: the whole grid)")
    ap.add_argument("--model-for", nargs="*", default=[], metavar="CELL=MODEL",
                    help="a cell already trained elsewhere with the same settings (e.g. s@1500=models/coinrun-cpu): "
                         "scored, not retrained")
    ap.add_argument("--episodes", type=int, default=32, help="genie eval --episodes (default 32)")
    ap.add_argument("--play", type=int, default=0, help="genie eval --play N (default 0: skip play quality)")
    ap.add_argument("--judge-data", help="with --play: the store that trains the action judge")
    ap.add_argument("--precision", choices=["fp32", "bf16"], help="genie train --precision (default: the preset's)")
    ap.add_argument("--report-only", action="store_true", help="train nothing; report the scored cells")
    ap.add_argument("--json", help="also write the summary here")
    args = ap.parse_args(argv)

    base = json.loads(Path(args.preset).read_text())
    sizes = [parse_size(s) for s in args.sizes]
    grid = [(n, w, l, s) for n, w, l in sizes for s in sorted(args.steps)]
    if args.cells:
        want = set(args.cells)
        grid = [c for c in grid if f"{c[0]}@{c[3]}" in want]
        missing = want - {f"{c[0]}@{c[3]}" for c in grid}
        if missing:
            raise SystemExit(f"--cells {sorted(missing)}: not in the grid of --sizes x --steps")
    known = {}
    for item in args.model_for:
        cell, sep, path = item.partition("=")
        if not sep or not (Path(path) / "genie.json").exists():
            raise SystemExit(f"--model-for {item!r}: expected CELL=MODEL with MODEL a model folder (genie.json)")
        known[cell] = Path(path)
    out = Path(args.out)
    if not args.report_only:
        out.mkdir(parents=True, exist_ok=True)
    genie = [sys.executable, "-m", "genieworld.cli"]  # the same interpreter as this bench
    rows = []
    for name, width, layers, steps in grid:
        cell = out / f"{name}-{steps}"
        if args.report_only and not cell.is_dir():
            continue
        cell.mkdir(exist_ok=True)
        preset_path = cell / "preset.json"
        preset = cell_preset(base, width, layers)
        if not preset_path.exists():
            preset_path.write_text(json.dumps(preset, indent=2) + "\n")
        timing_path = cell / "timing.json"
        timing = json.loads(timing_path.read_text()) if timing_path.exists() else {"train_s": 0.0, "eval_s": 0.0}
        model = known.get(f"{name}@{steps}", cell / "run" / "model")
        eval_dir = cell / "eval"
        if not args.report_only:
            if not (model / "genie.json").exists():
                cmd = genie + ["train", "dynamics", "--data", args.data, "--preset", str(preset_path),
                               "--tokenizer", args.tokenizer, "--lam", args.lam, "--out", str(cell / "run"),
                               "--steps", str(steps), "--no-progress"]
                if args.cache:
                    cmd += ["--cache", args.cache]
                if args.precision:
                    cmd += ["--precision", args.precision]
                timing["train_s"] += run(cmd, cell / "train.log")
                timing_path.write_text(json.dumps(timing) + "\n")
            if not (eval_dir / "metrics.json").exists() or (args.play and not (eval_dir / "play_quality.json").exists()):
                cmd = genie + ["eval", str(model), "--data", args.eval_data, "--out", str(eval_dir),
                               "--episodes", str(args.episodes), "--seed", "0", "--no-progress"]
                if args.play:
                    cmd += ["--play", str(args.play)]
                    if args.judge_data:
                        cmd += ["--judge-data", args.judge_data]
                timing["eval_s"] = run(cmd, cell / "eval.log")
                timing_path.write_text(json.dumps(timing) + "\n")
        if not (eval_dir / "metrics.json").exists():
            continue
        from genieworld.config import load_preset

        cfg = load_preset(str(preset_path))
        tr = cfg.dynamics_train
        flops = dynamics_model_train_flops(cfg.dynamics, tr.batch_size, tr.seq_len)["train_step"] * steps
        params = _dynamics_params(model)
        rows.append({"cell": f"{name}@{steps}", "size": name, "d_model": width, "layers": layers,
                     "params": params, "steps": steps, "train_pflop": round(flops / 1e15, 3),
                     "train_h": round(timing["train_s"] / 3600, 3), **score(eval_dir)})
        emit_json(rows[-1])
    summary = {"bench": "scaling", "created": now_iso(), "git": git_rev(), "device": device_info("cpu"),
               "threads": int(os.environ.get("OMP_NUM_THREADS", "0")) or None, "base_preset": args.preset,
               "eval_data": args.eval_data, "episodes": args.episodes, "cells": rows}
    if rows:
        best = max(rows, key=lambda r: r["psnr_t4"])
        summary["best_psnr_t4"] = best["cell"]
    emit_json(summary, args.json, indent=2)
    return 0


def _dynamics_params(model_dir: Path) -> int:
    """The dynamics' parameter count, from the safetensors header alone (no model is built)."""
    from math import prod

    from safetensors import safe_open

    with safe_open(str(Path(model_dir) / "dynamics" / "model.safetensors"), "pt") as f:
        return sum(prod(f.get_slice(k).get_shape()) for k in f.keys())


if __name__ == "__main__":
    sys.exit(main())

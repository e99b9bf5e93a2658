#!/usr/bin/env python3
"""The GPU row of issue 14 in one short run: a larger LAM and dynamics on a CPU-made tokenizer.

Three steps, for a machine lent for minutes (the `device` tool: one H200, ~15 min in all):

    python scripts/gpu_check.py prepare            # here, on the CPU: writes .gpu/ (~35 MB: data)
    # device run, carry [".gpu"], timeout_s 600:
    #   python3 scripts/gpu_check.py run --out $OUT --budget 480
    python scripts/gpu_check.py unpack FILES_AT    # here: runs/gpu/model, ready for `genie eval`

``run`` (on the GPU machine; torch and einops are there, the package is read from ``src/``):

1. ``bench/bench_train.py`` at bf16 on the ``coinrun-paper`` preset (tokenizer, LAM, dynamics:
   seconds per step and the fraction of the measured bf16 matmul peak) -> ``bench_train_bf16.jsonl``;
2. ``genie train lam`` with ``configs/gpu.json`` (conv LAM 3.5M parameters, batch 256);
3. ``genie train dynamics`` against it on the CPU-made tokenizer (5.7M parameters, batch 64);
4. ``genie actions name``; the model without its tokenizer is packed as ``model.tar.NN``
   (parts under 16 MiB, the tool's limit per file), with ``summary.json``, ``control.jsonl``
   (Delta_t PSNR while training) and ``log.txt``.

Each training stage fits a time budget: it first runs 100 steps (``--stop-after``; start-up
and the token cache included, so the rate is an underestimate), then resumes with as many
steps as the stage's share of the budget still allows, capped at the preset's steps.  A stage
that overruns its share is killed, and the summary says so.  ``--dry-run`` does the same on
the CPU with a few steps, to check the plumbing before spending GPU time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PART_BYTES = 15 * 2**20  # the device tool brings back files of at most 16 MiB
PROBE_STEPS = 100


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Log:
    def __init__(self, path: Path):
        self.path = path
        self.t0 = time.monotonic()

    def __call__(self, msg: str) -> None:
        line = f"[{time.monotonic() - self.t0:7.1f}s] {msg}"
        print(line, flush=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")

    def elapsed(self) -> float:
        return time.monotonic() - self.t0


def run_cmd(args: list[str], log: Log, timeout: float, stdout=None) -> tuple[int, float]:
    """Run ``args`` from the repo root; (return code, seconds); 124 when killed at ``timeout``."""
    log("$ " + " ".join(args))
    t = time.monotonic()
    out = open(stdout, "w", encoding="utf-8") if stdout else None
    try:
        proc = subprocess.run(args, cwd=ROOT, env=_env(), timeout=max(1.0, timeout), stdout=out)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        rc = 124
    finally:
        if out:
            out.close()
    dt = time.monotonic() - t
    log(f"  -> rc {rc} in {dt:.1f}s")
    return rc, dt


def train_in_budget(kind: str, extra: list[str], run: Path, max_steps: int, budget_s: float, reserve_s: float,
                    log: Log, genie: list[str], probe_steps: int) -> dict:
    """Train ``genie train KIND`` in two calls that fit ``budget_s`` (see the module docstring)."""
    start = time.monotonic()
    base = genie + ["train", kind] + extra + ["--out", str(run), "--no-progress"]
    probe = min(probe_steps, max_steps)
    rc, t_probe = run_cmd(base + ["--steps", str(max_steps), "--stop-after", str(probe)], log, budget_s)
    info = {"probe_steps": probe, "probe_s": round(t_probe, 1), "rc_probe": rc}
    if rc != 0:
        return info | {"ok": False, "steps": 0, "seconds": round(time.monotonic() - start, 1)}
    rate = probe / t_probe  # start-up included: a lower bound on steps per second
    left = budget_s - (time.monotonic() - start) - reserve_s
    steps = int(min(max_steps, probe + max(0.0, left) * rate))
    steps = max(steps, probe)
    info.update(rate_lower_bound_steps_per_s=round(rate, 3), steps=steps)
    rc, t_rest = run_cmd(base + ["--steps", str(steps)], log, budget_s - (time.monotonic() - start) + 20)
    info.update(rc=rc, rest_s=round(t_rest, 1), ok=rc == 0, seconds=round(time.monotonic() - start, 1))
    return info


def cmd_run(args) -> int:
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work).resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    log = Log(out / "log.txt")
    py = sys.executable
    genie = [py, "-m", "genieworld.cli"]
    summary: dict = {"preset": args.preset, "budget_s": args.budget, "dry_run": args.dry_run}
    import torch

    cuda = torch.cuda.is_available()
    summary["torch"] = torch.__version__
    summary["device"] = torch.cuda.get_device_name(0) if cuda else "cpu"
    log(f"torch {torch.__version__}, device {summary['device']}")
    if not cuda and not args.dry_run:
        log("no CUDA device: use --dry-run to check the script on the CPU")
        return 2
    data, eval_data = Path(args.data), Path(args.eval_data)
    for p in (data, eval_data, Path(args.tokenizer)):
        if not p.exists():
            log(f"missing {p}: run `python scripts/gpu_check.py prepare` here and carry .gpu")
            return 2

    def save():
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")

    # 1. the pending bf16 training benchmark (model FLOP utilisation)
    bench = [py, "bench/bench_train.py", "--component", "all", "--steps", "5"]
    bench += (["--preset", "tiny", "--component", "lam", "--steps", "1", "--no-flop-counter"] if args.dry_run else
              ["--preset", "coinrun-paper", "--device", "cuda", "--precision", "bf16"])
    rc, t = run_cmd(bench, log, args.bench_budget, stdout=out / "bench_train_bf16.jsonl")
    summary["bench_train"] = {"rc": rc, "seconds": round(t, 1)}
    save()

    left = args.budget - log.elapsed()
    lam_max = 30 if args.dry_run else args.lam_steps
    dyn_max = 30 if args.dry_run else args.dynamics_steps
    probe = 10 if args.dry_run else PROBE_STEPS
    size = ["--batch-size", "2", "--num-workers", "0"] if args.dry_run else []
    # 2. LAM: about 35 % of what is left; the camera merge runs at its end
    lam_run = work / "lam"
    summary["lam"] = train_in_budget("lam", ["--data", str(data), "--preset", args.preset] + size, lam_run,
                                     lam_max, 0.35 * left, 30.0, log, genie, probe)
    save()
    if not summary["lam"]["ok"]:
        log("LAM stage failed; stopping")
        return 1
    # 3. dynamics against the frozen LAM; naming and packing keep ~60 s
    left = args.budget - log.elapsed()
    world = work / "world"
    dyn_args = ["--data", str(data), "--preset", args.preset, "--tokenizer", str(args.tokenizer),
                "--lam", str(lam_run), "--eval-data", str(eval_data)] + size
    summary["dynamics"] = train_in_budget("dynamics", dyn_args, world, dyn_max, left - 60.0, 20.0, log, genie,
                                          probe)
    save()
    if not summary["dynamics"]["ok"]:
        log("dynamics stage failed; stopping")
        return 1
    # 4. name the actions, pack the model without the tokenizer (it stays on the CPU machine)
    rc, t = run_cmd(genie + ["actions", "name", str(world), "--data", str(data)], log, 120)
    summary["name_actions"] = {"rc": rc, "seconds": round(t, 1)}
    if (world / "control.jsonl").exists():
        shutil.copy(world / "control.jsonl", out / "control.jsonl")
    summary["parts"] = pack(world / "model", out)
    summary["total_s"] = round(log.elapsed(), 1)
    save()
    log(f"done in {summary['total_s']}s: {summary['parts']}")
    return 0


def pack(model: Path, out: Path) -> list[str]:
    """``model`` (less its tokenizer) as ``out/model.tar.NN``, each part under ``PART_BYTES``."""
    tar_path = model.parent / "model.tar"  # in the work folder: only the parts go to out
    with tarfile.open(tar_path, "w") as tar:
        for p in sorted(model.rglob("*")):
            rel = p.relative_to(model)
            if p.is_file() and rel.parts[0] != "tokenizer":
                tar.add(p, arcname=str(rel))
    parts = []
    with tar_path.open("rb") as f:
        i = 0
        while chunk := f.read(PART_BYTES):
            name = f"model.tar.{i:02d}"
            (out / name).write_bytes(chunk)
            parts.append(name)
            i += 1
    tar_path.unlink()
    return parts


def cmd_unpack(args) -> int:
    src = Path(args.files)
    parts = sorted(src.glob("model.tar.[0-9][0-9]"))
    if not parts:
        print(f"{src}: no model.tar.NN parts", file=sys.stderr)
        return 2
    dest = Path(args.to)
    if dest.exists():
        print(f"{dest} exists; choose another --to", file=sys.stderr)
        return 2
    tmp = dest.parent / (dest.name + ".tar")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tmp.open("wb") as f:
        for p in parts:
            f.write(p.read_bytes())
    dest.mkdir()
    with tarfile.open(tmp) as tar:
        tar.extractall(dest, filter="data")  # no absolute paths, links or devices
    tmp.unlink()
    shutil.copytree(args.tokenizer, dest / "tokenizer")
    sys.path.insert(0, str(ROOT / "src"))
    from genieworld.genie import Genie

    g = Genie.from_pretrained(dest)
    print(json.dumps({"model": str(dest), "num_actions": int(g.num_actions),
                      "next": f"genie eval {dest} --data runs/cpu/data/test --out {dest.parent}/eval "
                              "--episodes 32 --seed 0 --grid-prompts 4"}))
    return 0


def cmd_prepare(args) -> int:
    """The data the run needs, recorded as the cpu recipe does (fewer training levels: the 64 MiB carry)."""
    sys.path.insert(0, str(ROOT / "src"))
    from genieworld.commands import recipe  # the cpu recipe's recording settings, not a copy of them

    genie = [str(ROOT / ".venv/bin/genie")] if (ROOT / ".venv/bin/genie").exists() else [sys.executable, "-m",
                                                                                          "genieworld.cli"]
    test_steps = recipe.DEFAULT_SIZES["cpu"][3]
    policy = recipe.DEFAULT_POLICY["cpu"]
    common = ["--frame-skip", str(recipe.DEFAULT_FRAME_SKIP["cpu"]), "--policy", policy, "--no-progress"]
    common += ["--hold", "4.0"] if policy == "hold" else []
    common += [] if recipe.DEFAULT_BACKGROUNDS["cpu"] else ["--no-backgrounds"]
    out = Path(args.dir)
    cmds = [genie + ["data", "coinrun", str(out / "data/train"), "--levels", str(args.levels), "--start-level", "0",
                     "--steps-per-level", str(args.steps_per_level), "--seed", "0"] + common,
            genie + ["data", "coinrun", str(out / "data/test"), "--levels", str(args.test_levels),
                     "--start-level", str(recipe.TEST_START_LEVEL), "--steps-per-level", str(test_steps),
                     "--seed", "1"] + common]
    for c in cmds:
        print("$ " + " ".join(c), flush=True)
        rc = subprocess.call(c, cwd=ROOT)
        if rc != 0:
            return rc
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(json.dumps({"dir": str(out), "bytes": size, "carry": [str(out)]}))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="record the data the run needs into .gpu/ (here, on the CPU)")
    p.add_argument("--dir", default=".gpu")
    p.add_argument("--levels", type=int, default=160, help="training levels (default 160: ~25 MB)")
    p.add_argument("--steps-per-level", type=int, default=300)
    p.add_argument("--test-levels", type=int, default=20, help="held-out levels from 100000 (default 20)")
    r = sub.add_parser("run", help="on the GPU machine: bench, train, pack")
    r.add_argument("--out", default=os.environ.get("OUT", "runs/gpu-out"))
    r.add_argument("--work", default="/tmp/genie-gpu")
    r.add_argument("--data", default=".gpu/data/train")
    r.add_argument("--eval-data", default=".gpu/data/test")
    r.add_argument("--tokenizer", default="models/coinrun-cpu/tokenizer")
    r.add_argument("--preset", default="configs/gpu.json")
    r.add_argument("--budget", type=float, default=480.0, help="seconds for everything (default 480)")
    r.add_argument("--bench-budget", type=float, default=90.0, help="seconds for the bf16 benchmark")
    r.add_argument("--lam-steps", type=int, default=4000, help="at most this many LAM steps")
    r.add_argument("--dynamics-steps", type=int, default=6000, help="at most this many dynamics steps")
    r.add_argument("--dry-run", action="store_true", help="on the CPU, a few steps, to check the plumbing")
    u = sub.add_parser("unpack", help="here: the parts brought back -> a model folder")
    u.add_argument("files", help="the folder holding model.tar.NN (the device tool's files_at)")
    u.add_argument("--to", default="runs/gpu/model")
    u.add_argument("--tokenizer", default="models/coinrun-cpu/tokenizer")
    args = ap.parse_args(argv)
    return {"prepare": cmd_prepare, "run": cmd_run, "unpack": cmd_unpack}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())

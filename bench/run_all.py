"""Run every benchmark in bench/ and collect their JSON into bench/results/<device>-<date>.json.

    python bench/run_all.py                      # all bench/bench_*.py with settings sized for the device
    python bench/run_all.py --only train,memory  # a subset (names without the bench_ prefix)
    python bench/run_all.py --device cuda --out bench/results/h100.json
    make bench                                   # the same as the first line

Each script runs in its own subprocess (so one failing or missing dependency does not stop
the others) and prints JSON objects, one per line; every such line is kept.  Scripts found
in bench/ that this file has no settings for run with no arguments.  The result file holds
the device description, the date, the git revision, the load average before and after, and
per script: the command, exit status, wall time, the JSON results and the tail of stderr.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402

# Arguments per script and device type; sized so the whole run takes minutes on 2 CPU cores.
ARGS = {
    "bench_train.py": {
        "cpu": ["--component", "all", "--preset", "cpu", "--steps", "3", "--threads", "1,2"],
        "cuda": ["--component", "all", "--preset", "coinrun-paper", "--steps", "5", "--device", "cuda"],
    },
    "bench_memory.py": {
        "cpu": ["--baseline-backend", "default,math"],
        "cuda": ["--device", "cuda", "--frames", "4,8,16,32,64", "--baseline-backend", "default,math"],
    },
    "bench_generate.py": {
        "cpu": ["--quick", "--threads", "2"],
        "cuda": ["--device", "cuda"],
    },
    "bench_data.py": {
        "cpu": ["--levels", "4", "--steps-per-level", "500", "--seconds", "3"],
        "cuda": ["--levels", "4", "--steps-per-level", "500", "--seconds", "3"],
    },
}
ORDER = ["bench_data.py", "bench_train.py", "bench_memory.py", "bench_generate.py", "bench_play_load.py"]


# Scripts that need a recorded dataset (--data), a trained model (--model) or minutes of training: run them
# by hand (each one's docstring gives its command).
BY_HAND = {"bench_lam_probe.py", "bench_lam.py", "bench_grid.py", "bench_jump_arc.py", "bench_true_actions.py",
           "bench_play_quality.py", "bench_tokenizer.py"}


def discover() -> list[str]:
    found = sorted(p.name for p in HERE.glob("bench_*.py") if p.name not in BY_HAND)
    return [s for s in ORDER if s in found] + [s for s in found if s not in ORDER]


def parse_json_lines(text: str) -> list:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{") or line.startswith("["):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    if not out and text.strip().startswith("{"):  # a script that pretty-prints one object over several lines
        try:
            out.append(json.loads(text))
        except json.JSONDecodeError:
            pass
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda (picks each script's settings)")
    ap.add_argument("--only", help="comma list of script names (e.g. train,memory or bench_train.py)")
    ap.add_argument("--skip", help="comma list of script names to leave out")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per script")
    ap.add_argument("--out", help="result file (default bench/results/<device>-<date>.json)")
    ap.add_argument("--list", action="store_true", help="print the commands and exit")
    args = ap.parse_args(argv)

    device = common.pick_device(args.device)
    kind = "cuda" if device.type == "cuda" else "cpu"

    def norm(names):
        return {n if n.startswith("bench_") else f"bench_{n}" for n in names.split(",")} if names else set()

    only = {n if n.endswith(".py") else n + ".py" for n in norm(args.only)}
    skip = {n if n.endswith(".py") else n + ".py" for n in norm(args.skip)}
    scripts = [s for s in discover() if (not only or s in only) and s not in skip]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(HERE.parent / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("GENIEWORLD_NO_PROGRESS", "1")
    cmds = {s: [sys.executable, str(HERE / s), *ARGS.get(s, {}).get(kind, [])] for s in scripts}
    if args.list:
        for s, c in cmds.items():
            print(" ".join(c))
        return 0

    date = dt.date.today().isoformat()
    out_path = Path(args.out) if args.out else HERE / "results" / f"{common.device_tag(device)}-{date}.json"
    report = {"device": common.device_info(device), "date": date, "started": common.now_iso(),
              "git_rev": common.git_rev(), "loadavg_before": common.load_average(), "scripts": {}}
    failed = 0
    for s, cmd in cmds.items():
        print(f"[run_all] {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env, cwd=HERE.parent)
            rc, stdout, stderr = p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired as e:
            rc, stdout, stderr = "timeout", (e.stdout or b"").decode(errors="replace") if isinstance(
                e.stdout, bytes) else (e.stdout or ""), f"timed out after {args.timeout} s"
        wall = time.perf_counter() - t0
        results = parse_json_lines(stdout)
        report["scripts"][s] = {"command": [os.path.relpath(cmd[1], HERE.parent), *cmd[2:]], "returncode": rc,
                                "wall_s": round(wall, 1),
                                "loadavg_after": common.load_average(), "results": results,
                                "stderr_tail": stderr[-2000:] if rc != 0 else stderr[-300:]}
        failed += rc != 0
        print(f"[run_all] {s}: rc={rc}, {len(results)} JSON objects, {wall:.0f} s", file=sys.stderr, flush=True)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(report, indent=1, default=str) + "\n")  # partial results survive a crash
    report["finished"] = common.now_iso()
    report["loadavg_after"] = common.load_average()
    out_path.write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(json.dumps({"results_file": str(out_path), "scripts": {s: r["returncode"] for s, r in
                                                                 report["scripts"].items()}}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

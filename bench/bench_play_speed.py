"""How fast does a model play on this machine, and where does a frame's time go? Prints one JSON object.

    python bench/bench_play_speed.py --model models/coinrun-cpu --data runs/cpu/data/test
    python bench/bench_play_speed.py --model models/coinrun-cpu --steps 1 2 4 8 --precision fp32 bf16 \
        --compile eager compiled --threads 2

For every (eager or compiled, precision, MaskGIT steps): ``World.step`` (what `genie play` runs for one key) from
``--prompts`` real prompts, after the context window is full, ``--frames`` frames each: median and
p90 milliseconds per frame, frames per second, and for every path but eager fp32 the PSNR of its
frames against eager fp32's from the same prompts, seeds and keys (the quality check); compiled rows
also give the seconds that compiling and the first frames took (what `genie play --compile` waits).
``--profile`` adds a ``torch.profiler`` breakdown of one fp32 frame at the model's play steps (the top operators by self CPU time, grouped
as dynamics, tokenizer decode and sampling).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import device_info, emit_json, now_iso, random_prompts  # noqa: E402


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float((((a.astype(np.float64) - b.astype(np.float64)) / 255.0) ** 2).mean())  # over all frames
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def time_play(genie, prompts, steps: int, frames: int, warm: int, seed: int = 0):
    """(per-frame ms over all prompts, the frames made) for ``frames`` steps after ``warm`` steps."""
    import torch

    ms, video = [], []
    rng = np.random.default_rng(seed)
    for k, p in enumerate(prompts):
        # at play's temperature (sampling.play_temperature) as genie play runs it; the MaskGIT steps are the row's
        w = genie.world(p, seed=seed + k, **{**genie.play_overrides(), "maskgit_steps": steps}, max_history=16)
        acts = rng.integers(0, genie.num_actions, warm + frames)
        with torch.no_grad():  # as play runs it (inference_mode tensors would make a compiled step recompile)
            for a in acts[:warm]:
                w.step(int(a))
            out = []
            for a in acts[warm:]:
                t0 = time.perf_counter()
                out.append(w.step(int(a)))
                ms.append((time.perf_counter() - t0) * 1000)
        video.append(np.stack(out))
    return np.asarray(ms), np.stack(video)


def profile_frame(genie, prompt, steps: int, top: int = 15) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    w = genie.world(prompt, seed=0, **{**genie.play_overrides(), "maskgit_steps": steps}, max_history=16)
    with torch.inference_mode():
        for a in range(6):
            w.step(a % genie.num_actions)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for a in range(5):
                with record_function("play_frame"):
                    w.step(a % genie.num_actions)
    table = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in table) or 1.0
    rows = sorted(table, key=lambda e: -e.self_cpu_time_total)[:top]
    return {"frames": 5, "total_ms_per_frame": round(total / 1000 / 5, 2),
            "top_ops": [{"op": e.key, "self_ms_per_frame": round(e.self_cpu_time_total / 1000 / 5, 3),
                         "share": round(e.self_cpu_time_total / total, 3), "calls_per_frame": e.count / 5}
                        for e in rows]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/coinrun-cpu")
    ap.add_argument("--data", help="held-out store for real prompts (default: the model's prompt gallery)")
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8], help="MaskGIT steps per frame")
    ap.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=("fp32", "bf16"))
    ap.add_argument("--compile", nargs="+", default=["eager", "compiled"], choices=("eager", "compiled"),
                    help="eager (the reference path) and/or compiled (Genie.compile_play)")
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--frames", type=int, default=24, help="timed frames per prompt (after --warm)")
    ap.add_argument("--warm", type=int, default=6, help="untimed frames first (the context fills up)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--out")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from genieworld.genie import Genie

    g32 = Genie.from_pretrained(args.model)
    if args.data:
        from genieworld.data.store import EpisodeStore

        prompts = list(random_prompts(EpisodeStore(args.data), args.prompts, 0, 0x51DE))
    else:
        from genieworld.prompts import PROMPTS_DIR

        files = sorted((Path(args.model) / PROMPTS_DIR).glob("prompt-*.png"))[:args.prompts]
        prompts = [str(f) for f in files]
        if not prompts:
            raise SystemExit(f"{args.model} has no prompt gallery ({PROMPTS_DIR}/prompt-*.png): pass --data STORE "
                             "to take prompts from a held-out store")
    out = {"bench": "play_speed", "time": now_iso(), "device": device_info(), "model": args.model,
           "threads": args.threads, "prompts": len(prompts), "frames": args.frames,
           "temperature": g32.play_overrides().get("temperature", g32.sampling.temperature), "results": []}
    ref = {}
    for mode in args.compile:
        for prec in args.precision:
            g = g32 if (prec, mode) == ("fp32", "eager") else Genie.from_pretrained(args.model)
            if prec == "bf16":
                g.set_play_precision("bf16")
            compile_s = None
            if mode == "compiled":
                t0 = time.perf_counter()
                g.compile_play()
                time_play(g, prompts[:1], g.sampling.play_maskgit_steps or 4, 1, args.warm)  # compiles
                compile_s = round(time.perf_counter() - t0, 1)
            for steps in args.steps:
                ms, video = time_play(g, prompts, steps, args.frames, args.warm)
                row = {"precision": prec, "compile": mode, "maskgit_steps": steps,
                       "ms_p50": round(float(np.median(ms)), 2), "ms_p90": round(float(np.percentile(ms, 90)), 2),
                       "fps_p50": round(1000 / float(np.median(ms)), 1)}
                if compile_s is not None:
                    row["compile_and_first_frames_s"] = compile_s
                    compile_s = None
                if (prec, mode) == ("fp32", "eager"):
                    ref[steps] = video
                elif steps in ref:  # against the eager fp32 reference, same prompts, seeds and keys
                    row["psnr_vs_fp32_eager_db"] = round(_psnr(video, ref[steps]), 2)
                    row["same_frames_share"] = round(float((video == ref[steps]).all(axis=(2, 3, 4)).mean()), 3)
                out["results"].append(row)
                print(row, file=sys.stderr, flush=True)
    if args.profile:
        out["profile_fp32"] = profile_frame(g32, prompts[0], g32.sampling.play_maskgit_steps or 4)
    emit_json(out, args.out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

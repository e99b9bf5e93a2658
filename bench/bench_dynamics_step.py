"""Seconds per dynamics training step: co-trained LAM (the paper's way) vs frozen LAM vs the token cache; JSON out.

    PYTHONPATH=src python bench/bench_dynamics_step.py                    # cpu preset, its batch and window
    PYTHONPATH=src python bench/bench_dynamics_step.py --batch-size 4 --threads 2

Times full optimizer steps (forward, backward, AdamW) of :class:`genieworld.train.dynamics_task.DynamicsTask`
on random frames of the preset's size, in three modes:

* ``cotrain``: frames -> tokenizer.encode + the preset's *transformer* LAM trained alongside (the
  paper's co-training, what the ``cpu`` recipe did before the separate LAM stage);
* ``frozen_lam``: frames -> tokenizer.encode + a frozen LAM's inference (the preset's own LAM);
* ``cached``: tokens and latent action ids read from a token cache: the dynamics transformer alone.

Random weights: the cost of a step does not depend on what the weights have learned.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import device_info  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--batch-size", type=int, help="default: the preset's dynamics_train.batch_size")
    ap.add_argument("--seq-len", type=int, help="default: the preset's dynamics_train.seq_len")
    ap.add_argument("--steps", type=int, default=6, help="timed steps per mode (after 2 warm-up steps)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    from genieworld.config import load_preset
    from genieworld.lam import build_lam
    from genieworld.tokenizer import VideoTokenizer
    from genieworld.train.dynamics_task import DynamicsTask

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    p = load_preset(args.preset)
    b = args.batch_size or p.dynamics_train.batch_size
    t = args.seq_len or p.dynamics_train.seq_len
    size = p.tokenizer.image_size
    tok = VideoTokenizer(replace(p.tokenizer, max_frames=max(p.tokenizer.max_frames, t)))
    frames = torch.randint(0, 256, (b, t, size, size, 3), dtype=torch.uint8)
    results = {}
    modes = {
        "cotrain": lambda: DynamicsTask(tok, replace(p.lam, arch="transformer", max_frames=max(p.lam.max_frames, t)),
                                        replace(p.dynamics, max_frames=max(p.dynamics.max_frames, t)), p.sampling),
        "frozen_lam": lambda: DynamicsTask(tok, p.lam, replace(p.dynamics, max_frames=max(p.dynamics.max_frames, t)),
                                           p.sampling, frozen_lam=build_lam(replace(p.lam, max_frames=max(p.lam.max_frames, t)))),
    }
    modes["cached"] = modes["frozen_lam"]
    for name, make in modes.items():
        task = make()
        opt = torch.optim.AdamW([q for q in task.parameters() if q.requires_grad], lr=1e-4)
        if name == "cached":
            with torch.no_grad():
                batch = {"tokens": tok.encode(frames), "latent_actions": task.the_lam.encode_actions(frames)[0]}
        else:
            batch = {"frames": frames}
        times = []
        for i in range(args.steps + 2):
            t0 = time.perf_counter()
            loss, _ = task.training_step(batch, i)
            opt.zero_grad()
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t0)
        results[name] = {"s_per_step": round(sum(times[2:]) / args.steps, 3)}
    out = {"bench": "dynamics_step", "preset": args.preset, "batch_size": b, "seq_len": t, "threads": args.threads,
           "device": device_info(torch.device("cpu")), **results,
           "speedup_cached_vs_cotrain": round(results["cotrain"]["s_per_step"] / results["cached"]["s_per_step"], 2)}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

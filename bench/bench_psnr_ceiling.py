"""How much of the real continuation can a world predict from its prompt? Oracle references for `genie eval`'s
PSNR. Prints JSON.

    python bench/bench_psnr_ceiling.py --model models/coinrun-cpu --data runs/cpu/data/test

On `genie eval`'s clips (the same selection: ``--episodes``, ``--horizon``, ``--seed``), the prompt frame's
reconstruction through the model's tokenizer is compared with every real frame x_t, as `genie eval`'s
``still_prompt`` does, and twice more with an oracle that sees x_t:

* ``oracle_shift``: the prompt moved by the whole-pixel shift (dy, dx), |dy|, |dx| <= ``--max-shift``,
  that fits x_t best (least squared error), the pixels that enter the view filled with the prompt's mean
  colour. A world that knows exactly where the camera went and copies what the prompt showed, and nothing
  more: the agent's own motion, animation and whatever enters the view are not predicted.
* ``oracle_shift_new_given``: the same shift, and the pixels that enter the view taken from x_t itself:
  what is left is only the error on what the prompt already showed (the agent, enemies, coins).

Neither is an upper bound for a generative model (one can draw plausible new content and move the agent),
but they say how far a PSNR target lies above what the prompt alone determines. Per-step means are
``genie eval``'s (``per_step_summary``: PSNR capped at 100 dB per frame, the mean over clips at each t).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import device_info, emit_json, git_rev, now_iso  # noqa: E402


def oracle_shift(prompt_hwc: torch.Tensor, real_thwc: torch.Tensor, max_shift: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """For each real frame, the prompt (float, 0..1) shifted by the best whole-pixel shift: returns the
    prediction with the new pixels in the prompt's mean colour and the one with them taken from the real frame,
    both (T, H, W, C)."""
    t, h, w, c = real_thwc.shape
    fill = prompt_hwc.mean(dim=(0, 1))
    r = max_shift
    pad = torch.nn.functional.pad(prompt_hwc.permute(2, 0, 1), (r, r, r, r), value=float("nan"))  # (C, H+2r, W+2r)
    best_err = torch.full((t,), float("inf"))
    best = torch.zeros(t, h, w, c)
    best_given = torch.zeros(t, h, w, c)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            # out[y, x] = prompt[y + dy, x + dx]: the view moved by (dy, dx)
            win = pad[:, r + dy: r + dy + h, r + dx: r + dx + w].permute(1, 2, 0)  # (H, W, C)
            new = torch.isnan(win)
            pred = torch.where(new, fill, win)
            err = ((pred[None] - real_thwc) ** 2).mean(dim=(1, 2, 3))  # (T,)
            better = err < best_err
            if better.any():
                best_err = torch.where(better, err, best_err)
                best[better] = pred
                best_given[better] = torch.where(new[None], real_thwc[better], win[None])
    return best, best_given


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/coinrun-cpu", help="model folder (its tokenizer reconstructs the prompt)")
    ap.add_argument("--data", required=True, help="held-out store, as for genie eval")
    ap.add_argument("--episodes", type=int, default=32)
    ap.add_argument("--horizon", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-shift", type=int, default=24, help="largest shift tried, in pixels, each axis (default 24)")
    ap.add_argument("--out")
    args = ap.parse_args(argv)

    from genieworld.data.store import EpisodeStore
    from genieworld.eval.evaluate import _reconstruct, frame_metrics, load_clips, per_step_summary, select_clips
    from genieworld.genie import Genie

    t0 = time.perf_counter()
    store = EpisodeStore(args.data)
    refs = select_clips(store.episode_lengths, args.episodes, args.horizon, args.seed)
    real, _ = load_clips(store, refs, args.horizon)  # (N, T, H, W, 3) uint8
    tok = Genie.from_pretrained(args.model).tokenizer.eval()
    recon = _reconstruct(tok, real, 8, torch.device("cpu"), lambda k: None)[0]  # as genie eval reconstructs
    prompt = torch.from_numpy(recon[:, 0]).float() / 255.0  # (N, H, W, 3)
    real01 = torch.from_numpy(real).float() / 255.0
    shift = np.empty_like(real)
    given = np.empty_like(real)
    for i in range(len(real)):
        a, b = oracle_shift(prompt[i], real01[i], args.max_shift)
        shift[i] = (a.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        given[i] = (b.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    still = np.repeat((prompt[:, None].numpy() * 255).round().astype(np.uint8), args.horizon, axis=1)
    rows = {}
    for name, video in (("still_prompt", still), ("oracle_shift", shift), ("oracle_shift_new_given", given)):
        s = per_step_summary(frame_metrics(real, video)[0], 1)
        rows[name] = {"psnr_t4": round(s["per_step"][3], 2), "psnr_t16": round(s["per_step"][15], 2)
                      if args.horizon >= 16 else None, "per_step": [round(v, 2) for v in s["per_step"]]}
    out = {"bench": "psnr_ceiling", "time": now_iso(), "git": git_rev(), "device": device_info("cpu"),
           "model": args.model, "data": args.data, "clips": len(real), "horizon": args.horizon, "seed": args.seed,
           "max_shift": args.max_shift, "results": rows, "seconds": round(time.perf_counter() - t0, 1)}
    emit_json(out, args.out, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

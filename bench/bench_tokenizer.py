"""How well does one tokenizer read each game? Reconstruction PSNR / SSIM per held-out store; prints JSON.

    python bench/bench_tokenizer.py --tokenizer models/coinrun-cpu --data runs/cpu/data/test
    python bench/bench_tokenizer.py --tokenizer runs/platformers-tok --data runs/games/coinrun-test \\
        --data runs/games/ninja-test --data runs/games/pitfall-test --out bench/results/tokenizer/platformers.json

``--tokenizer`` is a model folder, a ``genie train tokenizer`` RUN or its RUN/tokenizer. On each ``--data``
store it encodes and decodes ``--episodes`` clips of ``--frames`` frames, chosen as `genie eval` chooses its
clips (one per episode, seeded), through the same reconstruction code as `genie eval`'s tokenizer PSNR, and
reports the mean PSNR (dB, capped at 100 per frame) and SSIM with their standard errors, and how many of the
codebook's codes the clips use. One tokenizer for many games is only as good as its worst game: the summary
gives the lowest PSNR and its store.
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


def load_tokenizer(path: str):
    from genieworld.config import TokenizerConfig
    from genieworld.genie import load_component
    from genieworld.tokenizer import VideoTokenizer
    from genieworld.train.dynamics_task import resolve_tokenizer_dir

    # a model folder holds its tokenizer in tokenizer/, as a RUN does: the resolver tries both
    return load_component(VideoTokenizer, TokenizerConfig, resolve_tokenizer_dir(path)).eval()


def score_store(tokenizer, store, episodes: int, frames: int, seed: int, batch: int = 8) -> dict:
    """Reconstruction PSNR / SSIM of ``episodes`` clips of ``store`` (one per episode, `genie eval`'s selection)."""
    from genieworld.eval.evaluate import _reconstruct, _stats, frame_metrics, load_clips, select_clips

    refs = select_clips(store.episode_lengths, episodes, frames, seed)
    clips, _ = load_clips(store, refs, frames)
    recon, codes = _reconstruct(tokenizer, clips, batch, torch.device("cpu"), lambda k: None)
    p, s = frame_metrics(clips, recon)
    ps, ss = _stats(p), _stats(s)
    return {"clips": len(refs), "frames": frames, "psnr_db": round(ps["mean"], 2), "psnr_sem": round(ps["sem"], 2),
            "ssim": round(ss["mean"], 4), "ssim_sem": round(ss["sem"], 4),
            "codes_used": int(np.unique(codes).size), "num_codes": int(tokenizer.cfg.vq.num_codes)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--tokenizer", required=True, help="model folder, tokenizer RUN or RUN/tokenizer")
    ap.add_argument("--data", action="append", required=True, help="held-out episode store (repeat for more)")
    ap.add_argument("--episodes", type=int, default=32, help="clips per store, one per episode (default 32)")
    ap.add_argument("--frames", type=int, default=4, help="frames per clip (default 4)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from genieworld.data.store import EpisodeStore

    t0 = time.time()
    tok = load_tokenizer(args.tokenizer)
    stores = {}
    for path in args.data:
        stores[path] = score_store(tok, EpisodeStore(path), args.episodes, args.frames, args.seed)
        print(f"[bench] {path}: {stores[path]['psnr_db']} dB", file=sys.stderr, flush=True)
    worst = min(stores, key=lambda k: stores[k]["psnr_db"])
    emit_json({"bench": "tokenizer", "time": now_iso(), "git": git_rev(), "device": device_info("cpu"),
               "tokenizer": str(args.tokenizer), "patch_size": tok.cfg.patch_size, "stores": stores,
               "lowest": {"store": worst, "psnr_db": stores[worst]["psnr_db"]},
               "seconds": round(time.time() - t0, 1)}, out=args.out, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

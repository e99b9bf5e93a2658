"""Time the I3D feature extractor used by FVD (CPU by default).

    PYTHONPATH=src python bench/bench_fvd.py [--clips 8] [--frames 16] [--batch-sizes 1,4,8] [--size 64]

Prints seconds per clip (after one warm-up batch) for each batch size, with the
thread count and device.  Needs the converted weights
(``python -m genieworld.eval.i3d fetch``).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from genieworld.eval.fvd import i3d_features


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=64, help="input frame size before the 224 x 224 resize")
    ap.add_argument("--batch-sizes", default="1,4,8")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    videos = torch.rand(args.clips, args.frames, args.size, args.size, 3, generator=torch.Generator().manual_seed(0))
    i3d_features(videos[:1], batch_size=1, device=args.device)  # load weights + oneDNN warm-up
    for bs in [int(b) for b in args.batch_sizes.split(",")]:
        i3d_features(videos[:bs], batch_size=bs, device=args.device)  # warm-up at this shape
        t0 = time.perf_counter()
        i3d_features(videos, batch_size=bs, device=args.device)
        dt = time.perf_counter() - t0
        print(json.dumps({
            "bench": "i3d_features", "device": args.device, "threads": torch.get_num_threads(),
            "clips": args.clips, "frames": args.frames, "size": args.size, "batch_size": bs,
            "s_per_clip": round(dt / args.clips, 4),
        }), flush=True)


if __name__ == "__main__":
    main()

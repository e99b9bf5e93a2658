"""Record CoinRun with the agent at 4x the resolution: the centre of Procgen's 512x512 render.

    python bench/record_agent_crop.py runs/crop128/test --levels 20 --start-level 100000 --steps 500 --seed 1
    python bench/record_agent_crop.py runs/crop128/train --levels 200 --steps 150
    python bench/bench_lam.py --data runs/crop128/train --eval-data runs/crop128/test --steps 500 --batch-size 64

A probe for issue 14 (docs/experiments.md, "The separate LAM stage", 10), not a data source of the
recipe. CoinRun's camera follows the agent, so the centre ``--crop`` px square of the 512x512
render (128 = the central 16x16 px of the 64x64 frame), resized to 64x64, shows the agent at 16x24 px
instead of 3x4. Everything else is `genie data coinrun`'s recorder with the `cpu` recipe's
settings (hard mode, hold policy of mean 4, frame skip 4, no backgrounds): with the same levels,
steps and seed, the store lines up frame by frame with the one `genie data coinrun` writes.
Rendering every game step at 512x512 makes it far slower than `genie data coinrun` (20 held-out
levels x 500 steps: about 3.5 minutes here on a shared machine, against 6 s).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="episode store to write (resumable)")
    ap.add_argument("--crop", type=int, default=128, help="side of the centre square of the 512x512 render (default 128)")
    ap.add_argument("--levels", type=int, default=200)
    ap.add_argument("--start-level", type=int, default=0)
    ap.add_argument("--steps", type=int, default=150, help="recorded steps per level (default 150)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if not 16 <= args.crop <= 512:
        raise SystemExit("--crop must be in [16, 512]")

    import numpy as np
    import procgen
    from PIL import Image

    base = procgen.ProcgenGym3Env
    lo = (512 - args.crop) // 2

    class CentreCropEnv:
        """ProcgenGym3Env whose observation is the centre crop of the 512x512 render, at 64x64."""

        def __init__(self, **kw):
            self.env = base(render_mode="rgb_array", **kw)

        def act(self, a):
            self.env.act(a)

        def observe(self):
            rew, _, first = self.env.observe()
            hi = self.env.get_info()[0]["rgb"][lo:lo + args.crop, lo:lo + args.crop]
            crop = np.asarray(Image.fromarray(hi).resize((64, 64), Image.BILINEAR))
            return rew, {"rgb": crop[None]}, first

    procgen.ProcgenGym3Env = CentreCropEnv  # generate_coinrun imports it from procgen when called
    from genieworld.data.coinrun import generate_coinrun

    summary = generate_coinrun(args.out, levels=args.levels, start_level=args.start_level, steps_per_level=args.steps,
                               seed=args.seed, frame_skip=4, policy="hold", hold=4.0, backgrounds=False)
    print(json.dumps({**summary, "crop": args.crop}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

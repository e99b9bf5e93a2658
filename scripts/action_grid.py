"""Write a PNG grid of every action of a model held from its prompt frames, as a player sees it.

    python scripts/action_grid.py models/coinrun-cpu docs/action_grid.png
    python scripts/action_grid.py models/coinrun-cpu grid.png --prompts 3 --steps 6 --order confidence

Rows: for each prompt in MODEL/prompts (sorted, the first ``--prompts``), one row per action, named
from MODEL/actions.json; columns: the prompt, then ``--steps`` play steps with that action held.
Sampling is the model's play setting (``sampling.play_maskgit_steps``, temperature, order) unless
overridden. ``bench/bench_grid.py`` measures the same thing on held-out frames and prints JSON.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="model folder (genie.json and prompts/)")
    ap.add_argument("out", help="output .png")
    ap.add_argument("--prompts", type=int, default=4, help="how many of the model's prompts (default 4)")
    ap.add_argument("--steps", type=int, default=6, help="play steps each action is held (default 6)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scale", type=int, default=1, help="nearest-neighbour upscaling (default 1)")
    ap.add_argument("--maskgit-steps", type=int, help="default: the model's play setting")
    ap.add_argument("--temperature", type=float, help="default: the model's")
    ap.add_argument("--order", choices=("confidence", "random"), help="MaskGIT unmasking order (default: the model's)")
    args = ap.parse_args(argv)
    if args.prompts < 1 or args.steps < 1 or args.scale < 1:
        raise SystemExit("need --prompts, --steps and --scale >= 1")

    import numpy as np
    import torch
    from PIL import Image

    from genieworld.eval.report import action_grid_image
    from genieworld.genie import Genie

    torch.set_num_threads(1)
    genie = Genie.from_pretrained(args.model)
    files = sorted((Path(args.model) / "prompts").glob("*.png"))[:args.prompts]
    if not files:
        raise SystemExit(f"{args.model}/prompts: no prompt frames")
    prompts = np.stack([genie.prepare_prompt(str(f))[-1].cpu().numpy() for f in files])  # (P, H, W, 3)
    overrides = genie.play_overrides()
    for key in ("maskgit_steps", "temperature", "order"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    a_n, p_n = genie.num_actions, len(files)
    x = torch.from_numpy(prompts)[:, None].repeat_interleave(a_n, 0)  # (P*A, 1, H, W, 3), prompt-major
    acts = torch.arange(a_n).repeat(p_n)[:, None].expand(-1, args.steps).contiguous()
    with torch.no_grad():
        video = genie.rollout(x, acts, seed=args.seed, **overrides).numpy()  # (P*A, 1 + steps, H, W, 3)
    grid = video.reshape(p_n, a_n, *video.shape[1:])
    names = list(genie.action_names) if genie.action_names else [str(i) for i in range(a_n)]
    img = action_grid_image(grid, names, prompt_frames=1, scale=args.scale)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    img.save(args.out)
    print(f"wrote {args.out}: {p_n} prompts x {a_n} actions x {args.steps} steps, sampling {overrides}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

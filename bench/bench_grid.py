"""Does each action of a model steer the view the way CoinRun's controls do? Prints JSON.

    python bench/bench_grid.py --model models/coinrun-cpu --data runs/cpu/data/test
    python bench/bench_grid.py --model runs/cpu/world/model --data runs/cpu/data/test --prompts 16 --steps 6

From ``--prompts`` real frames of the held-out store (random episodes and times, ``--seed``), every
action of the model is held for ``--steps`` play steps at the model's play settings (what a user
pressing one key sees). For each action, ``genieworld.eval.motion.grid_motion`` reports how far the
view moved over the steps (the sum of whole-pixel shifts from step to step), whether the scene
survived (``scene_kept``), and the direction it consistently moves the view in.

The same measurement on the real game is the reference: every stretch of the store where one
effective action is held for ``--steps`` recorded steps, per action (``real``). Issue 14's target,
"scroll left, scroll right, jump", is met when three different actions move the view left, right
and up (``target_met``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import device_info, emit_json, random_prompts, true_action_world  # noqa: E402
from genieworld.data.coinrun import EFFECTIVE_NAMES as _EFFECTIVE  # noqa: E402

EFFECTIVE_NAMES = list(_EFFECTIVE)  # effective_action ids 0..5


def real_reference(store, steps: int, prompts: int, seed: int, max_per_action: int = 400) -> dict:
    """Per effective action: the motion summary of real stretches where it is held ``steps`` steps
    (``actions``), and the same verdict as the model's grid on ``prompts`` of them drawn at random
    (``grid``): what the real game scores on this test."""
    from genieworld.data.coinrun import effective_action
    from genieworld.eval.motion import MIN_PIXELS, grid_motion, rollout_motion, scene_kept

    segs: dict[int, list[np.ndarray]] = {a: [] for a in range(6)}
    for i in range(store.num_episodes):
        acts = store.read_actions(i)
        if acts is None:
            return {"skipped": "the store has no recorded actions"}
        a = effective_action(acts)
        frames = store.read_frames(i)
        t = 0
        while t + steps <= min(len(a), len(frames) - 1):
            if a[t] >= 0 and (a[t:t + steps] == a[t]).all() and len(segs[int(a[t])]) < max_per_action:
                segs[int(a[t])].append(frames[t:t + steps + 1])
                t += steps
            else:
                t += 1
    out: dict = {"actions": {}}
    if all(len(v) >= prompts for v in segs.values()):
        rng = np.random.default_rng([seed, 0x4EA1])
        pick = np.stack([np.stack([segs[a][j] for j in rng.choice(len(segs[a]), prompts, replace=False)])
                         for a in range(6)], 1)  # (P, 6, 1 + steps, H, W, 3)
        g = grid_motion(pick, EFFECTIVE_NAMES)
        out["grid"] = {"moves": g["moves"], "distinct_directions": g["distinct_directions"]}
    for a, v in segs.items():
        if not v:
            continue
        m = rollout_motion(np.stack(v))
        d, kept = m["displacement"], scene_kept(m)
        out["actions"][EFFECTIVE_NAMES[a]] = {
            "rollouts": len(v), "mean_dx": float(d[:, 0].mean()), "mean_dy": float(d[:, 1].mean()),
            "kept": float(kept.mean()),
            "moved_right": float(((d[:, 0] >= MIN_PIXELS) & kept).mean()),
            "moved_left": float(((d[:, 0] <= -MIN_PIXELS) & kept).mean()),
            "moved_up": float(((d[:, 1] <= -MIN_PIXELS) & kept).mean()),
            "moved_down": float(((d[:, 1] >= MIN_PIXELS) & kept).mean())}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="model folder (genie.json)")
    ap.add_argument("--data", required=True, help="held-out episode store (prompts, and the real reference)")
    ap.add_argument("--prompts", type=int, default=16, help="real prompt frames (default 16)")
    ap.add_argument("--steps", type=int, default=4, help="play steps each action is held (default 4)")
    ap.add_argument("--true-actions", metavar="DIR",
                    help="score a ground-truth-action dynamics instead (RUN/dynamics-true-actions of `genie train "
                         "dynamics --actions true`), with --model giving its tokenizer and sampling; its buttons are "
                         "CoinRun's 6 effective actions")
    ap.add_argument("--maskgit-steps", type=int, help="default: the model's play setting")
    ap.add_argument("--temperature", type=float, help="default: the model's sampling temperature")
    ap.add_argument("--order", choices=("confidence", "random"), help="MaskGIT unmasking order (default: the model's)")
    ap.add_argument("--confidence-noise", type=float, help="MaskGIT's annealed Gumbel noise on the unmasking order "
                    "(default: the World's, 0)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-real", action="store_true", help="skip the real-game reference")
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args(argv)
    if args.prompts < 1 or args.steps < 1:
        raise SystemExit("need --prompts >= 1 and --steps >= 1")

    import torch

    torch.set_num_threads(args.threads)
    from genieworld.data.store import EpisodeStore
    from genieworld.eval.motion import grid_motion
    from genieworld.genie import Genie

    t0 = time.perf_counter()
    genie = Genie.from_pretrained(args.model)
    store = EpisodeStore(args.data)
    prompts = random_prompts(store, args.prompts, args.seed, 0x6121D)
    names = list(genie.action_names) if getattr(genie, "action_names", None) else [str(i) for i in range(genie.num_actions)]
    if args.true_actions:
        genie, names = true_action_world(genie, Path(args.true_actions)), list(EFFECTIVE_NAMES)
    a_n = genie.num_actions
    overrides = genie.play_overrides()
    if args.maskgit_steps:
        overrides["maskgit_steps"] = args.maskgit_steps
    if args.temperature is not None:
        overrides["temperature"] = args.temperature
    if args.order is not None:
        overrides["order"] = args.order
    if args.confidence_noise is not None:
        overrides["confidence_noise"] = args.confidence_noise
    x = torch.from_numpy(prompts)[:, None].repeat_interleave(a_n, 0)  # (P*A, 1, H, W, 3), prompt-major
    acts = torch.arange(a_n).repeat(args.prompts)[:, None].expand(-1, args.steps).contiguous()
    with torch.no_grad():
        video = genie.rollout(x, acts, seed=args.seed, **overrides).numpy()  # (P*A, 1 + steps, ...)
    grid = video.reshape(args.prompts, a_n, *video.shape[1:])
    gm = grid_motion(grid, names)
    mv = gm["moves"]
    chosen = {}
    for d in ("left", "right", "up"):  # three different actions, one per direction
        free = [n for n in mv[d] if n not in chosen.values()]
        if free:
            chosen[d] = free[0]
    out = {"bench": "grid", "model": args.model, "true_actions": args.true_actions, "data": args.data,
           "prompts": args.prompts, "steps": args.steps, "sampling": overrides, "seed": args.seed, "grid": gm,
           "target": "three different actions move the view left, right and up in >= 3 prompts each",
           "target_actions": chosen, "target_met": len(chosen) == 3,
           "real": None if args.no_real else real_reference(store, args.steps, args.prompts, args.seed),
           "seconds": round(time.perf_counter() - t0, 1), "device": device_info()}
    emit_json(out, args.out, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

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

Pictures instead of store frames (issue 33: sketches and photos, ``genieworld.sketches``):

    python bench/bench_grid.py --model models/coinrun-cpu --data runs/cpu/data/test --samples 4 \
        --prompt-files models/coinrun-cpu/prompts/sketch-0*.png models/coinrun-cpu/prompts/snapshot-0*.png

``--prompt-files`` plays from those PNG files (resized to the model's frames like any prompt) and
records them (``prompt_files``: repo-relative path and SHA-256). ``--samples N`` plays every prompt N
times (independent MaskGIT draws of one seed); ``grid`` then scores the first draw of each prompt,
and ``per_prompt`` says, for each prompt and action, in how many draws the view moved left, right,
up or down (by >= MIN_PIXELS, scene kept), and which directions it moved in most draws (more than
half). ``key_actions`` counts the prompts where the Left button moves the view left, Right right,
and the jump (the up arrow's action) up. ``real`` still needs ``--data``; without it pass ``--no-real``.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, device_info, emit_json, random_prompts, true_action_world  # noqa: E402
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


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it (no absolute paths in results)."""
    try:
        return Path(path).resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def read_prompt_files(paths: list[str]) -> tuple[list[dict], list[np.ndarray]]:
    """Check and decode ``--prompt-files``: ``([{"file", "sha256"}], [frame_hwc uint8, ...])`` at their own size.
    SystemExit, one line, for a missing file, a file that is not a PNG, or one that does not decode."""
    from genieworld.data.video import MAX_IMAGE_FILE_BYTES, load_image
    from genieworld.utils import read_bytes_bounded

    info, frames = [], []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise SystemExit(f"--prompt-files {p}: no such file")
        try:  # regular files only, bounded, as load_image reads a path
            raw = read_bytes_bounded(path, MAX_IMAGE_FILE_BYTES, ValueError, "image")
        except ValueError as e:
            raise SystemExit(f"--prompt-files {p}: {e}") from None
        if not raw.startswith(PNG_SIGNATURE):
            raise SystemExit(f"--prompt-files {p}: not a PNG file")
        try:
            frames.append(load_image(raw))
        except ValueError as e:
            raise SystemExit(f"--prompt-files {p}: cannot decode it ({e})") from None
        info.append({"file": _shown(path), "sha256": hashlib.sha256(raw).hexdigest()})
    return info, frames


def key_actions(names: list[str], model_dir: str) -> dict[str, str]:
    """The actions a player presses to go left, right and jump: those named Left, Right and Jump, the jump
    being the up arrow's action (``genie actions name``'s choice) when no action is named Jump."""
    from genieworld.actions import load_jump_action

    upper = [n.upper() for n in names]
    out = {d: names[upper.index(d.upper())] for d in ("Left", "Right", "Jump") if d.upper() in upper}
    if "Jump" not in out:
        jump = load_jump_action(model_dir, len(names))
        if jump is not None:
            out["Jump"] = names[jump]
    return out


def per_prompt_motion(grid_psakhwc: np.ndarray, names: list[str], labels: list[str]) -> list[dict]:
    """Per prompt (P prompts, S draws, A actions, 1 + k frames) and action: the draws whose view moved
    each way by >= MIN_PIXELS with the scene kept, and the directions of a majority (more than half) of draws."""
    from genieworld.eval.motion import MIN_PIXELS, rollout_motion, scene_kept

    p, s, a_n = grid_psakhwc.shape[:3]
    out = []
    for i in range(p):
        acts = {}
        for a in range(a_n):
            m = rollout_motion(grid_psakhwc[i, :, a])
            d, kept = m["displacement"], scene_kept(m)
            counts = {"left": int(((d[:, 0] <= -MIN_PIXELS) & kept).sum()),
                      "right": int(((d[:, 0] >= MIN_PIXELS) & kept).sum()),
                      "up": int(((d[:, 1] <= -MIN_PIXELS) & kept).sum()),
                      "down": int(((d[:, 1] >= MIN_PIXELS) & kept).sum())}
            acts[names[a]] = {"dx": d[:, 0].tolist(), "dy": d[:, 1].tolist(), "kept": int(kept.sum()), **counts,
                              "moves": [k for k, v in counts.items() if 2 * v > s]}
        out.append({"prompt": labels[i], "draws": s, "actions": acts})
    return out


def key_action_summary(per_prompt: list[dict], keys: dict[str, str]) -> dict:
    """How many prompts see Left move the view left, Right right, Jump up (in most draws), and Left and Right both."""
    want = {"Left": "left", "Right": "right", "Jump": "up"}
    out: dict = {"actions": keys, "prompts": len(per_prompt)}
    hits = {k: [want[k] in p["actions"][name]["moves"] for p in per_prompt] for k, name in keys.items()}
    for k, v in hits.items():
        out[f"{k.lower()}_moves_{want[k]}"] = int(sum(v))
    if "Left" in hits and "Right" in hits:
        out["left_and_right_scroll"] = int(sum(a and b for a, b in zip(hits["Left"], hits["Right"])))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="model folder (genie.json)")
    ap.add_argument("--data", help="held-out episode store (prompts, and the real reference); required unless "
                    "--prompt-files with --no-real")
    ap.add_argument("--prompts", type=int, default=16, help="real prompt frames (default 16; with --prompt-files, "
                    "the real reference's count)")
    ap.add_argument("--prompt-files", nargs="+", metavar="PNG", help="play from these PNG pictures instead of "
                    "store frames (e.g. MODEL/prompts/sketch-*.png)")
    ap.add_argument("--samples", type=int, default=1, help="draws per prompt (default 1); with more than 1, or "
                    "with --prompt-files, per-prompt verdicts (per_prompt, key_actions)")
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
    if args.prompts < 1 or args.steps < 1 or args.samples < 1:
        raise SystemExit("need --prompts >= 1, --steps >= 1 and --samples >= 1")
    if args.data is None and not (args.prompt_files and args.no_real):
        raise SystemExit("need --data (the held-out store), unless --prompt-files with --no-real")
    files, pictures = read_prompt_files(args.prompt_files) if args.prompt_files else (None, None)

    import torch

    torch.set_num_threads(args.threads)
    from genieworld.data.store import EpisodeStore
    from genieworld.eval.motion import grid_motion
    from genieworld.genie import Genie

    t0 = time.perf_counter()
    genie = Genie.from_pretrained(args.model)
    store = EpisodeStore(args.data) if args.data is not None else None
    if pictures is not None:
        from genieworld.data.video import prepare_frame

        prompts = np.stack([prepare_frame(f, genie.image_size) for f in pictures])
    else:
        prompts = random_prompts(store, args.prompts, args.seed, 0x6121D)
    n_prompts, samples = len(prompts), args.samples
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
    x = torch.from_numpy(prompts)[:, None].repeat_interleave(samples * a_n, 0)  # (P*S*A, 1, H, W, 3), prompt-major
    acts = torch.arange(a_n).repeat(n_prompts * samples)[:, None].expand(-1, args.steps).contiguous()
    with torch.no_grad():
        video = genie.rollout(x, acts, seed=args.seed, **overrides).numpy()  # (P*S*A, 1 + steps, ...)
    draws = video.reshape(n_prompts, samples, a_n, *video.shape[1:])
    grid = draws[:, 0]
    gm = grid_motion(grid, names)
    mv = gm["moves"]
    chosen = {}
    for d in ("left", "right", "up"):  # three different actions, one per direction
        free = [n for n in mv[d] if n not in chosen.values()]
        if free:
            chosen[d] = free[0]
    out = {"bench": "grid", "model": args.model, "true_actions": args.true_actions, "data": args.data,
           "prompts": n_prompts, "steps": args.steps, "sampling": overrides, "seed": args.seed, "grid": gm,
           "target": "three different actions move the view left, right and up in >= 3 prompts each",
           "target_actions": chosen, "target_met": len(chosen) == 3}
    if files is not None or samples > 1:
        labels = [f["file"] for f in files] if files is not None else [f"store frame {i}" for i in range(n_prompts)]
        per = per_prompt_motion(draws, names, labels)
        out.update(prompt_files=files, samples=samples,
                   key_actions=key_action_summary(per, key_actions(names, args.model)), per_prompt=per)
    out.update(real=None if args.no_real else real_reference(store, args.steps, args.prompts, args.seed),
               seconds=round(time.perf_counter() - t0, 1), device=device_info())
    emit_json(out, args.out, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

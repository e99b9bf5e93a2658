"""Does a jump come back down? The view's vertical path after a jump, in the model and in the game. Prints JSON.

    python bench/bench_jump_arc.py --model models/coinrun-cpu --data runs/cpu/data/test

A player presses the up arrow (the model's jump action, as the play page binds it) for ``--jump``
play steps, then either the stay key for ``--after`` steps ("up, then stay") or the down arrow (the
action ``genie actions name`` calls Fall) for half of them and stay for the rest ("up, then down").
Where the model has gravity (``genieworld.controls``, on in ``genie play``), the first plan is also
played as the play page plays it ("up, then stay, with gravity"), and so is the up arrow held
throughout ("up held, with gravity").
From ``--prompts`` real held-out frames (random episodes and times, ``--seed``), each plan is played at
the model's play settings and the view's step-to-step vertical shift is measured
(``genieworld.eval.motion.frame_shifts``; +y is down).

The real game is the reference: every stretch of the store where a jumping effective action is held
for ``--jump`` recorded steps, the view rising on the first, followed by ``--after`` steps without a
jump. In CoinRun the view rises, then falls back by itself; a world whose latent actions say how the
view moves (rise, fall, hold) only comes back down when a falling action is played. ``falls`` says how
each latent moves the view on the store, what share of the falls the latents named Fall carry, and
which real actions the falls happened under.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import device_info, emit_json, random_prompts  # noqa: E402

BACK_PX = 4  # a path "came back" when its net vertical shift is within this many pixels


def path_summary(dy_rs: np.ndarray) -> dict:
    """Mean vertical shift per step, mean net shift, and the share of paths that came back (|net| <= BACK_PX)."""
    net = dy_rs.sum(1)
    return {"paths": int(len(dy_rs)), "mean_dy_per_step": [round(float(v), 2) for v in dy_rs.mean(0)],
            "mean_net_dy": round(float(net.mean()), 2), "came_back": round(float((np.abs(net) <= BACK_PX).mean()), 3)}


def real_arcs(store, jump: int, after: int) -> dict:
    """Vertical paths of the recorded game: ``jump`` steps of a jumping action (the view rising on the
    first), then ``after`` steps without a jump."""
    from genieworld.data.coinrun import effective_action
    from genieworld.eval.motion import frame_shifts

    jumping = {1, 3, 5}  # Left+Jump, Jump, Right+Jump (effective_action ids)
    paths = []
    for i in range(store.num_episodes):
        acts = store.read_actions(i)
        if acts is None:
            return {"skipped": "the store has no recorded actions"}
        frames = store.read_frames(i)
        if len(frames) < jump + after + 2:
            continue
        a = effective_action(acts)
        dy = frame_shifts(frames[:-1], frames[1:], 8, 16)[0][:, 1]
        for t in range(1, len(a) - jump - after + 1):
            held = all(int(x) in jumping for x in a[t:t + jump])
            then = all(int(x) not in jumping and x >= 0 for x in a[t + jump:t + jump + after])
            if held and then and int(a[t - 1]) not in jumping and dy[t] <= -2:
                paths.append(dy[t:t + jump + after])
    return path_summary(np.asarray(paths)) if paths else {"paths": 0}


def falls_table(genie, store) -> dict:
    """How each latent moves the view on the store (``actions.latent_statistics``, every transition), the
    share of all falls (view down by >= MIN_PIXELS) that the latents named Fall carry, and the real
    effective actions of the falls."""
    from genieworld.actions import falls, latent_statistics
    from genieworld.data.coinrun import EFFECTIVE_NAMES, effective_action
    from genieworld.eval.motion import MIN_PIXELS, frame_shifts

    labelled = [i for i in range(store.num_episodes) if store.episode_length(i) >= 2
                and store.read_actions(i) is not None]
    motion = latent_statistics(genie, store, labelled, num_true=15, window=16, motion_max=10**9).motion
    down = np.array([m["transitions"] * m["down"] for m in motion])
    named_fall = np.array([falls(m) for m in motion])
    real = np.zeros(len(EFFECTIVE_NAMES))
    for i in labelled:
        frames, acts = store.read_frames(i), effective_action(store.read_actions(i))
        dy = frame_shifts(frames[:-1], frames[1:])[0][:, 1]
        fell = (dy >= MIN_PIXELS) & (acts >= 0)
        np.add.at(real, acts[fell], 1)
    names = list(genie.action_names)
    return {"latents": [{"name": names[m["latent"]], **m} for m in motion],
            "falls_by_fall_latents": round(float(down[named_fall].sum() / max(down.sum(), 1)), 3),
            "real_actions_of_falls": {n: round(float(c / max(real.sum(), 1)), 3) for n, c in zip(EFFECTIVE_NAMES, real)}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="model folder (genie.json, actions.json)")
    ap.add_argument("--data", required=True, help="held-out CoinRun store (prompts, and the real reference)")
    ap.add_argument("--prompts", type=int, default=16, help="real prompt frames (default 16)")
    ap.add_argument("--jump", type=int, default=2, help="play steps the jump is held (default 2)")
    ap.add_argument("--after", type=int, default=4, help="play steps after the jump (default 4)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args(argv)
    if args.prompts < 1 or args.jump < 1 or args.after < 2:
        raise SystemExit("need --prompts >= 1, --jump >= 1 and --after >= 2")

    import torch

    torch.set_num_threads(args.threads)
    from genieworld.actions import default_key_map, load_gravity, load_jump_action
    from genieworld.data.store import EpisodeStore
    from genieworld.eval.motion import frame_shifts
    from genieworld.genie import Genie

    t0 = time.perf_counter()
    genie = Genie.from_pretrained(args.model)
    names = list(genie.action_names)
    keys = default_key_map(names, jump=load_jump_action(args.model, genie.num_actions))
    up, down = keys.get("ArrowUp"), keys.get("ArrowDown")
    stay = next((i for i, n in enumerate(names) if n.lower() == "stay"), None)
    if up is None or stay is None:
        raise SystemExit(f"{args.model}: needs a jump action (up arrow) and a Stay action; names {names}")
    store = EpisodeStore(args.data)
    prompts = random_prompts(store, args.prompts, args.seed, 0xA5C)
    fall_steps = args.after // 2
    pressed = {"up, then stay": [up] * args.jump + [stay] * args.after}
    if down is not None and down != stay:
        pressed["up, then down"] = [up] * args.jump + [down] * fall_steps + [stay] * (args.after - fall_steps)
    plans = dict(pressed)
    gravity = load_gravity(args.model, genie.num_actions)
    if gravity is not None:  # what `genie play` plays for the same presses (it depends on the presses alone)
        plans["up, then stay, with gravity"] = gravity.play(pressed["up, then stay"])
        plans["up held, with gravity"] = gravity.play([up] * (args.jump + args.after))
    model = {}
    for label, plan in plans.items():
        acts = torch.tensor([plan] * args.prompts)
        with torch.no_grad():
            video = genie.rollout(torch.from_numpy(prompts)[:, None], acts, seed=args.seed,
                                  **genie.play_overrides()).numpy()
        shape = video.shape[2:]
        dy = frame_shifts(video[:, :-1].reshape(-1, *shape), video[:, 1:].reshape(-1, *shape), 8, 16)[0][:, 1]
        model[label] = {"plan": [names[a] for a in plan], **path_summary(dy.reshape(args.prompts, -1))}
    keys_used = {"up": names[up], "down": None if down is None else names[down], "stay": names[stay]}
    out = {"bench": "jump_arc", "model": args.model, "data": args.data, "prompts": args.prompts,
           "jump": args.jump, "after": args.after, "keys": keys_used,
           "model_paths": model, "real": real_arcs(store, args.jump, args.after), "back_px": BACK_PX,
           "falls": falls_table(genie, store),
           "seconds": round(time.perf_counter() - t0, 1), "device": device_info()}
    emit_json(out, args.out, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

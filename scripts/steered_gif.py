"""Write an animated GIF of a model steered by named actions: `python scripts/steered_gif.py MODEL OUT.gif`.

    python scripts/steered_gif.py models/coinrun-cpu docs/steered.gif --plan Left:6,Right:6,Up:2,Down:2
    python scripts/steered_gif.py models/coinrun-cpu docs/steered.gif --prompt prompt-03 --seed 1

The prompt is one of the model's own prompt frames (MODEL/prompts/NAME.png, the first by default).
Each plan entry is ACTION:FRAMES, ACTION a name from MODEL/actions.json, a latent action id, or an
arrow (Up, Down, Left, Right: the action the play page binds to that key).
Frames are upscaled 4x (nearest) with the action's name written under each frame.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def parse_plan(plan: str, names: list[str], keys: dict[str, int] | None = None) -> list[int]:
    """Action ids of ``ACTION:FRAMES,...``; ACTION is a name, a latent id, or an arrow (Up, Down, Left,
    Right) meaning the action the play page binds to that arrow key (``keys``, :func:`default_key_map`)."""
    acts = []
    arrows = {k[len("Arrow"):].lower(): a for k, a in (keys or {}).items() if k.startswith("Arrow")}
    lookup = {**arrows, **{n.lower(): i for i, n in enumerate(names)}}
    for part in plan.split(","):
        name, _, count = part.partition(":")
        key = name.strip().lower()
        if key in lookup:
            a = lookup[key]
        elif key.isdigit() and int(key) < len(names):
            a = int(key)
        else:
            raise SystemExit(f"--plan: unknown action {name!r}; this model has {names}")
        acts += [a] * int(count or 1)
    return acts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--plan", default="Stay:2,Left:4,Right:4,Up:2,Down:2,Stay:2",
                    help="ACTION:FRAMES,... (default: %(default)s; Up and Down are the play page's arrow keys)")
    ap.add_argument("--prompt", help="a prompt file name in MODEL/prompts (default: the first)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--fps", type=float, default=4.0)
    ap.add_argument("--no-gravity", dest="gravity", action="store_false",
                    help="play every entry as given; by default a press plays a fall where `genie play` would "
                         "(genieworld.controls), and the frame's label says 'Stay -> Fall'")
    args = ap.parse_args(argv)

    import numpy as np
    import torch
    from PIL import Image, ImageDraw

    from genieworld.genie import Genie

    torch.set_num_threads(1)
    genie = Genie.from_pretrained(args.model)
    prompts = sorted((Path(args.model) / "prompts").glob("*.png"))
    if args.prompt:
        prompts = [p for p in prompts if p.stem == args.prompt or p.name == args.prompt]
    if not prompts:
        raise SystemExit(f"{args.model}/prompts: no prompt frame {args.prompt or ''}")
    from genieworld.actions import default_key_map, load_gravity, load_jump_action

    names = genie.action_names
    keys = default_key_map(names, jump=load_jump_action(args.model, genie.num_actions))
    acts = parse_plan(args.plan, names, keys)
    gravity = load_gravity(args.model, genie.num_actions) if args.gravity else None
    played = acts if gravity is None else gravity.play(acts)
    world = genie.world(str(prompts[0]), seed=args.seed, **genie.play_overrides())
    frames = [(world.frames[-1][0], "prompt")]
    for a, p in zip(acts, played):
        frames.append((world.step(p), names[a] if p == a else f"{names[a]} -> {names[p]}"))
    out = []
    for img, label in frames:
        big = Image.fromarray(np.asarray(img)).resize((img.shape[1] * args.scale, img.shape[0] * args.scale),
                                                      Image.NEAREST)
        canvas = Image.new("RGB", (big.width, big.height + 18), (0, 0, 0))
        canvas.paste(big, (0, 0))
        ImageDraw.Draw(canvas).text((4, big.height + 3), label, fill=(255, 255, 255))
        out.append(canvas)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    out[0].save(args.out, save_all=True, append_images=out[1:], duration=int(1000 / args.fps), loop=0)
    print(f"wrote {args.out}: {len(out)} frames from {prompts[0].name}, plan {args.plan}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

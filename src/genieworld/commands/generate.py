"""``genie generate MODEL --prompt IMAGE --actions 0,3,3,1 --out rollout.gif|mp4``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from genieworld.errors import UserError

HELP = """\
Generate a video from one prompt image and a sequence of latent actions.

The prompt is resized to the model resolution (centre crop, as at ingestion) and
tokenized; each action then produces one new frame with MaskGIT sampling in token
space (paper section 2.2). The output starts with the tokenizer's reconstruction of
the prompt. Actions are integers in [0, number of latent actions) or, when the model
has named actions (actions.json), their names.

examples:
  genie generate runs/world/model --prompt shot.png --actions 0,3,3,1 --out rollout.gif
  genie generate runs/world/model --prompt shot.png --actions 2,2,2,2,2 --out run.mp4 --seed 7 --scale 8
"""


def register(sub) -> None:
    p = sub.add_parser("generate", help="generate a GIF/MP4 from a prompt image and latent actions",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL", help="model directory (RUN/model from `genie train dynamics`, or RUN)")
    p.add_argument("--prompt", required=True, help="prompt image (PNG, JPEG, GIF first frame, ...)")
    p.add_argument("--actions", required=True, help="comma-separated latent actions, e.g. 0,3,3,1")
    p.add_argument("--out", required=True, help="output file: .gif (Pillow) or .mp4 (H.264)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--steps", type=int, help="MaskGIT steps per frame (default: the model's, 25 in the paper)")
    p.add_argument("--temperature", type=float, help="sampling temperature, 0 = greedy (default: the model's)")
    p.add_argument("--order", choices=("confidence", "random"),
                   help="MaskGIT unmasking order: confidence or random (default: the model's)")
    p.add_argument("--scale", type=int, default=4, help="nearest-neighbour upscaling factor of the output (default 4)")
    p.add_argument("--fps", type=float, default=10.0, help="output frame rate (default 10, as in the paper)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: cuda when available)")
    p.set_defaults(func=run_generate)


def parse_actions(text: str, num_actions: int, names: list[str] | None = None) -> list[int]:
    """``"0,3,3,1"`` (or action names) -> [0, 3, 3, 1]; UserError for anything outside the codebook."""
    items = [t.strip() for t in str(text).split(",")]
    if not items or any(t == "" for t in items):
        raise UserError(f"--actions {text!r}: expected comma-separated integers like 0,3,3,1")
    lookup = {n: i for i, n in enumerate(names or [])}
    out = []
    for t in items:
        try:
            a = int(t)
        except ValueError:
            if t in lookup:
                a = lookup[t]
            else:
                custom = bool(names) and list(names) != [str(i) for i in range(num_actions)]
                known = f" or one of the names {list(names)}" if custom else ""
                raise UserError(f"--actions: {t!r} is not an action; use integers 0..{num_actions - 1}{known}") from None
        if not 0 <= a < num_actions:
            raise UserError(f"--actions: action {a} is outside the codebook; this model has {num_actions} "
                            f"latent actions (0..{num_actions - 1})")
        out.append(a)
    return out


def _device(name: str):
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r}: not a device (cpu, cuda, cuda:N or auto)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine")
    return dev


def run_generate(args) -> int:
    out = Path(args.out)
    kind = out.suffix.lower()
    if kind not in (".gif", ".mp4"):
        raise UserError(f"--out {out}: the file name must end in .gif or .mp4")
    if args.scale < 1:
        raise UserError(f"--scale must be a positive integer, got {args.scale}")
    if args.steps is not None and args.steps < 1:
        raise UserError(f"--steps must be >= 1, got {args.steps}")
    if args.temperature is not None and args.temperature < 0:
        raise UserError(f"--temperature must be >= 0, got {args.temperature}")
    if not args.fps > 0:
        raise UserError(f"--fps must be positive, got {args.fps}")
    if not out.parent.exists():
        raise UserError(f"--out {out}: folder {out.parent} does not exist")

    from genieworld.genie import Genie, ModelDirError

    try:
        genie = Genie.from_pretrained(args.model, device=_device(args.device))
    except ModelDirError as e:
        raise UserError(f"MODEL {args.model}: {e}") from None
    actions = parse_actions(args.actions, genie.num_actions, genie.action_names)
    try:
        prompt = genie.prepare_prompt(args.prompt)
    except ValueError as e:
        raise UserError(f"--prompt {args.prompt}: {e}") from None
    overrides = {"maskgit_steps": args.steps, "temperature": args.temperature, "order": args.order}
    import torch

    video = genie.rollout(prompt[None], torch.tensor([actions]), seed=args.seed,
                          **{k: v for k, v in overrides.items() if v is not None})[0].numpy()
    from genieworld.media import upscale, write_gif, write_mp4

    video = upscale(video, args.scale)
    tmp = out.with_name(f".{out.name}.tmp{kind}")
    try:
        (write_gif if kind == ".gif" else write_mp4)(video, tmp, args.fps)
        os.replace(tmp, out)
    except (OSError, RuntimeError) as e:
        from genieworld.utils import disk_full_message, is_disk_full

        if is_disk_full(e):
            raise UserError(disk_full_message(out, int(video.nbytes // 10))) from None
        raise
    finally:
        if tmp.exists():
            tmp.unlink()
    print(out)
    return 0

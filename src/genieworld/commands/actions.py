"""``genie actions name MODEL --data DIR``: name latent actions after ground-truth actions."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from genieworld.errors import UserError

ACTIONS_HELP = "Inspect and name a model's latent actions. See `genie actions name --help`."

NAME_HELP = """\
Name each latent action after the real action it most often co-occurs with.

Genie learns its actions from video alone, so a trained model knows them only
as 0..N-1. Given episodes that *do* record the real actions (stores made by
`genie data coinrun` or `genie data atari`), this infers the latent action of
every transition with the model's latent action model, counts how often each
latent action coincides with each real action, and names latent action i after
its most frequent real action. The confidence of a name is that fraction
(1.0 = the latent action always coincided with it). If two latent actions pick
the same real action, the less confident one is called NAME#2.

It also measures how each latent action moves the view (the whole-pixel shift
between the two frames of each transition). A latent action whose transitions
mostly move the view down is named Fall (Fall Left, Fall Right when it also
drifts sideways), whatever key it coincides with: in a platformer the player
falls whatever is held, and such an action plays as a fall. --no-motion names
by the real actions alone.

The result is written atomically to MODEL/actions.json; `genie play` and
genieworld.Genie show these names. Real action names: Procgen/CoinRun's 15
button combinations (LEFT-DOWN, LEFT, LEFT-UP, DOWN, NOOP, UP, RIGHT-DOWN,
RIGHT, RIGHT-UP, D, A, W, S, Q, E), Atari's get_action_meanings() as recorded
by `genie data atari`, otherwise numbers.

Without ground-truth actions in DIR nothing is written and the command exits
with status 2 (the actions stay numbered).

example:
  genie data coinrun data/coinrun-test --levels 20 --start-level 100000
  genie actions name runs/world/model --data data/coinrun-test --episodes 50
"""


def register(sub) -> None:
    p = sub.add_parser("actions", help="name a model's latent actions", description=ACTIONS_HELP)
    asub = p.add_subparsers(dest="actions_command", metavar="SUBCOMMAND")
    pn = asub.add_parser("name", help="name latent actions from episodes with ground-truth actions",
                         description=NAME_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    pn.add_argument("model", metavar="MODEL", help="model directory (RUN/model)")
    pn.add_argument("--data", required=True, metavar="DIR", help="episode store with ground-truth actions")
    pn.add_argument("--episodes", type=int, help="use at most this many labelled episodes (default: all)")
    pn.add_argument("--window", type=int, default=16, help="frames per inference window (default 16, capped by the model)")
    pn.add_argument("--batch-size", type=int, default=8, help="windows per inference batch (default 8)")
    pn.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    pn.add_argument("--no-motion", dest="motion", action="store_false",
                    help="name by the real actions alone: no view motion, no Fall names")
    pn.set_defaults(func=run_name)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_name(args) -> int:
    from genieworld.actions import name_latent_actions
    from genieworld.utils import default_device

    model = Path(args.model)
    if not model.is_dir():
        raise UserError(f"{model}: not a model directory")
    if not Path(args.data).is_dir():
        raise UserError(f"--data {args.data}: not a folder")
    if args.batch_size < 1:
        raise UserError("--batch-size must be >= 1")
    data = name_latent_actions(model, args.data, episodes=args.episodes, window=args.window,
                               batch_size=args.batch_size, device=args.device or str(default_device()),
                               motion=args.motion)
    src = data["source"]
    print(f"{src['transitions']} transitions from {src['episodes']} labelled episodes "
          f"({src['store_source'] or 'unknown source'})", file=sys.stderr)
    width = max(len(m["name"]) for m in data["mapping"])
    moves = data.get("motion") or [None] * len(data["mapping"])
    for m, mv in zip(data["mapping"], moves):
        real = "-" if m["true_action"] is None else src["true_action_names"][m["true_action"]]
        view = "" if not mv or not mv["transitions"] else (
            f"; view {mv['dx']:+.1f}, {mv['dy']:+.1f} px a step, down in {mv['down']:.0%}, up in {mv['up']:.0%}")
        print(f"  latent {m['latent']:>2} -> {m['name']:<{width}}  (real action {real}, "
              f"confidence {m['confidence']:.2f}, {m['count']} transitions{view})", file=sys.stderr)
    print(json.dumps({"actions_json": data["path"], "names": data["names"]}))
    return 0

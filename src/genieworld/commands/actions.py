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

A store without ground-truth actions (your own videos, `genie data ingest`)
names each latent action by how it moves the view alone: Left, Right, Up
(Left+Up, Right+Up), Fall or Stay, each where at least half of its
transitions move that way (numbered #2, #3 when several do). With --no-motion
there is then nothing to name by: nothing is written and the command exits with
status 2. For a Procgen store the names are the game's measured effective
actions (CoinRun: Left, Jump, Right+Jump, ...; Ninja: Left, Up, Fire(A), ...).

With --judge-data, an independent reader names each latent too: the action judge
(genieworld.eval.judge, trained on real frames with their recorded actions) reads
the frames the model generates while the latent is held, and its majority reading
(Left, Right+Jump, Stay, ...) is printed beside the name; names that disagree are
marked. actions.json keeps them as "judge_names". With --judge-names as well, the
buttons are named after that reading instead: what a player sees a button do is
what it is called (a latent that falls stays Fall and takes the direction the
judge reads, Fall Left or Fall Right; the judge knows no falls). The names by
co-occurrence stay in actions.json's mapping as "counts_name".

example:
  genie data coinrun data/coinrun-test --levels 20 --start-level 100000
  genie actions name runs/world/model --data data/coinrun-test --episodes 50
  genie actions name runs/world/model --data data/coinrun-test --judge-data data/coinrun
  genie actions name runs/world/model --data data/coinrun --judge-data data/coinrun --judge-names
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
    pn.add_argument("--judge-data", metavar="STORE",
                    help="also hold each latent 8 steps from 24 prompts of --data and let the action judge (a "
                         "supervised IDM trained on STORE's real frames, cached in MODEL/judge) read the frames: "
                         "shown beside each name and kept in actions.json as judge_names")
    pn.add_argument("--judge-names", action="store_true",
                    help="with --judge-data: name the buttons after what the judge reads (Fall latents keep Fall "
                         "and take its direction); the names by co-occurrence are kept as counts_name")
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
    if args.judge_names and not args.judge_data:
        raise UserError("--judge-names needs --judge-data STORE (the store the action judge is trained on)")
    data = name_latent_actions(model, args.data, episodes=args.episodes, window=args.window,
                               batch_size=args.batch_size, device=args.device or str(default_device()),
                               motion=args.motion)
    judge_names = None
    if args.judge_data:
        judge_names = _judge_names(Path(data["path"]).parent, args)
        data = _write_judge_names(Path(data["path"]), judge_names, rename=args.judge_names)
    src = data["source"]
    from_motion = src.get("named_from") == "motion"
    print(f"{src['transitions']} transitions from {src['episodes']} "
          f"{'episodes without recorded actions: named by how each moves the view' if from_motion else 'labelled episodes'} "
          f"({src['store_source'] or 'unknown source'})", file=sys.stderr)
    width = max(len(m["name"]) for m in data["mapping"])
    moves = data.get("motion") or [None] * len(data["mapping"])
    for m, mv in zip(data["mapping"], moves):
        real = "-" if m["true_action"] is None or m["true_action"] < 0 else src["true_action_names"][m["true_action"]]
        view = "" if not mv or not mv["transitions"] else (
            f"; view {mv['dx']:+.1f}, {mv['dy']:+.1f} px a step, down in {mv['down']:.0%}, up in {mv['up']:.0%}")
        judge = ""
        if judge_names:  # read with the names by co-occurrence, so its "agrees" is theirs
            j = judge_names[m["latent"]]
            judge = f"; judge reads {j['judge_name']}" + (
                "" if j["agrees"] or args.judge_names else f" (DISAGREES with {j['name']})")
        what = "" if from_motion else f"real action {real}, "
        if "counts_name" in m and m["counts_name"] != m["name"]:
            what = f"by co-occurrence {m['counts_name']}, {what}"
        print(f"  latent {m['latent']:>2} -> {m['name']:<{width}}  ({what}"
              f"confidence {m['confidence']:.2f}, {m['count']} transitions{view}{judge})", file=sys.stderr)
    print(json.dumps({"actions_json": data["path"], "names": data["names"]}))
    return 0


def _judge_names(model: Path, args) -> list[dict]:
    """Per latent, what the action judge reads when it is held; ``model``: the model folder itself (RUN/model
    for a training run)."""
    from genieworld.data.store import EpisodeStore
    from genieworld.eval.judge import load_or_train_judge
    from genieworld.eval.play_quality import action_following, real_clips
    from genieworld.genie import Genie

    store = EpisodeStore(args.data)
    try:
        judge, _ = load_or_train_judge(model / "judge", EpisodeStore(args.judge_data), store)
    except ValueError as e:  # no recorded actions, another frame size, ...
        raise UserError(f"--judge-data {args.judge_data}: {e}") from None
    genie = Genie.from_pretrained(model)
    try:
        prompts = real_clips(store, 24, 16, seed=0, sets=1)[0][:, 8]
    except ValueError as e:
        raise UserError(f"--data {args.data}: {e}") from None
    per = action_following(genie, judge, prompts, list(genie.action_names), hold_steps=8)
    return sorted(({"latent": v["latent"], "name": k, **{f: v[f] for f in ("judge_name", "judge_direction",
                                                                            "judge_jump", "agrees")}}
                   for k, v in per.items()), key=lambda d: d["latent"])


def _write_judge_names(path: Path, judge_names: list[dict], rename: bool) -> dict:
    """Keep the judge's readings in ``path`` (MODEL/actions.json) as ``judge_names`` and, with ``rename``,
    name the buttons after them; one rewrite of the file. Returns what was written plus ``"path"``."""
    from genieworld.actions import names_from_judge, write_actions_json
    from genieworld.utils import read_json

    data = read_json(path)
    data["judge_names"] = judge_names
    if rename:
        data["names"], data["mapping"] = names_from_judge(data["mapping"], judge_names)
        data["source"]["named_by"] = "judge"
    write_actions_json(path.parent, data)
    return {**data, "path": str(path)}

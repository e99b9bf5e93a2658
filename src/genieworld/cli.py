"""The ``genie`` command line.

Each area registers its own subcommand from ``genieworld/commands/<area>.py``
(a ``register(subparsers)`` function), so this file stays a thin dispatcher.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from genieworld.errors import UserError

COMMAND_MODULES = ["train", "data", "generate", "eval", "play", "actions", "recipe", "weights"]

DESCRIPTION = """\
genieworld: turn unlabelled gameplay video into a world you can play (Genie, Bruce et al. 2024).

Typical flow:
  genie data coinrun data/coinrun --levels 200            # record CoinRun with a random policy
  genie train tokenizer --data data/coinrun --out runs/tok --preset cpu
  genie train dynamics  --data data/coinrun --tokenizer runs/tok --out runs/world --preset cpu
  genie generate runs/world/model --prompt shot.png --actions 0,1,1,2 --out rollout.gif
  genie play runs/world/model                             # play in the browser

Run `genie COMMAND --help` for the details of each command.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genie", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    from genieworld import __version__

    parser.add_argument("--version", action="version", version=f"genieworld {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(f"genieworld.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"genieworld.commands.{name}":
                continue  # that area is not installed in this build
            raise
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except UserError as e:  # clean one-line errors for bad input
        print(f"genie: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

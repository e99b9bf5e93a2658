"""The ``genie`` command line.

Each area registers its own subcommand from ``genieworld/commands/<area>.py``
(a ``register(subparsers)`` function), so this file stays a thin dispatcher.

It is also the error boundary of every command (:func:`main`): an expected failure -- a
:class:`~genieworld.errors.UserError` (bad arguments, a damaged or refused file, a config out of
bounds, a store that does not verify), a file-system error, a file that is not text or nested too
deeply, running out of memory -- is printed as one line ``genie: error: ...`` and exits 2; anything
else is a bug, printed as one line that points to ``--debug`` (exit 1).  ``--debug`` (anywhere on
the command line, or ``GENIE_DEBUG=1``) prints the traceback as well.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import traceback

from genieworld.errors import UserError

COMMAND_MODULES = ["train", "data", "generate", "eval", "play", "actions", "recipe", "weights", "agent"]

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
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback of an error too (also accepted after the command)")
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


def _one_line(text: str, limit: int = 2000) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[:limit - 3] + "..."


def expected_error(e: BaseException) -> str | None:
    """The one-line message of an expected failure, or None when ``e`` is unexpected (a bug)."""
    if isinstance(e, UserError):
        return str(e)
    if isinstance(e, OSError) and e.filename is not None:  # missing file, permission, full disk, ...
        return f"{e.filename}: {e.strerror or e}"
    if isinstance(e, UnicodeDecodeError):
        return f"input is not UTF-8 text ({e.reason} at byte {e.start})"
    if isinstance(e, json.JSONDecodeError):
        return f"input is not valid JSON ({e})"
    if isinstance(e, RecursionError):
        return "input nested too deeply"
    if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError":
        return f"out of memory ({_one_line(e, 200) or 'MemoryError'}); try a smaller batch or model"
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    debug = "--debug" in argv[:cut] or os.environ.get("GENIE_DEBUG", "") not in ("", "0")
    argv = [a for i, a in enumerate(argv) if not (a == "--debug" and i < cut)]
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
    except Exception as e:  # the error boundary (module docstring)
        if debug:
            traceback.print_exc(file=sys.stderr)
        msg = expected_error(e)
        if msg is not None:
            print(f"genie: error: {_one_line(msg)}", file=sys.stderr)
            return 2
        where = "" if debug else "; run again with --debug for the traceback"
        print(f"genie: error: unexpected {type(e).__name__}: {_one_line(e, 500)} (a bug{where})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

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


_I31 = 2**31 - 1  # Procgen and gym seeds are 32-bit
#: the allowed range of every numeric option of every command, by its dest: [lo, hi] (None = open).
#: :func:`check_numbers` applies it after parsing, with finiteness for every float option, so an option a
#: command forgot to check is refused in one line (exit 2) instead of failing deep inside the run.
OPTION_BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "action_guidance": (0, 100),
    "batch_size": (1, 1 << 16), "bc_steps": (1, 10**8), "checkpoint_every": (1, 10**9),
    "clips_per_episode": (1, 10**4), "crf": (0, 51), "data_fraction": (1e-9, 1), "dynamics_data_fraction": (1e-9, 1),
    "dynamics_steps": (1, 10**9), "envs": (1, 4096), "episodes": (1, 10**7), "epsilon": (0, 1),
    "eval_episodes": (1, 10**6), "eval_every": (0, 10**9), "eval_levels": (1, 10**7), "eval_seeds": (1, 10**4),
    "expert_steps": (1, 10**10), "fps": (1e-3, 1000), "frame_skip": (1, 64), "grad_accum": (1, 4096),
    "grid_prompts": (1, 1024), "hold": (1, 1000), "horizon": (1, 4096), "idle_timeout": (0, 7 * 86400),
    "image_fps": (1e-3, 1000), "lam_steps": (0, 10**9), "levels": (1, 10**7), "lr": (1e-12, 10),
    "maskgit_steps": (1, 256), "max_pending": (1, 1024), "max_sessions": (1, 1024), "max_steps": (1, 10**7),
    "max_upload_mb": (0.001, 1024), "min_frames": (1, 10**6), "num_labels": (1, 10**9), "num_workers": (0, 256),
    "play": (0, 10**5), "port": (0, 65535), "record_levels": (1, 10**7), "scale": (1, 64), "seed": (0, 2**63 - 1),
    "seeds": (1, 10**4), "seq_len": (2, 4096), "size": (8, 4096), "start_level": (0, _I31),
    "steps": (0, 10**10), "steps_per_episode": (1, 10**7), "steps_per_level": (1, 10**7), "sticky": (0, 1),
    "stop_after": (1, 10**10), "temperature": (0, 100), "test_levels": (1, 10**7), "threads": (1, 1024),
    "tokenizer_steps": (1, 10**9), "train_levels": (1, 10**7), "window": (1, 4096), "workers": (1, 256),
}


def check_numbers(args: argparse.Namespace) -> str | None:
    """The first numeric option out of its :data:`OPTION_BOUNDS` range or not finite, as a message; or None."""
    import math

    for dest, v in sorted(vars(args).items()):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        flag = "--" + dest.replace("_", "-")
        if isinstance(v, float) and not math.isfinite(v):
            return f"{flag}: {v} is not a finite number"
        lo, hi = OPTION_BOUNDS.get(dest, (None, None))
        if isinstance(v, int) and not -(2**63) <= v <= 2**63 - 1:
            return f"{flag}: {v} is out of range"
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            lo_s = "" if lo is None else (f"{lo:d}" if isinstance(lo, int) else f"{lo:g}")
            hi_s = "" if hi is None else (f"{hi:d}" if isinstance(hi, int) else f"{hi:g}")
            return f"{flag}: {v} is outside the allowed range [{lo_s}, {hi_s}]"
    if (getattr(args, "start_level", None) is not None and getattr(args, "levels", None) is not None
            and args.start_level + args.levels - 1 > _I31):
        return f"--start-level {args.start_level} + --levels {args.levels} passes the last level seed {_I31}"
    return None


def _one_line(text: str, limit: int = 2000) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[:limit - 3] + "..."


def expected_error(e: BaseException) -> str | None:
    """The one-line message of an expected failure, or None when ``e`` is unexpected (a bug)."""
    if isinstance(e, UserError):
        return str(e)
    from genieworld.utils import is_disk_full

    if is_disk_full(e):
        where = getattr(e, "filename", None) or "the output folder"
        return f"{where}: no space left on the device; nothing earlier was lost, free some space and run it again"
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
    bad = check_numbers(args)
    if bad is not None:
        print(f"genie: error: {bad}", file=sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `genie data info STORE | head`: the reader left; say nothing, as Unix tools do
        _quiet_stdout()
        return 141
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


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's flush at exit does not fail a second time on
    the closed pipe (the recipe of Python's documentation on SIGPIPE)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is not a file descriptor (a test's capture)
        pass


def _exit(rc: int) -> None:
    """Leave the process with ``rc``.  A torchrun worker leaves without running interpreter-exit
    destructors: with everything written (checkpoints and exports are atomic and fsync'ed, the process
    group destroyed), gloo's and DDP's C++ objects torn down at exit sometimes aborted a finished rank
    under load ("terminate called without an active exception", exit -6, a flaky test_distributed)."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    sys.exit(rc)


if __name__ == "__main__":
    _exit(main())

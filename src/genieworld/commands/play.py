"""``genie play MODEL``: serve a world in the browser (FastAPI + uvicorn)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from genieworld.errors import UserError

PLAY_HELP = """\
Play a trained world in your browser. Starts a small web server (FastAPI +
uvicorn) and prints its address; open it, pick a starting frame, and press keys
or the on-screen buttons: each press sends one latent action and the model
generates the next frame.

Starting frames: the page opens on the model's own prompt frames
(MODEL/prompts/*.png, small held-out game frames written with the model; see
genieworld.prompts), then frames of --data episodes, the neutral grey frame, or
an image you upload (PNG, JPEG, GIF, BMP, WebP, TIFF, resized like ingestion).

The page shows a button and a key for every action (names from
MODEL/actions.json, written by `genie actions name`, else numbers); click a key
in the table to rebind it (kept in the browser). Reset starts again from the
prompt; "mp4" / "GIF" download the frames since the last reset, encoded on the
server. The fps figure is the rate of frames over the last few seconds ("idle"
when no key was pressed for a while).

Gravity: a LAM names how the view moves, so a model can have latent actions
that rise (jumps) and others that fall (`genie actions name` calls them Fall).
When MODEL/actions.json says which latent actions usually follow two given ones
(its sequence_counts), a key plays a fall where the recorded game shows one
after what was just played: after a jump the world comes back down whatever key
is held, as in the game, and keeps falling while the frames show the player
coming down above where it stood. The page shows the action played. --no-gravity
plays every key as pressed.

Frames stream over a WebSocket as PNG images. Keys pressed faster than the model
generates are queued, at most 4 per session: when the queue is full a new key
replaces the newest queued one, so input lag stays bounded.

The server binds 127.0.0.1 (this machine only) by default. Binding another
address makes the model reachable by anyone on that network, with no
authentication: only do it on a network you trust.

examples:
  genie play runs/world/model
  genie play runs/world/model --data data/coinrun-test --port 8080
"""


def register(sub) -> None:
    p = sub.add_parser("play", help="play a world in the browser", description=PLAY_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL", help="model directory (RUN/model from `genie train dynamics`)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--data", metavar="DIR", help="episode store whose frames are offered as prompts (use held-out data)")
    p.add_argument("--max-sessions", type=int, default=8, help="concurrent players (default 8)")
    p.add_argument("--idle-timeout", type=float, default=300.0, help="seconds without input before a session is closed (default 300)")
    p.add_argument("--max-pending", type=int, default=4, help="queued key presses per session (default 4)")
    p.add_argument("--workers", type=int, default=2, help="frames generated in parallel, one per thread (default 2)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads on CPU (default: CPU cores / --workers, at least 1; more threads than "
                        "cores makes CPU generation many times slower)")
    p.add_argument("--max-upload-mb", type=float, default=8.0, help="largest accepted upload in MiB (default 8)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--no-gravity", dest="gravity", action="store_false",
                   help="play every key as pressed, never as a fall (see Gravity above)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="weights of the per-frame path (dynamics, tokenizer decoder): fp32 (default, the reference) "
                        "or bf16 (needs native bf16: avx512_bf16/AMX or a GPU; falls back to fp32 with a message)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the per-frame path before serving (about a minute at start on 2 CPU cores, "
                        "less once inductor's disk cache holds it; see bench/bench_play_speed.py for what it buys)")
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=run_play)


WARNING = """\
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
WARNING: genie play is binding {host}, which is not a loopback address.
Anyone who can reach this machine on port {port} can use the model and its
CPU/GPU. There is no authentication. Use --host 127.0.0.1 unless you mean it.
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"""


def build_config(args) -> "PlayConfig":
    from genieworld.play.server import PlayConfig

    for name in ("max_sessions", "max_pending", "workers"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1")
    if args.idle_timeout <= 0:
        raise UserError("--idle-timeout must be > 0")
    if not 0 < args.max_upload_mb <= 256:
        raise UserError("--max-upload-mb must be in (0, 256]")
    return PlayConfig(max_sessions=args.max_sessions, idle_timeout=args.idle_timeout, max_pending=args.max_pending,
                      workers=args.workers, max_upload_bytes=int(args.max_upload_mb * (1 << 20)),
                      gravity=args.gravity)


def prepare_play(genie, precision: str = "fp32", compile: bool = False, log=None) -> None:
    """Set the per-frame path's precision (bf16 only where it is native: otherwise fp32, said in one line)
    and, with ``compile``, compile it and make a few frames so that the first player does not wait."""
    import time

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    if precision == "bf16":
        from genieworld.utils import bf16_supported

        if bf16_supported(genie.device):
            genie.set_play_precision("bf16")
        else:
            log(f"genie play: --precision bf16: no native bf16 on {genie.device}; playing in fp32")
    if compile:
        import numpy as np

        t0 = time.perf_counter()
        log("genie play: compiling the play step (about a minute on 2 CPU cores) ...")
        genie.compile_play()
        world = genie.world(np.zeros((genie.image_size, genie.image_size, 3), np.uint8), seed=0,
                            **genie.play_overrides())
        for k in range(genie.sampling.context_frames + 1):  # the first frame's graph, then the full window's
            world.step(k % genie.num_actions)
        log(f"genie play: compiled in {time.perf_counter() - t0:.0f} s")


def run_play(args) -> int:
    from genieworld.play.server import LOOPBACK_HOSTS, bind_socket, create_app, resolve_bind, serve, url_for

    if not 0 <= args.port <= 65535:
        raise UserError("--port must be in [0, 65535]")
    config = build_config(args)
    try:
        host, loopback = resolve_bind(args.host)
    except ValueError as e:
        raise UserError(str(e)) from None
    if args.data is not None and not Path(args.data).is_dir():
        raise UserError(f"--data {args.data}: not a folder")

    from genieworld.genie import Genie, ModelDirError, resolve_model_dir
    from genieworld.utils import default_device

    try:
        model = resolve_model_dir(args.model)  # MODEL, or a training RUN folder holding RUN/model
    except ModelDirError as e:
        raise UserError(str(e)) from None

    device = args.device or str(default_device())
    if args.threads is not None and args.threads < 1:
        raise UserError("--threads must be >= 1")
    if device == "cpu":
        import os

        import torch

        torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // config.workers))
    try:
        genie = Genie.from_pretrained(model, device=device)
    except ModelDirError as e:
        raise UserError(str(e)) from None
    prepare_play(genie, args.precision, args.compile)
    config.allowed_hosts = LOOPBACK_HOSTS if loopback else None
    try:
        app = create_app(genie, model_dir=model, data_dir=args.data, config=config, model_name=model.resolve().name
                         if model.name != "model" else model.resolve().parent.name)
    except (ValueError, OSError) as e:
        raise UserError(f"--data {args.data}: {e}") from None
    try:
        sock = bind_socket(host, args.port)
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{args.port}: {e.strerror or e}") from None
    port = sock.getsockname()[1]
    if not loopback:
        print(WARNING.format(host=host, port=port), file=sys.stderr, flush=True)
    url = url_for(host, port)
    names = ", ".join(app.state.play.action_names)
    print(f"genie play: {model} ({genie.num_actions} actions: {names})", flush=True)
    if app.state.play.gravity is not None:
        print("genie play: gravity on: after a jump a key plays the fall the recordings show (--no-gravity: off)",
              flush=True)
    print(f"genie play: open {url}   (Ctrl-C to stop)", flush=True)
    try:
        serve(app, sock, config, log_level=args.log_level)
    finally:
        sock.close()
    return 0

"""``genie data info|coinrun|procgen|atari|ingest|export``: build and inspect episode stores."""

from __future__ import annotations

import argparse
import json
import sys

from genieworld.errors import UserError

DATA_HELP = """\
Build and inspect episode stores: folders of sharded, compressed, checksummed
video episodes (uint8 RGB at one resolution, optional ground-truth actions kept
for evaluation only) that `genie train` reads.

  genie data coinrun data/coinrun                 # Procgen CoinRun, random policy (paper App. F)
  genie data procgen ninja data/ninja             # any of the 16 Procgen games (--list names them)
  genie data atari Pong data/pong                 # an Atari game, random policy
  genie data ingest ~/videos data/mine            # any videos / numbered-image folders
  genie data export data/coinrun videos/coinrun   # a store's episodes as MP4 files
  genie data merge data/games data/ninja data/climber   # one store of several (many games)
  genie data info data/coinrun --verify           # JSON summary, checksum every shard

Generation and ingestion resume where they stopped when rerun with the same
arguments (finished levels / episodes / files are recorded in the manifest).
"""

INFO_HELP = """\
Print a JSON summary of an episode store: episodes, frames, resolution, fps,
whether ground-truth actions exist, bytes on disk (and per frame), shards.

With --verify every shard's size and sha256 are checked against the manifest,
and each shard's own index against the manifest's episodes (lengths, chunks,
actions); the command exits with status 1 and names each bad shard on stderr if
any is corrupt, missing or disagrees (status 2 if DIR is not a store).

example:
  genie data info data/coinrun --verify
"""

COINRUN_HELP = """\
Record Procgen CoinRun with a uniformly random policy over the 15 Procgen
actions, no action repeats, 64x64 frames, one environment per level seed
(num_levels=1, start_level=level) -- the recipe of the Genie paper, Appendix F.
Each level runs for --steps-per-level environment steps, split into episodes at
game resets (a transition across a reset is not a transition). Episodes carry
the level seed; the manifest records the level range, so use disjoint ranges for
training and held-out test data (e.g. --start-level 100000 for a test set).

--frame-skip K (not in the paper) holds each random action for K game steps and
records every K-th frame; --steps-per-level then counts recorded transitions. At
K=1 one step of CoinRun's random agent barely shows its action: from the same
state, the frames five different actions lead to differ by 42 dB PSNR on average
(K=4: 31.5 dB; measured at commit f029ad5). The cpu recipe uses K=4.

Defaults (100 levels x 1000 steps = 100k frames, ~105 MB) take well under a
minute on one core. The paper's dataset is --levels 10000 --steps-per-level 1000
(10M transitions, ~11 GB). Rerunning the same command resumes: levels already in
the store are skipped; a bigger --levels extends the store.

examples:
  genie data coinrun data/coinrun
  genie data coinrun data/coinrun-paper --levels 10000
  genie data coinrun data/coinrun-test --levels 100 --start-level 100000
  genie data coinrun data/coinrun-skip4 --levels 500 --steps-per-level 500 --frame-skip 4
"""

PROCGEN_HELP = """\
Record any of the 16 Procgen games the way `genie data coinrun` records CoinRun:
a random policy, 64x64 frames, one environment per level seed (num_levels=1,
start_level=level), --steps-per-level recorded transitions per level, episodes
split at game resets and tagged with their level seed. Same options as coinrun
(--mode, --frame-skip, --policy, --hold, --no-backgrounds; backgrounds on by
default, as the paper). `genie data procgen --list` names the games.

Procgen's 15 buttons mean the same in every game -- (left, none, right) x
(down, none, up) = ids 0..8, then the keys D, A, W, S, Q, E = ids 9..14 -- but
which of them differ depends on the game. The effective actions are measured,
not guessed: from 48 states on 4 levels each id is played for max(2, K) game
steps, and ids whose outcome frames are identical in every state form one class
(CoinRun 9: Down drops through crates; BigFish 9; FruitBot 4: Left, Stay, Right,
Fire(D)). The manifest's extra.procgen.effective_actions holds the classes, their
names and the map from the 15 recorded raw ids to classes (actions are recorded
for evaluation only). --policy hold draws uniformly over these classes (the
smallest raw id of each), each held a geometric number of recorded steps with
mean --hold; --policy uniform draws over all 15 ids every step (the paper).

Rerunning the same command resumes (levels already in the store are skipped; a
bigger --levels extends it); a store recorded with other settings or another
game is refused.

examples:
  genie data procgen --list
  genie data procgen ninja data/ninja --frame-skip 4 --policy hold
  genie data procgen bigfish data/bigfish-test --levels 20 --start-level 100000 --frame-skip 4 --policy hold
  genie data procgen starpilot data/starpilot --levels 500 --steps-per-level 500 --mode easy
"""

ATARI_HELP = """\
Record an Atari game (gymnasium + ale-py, ROMs ship with ale-py) with a
uniformly random policy over the game's minimal action set. ALE/<Game>-v5 with
frameskip 4 (15 frames per second of game time) and, unlike the v5 default, no
sticky actions (so the recorded action is the executed one; --sticky 0.25 for
the v5 default). Frames (210x160) are resized to --size with the same policy as
`genie data ingest` (centre crop to square + area resize; --fit pad letterboxes).
Each episode runs until the game ends or --steps-per-episode steps. Resumable.

examples:
  genie data atari Pong data/pong
  genie data atari Breakout data/breakout --episodes 50 --steps-per-episode 2000
"""

EXPORT_HELP = """\
Write each episode of a store as an H.264 MP4 (OUT/episode-NNNNNN.mp4) at the
store's frame rate: to watch a dataset in any player, or to test the path your
own videos take (`genie data ingest`) against the store they came from.
--scale upscales (nearest neighbour), as a screen capture would. --lossless
writes RGB H.264 at crf 0, which decodes to exactly the store's pixels (the
default, yuv420p at --crf 18, is what video files usually are, and blurs
colour at sharp edges). Rerunning skips the videos already written; nothing in
OUT is overwritten or deleted.

examples:
  genie data export data/coinrun videos/coinrun --episodes 20
  genie data export data/ninja videos/ninja --scale 4 --min-frames 16
  genie data export data/ninja videos/ninja-exact --lossless
  genie data ingest videos/ninja data/ninja-from-video --fps 3.75   # and back
"""

MERGE_HELP = """\
Copy every episode of several stores into one, OUT: a world of many games trains
on one store. Each episode's meta records the store it came from ("from") and its
game ("game", the source store's source, e.g. procgen:ninja). The stores must
share the frame size and frame rate. Ground-truth actions are kept when every
store records them with one meaning (one kind of source, or Procgen's 15 buttons,
which mean the same in every game), and dropped otherwise. Rerunning continues a
merge that was stopped; OUT is created, or must be a merge of the same stores.

examples:
  genie data procgen ninja data/ninja --levels 100 --frame-skip 4 --policy hold
  genie data procgen climber data/climber --levels 100 --frame-skip 4 --policy hold
  genie data merge data/games data/ninja data/climber
  genie train tokenizer --data data/games --preset cpu --out runs/games-tokenizer
"""

INGEST_HELP = """\
Turn videos into an episode store (no actions). Each SRC is a video file (mp4,
webm, mkv, avi, gif, mov, ...), a folder of numbered images (frame_2 before
frame_10; one episode per folder), or a folder searched recursively for both.

Frames are decoded with PyAV and resampled to --fps by timestamps (output frame
k shows the last source frame at or before k/fps, so a 3 s 30 fps clip gives 30
frames at 10 fps), then centre-cropped to a square and area-resized to --size
(--fit pad letterboxes instead of cropping). Image folders are taken to be at
--fps already unless --image-fps is given.

Missing, empty, unsupported, unreadable, truncated or too short (< --min-frames
after resampling) inputs are skipped; the report lists them with the reason and
is also written to OUT/ingest_report.json. Nothing is written outside OUT.
Rerunning resumes (sources already in the store are skipped).

examples:
  genie data ingest clip1.mp4 clip2.webm data/mine
  genie data ingest ~/gameplay/ data/gameplay --fps 10 --size 64
"""


def _fmt():
    return argparse.RawDescriptionHelpFormatter


def _add_recording_options(p) -> None:
    """The options ``genie data coinrun`` and ``genie data procgen`` share word for word."""
    p.add_argument("--hold", type=float, default=4.0,
                   help="with --policy hold: mean number of recorded steps an action is held (geometric; default 4)")
    p.add_argument("--no-backgrounds", dest="backgrounds", action="store_false",
                   help="Procgen's use_backgrounds=False: a plain backdrop instead of the scenery pictures")
    p.add_argument("--seed", type=int, default=0, help="seed of the random policy and env RNG (default 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def register(sub) -> None:
    p = sub.add_parser("data", help="generate, ingest and inspect video datasets (episode stores)",
                       description=DATA_HELP, formatter_class=_fmt())
    dsub = p.add_subparsers(dest="data_cmd", metavar="CMD")

    pi = dsub.add_parser("info", help="JSON summary of a store; --verify checks every shard's sha256",
                         description=INFO_HELP, formatter_class=_fmt())
    pi.add_argument("dir", metavar="DIR", help="episode store folder")
    pi.add_argument("--verify", action="store_true", help="check every shard's checksum and index; exit 1 naming bad shards")
    pi.set_defaults(func=cmd_info)

    pc = dsub.add_parser("coinrun", help="record Procgen CoinRun with a random policy (paper App. F)",
                         description=COINRUN_HELP, formatter_class=_fmt())
    pc.add_argument("out", metavar="OUT", help="store folder (created, or resumed/extended)")
    pc.add_argument("--levels", type=int, default=100, help="number of level seeds (default 100; paper 10000)")
    pc.add_argument("--start-level", type=int, default=0, help="first level seed (default 0)")
    pc.add_argument("--steps-per-level", type=int, default=1000, help="environment steps per level (default 1000, as the paper); with --frame-skip K, recorded transitions")
    pc.add_argument("--mode", choices=["hard", "easy"], default="hard", help="Procgen distribution mode (default hard, as the paper)")
    pc.add_argument("--frame-skip", type=int, default=1,
                    help="hold each random action for K game steps and record every K-th frame (default 1, as the paper; "
                         "the cpu recipe uses 4 so that one transition shows its action)")
    pc.add_argument("--policy", choices=["uniform", "hold"], default="uniform",
                    help="uniform: a new uniform draw over the 15 actions every step (default, as the paper); "
                         "hold: one of the 6 effective actions, held for a random number of steps (see --hold)")
    _add_recording_options(pc)
    pc.set_defaults(func=cmd_coinrun)

    pp = dsub.add_parser("procgen", help="record any of the 16 Procgen games with a random policy",
                         description=PROCGEN_HELP, formatter_class=_fmt())
    pp.add_argument("game", metavar="GAME", nargs="?", help="a Procgen game: bigfish, ..., starpilot (see --list)")
    pp.add_argument("out", metavar="OUT", nargs="?", help="store folder (created, or resumed/extended)")
    pp.add_argument("--list", action="store_true", help="list the 16 games with their effective actions and exit")
    pp.add_argument("--levels", type=int, default=100, help="number of level seeds (default 100)")
    pp.add_argument("--start-level", type=int, default=0, help="first level seed (default 0)")
    pp.add_argument("--steps-per-level", type=int, default=1000,
                    help="recorded transitions per level (default 1000); each is --frame-skip game steps")
    pp.add_argument("--mode", choices=["hard", "easy"], default="hard", help="Procgen distribution mode (default hard)")
    pp.add_argument("--frame-skip", type=int, default=1,
                    help="hold each random action for K game steps and record every K-th frame (default 1)")
    pp.add_argument("--policy", choices=["uniform", "hold"], default="uniform",
                    help="uniform: a new uniform draw over the 15 ids every step (default, as the paper); "
                         "hold: one of the game's effective actions, held for a random number of steps (see --hold)")
    _add_recording_options(pp)
    pp.set_defaults(func=cmd_procgen)

    pa = dsub.add_parser("atari", help="record an Atari game with a random policy",
                         description=ATARI_HELP, formatter_class=_fmt())
    pa.add_argument("game", metavar="GAME", help="game name, e.g. Pong, Breakout, MontezumaRevenge (or ALE/Pong-v5)")
    pa.add_argument("out", metavar="OUT", help="store folder (created, or resumed)")
    pa.add_argument("--episodes", type=int, default=8, help="episodes to record (default 8)")
    pa.add_argument("--steps-per-episode", type=int, default=1000, help="max steps per episode (default 1000)")
    pa.add_argument("--size", type=int, default=64, help="square frame size (default 64)")
    pa.add_argument("--fit", choices=["crop", "pad"], default="crop", help="crop (default) or pad to square")
    pa.add_argument("--sticky", type=float, default=0.0, help="repeat_action_probability (default 0; v5 default is 0.25)")
    pa.add_argument("--frame-skip", type=int, default=4,
                    help="emulator frames per recorded step (default 4, ALE v5's: 15 fps); 16 gives 3.75 fps, the "
                         "time step of Procgen at --frame-skip 4, so the two can be merged (`genie data merge`)")
    pa.add_argument("--seed", type=int, default=0, help="seed of the policy and env resets (default 0)")
    pa.add_argument("--no-progress", action="store_true", help="no progress bar")
    pa.set_defaults(func=cmd_atari)

    pg = dsub.add_parser("ingest", help="turn video files / image folders into a store",
                         description=INGEST_HELP, formatter_class=_fmt())
    pg.add_argument("sources", nargs="+", metavar="SRC", help="video files, image folders, or folders to search")
    pg.add_argument("out", metavar="OUT", help="output store folder (created, or resumed)")
    pg.add_argument("--fps", type=float, default=10.0, help="target frame rate (default 10, as the paper)")
    pg.add_argument("--size", type=int, default=64, help="square frame size (default 64)")
    pg.add_argument("--min-frames", type=int, default=16, help="skip sources shorter than this after resampling (default 16)")
    pg.add_argument("--fit", choices=["crop", "pad"], default="crop", help="centre-crop (default) or letterbox-pad to square")
    pg.add_argument("--image-fps", type=float, default=None, help="frame rate of image folders (default: same as --fps)")
    pg.add_argument("--no-progress", action="store_true", help="no progress bar")
    pg.set_defaults(func=cmd_ingest)

    pm = dsub.add_parser("merge", help="copy several stores' episodes into one (a world of many games)",
                         description=MERGE_HELP, formatter_class=_fmt())
    pm.add_argument("out", metavar="OUT", help="the merged store's folder (created, or a merge to continue)")
    pm.add_argument("stores", nargs="+", metavar="STORE", help="episode stores to merge, in order")
    pm.add_argument("--no-progress", action="store_true", help="no progress bar")
    pm.set_defaults(func=cmd_merge)

    pe = dsub.add_parser("export", help="write a store's episodes as MP4 files",
                         description=EXPORT_HELP, formatter_class=_fmt())
    pe.add_argument("store", metavar="STORE", help="episode store folder")
    pe.add_argument("out", metavar="OUT", help="folder for the videos (created; existing videos are kept)")
    pe.add_argument("--episodes", type=int, default=None, help="only the first N episodes (default all)")
    pe.add_argument("--scale", type=int, default=1, help="integer upscale factor (default 1)")
    pe.add_argument("--crf", type=int, default=18, help="H.264 quality, 0 (lossless) to 51 (default 18)")
    pe.add_argument("--min-frames", type=int, default=1, help="skip episodes shorter than this (default 1)")
    pe.add_argument("--lossless", action="store_true", help="RGB H.264 at crf 0: decodes to exactly the store's pixels")
    pe.add_argument("--no-progress", action="store_true", help="no progress bar")
    pe.set_defaults(func=cmd_export)

    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2))


def cmd_info(args) -> int:
    from genieworld.data.store import EpisodeStore

    store = EpisodeStore(args.dir)
    info = store.summary()
    info["levels"] = _level_summary(store)
    rc = 0
    if args.verify:
        bad = store.verify_detailed(progress=sys.stderr.isatty())
        info["verify"] = {"ok": not bad, "checked_shards": len(store.shards),
                          "bad_shards": [{"shard": n, "reason": r} for n, r in bad]}
        for n, r in bad:
            print(f"genie data info: corrupt shard {store.path / n}: {r}", file=sys.stderr)
        rc = 1 if bad else 0
    _print_json(info)
    return rc


def _level_summary(store):
    from genieworld.data.coinrun import levels_of

    lv = levels_of(store)
    if not lv:
        return None
    return {"count": len(lv), "min": min(lv), "max": max(lv)}


def _recording_options(args) -> dict:
    """The keyword arguments ``generate_coinrun`` and ``generate_procgen`` take from their shared options."""
    return dict(levels=args.levels, start_level=args.start_level, steps_per_level=args.steps_per_level,
                mode=args.mode, seed=args.seed, progress=not args.no_progress, frame_skip=args.frame_skip,
                policy=args.policy, hold=args.hold if args.policy == "hold" else 1.0, backgrounds=args.backgrounds)


def cmd_coinrun(args) -> int:
    from genieworld.data.coinrun import generate_coinrun

    try:
        summary = generate_coinrun(args.out, **_recording_options(args))
    except ValueError as e:
        raise UserError(str(e)) from None
    _print_json(summary)
    return 0


def cmd_procgen(args) -> int:
    from genieworld.data.procgen import PROCGEN_GAMES, check_game, effective_actions, generate_procgen

    if args.list:
        for g in PROCGEN_GAMES:
            names = effective_actions(g, args.mode, args.frame_skip)["names"]
            print(f"{g:10s} {len(names):2d} effective actions: {', '.join(names)}")
        return 0
    try:
        if args.game is None or args.out is None:
            raise ValueError("need GAME and OUT, e.g. `genie data procgen ninja data/ninja` "
                             f"(the games: {', '.join(PROCGEN_GAMES)})")
        game = check_game(args.game)
        summary = generate_procgen(args.out, game, **_recording_options(args))
    except ValueError as e:
        raise UserError(str(e)) from None
    _print_json(summary)
    return 0


def cmd_atari(args) -> int:
    from genieworld.data.atari import generate_atari

    try:
        summary = generate_atari(args.game, args.out, episodes=args.episodes,
                                 steps_per_episode=args.steps_per_episode, size=args.size, seed=args.seed,
                                 fit=args.fit, sticky=args.sticky, frameskip=args.frame_skip,
                                 progress=not args.no_progress)
    except ValueError as e:
        raise UserError(str(e)) from None
    _print_json(summary)
    return 0


def cmd_ingest(args) -> int:
    from genieworld.data.ingest import REPORT_NAME, ingest

    srcs, out = args.sources, args.out
    if args.fps <= 0 or args.size < 1 or args.min_frames < 1:
        raise UserError("--fps, --size and --min-frames must be positive")
    report = ingest(srcs, out, fps=args.fps, size=args.size, min_frames=args.min_frames, fit=args.fit,
                    image_fps=args.image_fps, progress=not args.no_progress)
    for s in report["skipped"]:
        print(f"skipped {s['source']}: {s['reason']}", file=sys.stderr)
    print(f"ingested {len(report['ingested'])} source(s), skipped {len(report['skipped'])}, "
          f"already in store {len(report['already_in_store'])}; report: {out}/{REPORT_NAME}", file=sys.stderr)
    _print_json({"out": out, "ingested": len(report["ingested"]), "skipped": report["skipped"],
                 "already_in_store": len(report["already_in_store"]), **report["store"]})
    return 0 if report["store"]["episodes"] > 0 else 1


def cmd_merge(args) -> int:
    from genieworld.data.merge import merge_stores

    try:
        summary = merge_stores(args.out, args.stores, progress=not args.no_progress)
    except ValueError as e:
        raise UserError(str(e)) from None
    _print_json(summary)
    return 0


def cmd_export(args) -> int:
    from genieworld.data.export import export_videos

    try:
        summary = export_videos(args.store, args.out, episodes=args.episodes, scale=args.scale, crf=args.crf,
                                min_frames=args.min_frames, lossless=args.lossless, progress=not args.no_progress)
    except ValueError as e:
        raise UserError(str(e)) from None
    _print_json(summary)
    return 0

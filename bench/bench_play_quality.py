"""Does a world stay a world while a player drives it, and do its buttons do what their names say?
Several models side by side on the same real clips; prints one JSON object.

    python bench/bench_play_quality.py --model models/coinrun-cpu --data runs/cpu/data/test \\
        --train-data runs/cpu/data/train --judge runs/judge -n 128
    python bench/bench_play_quality.py --model models/coinrun-cpu --model runs/s31/noise/model \\
        --data runs/cpu/data/test --train-data runs/cpu/data/train --judge runs/judge -n 128 --out bench/results/dynamics/play-quality.json
    python bench/bench_play_quality.py --model models/coinrun-cpu --data runs/cpu/data/test \
        --train-data runs/cpu/data/train --drivers player --long 0 --variant temperature=0.3 --variant action_guidance=2
    python bench/bench_play_quality.py --model models/coinrun-cpu --true-actions runs/s38/true-actions/dynamics-true-actions \
        --data runs/cpu/data/test --train-data runs/cpu/data/train --drivers player   # the ceiling: recorded actions

For each model (``genieworld.eval.play_quality``): FVD of 16-frame rollouts under four drivers (the
LAM's reading of the real clip, uniform random latents, one latent held, a player's presses) against
real clips, beside the real-vs-real floor at the same N; drift (FVD of frames 2-17 and 49-64 of
64-frame player rollouts); PSNR to the real continuation under the LAM's own actions; and, with
``--train-data``, the action judge (a supervised IDM trained on real frames, cached in ``--judge``)
reading each button held 8 steps from 24 prompts. The real clips' I3D features are computed once
and shared by every model, so the models' numbers differ only by their rollouts.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import device_info, emit_json, now_iso, parse_assignment, true_action_world  # noqa: E402


def parse_variant(text: str) -> dict:
    """``temperature=0.3,action_guidance=2`` -> sampling overrides (values as JSON, else strings)."""
    from dataclasses import fields

    from genieworld.config import SamplingConfig

    known = {f.name for f in fields(SamplingConfig)}
    out = {}
    for item in text.split(","):
        kv = parse_assignment(item)
        if kv is None or kv[0] not in known:
            raise SystemExit(f"--variant {text!r}: expected KEY=VALUE pairs of sampling settings {sorted(known)}")
        out[kv[0]] = kv[1]
    return out


def real_features(store, n: int, seed: int, cache: Path | None):
    """I3D features of the two real clip sets (prompt set, reference set), from ``cache`` when a run
    on the same store contents, N and seed computed them (several minutes on a CPU), else computed
    and kept there."""
    import numpy as np

    from genieworld.data.store import store_digest
    from genieworld.eval.fvd import i3d_features
    from genieworld.eval.play_quality import real_clips

    path = None
    if cache is not None:
        path = cache / f"real-{store_digest(store)[:16]}-n{n}-seed{seed}.npz"
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    feats = (z["prompts"], z["reference"])
                if all(f.ndim == 2 and f.shape[0] == n for f in feats):
                    print(f"[bench] real I3D features from {path}", file=sys.stderr, flush=True)
                    return feats
            except (OSError, ValueError, KeyError) as e:
                print(f"[bench] {path}: unreadable ({type(e).__name__}); computing again", file=sys.stderr, flush=True)
    clips = real_clips(store, n, 16, seed)
    feats = (i3d_features(clips[0]), i3d_features(clips[1]))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, prompts=feats[0], reference=feats[1])
        tmp.replace(path)
    return feats


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True, help="model folder (repeat to compare models)")
    ap.add_argument("--data", required=True, help="held-out episode store (real clips and prompts)")
    ap.add_argument("--train-data", help="the training store, with recorded actions: trains the action judge")
    ap.add_argument("--judge", default="runs/judge", help="folder of the cached judge (default runs/judge)")
    ap.add_argument("-n", type=int, default=128, help="clips per set (default 128; report N >= 128)")
    ap.add_argument("--long", type=int, default=64, help="frames of the drift rollouts (default 64; 0 = skip)")
    ap.add_argument("--hold-prompts", type=int, default=24)
    ap.add_argument("--hold-steps", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--drivers", nargs="*", default=None, metavar="DRIVER",
                    help="FVD drivers to measure: own random held player (default all; none = only drift and judge)")
    ap.add_argument("--variant", action="append", metavar="KEY=VALUE[,KEY=VALUE]",
                    help="score each model also with these sampling settings (repeat for more variants), e.g. "
                         "action_guidance=2 or temperature=0.3,order=random; default: the model's own settings")
    ap.add_argument("--feature-cache", default="runs/play-features",
                    help="folder that keeps the real clips' I3D features between runs, by store digest, N and "
                         "seed (default runs/play-features; '' = recompute every time)")
    ap.add_argument("--true-actions", metavar="DIR",
                    help="score the ground-truth-action dynamics in DIR (RUN/dynamics-true-actions of `genie train "
                         "dynamics --actions true`) instead of --model's own: the ceiling of buttons that mean what "
                         "the player pressed. --model (one) gives the tokenizer and sampling; its 6 buttons are "
                         "CoinRun's effective actions; the 'own' driver (a LAM's reading) does not apply")
    ap.add_argument("--gravity", action="store_true",
                    help="play the player's presses (the player driver and the drift rollouts) through the model's "
                         "gravity, as `genie play` does by default (MODEL/actions.json's sequence_counts)")
    ap.add_argument("--out", help="also write the JSON here")
    ap.add_argument("--plot", metavar="PNG", help="also draw every model's drift and driver FVDs here")
    args = ap.parse_args(argv)
    if args.true_actions and (len(args.model) != 1 or args.drivers is None or "own" in args.drivers):
        raise SystemExit("--true-actions takes one --model and --drivers without 'own' (e.g. --drivers player)")
    if args.true_actions and args.gravity:
        raise SystemExit("--gravity plays a LAM model's latents; the true-action buttons have none")
    if args.n < 2 or args.long < 0 or args.hold_prompts < 1 or args.hold_steps < 3:
        raise SystemExit("need -n >= 2, --long >= 0, --hold-prompts >= 1 and --hold-steps >= 3")
    variants = [parse_variant(v) for v in args.variant] if args.variant else [{}]

    import torch

    torch.set_num_threads(args.threads)
    from genieworld.data.store import EpisodeStore
    from genieworld.genie import Genie

    t0 = time.time()
    store = EpisodeStore(args.data)
    judge = info = None
    if args.train_data:
        from genieworld.eval.judge import load_or_train_judge

        with contextlib.redirect_stdout(sys.stderr):  # its progress lines
            judge, info = load_or_train_judge(args.judge, EpisodeStore(args.train_data), store)
        print(f"[bench] judge: held-out accuracy {info['heldout']['acc']:.3f} "
              f"(direction {info['heldout']['acc_direction']:.3f}, jump {info['heldout']['acc_jump']:.3f})",
              file=sys.stderr, flush=True)
    feats = real_features(store, args.n, args.seed, Path(args.feature_cache) if args.feature_cache else None)
    from genieworld.eval.play_quality import play_quality

    out = {"bench": "play_quality", "time": now_iso(), "device": device_info(), "data": args.data, "n": args.n,
           "judge": info, "models": {}}
    from dataclasses import replace

    from genieworld.eval.play_quality import DRIVERS

    drivers = DRIVERS if args.drivers is None else tuple(d for d in args.drivers if d != "none")
    for m in args.model:
        genie = Genie.from_pretrained(m)  # once per model: a variant changes only its sampling settings
        if args.true_actions:
            from genieworld.data.coinrun import EFFECTIVE_NAMES

            genie = true_action_world(genie, Path(args.true_actions))
            genie.action_names = list(EFFECTIVE_NAMES)
            m = f"{args.true_actions} (true actions)"
        gravity = None
        if args.gravity:
            from genieworld.actions import load_gravity

            gravity = load_gravity(m, genie.num_actions)
            if gravity is None:
                raise SystemExit(f"--gravity: {m} has no gravity table (run `genie actions name` on a labelled store)")
            m = f"{m} (gravity)"
        own = genie.sampling
        for var in variants:
            genie.sampling = replace(own, **var)
            key = f"{m} ({', '.join(f'{k}={v}' for k, v in var.items())})" if var else m
            print(f"[bench] {key}", file=sys.stderr, flush=True)
            with contextlib.redirect_stdout(sys.stderr):  # its progress lines; stdout is the JSON alone
                r = play_quality(genie, store, n=args.n, long_length=args.long, seed=args.seed, judge=judge,
                                 judge_info=info, hold_prompts=args.hold_prompts, hold_steps=args.hold_steps,
                                 real_features=feats, drivers=drivers, gravity=gravity)
            r.pop("judge", None)
            out["models"][key] = r
    out["seconds"] = round(time.time() - t0, 1)
    emit_json(out, args.out, indent=1)
    if args.plot:
        from genieworld.eval.report import drift_plot_png
        from genieworld.utils import atomic_write_bytes

        atomic_write_bytes(Path(args.plot), drift_plot_png(out["models"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``genie eval MODEL --data DIR --out REPORT_DIR``: metrics, a Markdown report and pictures."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from genieworld.errors import UserError

EVAL_HELP = """\
Evaluate a trained world model on an episode store and write a report folder:
metrics.json (every number with the settings that produced it), report.md, and
pictures (rollouts.gif / rollouts.png: real vs generated side by side;
action_grid.png: each latent action repeated from real prompts;
psnr_per_step.png).

Protocol: clips of --horizon real frames (t = 1..horizon, 1-indexed) are cut
from --episodes episodes (one random clip per episode, seeded by --seed). The
latent action model infers the clip's actions; from the first real frame
(prompt) the dynamics model generates t = 2..horizon with those actions and,
with the same sampling seed, with actions drawn uniformly at random.

Metrics:
  tokenizer reconstruction  PSNR / SSIM of encode+decode of every real frame
  generation                PSNR / SSIM of generated vs real frame t, per step
                            and averaged over t = 2..horizon (t=4, t=16 called out)
  Delta_t PSNR              PSNR(x_t, x̂_t) - PSNR(x_t, x̂'_t) at t = 4 (paper sec. 3):
                            inferred (x̂) vs random (x̂') actions, 3 generated steps
  FVD                       I3D (Kinetics-400 logits, 224x224) on real vs generated
                            clips of horizon frames; few clips bias it upwards
  latent actions            NMI, purity and confusion table vs ground-truth actions
                            (when the store has them)
  codebook usage            codes used and perplexity of tokenizer and LAM

Evaluating on levels the model was trained on (found via MODEL/genie.json or
MODEL/../run.json) prints a warning. Deterministic given --seed and
--batch-size. The defaults (8 episodes, horizon 16) take about a minute for a
`tiny` model on a CPU; FVD adds about 1 s per clip there.

examples:
  genie eval runs/world/model --data data/coinrun-test --out reports/world
  genie eval runs/world/model --data data/coinrun-test --episodes 256 --out reports/world-256
  genie eval runs/world/model --data data/coinrun-test --no-fvd --horizon 8 --out /tmp/quick
  genie eval models/coinrun-cpu --data data/coinrun-test --out reports/play --play 128 --judge-data data/coinrun
"""


def _positive(v: str) -> int:
    try:
        i = int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v!r}") from None
    if i < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return i


def _nonneg(v: str) -> int:
    try:
        i = int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {v!r}") from None
    if i < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {v}")
    return i


def register(sub) -> None:
    from genieworld.eval.evaluate import DEFAULT_EPISODES, DEFAULT_HORIZON

    p = sub.add_parser("eval", help="evaluate a model: PSNR/SSIM, Delta_t PSNR, FVD, latent actions; Markdown report",
                       description=EVAL_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL", help="model folder (runs/world/model from `genie train dynamics`, "
                                                  "or the run folder runs/world)")
    p.add_argument("--data", required=True, help="episode store to evaluate on (use held-out levels)")
    p.add_argument("--out", required=True, help="report folder (created; existing report files are replaced)")
    p.add_argument("--episodes", type=_positive, default=DEFAULT_EPISODES,
                   help=f"episodes to draw clips from (default {DEFAULT_EPISODES}; all eligible ones if fewer)")
    p.add_argument("--clips-per-episode", type=_positive, default=1,
                   help="disjoint clips per episode (default 1); more clips make FVD less biased")
    p.add_argument("--seed", type=_nonneg, default=0,
                   help="seed for clip choice, random actions and sampling (default 0)")
    p.add_argument("--horizon", type=_positive, default=DEFAULT_HORIZON,
                   help=f"frames per clip including the 1-frame prompt (default {DEFAULT_HORIZON}; FVD needs >= 9)")
    p.add_argument("--no-fvd", action="store_true", help="skip FVD (the I3D pass is the slowest part on a CPU)")
    p.add_argument("--grid-prompts", type=_positive, default=2,
                   help="real prompts in the latent-action grid, each action repeated from each (default 2)")
    p.add_argument("--batch-size", type=_positive, default=8, help="clips per rollout batch (default 8)")
    p.add_argument("--maskgit-steps", type=_positive, help="override the model's MaskGIT steps per frame")
    p.add_argument("--temperature", type=float, help="override the model's sampling temperature")
    p.add_argument("--order", choices=("confidence", "random"),
                   help="override the model's MaskGIT unmasking order (sampling.order)")
    p.add_argument("--action-guidance", type=float, metavar="W",
                   help="override the model's classifier-free guidance on the action (sampling.action_guidance; "
                        "1 = off; needs a dynamics trained with action_dropout), for the rollouts and --play")
    p.add_argument("--play", type=_nonneg, default=0, metavar="N",
                   help="also measure play quality on N clips per set (genieworld.eval.play_quality: FVD under four "
                        "drivers beside the real floor, drift over 64 frames): play_quality.json and its plot "
                        "play_quality.png; report N >= 128")
    p.add_argument("--judge-data", metavar="STORE",
                   help="with --play: the training store (recorded actions) that trains the action judge, cached in "
                        "OUT/judge until the store changes; the judge then reads each button held 8 steps")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda if available, else cpu)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="weights of the per-frame path, as `genie play --precision` sets them (default fp32, the "
                        "reference): compare the two reports to see what bf16 play costs in quality")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_eval)


def run_eval(args) -> int:
    import torch

    from genieworld.data.store import EpisodeStore
    from genieworld.eval.evaluate import EvalConfig, evaluate
    from genieworld.eval.report import write_report

    model = Path(args.model)
    if not model.is_dir():
        raise UserError(f"{model}: no such model folder")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    if args.temperature is not None and not args.temperature >= 0:
        raise UserError("--temperature must be >= 0")
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.device(device)
    except (RuntimeError, ValueError):
        raise UserError(f"--device {device!r} is not a torch device") from None
    store = EpisodeStore(args.data)  # StoreError is a UserError
    if store.num_episodes == 0:
        raise UserError(f"{args.data}: the store has no episodes")

    from genieworld.genie import Genie, resolve_model_dir

    try:
        model = resolve_model_dir(model)  # a training RUN folder means RUN/model
        genie = Genie.from_pretrained(model, device=device)
    except (ValueError, FileNotFoundError) as e:
        raise UserError(f"cannot load {args.model}: {e}") from None

    if args.precision == "bf16":
        from genieworld.utils import bf16_supported

        if not bf16_supported(genie.device):
            raise UserError(f"--precision bf16: no native bf16 on {genie.device} (avx512_bf16, AMX or a GPU)")
        genie.set_play_precision("bf16")
    if args.action_guidance is not None:
        from dataclasses import replace

        genie.sampling = replace(genie.sampling, action_guidance=args.action_guidance)
    overrides = {}
    if args.maskgit_steps is not None:
        overrides["maskgit_steps"] = args.maskgit_steps
    if args.temperature is not None:
        overrides["temperature"] = args.temperature
    if args.order is not None:
        overrides["order"] = args.order
    cfg = EvalConfig(episodes=args.episodes, clips_per_episode=args.clips_per_episode, horizon=args.horizon,
                     seed=args.seed, batch_size=args.batch_size, fvd=not args.no_fvd,
                     grid_prompts=args.grid_prompts, sampling_overrides=overrides, progress=not args.no_progress)

    def log(msg: str) -> None:
        print(f"genie: {msg}", file=sys.stderr, flush=True)

    torch.manual_seed(args.seed)
    result = evaluate(genie, store, cfg, model_path=str(model), data_path=str(args.data), log=log)
    paths = write_report(result, out)
    m = result.metrics
    g = m["generation"]
    d = m["delta_t_psnr"]
    fv = m["fvd"]
    print(f"tokenizer recon PSNR {m['tokenizer_reconstruction']['psnr']:.2f} dB, "
          f"generation PSNR {g['psnr']['mean']:.2f} dB (t=4: {_fmt(g['psnr'].get('t4'))}, "
          f"t=16: {_fmt(g['psnr'].get('t16'))}; the prompt held still: {_fmt(g['still_prompt']['psnr'].get('t4'))} / "
          f"{_fmt(g['still_prompt']['psnr'].get('t16'))}), "
          f"Delta_t PSNR {_fmt(d['value'] if d else None)} dB, "
          f"FVD {_fmt(fv.get('value'), 1)}"
          + (f" ({fv['clips']} clips)" if fv.get("value") is not None else ""))
    la = m["latent_actions"]
    if "nmi" in la:
        print(f"latent actions: NMI {la['nmi']:.3f}, purity {la['purity']:.3f}")
    if args.play:
        _play_quality(genie, store, args, out)
    print(f"report: {paths['report.md']}")
    return 0


def _play_quality(genie, store, args, out: Path) -> None:
    import json

    from genieworld.data.store import EpisodeStore
    from genieworld.eval.play_quality import play_quality
    from genieworld.utils import atomic_write_text

    judge = info = None
    if args.judge_data:
        from genieworld.eval.judge import load_or_train_judge

        try:
            judge, info = load_or_train_judge(out / "judge", EpisodeStore(args.judge_data), store,
                                              progress=not args.no_progress)
        except ValueError as e:  # no recorded actions, another frame size, ...
            raise UserError(f"--judge-data {args.judge_data}: {e}") from None
    try:
        r = play_quality(genie, store, n=args.play, seed=args.seed, judge=judge, judge_info=info,
                         progress=not args.no_progress)
    except ValueError as e:
        raise UserError(f"--play: {e}") from None
    atomic_write_text(out / "play_quality.json", json.dumps(r, indent=1) + "\n")
    if r.get("fvd_player_long_blocks"):
        from genieworld.eval.report import drift_plot_png
        from genieworld.utils import atomic_write_bytes

        atomic_write_bytes(out / "play_quality.png", drift_plot_png({"model": r}))
    print(f"play quality ({r['n']} clips): FVD floor {r['fvd_floor']}, own {r['fvd_own']}, player {r['fvd_player']}, "
          f"random {r['fvd_random']} (Delta_t PSNR beside it), held {r['fvd_held']}; drift: frames "
          f"{r.get('fvd_player_long_blocks')} -> ratio {r.get('drift_ratio')}")
    if "following_summary" in r:
        print(f"action judge: {r['following_summary']}")


def _fmt(x, nd: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{nd}f}"

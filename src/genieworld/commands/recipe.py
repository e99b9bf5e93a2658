"""``genie recipe coinrun``: the paper's CoinRun case study, end to end, by one resumable command."""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from genieworld.errors import UserError

HELP = """\
From nothing to a playable, evaluated CoinRun world (paper Appendix F), by one command:

  1. data-train   CoinRun levels [0, L) with a random policy (genie data coinrun)
  2. data-test    held-out levels [100000, 100000 + Lt) for evaluation
  3. tokenizer    genie train tokenizer (or a copy of --tokenizer-from)
  4. lam          genie train lam: the latent action model on its own, on short windows
                  (presets whose lam_train.steps is 0 co-train it with the dynamics instead, as the paper)
  5. dynamics     genie train dynamics --lam (frozen LAM, tokens and latent actions cached once);
                  Delta_t PSNR on a few held-out clips is logged as it trains (RUN/control.jsonl)
  6. name-actions genie actions name (latent -> real action, from the recorded ground truth)
  7. prompts      8 held-out frames into MODEL/prompts/, so `genie play MODEL` opens on a real game frame
  8. eval         genie eval on the held-out levels -> OUT/report (metrics.json, report.md, pictures)
  9. summary      OUT/results.json: data size, parameter counts, time per stage, hardware, headline metrics

Each stage records its completion in OUT/recipe.json; run the same command again after an
interruption and it continues at the stage it reached (the training stages resume from their
last checkpoint). The model directory is OUT/world/model.

Default sizes per preset (override with the flags):
  tiny           20 levels x 200 steps, tokenizer/dynamics steps from the preset (minutes)
  cpu            400 levels x 300 steps (120k frames), frame skip 4, hold policy, no backgrounds;
                 the preset's steps (~2 h on 2 cores)
  coinrun-paper  10000 levels x 1000 steps (the paper's 10M frames), frame skip 1, uniform policy; GPU

Frame skip K (not in the paper) holds each random action for K game steps and records every
K-th frame. The cpu recipe uses 4: at 1, one step of CoinRun's random agent barely shows its
action (see `genie data coinrun --help`), which a small CPU model cannot pick up.
Policy (not in the paper for "hold"): the cpu recipe draws one of CoinRun's 6 effective actions and
holds it for a geometric number of recorded steps (mean --hold 4), as a player keeps a key down;
the paper's uniform policy over the 15 actions is --policy uniform. Backgrounds: the cpu recipe
records CoinRun with Procgen's use_backgrounds=False (a plain backdrop behind the level); in a
LAM test this raised NMI against the true actions from 0.115 to 0.20 (docs/experiments.md).
--backgrounds restores the scenery pictures.

examples:
  genie recipe coinrun --preset tiny --out runs/recipe-tiny
  genie recipe coinrun --preset cpu --out runs/coinrun-cpu
  genie recipe coinrun --preset cpu --out runs/coinrun-cpu2 --tokenizer-from runs/coinrun-cpu/tokenizer
  genie recipe coinrun --preset coinrun-paper --out runs/paper      # hard, frame skip 1, uniform, co-trained
"""

DEFAULT_SIZES = {"tiny": (20, 200, 4, 200), "cpu": (400, 300, 20, 500), "coinrun-paper": (10000, 1000, 100, 1000)}
DEFAULT_FRAME_SKIP = {"tiny": 1, "cpu": 4, "coinrun-paper": 1}
DEFAULT_POLICY = {"tiny": "uniform", "cpu": "hold", "coinrun-paper": "uniform"}
DEFAULT_BACKGROUNDS = {"tiny": True, "cpu": False, "coinrun-paper": True}
TEST_START_LEVEL = 100_000
STAGES = ("data-train", "data-test", "tokenizer", "lam", "dynamics", "name-actions", "prompts", "eval", "summary")


def register(sub) -> None:
    p = sub.add_parser("recipe", help="run a whole case study end to end (resumable)",
                       description="End-to-end recipes. See `genie recipe coinrun --help`.")
    rsub = p.add_subparsers(dest="recipe", metavar="RECIPE")
    c = rsub.add_parser("coinrun", help="the paper's CoinRun case study", description=HELP,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("--out", required=True, help="recipe folder (created, or resumed)")
    c.add_argument("--preset", default="cpu", help="tiny | cpu | coinrun-paper, or a preset .json file "
                   "(data sizes as for cpu, frame skip 1 unless given) (default: cpu)")
    c.add_argument("--levels", type=int, help="training levels (default: per preset)")
    c.add_argument("--steps-per-level", type=int, help="environment steps recorded per training level")
    c.add_argument("--test-levels", type=int, help="held-out evaluation levels")
    c.add_argument("--frame-skip", type=int, help="game steps per recorded frame, each action held that long "
                                                  "(default: 4 for cpu, 1 otherwise)")
    c.add_argument("--policy", choices=["uniform", "hold"], help="random policy of the recordings "
                   "(default: hold for cpu, uniform otherwise; see `genie data coinrun --help`)")
    c.add_argument("--backgrounds", action=argparse.BooleanOptionalAction, default=None,
                   help="Procgen scenery pictures behind the level (default: off for cpu, on otherwise)")
    c.add_argument("--hold", type=float, help="with the hold policy: mean recorded steps an action is held (default 4)")
    c.add_argument("--tokenizer-steps", type=int, help="override the preset's tokenizer training steps")
    c.add_argument("--tokenizer-from", help="reuse this trained tokenizer (RUN or RUN/tokenizer) instead of training one")
    c.add_argument("--lam-steps", type=int, help="override the preset's lam_train steps (0: co-train the LAM with the dynamics)")
    c.add_argument("--dynamics-steps", type=int, help="override the preset's dynamics training steps")
    c.add_argument("--dynamics-data-fraction", type=float, metavar="F",
                   help="override the preset's dynamics_train.data_fraction: the share of training episodes the "
                        "dynamics trains on (and its token cache encodes)")
    c.add_argument("--eval-episodes", type=int, default=32, help="held-out episodes for `genie eval` (default 32)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--no-fvd", action="store_true", help="skip FVD in the evaluation")
    c.add_argument("--no-progress", action="store_true")
    c.set_defaults(func=run_coinrun)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


class _State:
    def __init__(self, out: Path, settings: dict):
        self.path = out / "recipe.json"
        if self.path.exists():
            from genieworld.utils import read_json

            self.data = read_json(self.path, UserError)
            # recipes from before these settings used frame skip 1, the uniform policy and a co-trained LAM
            old = {"frame_skip": 1, "policy": "uniform", "hold": 1.0, "lam_steps": 0, "backgrounds": True,
                   "dynamics_data_fraction": 1.0,
                   **self.data.get("settings", {})}
            diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
            if diff:
                raise UserError(f"{out} holds a recipe with other settings {diff} (old, new); use another --out")
        else:
            self.data = {"settings": settings, "done": {}, "seconds": {}}
        self.save()

    def save(self) -> None:
        from genieworld.utils import atomic_write_text

        atomic_write_text(self.path, json.dumps(self.data, indent=2) + "\n")

    def done(self, stage: str) -> bool:
        return stage in self.data["done"]

    def mark(self, stage: str, seconds: float) -> None:
        self.data["done"][stage] = time.strftime("%Y-%m-%dT%H:%M:%S")
        self.data["seconds"][stage] = self.data["seconds"].get(stage, 0.0) + seconds
        self.save()


def _cli(*args: str) -> None:
    from genieworld.cli import main

    print("[recipe] genie " + " ".join(args), flush=True)
    rc = main(list(args))
    if rc != 0:
        raise UserError(f"stage failed: genie {' '.join(args)} (exit {rc}); fix the cause and run the recipe again")


def run_coinrun(args) -> int:
    from genieworld.config import ConfigError, load_preset

    try:
        preset = load_preset(args.preset)
    except ConfigError as e:
        raise UserError(str(e)) from None
    lv, spl, tlv, tspl = DEFAULT_SIZES.get(args.preset, DEFAULT_SIZES["cpu"])
    settings = {
        "preset": args.preset, "levels": args.levels or lv, "steps_per_level": args.steps_per_level or spl,
        "test_levels": args.test_levels or tlv, "test_steps_per_level": tspl, "seed": args.seed,
        "tokenizer_steps": args.tokenizer_steps or preset.tokenizer_train.steps,
        "dynamics_steps": args.dynamics_steps or preset.dynamics_train.steps,
        "frame_skip": args.frame_skip or DEFAULT_FRAME_SKIP.get(args.preset, 1),
        "policy": args.policy or DEFAULT_POLICY.get(args.preset, "uniform"),
        "backgrounds": DEFAULT_BACKGROUNDS.get(args.preset, True) if args.backgrounds is None else args.backgrounds,
        "lam_steps": preset.lam_train.steps if args.lam_steps is None else args.lam_steps,
        "dynamics_data_fraction": (preset.dynamics_train.data_fraction if args.dynamics_data_fraction is None
                                   else args.dynamics_data_fraction),
    }
    settings["hold"] = (args.hold or 4.0) if settings["policy"] == "hold" else 1.0
    if args.tokenizer_from:
        settings["tokenizer_from"] = str(Path(args.tokenizer_from).resolve())
    if not 0 < settings["dynamics_data_fraction"] <= 1:
        raise UserError(f"--dynamics-data-fraction must be in (0, 1], got {settings['dynamics_data_fraction']}")
    if settings["lam_steps"] < 0:
        raise UserError(f"--lam-steps must be >= 0, got {settings['lam_steps']}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    st = _State(out, settings)
    train, test = out / "data" / "train", out / "data" / "test"
    tok, lam, world = out / "tokenizer", out / "lam", out / "world"
    model = world / "model"
    quiet = ["--no-progress"] if args.no_progress else []
    s = settings
    policy = ["--policy", s["policy"]] + (["--hold", str(s["hold"])] if s["policy"] == "hold" else [])
    policy += [] if s["backgrounds"] else ["--no-backgrounds"]
    separate_lam = s["lam_steps"] > 0
    steps = {
        "data-train": lambda: _cli("data", "coinrun", str(train), "--levels", str(s["levels"]), "--start-level", "0",
                                   "--steps-per-level", str(s["steps_per_level"]), "--seed", str(s["seed"]),
                                   "--frame-skip", str(s["frame_skip"]), *policy, *quiet),
        "data-test": lambda: _cli("data", "coinrun", str(test), "--levels", str(s["test_levels"]),
                                  "--start-level", str(TEST_START_LEVEL), "--steps-per-level",
                                  str(s["test_steps_per_level"]), "--seed", str(s["seed"] + 1),
                                  "--frame-skip", str(s["frame_skip"]), *policy, *quiet),
        "tokenizer": lambda: (_copy_tokenizer(s["tokenizer_from"], tok) if "tokenizer_from" in s else
                              _cli("train", "tokenizer", "--data", str(train), "--out", str(tok), "--preset",
                                   args.preset, "--steps", str(s["tokenizer_steps"]), "--seed", str(s["seed"]), *quiet)),
        "lam": lambda: (_cli("train", "lam", "--data", str(train), "--out", str(lam), "--preset", args.preset,
                             "--steps", str(s["lam_steps"]), "--seed", str(s["seed"]), *quiet) if separate_lam else None),
        "dynamics": lambda: _cli("train", "dynamics", "--data", str(train), "--tokenizer", str(tok), "--out", str(world),
                                 "--preset", args.preset, "--steps", str(s["dynamics_steps"]), "--seed", str(s["seed"]),
                                 "--data-fraction", str(s["dynamics_data_fraction"]),
                                 *(["--lam", str(lam)] if separate_lam else []), "--eval-data", str(test), *quiet),
        "name-actions": lambda: _cli("actions", "name", str(model), "--data", str(train)),
        "prompts": lambda: _prompts(model, test, s["seed"]),
        "eval": lambda: _cli("eval", str(model), "--data", str(test), "--out", str(out / "report"),
                             "--episodes", str(args.eval_episodes), "--seed", str(s["seed"]), "--grid-prompts", "4",
                             *(["--no-fvd"] if args.no_fvd else []), *quiet),
        "summary": lambda: _summary(out, st, preset),
    }
    for stage in STAGES:
        if st.done(stage):
            print(f"[recipe] {stage}: done earlier, skipping", flush=True)
            continue
        t0 = time.perf_counter()
        steps[stage]()
        st.mark(stage, time.perf_counter() - t0)
    print(f"[recipe] finished. model: {model}\n[recipe] report: {out / 'report' / 'report.md'}\n"
          f"[recipe] results: {out / 'results.json'}\n[recipe] play it: genie play {model}", flush=True)
    return 0


def _prompts(model: Path, test: Path, seed: int) -> None:
    from genieworld.prompts import write_prompts

    files = write_prompts(model, test, n=8, seed=seed)
    print(f"[recipe] prompts: {len(files)} held-out frames in {model / 'prompts'}", flush=True)


def _copy_tokenizer(src, tok_run: Path) -> None:
    """The tokenizer stage by reuse: copy a trained tokenizer into OUT/tokenizer/tokenizer."""
    import shutil

    from genieworld.genie import ModelDirError
    from genieworld.train.dynamics_task import resolve_tokenizer_dir

    try:
        src_dir = resolve_tokenizer_dir(src)
    except (FileNotFoundError, ModelDirError) as e:
        raise UserError(f"--tokenizer-from: {e}") from None
    dst = tok_run / "tokenizer"
    print(f"[recipe] tokenizer: copying {src_dir} -> {dst}", flush=True)
    from genieworld import owned

    owned.remove(dst, "component", "the recipe's tokenizer copy")
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src_dir, dst)
    owned.mark(dst, "component")


def _train_seconds(run: Path) -> float | None:
    from genieworld.train.checkpoint import latest_checkpoint

    ck = latest_checkpoint(run)
    from genieworld.utils import read_json

    return read_json(ck / "state.json", UserError).get("wall_time_s") if ck else None


def _summary(out: Path, st: _State, preset) -> None:
    import torch

    from genieworld.data.store import EpisodeStore
    from genieworld.genie import Genie
    from genieworld.utils import atomic_write_text, count_params, read_json

    genie = Genie.from_pretrained(out / "world" / "model")
    metrics_path = out / "report" / "metrics.json"
    metrics = read_json(metrics_path, UserError) if metrics_path.exists() else {}
    train = EpisodeStore(out / "data" / "train")
    result = {
        "preset": st.data["settings"]["preset"],
        "settings": st.data["settings"],
        "data": {"train_frames": train.num_frames, "train_episodes": train.num_episodes,
                 "train_levels": [0, st.data["settings"]["levels"]],
                 "test_levels": [TEST_START_LEVEL, TEST_START_LEVEL + st.data["settings"]["test_levels"]]},
        "parameters": {"tokenizer": count_params(genie.tokenizer), "lam": count_params(genie.lam),
                       "dynamics": count_params(genie.dynamics)},
        "seconds_per_stage": st.data["seconds"],
        # trainers track their own wall time across resumes (the recipe's clock sees only its last run)
        "training_seconds": {name: _train_seconds(out / name) for name in ("tokenizer", "lam", "world")},
        "hardware": {"machine": platform.machine(), "processor": platform.processor(),
                     "torch_threads": torch.get_num_threads(),
                     "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "metrics": metrics,
    }
    atomic_write_text(out / "results.json", json.dumps(result, indent=2, default=str) + "\n")

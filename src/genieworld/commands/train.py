"""``genie train tokenizer|dynamics``."""

from __future__ import annotations

import argparse
from dataclasses import asdict, replace
from pathlib import Path

from genieworld.errors import UserError

TOKENIZER_HELP = """\
Train the video tokenizer (ST-ViViT VQ-VAE, paper section 2.1) on windows of frames.

The run folder gets periodic checkpoints (safetensors weights + JSON config +
optimizer/scheduler/RNG/data-position state), TensorBoard scalars in RUN/tb, and,
when training finishes, the exported tokenizer in RUN/tokenizer. Starting the
same command again on an existing RUN resumes from its latest checkpoint and
continues exactly as an uninterrupted run would (CPU). Ctrl-C saves a checkpoint.

example:
  genie data coinrun data/coinrun
  genie train tokenizer --data data/coinrun --out runs/tok --preset tiny
  tensorboard --logdir runs/tok/tb
"""

DYNAMICS_HELP = """\
Co-train the latent action model (LAM) and the MaskGIT dynamics model on top of
a trained tokenizer (paper section 2.1). The LAM learns a small codebook of
latent actions from pixels alone (ground-truth actions are never used); the
dynamics model predicts the next frame's tokens from past tokens and the
stop-gradient latent actions.

When training finishes, RUN/model is a self-contained model directory
(tokenizer + LAM + dynamics + configs) for `genie generate`, `genie eval`,
`genie play` and `genieworld.Genie.from_pretrained`. Resumes like the tokenizer.

examples:
  genie train dynamics --data data/coinrun --tokenizer runs/tok --out runs/world --preset tiny
  # fine-tune a shipped model's dynamics on 8-frame windows (fresh optimizer, this run's schedule)
  genie train dynamics --data runs/cpu/data/train --preset cpu --tokenizer models/coinrun-cpu/tokenizer \\
      --lam models/coinrun-cpu/lam --init-from models/coinrun-cpu --seq-len 8 --out runs/ft8
"""


LAM_HELP = """\
Train the latent action model (LAM) on its own, before the dynamics model. It
learns a small codebook of latent actions from pixels alone (ground-truth actions
are never used) on short windows at a large batch (the preset's lam_train: 3
frames, batch 64 for cpu). RUN/lam is then the frozen LAM that
`genie train dynamics --lam RUN` trains the dynamics model against.

The preset's lam.arch picks the model: "conv" (cpu preset; a convolutional
inverse/forward-dynamics pair, see genieworld.lam_conv) or "transformer" (the
paper's ST-transformer VQ-VAE). With lam.merged_actions (cpu: 16 codes -> 8 actions)
it trains more codes than play offers and merges them when it finishes: by Ward linkage of
the code vectors (lam.merge = "vectors"), by which codes come before and after each code
in the training videos (lam.merge = "context"), or by how the picture moves during each
code's transitions (lam.merge = "camera", the cpu preset's). The cpu preset's conv LAM also
learns with an InfoNCE loss on the agent's square that reads its continuous latent
(lam.conv.nce_weight, nce_crop, nce_latent). Resumes like the tokenizer.

examples:
  genie train lam --data data/coinrun --out runs/lam --preset cpu
  genie train dynamics --data data/coinrun --tokenizer runs/tok --lam runs/lam --out runs/world --preset cpu
  python bench/bench_lam.py --model runs/lam --eval-data data/coinrun-test   # NMI, probe vs the true actions
"""


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="episode store folder (from `genie data ...`) or a uint8 .npy of clips (N,T,H,W,3)")
    p.add_argument("--out", required=True, help="run folder (created, or resumed when it already holds this run)")
    p.add_argument("--preset", default="tiny", help="tiny | cpu | coinrun-paper, or a path to a preset .json (default: tiny)")
    p.add_argument("--steps", type=int, help="total optimizer steps (default: from the preset)")
    p.add_argument("--batch-size", type=int, help="sequences per step and per process (default: from the preset)")
    p.add_argument("--seq-len", type=int, help="frames per training window (default: from the preset, 16 for the paper)")
    p.add_argument("--lr", type=float, help="peak learning rate (default: from the preset)")
    p.add_argument("--data-fraction", type=float, metavar="F",
                   help="train on an evenly spread share F in (0, 1] of the store's episodes; a token cache then "
                        "encodes only those (default: from the preset, 1)")
    p.add_argument("--seed", type=int, help="random seed for init, data order and masking (default: 0)")
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (default: from the preset)")
    p.add_argument("--num-workers", type=int, help="DataLoader worker processes (default: from the preset)")
    p.add_argument("--grad-accum", type=int, help="micro-batches accumulated per optimizer step (default 1)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], help="auto = bf16 autocast on GPU, fp32 on CPU")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (slow start; helps on GPU)")
    p.add_argument("--activation-checkpointing", action="store_true", help="recompute block activations in backward to save memory")
    p.add_argument("--fsdp", action="store_true", help="under torchrun, shard with FSDP2 (fully_shard) instead of DDP")
    p.add_argument("--stop-after", type=int, help="stop (with a checkpoint) after this many steps in this invocation")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs still go to TensorBoard)")


def register(sub) -> None:
    p = sub.add_parser("train", help="train the tokenizer, or co-train the latent action model and dynamics",
                       description="Train genieworld models. See `genie train tokenizer --help` and `genie train dynamics --help`.")
    tsub = p.add_subparsers(dest="train_what", metavar="WHAT")
    pt = tsub.add_parser("tokenizer", help="train the video tokenizer", description=TOKENIZER_HELP,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(pt)
    pt.set_defaults(func=run_tokenizer)
    pl = tsub.add_parser("lam", help="train the latent action model on its own (then frozen for dynamics)",
                         description=LAM_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(pl)
    pl.set_defaults(func=run_lam)
    pd = tsub.add_parser("dynamics", help="co-train the latent action model and the dynamics model",
                         description=DYNAMICS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(pd)
    pd.add_argument("--tokenizer", required=True, help="a tokenizer run folder (RUN or RUN/tokenizer) from `genie train tokenizer`")
    pd.add_argument("--action-injection", choices=["add", "prepend"], help="how latent actions enter the dynamics model (default: the preset's; cpu: prepend)")
    pd.add_argument("--lam", help="a trained LAM (`genie train lam` RUN or RUN/lam): frozen, instead of co-training one")
    pd.add_argument("--actions", choices=["lam", "true"], default="lam",
                    help="lam: latent actions (default); true: the store's recorded actions (CoinRun: the 6 effective "
                         "ones), the dynamics' own controllability ceiling (writes RUN/dynamics-true-actions, not a model)")
    pd.add_argument("--no-cache", action="store_true",
                    help="with --lam or --actions true: encode frames at every step instead of once into RUN/cache")
    pd.add_argument("--cache", help="token cache folder (default RUN/cache); several runs on the same data, tokenizer "
                                    "and LAM can share one (it is rebuilt if it was made from anything else)")
    pd.add_argument("--eval-data", help="held-out store: log Delta_t PSNR on a few of its clips every --eval-every steps")
    pd.add_argument("--eval-every", type=int, help="steps between quick controllability checks (default: from the preset)")
    pd.add_argument("--init-from", metavar="MODEL",
                    help="start the dynamics from a trained model's dynamics weights (a model directory or a "
                         "`genie train dynamics` RUN) instead of random ones: fine-tuning, with a fresh optimizer and "
                         "this run's schedule. Shapes must match; max_frames and the context window may differ "
                         "(temporal positions are rotary). Ignored once the run has a checkpoint to resume")
    pd.set_defaults(func=run_dynamics)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def train_config_from_args(base, args):
    overrides = {
        "steps": args.steps, "batch_size": args.batch_size, "seq_len": args.seq_len, "lr": args.lr, "seed": args.seed,
        "checkpoint_every": args.checkpoint_every, "num_workers": args.num_workers, "grad_accum": args.grad_accum,
        "precision": args.precision, "data_fraction": args.data_fraction,
    }
    cfg = replace(base, **{k: v for k, v in overrides.items() if v is not None})
    if args.compile:
        cfg = replace(cfg, compile=True)
    if args.activation_checkpointing:
        cfg = replace(cfg, activation_checkpointing=True)
    if args.fsdp:
        cfg = replace(cfg, fsdp=True)
    for name in ("steps", "batch_size", "seq_len", "checkpoint_every"):
        if getattr(cfg, name) <= 0:
            raise UserError(f"--{name.replace('_', '-')} must be positive, got {getattr(cfg, name)}")
    if cfg.lr <= 0:
        raise UserError(f"--lr must be positive, got {cfg.lr}")
    if not 0 < cfg.data_fraction <= 1:
        raise UserError(f"--data-fraction must be in (0, 1], got {cfg.data_fraction}")
    return cfg


def _load_preset(name: str):
    from genieworld.config import ConfigError, load_preset

    try:
        return load_preset(name)
    except ConfigError as e:
        raise UserError(str(e)) from None


def _open_data(args, cfg, rank, world):
    from genieworld.train.data import open_training_data

    if not Path(args.data).exists():
        raise UserError(f"--data {args.data}: no such file or folder (make one with `genie data coinrun {args.data}`)")
    try:
        return open_training_data(args.data, cfg.seq_len, cfg.batch_size, cfg.seed, rank, world, cfg.num_workers,
                                  data_fraction=cfg.data_fraction)
    except (ValueError, OSError) as e:
        raise UserError(f"--data {args.data}: {e}") from None


def run_tokenizer(args) -> int:
    from genieworld.train.tokenizer_task import TokenizerTask
    from genieworld.train.trainer import dist_info
    from genieworld.utils import seed_everything

    preset = _load_preset(args.preset)
    cfg = train_config_from_args(preset.tokenizer_train, args)
    tok_cfg = replace(preset.tokenizer, max_frames=max(preset.tokenizer.max_frames, cfg.seq_len))
    rank, world, _ = dist_info()
    seed_everything(cfg.seed)
    task = TokenizerTask(tok_cfg)
    loader = _open_data(args, cfg, rank, world)
    _check_resolution(loader, tok_cfg.image_size, args.data)
    info = {"component": "tokenizer", "preset": preset.name, "data": str(Path(args.data).resolve()),
            "model_configs": task.model_configs(), "seed": cfg.seed}
    return _fit(task, loader, cfg, args, info, "tokenizer")


def run_lam(args) -> int:
    from genieworld.train.lam_task import LAMTask
    from genieworld.train.trainer import dist_info
    from genieworld.utils import seed_everything

    preset = _load_preset(args.preset)
    cfg = train_config_from_args(preset.lam_train, args)
    if cfg.seq_len < 2:
        raise UserError(f"--seq-len must be at least 2 for the LAM (one transition), got {cfg.seq_len}")
    lam_cfg = replace(preset.lam, max_frames=max(preset.lam.max_frames, cfg.seq_len))
    rank, world, _ = dist_info()
    seed_everything(cfg.seed)
    try:
        task = LAMTask(lam_cfg)
    except ValueError as e:
        raise UserError(f"preset {preset.name}: {e}") from None
    loader = _open_data(args, cfg, rank, world)
    _check_resolution(loader, lam_cfg.image_size, args.data)
    task.progress = not args.no_progress
    if lam_cfg.merged_actions and lam_cfg.merge in ("context", "camera"):
        task.merge_store = getattr(loader, "store", None)
        if task.merge_store is None:
            raise UserError(f'preset {preset.name}: lam.merge = "{lam_cfg.merge}" reads the training videos in order, '
                            f"which needs an episode store as --data (from `genie data ...`), not {args.data}")
    info = {"component": "lam", "preset": preset.name, "data": str(Path(args.data).resolve()),
            "model_configs": task.model_configs(), "seed": cfg.seed}
    return _fit(task, loader, cfg, args, info, "lam")


def run_dynamics(args) -> int:
    from genieworld.train.dynamics_task import build_dynamics_task
    from genieworld.train.trainer import dist_info
    from genieworld.utils import seed_everything

    preset = _load_preset(args.preset)
    cfg = train_config_from_args(preset.dynamics_train, args)
    if args.eval_every is not None:
        cfg = replace(cfg, eval_every=args.eval_every)
    if cfg.seq_len > preset.sampling.context_frames == preset.dynamics_train.seq_len:
        # the preset plays with the context it trains on: a longer --seq-len lengthens the play context too
        preset = replace(preset, sampling=replace(preset.sampling, context_frames=cfg.seq_len))
    rank, world, _ = dist_info()
    seed_everything(cfg.seed)
    loader = _open_data(args, cfg, rank, world)
    store = getattr(loader, "store", None)
    effective, n_true = False, None
    if args.actions == "true":
        if store is None or not store.has_actions:
            raise UserError(f"--actions true: --data {args.data} has no recorded actions")
        effective, n_true = _true_action_space(store)
    try:
        task = build_dynamics_task(preset, args.tokenizer, cfg.seq_len, action_injection=args.action_injection,
                                   lam_path=args.lam, action_source=args.actions, num_true_actions=n_true)
    except (ValueError, FileNotFoundError) as e:
        raise UserError(str(e)) from None
    _check_resolution(loader, task.tokenizer.cfg.image_size, args.data)
    info = {"component": "dynamics", "preset": preset.name, "data": str(Path(args.data).resolve()),
            "tokenizer": str(Path(args.tokenizer).resolve()), "model_configs": task.model_configs(), "seed": cfg.seed}
    if args.init_from:
        info["init_from"] = _init_dynamics_from(task, args.init_from, Path(args.out))
    if task.lam_frozen:
        from genieworld.train.token_cache import module_digest
        from genieworld.train.trainer import RunMismatchError, check_run_info

        info["lam"] = str(Path(args.lam).resolve())
        info["lam_digest"] = module_digest(task.the_lam, task.the_lam.cfg)
        try:  # before the cache is (re)built for a LAM this run was not trained with
            check_run_info(Path(args.out), info)
        except RunMismatchError as e:
            raise UserError(str(e)) from None
    if (task.lam_frozen or args.actions == "true") and not args.no_cache and store is not None:
        cache_dir = Path(args.cache) if args.cache else Path(args.out) / "cache"
        loader = _cached_loader(task, store, cfg, rank, world, cache_dir, not args.no_progress,
                                episodes=getattr(loader, "episodes", None))
    if effective:
        loader = _EffectiveActions(loader)
    if args.eval_data:
        from genieworld.data.store import EpisodeStore
        from genieworld.eval.control import ControlCheck

        try:
            task.control_check = ControlCheck(EpisodeStore(args.eval_data), effective=effective)
        except (ValueError, OSError) as e:
            raise UserError(f"--eval-data {args.eval_data}: {e}") from None
    task.data_provenance = _data_provenance(loader, args.data)
    return _fit(task, loader, cfg, args, info, "dynamics-true-actions" if args.actions == "true" else "model")


def _init_dynamics_from(task, source, run: Path) -> dict | None:
    """Load the dynamics weights of ``source`` (a model directory or a dynamics RUN) into ``task.dynamics``
    and return what run.json records of the start (path and the loaded weights' digest, as ``lam_digest``).
    A run that already has a checkpoint resumes from it instead: nothing is loaded (``source`` may be gone
    by then), and the record of its start is kept."""
    from genieworld.genie import ModelDirError, resolve_model_dir
    from genieworld.train.checkpoint import checkpoint_candidates
    from genieworld.train.token_cache import module_digest
    from genieworld.utils import read_json
    from genieworld.weights import CheckpointError, load_weights

    if checkpoint_candidates(run):
        try:
            old = read_json(run / "run.json", ValueError)
        except (ValueError, OSError):
            return None
        return old.get("init_from") if isinstance(old, dict) else None
    try:
        weights = resolve_model_dir(source) / "dynamics" / "model.safetensors"
        load_weights(task.dynamics, weights, strict=True)
    except (ModelDirError, CheckpointError) as e:
        raise UserError(f"--init-from {source}: {e}") from None
    print(f"dynamics initialised from {weights}", flush=True)
    return {"path": str(Path(source).resolve()), "dynamics_digest": module_digest(task.dynamics)}


def _true_action_space(store) -> tuple[bool, int]:
    """(map CoinRun's 15 actions to its 6 effective ones?, number of true actions)."""
    from genieworld.data.coinrun import EFFECTIVE_ACTIONS

    if store.extra.get("coinrun") is not None:
        return True, len(EFFECTIVE_ACTIONS)
    n = store.num_actions
    if not n:
        raise UserError(f"{store.path}: the store does not say how many actions it has")
    return False, int(n)


class _EffectiveActions:
    """Wraps a loader: adds ``true_actions``, CoinRun's recorded actions as its 6 effective ones."""

    def __init__(self, loader):
        self.inner = loader
        self.store = getattr(loader, "store", None)

    def __iter__(self):
        import torch

        from genieworld.data.coinrun import effective_action

        for batch in self.inner:
            batch["true_actions"] = torch.from_numpy(effective_action(batch["actions"].numpy()))
            yield batch

    def state_dict(self):
        return self.inner.state_dict()

    def load_state_dict(self, state, *a, **kw):
        return self.inner.load_state_dict(state, *a, **kw)


def _cached_loader(task, store, cfg, rank, world, cache_dir: Path, progress: bool, episodes=None):
    """Tokens and latent actions of ``store`` (of its ``episodes``: ids, None = all), encoded once into
    ``cache_dir`` (rebuilt when stale)."""
    from genieworld.train.token_cache import CachedWindowLoader, build_token_cache

    if rank == 0:
        cache = build_token_cache(cache_dir, store, task.tokenizer, task.the_lam, progress=progress, episodes=episodes)
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    if rank != 0:
        from genieworld.train.token_cache import TokenCache

        cache = TokenCache(cache_dir)
    return CachedWindowLoader(store, cache, seq_len=cfg.seq_len, batch_size=cfg.batch_size, seed=cfg.seed,
                              rank=rank, world_size=world, episodes=episodes)


def _fit(task, loader, cfg, args, info: dict, export_name: str) -> int:
    from genieworld.train.trainer import RunMismatchError, Trainer

    try:
        trainer = Trainer(task, loader, cfg, args.out, info, progress=not args.no_progress, stop_after=args.stop_after)
        logs = trainer.fit()
    except RunMismatchError as e:
        raise UserError(str(e)) from None
    if trainer.rank == 0:
        _print_done(args.out, export_name, trainer.step, cfg.steps, logs)
    return 0


def _data_provenance(loader, data) -> dict:
    """The training data as recorded in the model's genie.json: its path and, for CoinRun
    stores, the frame skip (prompts for the model should be recorded the same way)."""
    from genieworld.data.coinrun import frame_skip_of

    prov = {"data": str(Path(data).resolve())}
    store = getattr(loader, "store", None)
    skip = frame_skip_of(store) if store is not None else None
    if skip is not None:
        prov["frame_skip"] = skip
    if store is not None:
        from genieworld.data.store import store_digest

        prov["data_manifest_sha256"] = store_digest(store)
        episodes = getattr(getattr(loader, "inner", loader), "episodes", None)
        if episodes is not None:  # --data-fraction: trained on these episodes only
            prov["episodes_used"] = f"{len(episodes)} of {store.num_episodes}"
        coinrun = store.extra.get("coinrun")
        if isinstance(coinrun, dict):  # how the data was recorded, so prompts can be recorded the same way
            prov["coinrun"] = {k: coinrun[k] for k in ("distribution_mode", "policy_name", "hold", "backgrounds")
                               if k in coinrun}
    return prov


def _check_resolution(loader, size: int, data) -> None:
    store = getattr(loader, "store", None)
    res = getattr(store, "resolution", None) if store is not None else None
    if res is None and hasattr(loader, "clips"):
        res = tuple(loader.clips.shape[2:4])
    if res is not None and tuple(res) != (size, size):
        raise UserError(f"--data {data} has {res[0]}x{res[1]} frames but the model expects {size}x{size}; "
                        f"re-ingest with --size {size} or pick a preset with image_size {res[0]}")


def _print_done(out, export_name, step, total, logs) -> None:
    shown = ", ".join(f"{k}={v:.4g}" for k, v in logs.items())
    if step >= total:
        print(f"done: {step} steps; {shown}\nmodel: {Path(out) / export_name}", flush=True)
    else:
        print(f"stopped at step {step}/{total}; run the same command again to resume. {shown}", flush=True)

"""The evaluation protocol behind ``genie eval``.

Everything is computed on **clips** of ``horizon`` consecutive real frames cut
from the evaluation store, and frames are **1-indexed**: frame ``t = 1`` is the
first frame of a clip, ``t = horizon`` the last.

Clip selection (deterministic given ``seed``)
    Episodes with at least ``horizon`` frames are eligible; ``episodes`` of them
    are drawn without replacement (``numpy.random.default_rng([seed, 0x5E1EC7])``)
    and sorted by index.  Each contributes ``clips_per_episode`` clips: one clip
    starts at a uniformly random frame; several clips are disjoint windows.
    Fewer eligible episodes than requested: all of them are used (recorded).

Tokenizer reconstruction
    Every frame of every clip is encoded and decoded by the tokenizer (clips cut
    into windows of the tokenizer's ``max_frames``, each encoded from scratch);
    per-frame PSNR (capped at 100 dB) and SSIM against the real frame, averaged
    over all ``clips x horizon`` frames.

Generation quality
    The latent action model infers the actions of the whole real clip
    (``horizon - 1`` actions; action ``j`` explains frame ``j -> j + 1``).  The
    dynamics model gets the first ``prompt_frames`` real frames (default 1) and
    the inferred actions of the remaining transitions, and generates frames
    ``t = prompt_frames + 1 .. horizon`` (token-space MaskGIT rollout, decoded
    by the tokenizer).  Per-frame PSNR/SSIM against the real frame; the
    per-step curve is the mean over clips at each ``t`` and the averages are
    the mean over clips and generated frames (prompt frames excluded). Beside
    it, ``still_prompt``: the same for the last prompt frame's reconstruction
    held still, what a world that does nothing scores.

Controllability, ``Delta_t PSNR`` (paper section 3, ``t = 4``)
    A second rollout from the same prompts uses latent actions drawn uniformly
    at random from the LAM codebook (``default_rng([seed, 0xAC7])``), with the
    *same* sampling seed as the inferred-action rollout (common random numbers,
    so a model that ignores its actions gives exactly 0).  ``Delta_t PSNR =
    mean over clips of PSNR(x_t, x̂_t) - PSNR(x_t, x̂'_t)`` at ``t = 4``: with
    one prompt frame that is the third generated frame.

FVD
    I3D (Kinetics-400, 400-d logits, frames bilinearly resized to 224 x 224,
    see :mod:`genieworld.eval.fvd`) on the real clips vs the inferred-action
    rollouts, both ``horizon`` frames long (prompt + generated).  One clip per
    rollout, so the number of clips is small; with fewer clips than the 400
    feature dimensions FVD is strongly biased upwards (compare only numbers with
    the same clip count).

Latent actions (stores with ground-truth actions)
    The inferred actions of all clip transitions vs the recorded actions: NMI
    (arithmetic normalisation), purity (each latent action votes for its most
    frequent true action) and the confusion table (rows latent, columns true).

Codebook usage
    Tokenizer: the codes of all real clip frames; LAM: the inferred actions.

Seeds: the rollouts of batch ``b`` (``batch_size`` clips) use the sampling seed
``SeedSequence([seed, b]).generate_state(1)[0]``, so results are deterministic
given ``seed`` and ``batch_size`` (a different batch size regroups the clips
and gives different sampling noise).
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from genieworld.data.coinrun import frame_skip_of, valid_frame_skip
from genieworld.errors import UserError
from genieworld.eval.metrics import PSNR_MAX_DB, codebook_usage, confusion_table, nmi, psnr, purity, ssim

__all__ = [
    "EvalConfig",
    "EvalResult",
    "DEFAULT_EPISODES",
    "select_clips",
    "load_clips",
    "batch_seed",
    "random_actions",
    "frame_metrics",
    "per_step_summary",
    "delta_t_summary",
    "latent_action_summary",
    "training_data_paths",
    "data_overlap",
    "evaluate",
]

#: Episodes (= clips, one per episode) used when ``--episodes`` is not given: a
#: tiny model on 2 CPU cores finishes in about a minute.
DEFAULT_EPISODES = 8
DEFAULT_HORIZON = 16
CALLOUT_STEPS = (4, 16)
METRICS_FORMAT = "genieworld-eval"
METRICS_VERSION = 1


@dataclass
class EvalConfig:
    episodes: int = DEFAULT_EPISODES
    clips_per_episode: int = 1
    horizon: int = DEFAULT_HORIZON  # frames per clip, prompt included; last frame index t = horizon
    prompt_frames: int = 1
    delta_t: int = 4  # frame index (1-indexed) of Delta_t PSNR
    seed: int = 0
    batch_size: int = 8
    fvd: bool = True
    fvd_feature: str = "logits"
    grid_prompts: int = 2  # prompts of the latent-action grid
    grid_frames: int = 6  # generated frames per action in the grid
    sampling_overrides: dict = field(default_factory=dict)  # e.g. maskgit_steps, temperature
    progress: bool = True


@dataclass
class EvalResult:
    """``metrics`` is what goes to metrics.json; the arrays feed the pictures."""

    metrics: dict
    real: np.ndarray  # (N, H, h, w, 3) uint8 real clips
    generated: np.ndarray  # (N, H, h, w, 3) uint8, inferred actions
    generated_random: np.ndarray  # (N, H, h, w, 3) uint8, random actions
    recon: np.ndarray  # (N, H, h, w, 3) uint8 tokenizer reconstructions
    inferred_actions: np.ndarray  # (N, H - 1)
    random_actions: np.ndarray  # (N, H - prompt)
    grid: np.ndarray | None  # (P, A, 1 + k, h, w, 3) uint8 latent-action grid
    action_names: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------
# Clip selection and loading
# ----------------------------------------------------------------------------


def select_clips(lengths: Any, episodes: int, horizon: int, seed: int,
                 clips_per_episode: int = 1) -> list[tuple[int, int]]:
    """``[(episode, start), ...]`` of clips ``[start, start + horizon)`` (see the module docstring)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if episodes < 1 or clips_per_episode < 1 or horizon < 1:
        raise UserError("need --episodes >= 1, clips per episode >= 1 and --horizon >= 1")
    eligible = np.flatnonzero(lengths >= horizon)
    if eligible.size == 0:
        longest = int(lengths.max()) if lengths.size else 0
        raise UserError(f"no episode has {horizon} frames (the longest has {longest}); use a smaller --horizon")
    rng = np.random.default_rng([int(seed), 0x5E1EC7])
    chosen = np.sort(rng.choice(eligible, size=min(episodes, eligible.size), replace=False))
    refs: list[tuple[int, int]] = []
    for ep in chosen:
        length = int(lengths[ep])
        slots = length // horizon
        k = min(clips_per_episode, slots)
        if k == 1:
            refs.append((int(ep), int(rng.integers(0, length - horizon + 1))))
            continue
        offset = int(rng.integers(0, length - slots * horizon + 1))
        for s in np.sort(rng.choice(slots, size=k, replace=False)):
            refs.append((int(ep), offset + int(s) * horizon))
    return refs


def load_clips(store, refs: list[tuple[int, int]], horizon: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Real frames ``(N, horizon, H, W, 3)`` uint8 and true actions ``(N, horizon - 1)`` (None if missing)."""
    frames = np.stack([store.read_frames(ep, s, s + horizon) for ep, s in refs])
    acts = [store.read_actions(ep, s, s + horizon - 1) for ep, s in refs]
    if any(a is None or len(a) != horizon - 1 for a in acts):
        return frames, None
    return frames, np.stack(acts).astype(np.int64)


def batch_seed(seed: int, batch_index: int) -> int:
    """Sampling seed of rollout batch ``batch_index`` (a 31-bit int derived from both)."""
    return int(np.random.SeedSequence([int(seed), int(batch_index)]).generate_state(1)[0] % (2**31 - 1))


def random_actions(n: int, steps: int, num_actions: int, seed: int) -> np.ndarray:
    """``(n, steps)`` latent actions drawn uniformly from ``[0, num_actions)``."""
    return np.random.default_rng([int(seed), 0xAC7]).integers(0, num_actions, size=(n, steps)).astype(np.int64)


# ----------------------------------------------------------------------------
# Metric summaries (pure functions on arrays)
# ----------------------------------------------------------------------------


def _as01(x: Any) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
    return t.float() / 255.0 if t.dtype == torch.uint8 else t.float()


def frame_metrics(real: Any, fake: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame PSNR (dB, capped at 100) and SSIM of ``(N, T, H, W, 3)`` videos -> two ``(N, T)`` arrays."""
    r, f = _as01(real), _as01(fake)
    return psnr(r, f).numpy().astype(np.float64), ssim(r, f).double().numpy()


def _stats(v: np.ndarray) -> dict:
    v = np.asarray(v, dtype=np.float64).reshape(-1)
    n = int(v.size)
    std = float(v.std(ddof=1)) if n > 1 else 0.0
    return {"mean": float(v.mean()) if n else float("nan"), "std": std, "sem": std / math.sqrt(n) if n else 0.0, "n": n}


def per_step_summary(values: np.ndarray, prompt_frames: int, callouts=CALLOUT_STEPS) -> dict:
    """Summary of per-frame values ``(N, T)``: per-step means (t = 1..T) and the mean over generated frames."""
    values = np.asarray(values, dtype=np.float64)
    n, t_len = values.shape
    gen = values[:, prompt_frames:]
    out = {
        "mean": float(gen.mean()) if gen.size else float("nan"),
        "std_over_clips": float(gen.mean(1).std(ddof=1)) if n > 1 and gen.size else 0.0,
        "per_step": [float(x) for x in values.mean(0)],
        "per_step_sem": [float(x) for x in (values.std(0, ddof=1) / math.sqrt(n) if n > 1 else np.zeros(t_len))],
    }
    for t in callouts:
        out[f"t{t}"] = float(values[:, t - 1].mean()) if 1 <= t <= t_len and t > prompt_frames else None
    return out


def delta_t_summary(real: Any, gen: Any, gen_random: Any, t: int, psnr_inferred: np.ndarray | None = None,
                    psnr_random: np.ndarray | None = None) -> dict:
    """``Delta_t PSNR`` at frame ``t`` (1-indexed): mean over clips of PSNR(x_t, x̂_t) - PSNR(x_t, x̂'_t)."""
    if psnr_inferred is None:
        psnr_inferred = frame_metrics(real, gen)[0]
    if psnr_random is None:
        psnr_random = frame_metrics(real, gen_random)[0]
    if not 1 <= t <= psnr_inferred.shape[1]:
        raise ValueError(f"t = {t} is outside the clip (1..{psnr_inferred.shape[1]})")
    d = psnr_inferred[:, t - 1] - psnr_random[:, t - 1]
    s = _stats(d)
    return {
        "value": s["mean"], "t": int(t), "std": s["std"], "sem": s["sem"], "clips": s["n"],
        "psnr_inferred": float(psnr_inferred[:, t - 1].mean()), "psnr_random": float(psnr_random[:, t - 1].mean()),
        "per_step": [float(x) for x in (psnr_inferred - psnr_random).mean(0)],
        "per_step_sem": [float(x) for x in ((psnr_inferred - psnr_random).std(0, ddof=1) / math.sqrt(len(d))
                                            if len(d) > 1 else np.zeros(psnr_inferred.shape[1]))],
    }


def latent_action_summary(latent: Any, true: Any, num_latent: int, num_true: int | None = None) -> dict:
    """NMI, purity (with its chance level) and the confusion table of latent vs ground-truth actions."""
    latent = np.asarray(latent, dtype=np.int64).reshape(-1)
    true = np.asarray(true, dtype=np.int64).reshape(-1)
    if num_true is None:
        num_true = int(true.max()) + 1 if true.size else 0
    num_true = max(int(num_true), int(true.max()) + 1 if true.size else 0)
    counts = np.bincount(true, minlength=num_true) if true.size else np.zeros(0)
    return {
        "transitions": int(latent.size),
        "num_latent": int(num_latent),
        "num_true": int(num_true),
        "nmi": nmi(latent, true),
        "purity": purity(latent, true),
        "purity_chance": float(counts.max() / counts.sum()) if true.size else 1.0,
        "confusion": confusion_table(latent, true, num_latent, num_true).tolist(),
        "confusion_rows": "latent action",
        "confusion_cols": "ground-truth action",
    }


# ----------------------------------------------------------------------------
# Training data provenance and level overlap
# ----------------------------------------------------------------------------

_DATA_KEYS = ("data", "data_path", "train_data", "training_data")


def _find_data_strings(obj: Any, depth: int = 0) -> list[str]:
    out: list[str] = []
    if depth > 4:
        return out
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in _DATA_KEYS and isinstance(v, str):
                out.append(v)
            elif isinstance(v, (dict, list)):
                out += _find_data_strings(v, depth + 1)
    elif isinstance(obj, list):
        for v in obj:
            out += _find_data_strings(v, depth + 1)
    return out


def _read_json(path: Path) -> Any:
    from genieworld.errors import UserError
    from genieworld.utils import read_json

    try:
        return read_json(path)
    except UserError:
        return None


def training_data_paths(model_dir: str | os.PathLike) -> list[str]:
    """Training-store paths recorded for a model, duplicates dropped, in this order:

    ``data``-like keys anywhere in ``MODEL/genie.json`` (e.g. its provenance), ``"data"`` of the
    training run ``MODEL/../run.json``, and the ``run.json`` of the tokenizer run that either names
    (``"tokenizer": RUN`` or ``RUN/tokenizer``)."""
    model_dir = Path(model_dir)
    found: list[str] = []
    tok_runs: list[str] = []
    for meta, base in ((_read_json(model_dir / "genie.json"), model_dir), (_read_json(model_dir.parent / "run.json"), None)):
        if not isinstance(meta, dict):
            continue
        # genie.json records folders relative to the model directory
        found += [p if base is None or os.path.isabs(p) else os.path.normpath(os.path.join(base, p))
                  for p in _find_data_strings(meta)]
        for holder in (meta, meta.get("provenance")):
            if isinstance(holder, dict) and isinstance(holder.get("tokenizer"), str):
                tok = holder["tokenizer"]
                tok_runs.append(tok if base is None or os.path.isabs(tok) else os.path.normpath(os.path.join(base, tok)))
    for tok in tok_runs:
        for cand in (Path(tok) / "run.json", Path(tok).parent / "run.json"):
            r2 = _read_json(cand)
            if isinstance(r2, dict):
                found += _find_data_strings(r2)
                break
    out, seen = [], set()
    for p in found:
        key = os.path.realpath(p)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def _same_path(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def data_overlap(train_paths: list[str], eval_store, eval_path: str | os.PathLike) -> dict:
    """Compare the evaluation store with the training stores.

    Returns ``{"checked": [...], "overlap": bool, "details": [...], "warning": str | None}``; the
    warning is set when the eval store *is* a training store or shares level seeds with one.
    """
    from genieworld.data.coinrun import level_overlap, levels_of

    details = []
    eval_levels = levels_of(eval_store)
    problems = []
    for tp in train_paths:
        entry: dict[str, Any] = {"train_data": tp}
        if _same_path(tp, eval_path):
            entry.update(same_store=True, shared_levels=len(eval_levels))
            problems.append(f"it is the training store {tp} itself")
        elif not (Path(tp) / "manifest.json").exists():
            entry.update(checked=False, reason="training store not found")
        else:
            try:
                shared = level_overlap(tp, eval_store)
            except Exception as e:  # unreadable training store: report, do not fail the eval
                entry.update(checked=False, reason=f"unreadable: {e}")
            else:
                entry.update(checked=True, shared_levels=len(shared), examples=sorted(shared)[:10])
                if shared:
                    problems.append(f"{len(shared)} of its {len(eval_levels)} levels are training levels of "
                                    f"{tp} (e.g. {sorted(shared)[:5]})")
        details.append(entry)
    warning = None
    if problems:
        warning = ("the evaluation data overlaps the training data: " + "; ".join(problems)
                   + ". These metrics measure fit to seen data, not generalisation; evaluate on held-out levels "
                   "(e.g. `genie data coinrun DIR --start-level 100000`).")
    return {"train_data": list(train_paths), "eval_levels": len(eval_levels), "overlap": bool(problems),
            "details": details, "warning": warning,
            "note": None if train_paths else "no training data path recorded with the model; overlap not checked"}


# ----------------------------------------------------------------------------
# The protocol
# ----------------------------------------------------------------------------


def _versions() -> dict:
    import genieworld

    v = {"genieworld": genieworld.__version__, "torch": torch.__version__, "numpy": np.__version__,
         "python": sys.version.split()[0], "platform": platform.platform()}
    try:
        import torchmetrics

        v["torchmetrics"] = torchmetrics.__version__
    except Exception:  # pragma: no cover
        pass
    return v


def _jsonable(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _device_of(genie) -> torch.device:
    dev = getattr(genie, "device", None)
    if isinstance(dev, torch.device):
        return dev
    for mod in (getattr(genie, "tokenizer", None), getattr(genie, "dynamics", None)):
        if isinstance(mod, torch.nn.Module):
            for p in mod.parameters():
                return p.device
    return torch.device("cpu")


def _reconstruct(tokenizer, clips: np.ndarray, batch_size: int, device, tick: Callable[[int], None]):
    """Tokenizer reconstructions (N, T, H, W, 3) uint8 and the code indices of every frame."""
    window = int(getattr(getattr(tokenizer, "cfg", None), "max_frames", clips.shape[1]) or clips.shape[1])
    recon = np.empty_like(clips)
    codes = []
    for b0 in range(0, len(clips), batch_size):
        for t0 in range(0, clips.shape[1], window):
            x = torch.from_numpy(clips[b0:b0 + batch_size, t0:t0 + window]).to(device)
            with torch.no_grad():
                idx = tokenizer.encode(x)
                y = tokenizer.decode(idx)
            codes.append(idx.reshape(-1).cpu().numpy())
            recon[b0:b0 + batch_size, t0:t0 + window] = (y.clamp(0, 1) * 255.0).round().to(torch.uint8).cpu().numpy()
        tick(len(clips[b0:b0 + batch_size]))
    return recon, np.concatenate(codes) if codes else np.zeros(0, np.int64)


def _as_uint8(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype != torch.uint8:
            x = (x.float().clamp(0, 1) * 255.0).round().to(torch.uint8)
        return x.numpy()
    x = np.asarray(x)
    return x if x.dtype == np.uint8 else (np.clip(x, 0, 1) * 255.0).round().astype(np.uint8)


def _sampling_settings(genie, overrides: dict) -> dict:
    s = getattr(genie, "sampling", None)
    d = asdict(s) if is_dataclass(s) else dict(s or {})
    d.update(overrides)
    return d


def evaluate(genie, store, config: EvalConfig, *, model_path: str | None = None, data_path: str | None = None,
             log: Callable[[str], None] | None = None) -> EvalResult:
    """Run the whole protocol (module docstring) on a loaded ``Genie`` and an ``EpisodeStore``."""
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    cfg = config
    h_img = int(genie.image_size)
    if tuple(store.resolution) != (h_img, h_img):
        raise UserError(f"the store's frames are {store.resolution[0]}x{store.resolution[1]} but the model works at "
                        f"{h_img}x{h_img}; evaluate on a store recorded at the model's resolution")
    if cfg.prompt_frames < 1 or cfg.horizon <= cfg.prompt_frames:
        raise UserError(f"--horizon must be larger than the prompt ({cfg.prompt_frames} frame(s)), got {cfg.horizon}")
    if cfg.batch_size < 1:
        raise UserError("--batch-size must be >= 1")
    num_actions = int(genie.num_actions)
    warnings_out: list[str] = []

    def warn(msg: str) -> None:
        warnings_out.append(msg)
        if log is not None:
            log(f"warning: {msg}")

    overlap = data_overlap(training_data_paths(model_path) if model_path else [], store,
                           data_path or str(store.path))
    if overlap["warning"]:
        warn(overlap["warning"])
    model_skip = valid_frame_skip(getattr(genie, "provenance", {}).get("frame_skip"))
    store_skip = frame_skip_of(store)
    if model_skip is not None and store_skip is not None and model_skip != store_skip:
        warn(f"the model was trained on CoinRun recorded with frame skip {model_skip}, but this store uses "
             f"{store_skip}: generation metrics are not comparable (record the test levels with "
             f"`genie data coinrun --frame-skip {model_skip}`)")

    refs = select_clips(store.episode_lengths, cfg.episodes, cfg.horizon, cfg.seed, cfg.clips_per_episode)
    n_eligible = int((store.episode_lengths >= cfg.horizon).sum())
    if n_eligible < cfg.episodes:
        warn(f"only {n_eligible} episode(s) of the store have {cfg.horizon} frames; using {n_eligible} instead of "
             f"{cfg.episodes}")
    real, true_actions = load_clips(store, refs, cfg.horizon)
    n = len(real)
    device = _device_of(genie)
    bs = cfg.batch_size
    n_batches = math.ceil(n / bs)
    sampling = _sampling_settings(genie, cfg.sampling_overrides)
    do_fvd = cfg.fvd and cfg.horizon >= 9 and n >= 2
    grid_p = min(cfg.grid_prompts, n) if cfg.grid_frames > 0 else 0
    # progress in clip passes: reconstruction, two rollouts, the grid's rollouts and two I3D passes
    total = 3 * n + grid_p * num_actions + (2 * n if do_fvd else 0)
    disable = not cfg.progress or os.environ.get("GENIEWORLD_NO_PROGRESS", "") not in ("", "0")
    bar = tqdm(total=total, desc="eval", unit="clip", disable=disable, dynamic_ncols=True)

    def tick(k: int = 1) -> None:
        bar.update(k)
    timing: dict[str, float] = {}

    try:
        # 1. tokenizer reconstruction
        t0 = time.perf_counter()
        bar.set_description("eval: tokenizer reconstruction")
        recon, codes = _reconstruct(genie.tokenizer, real, bs, device, tick)
        rec_psnr, rec_ssim = frame_metrics(real, recon)
        timing["reconstruction_s"] = time.perf_counter() - t0

        # 2. inferred and random actions, rollouts
        t0 = time.perf_counter()
        bar.set_description("eval: rollouts")
        p = cfg.prompt_frames
        inferred = np.empty((n, cfg.horizon - 1), dtype=np.int64)
        rand = random_actions(n, cfg.horizon - p, num_actions, cfg.seed)
        gen = np.empty_like(real)
        gen_rand = np.empty_like(real)
        for b in range(n_batches):
            sl = slice(b * bs, (b + 1) * bs)
            x = torch.from_numpy(real[sl]).to(device)
            with torch.no_grad():
                acts = genie.infer_actions(x)
            inferred[sl] = acts.detach().cpu().numpy()
            seed_b = batch_seed(cfg.seed, b)
            prompt = x[:, :p]
            with torch.no_grad():
                out = genie.rollout(prompt, torch.from_numpy(inferred[sl, p - 1:]).to(device), seed=seed_b,
                                    **cfg.sampling_overrides)
            gen[sl] = _as_uint8(out)
            tick(len(x))
            with torch.no_grad():
                out = genie.rollout(prompt, torch.from_numpy(rand[sl]).to(device), seed=seed_b,
                                    **cfg.sampling_overrides)
            gen_rand[sl] = _as_uint8(out)
            tick(len(x))
        timing["rollouts_s"] = time.perf_counter() - t0

        gen_psnr, gen_ssim = frame_metrics(real, gen)
        rand_psnr, rand_ssim = frame_metrics(real, gen_rand)
        # a world that does nothing: the last prompt frame's reconstruction held still (PSNR's reference)
        still_psnr = frame_metrics(real, np.repeat(recon[:, p - 1:p], cfg.horizon, axis=1))[0]

        # 3. latent-action grid: each action repeated for grid_frames frames from a few real prompts
        grid = None
        if grid_p:
            t0 = time.perf_counter()
            bar.set_description("eval: latent-action grid")
            prompts = torch.from_numpy(real[:grid_p, :p]).to(device)
            prompts = prompts.repeat_interleave(num_actions, dim=0)  # (P*A, p, ...) prompt-major
            acts = torch.arange(num_actions).repeat(grid_p)[:, None].expand(-1, cfg.grid_frames).contiguous()
            outs = []
            for g0 in range(0, len(prompts), max(bs, num_actions)):
                g1 = g0 + max(bs, num_actions)
                with torch.no_grad():
                    outs.append(_as_uint8(genie.rollout(prompts[g0:g1], acts[g0:g1].to(device),
                                                        seed=batch_seed(cfg.seed, 10_000 + g0),
                                                        **cfg.sampling_overrides)))
                tick(len(outs[-1]))
            grid = np.concatenate(outs).reshape(grid_p, num_actions, *outs[0].shape[1:])
            timing["grid_s"] = time.perf_counter() - t0

        # 4. FVD
        fvd_info: dict[str, Any]
        if do_fvd:
            t0 = time.perf_counter()
            bar.set_description("eval: FVD (I3D)")
            from genieworld.eval.fvd import I3D_SIZE, frechet_distance, i3d_features

            feats = []
            for vids in (real, gen):
                f = []
                for b0 in range(0, n, bs):
                    f.append(i3d_features(vids[b0:b0 + bs], batch_size=bs, feature=cfg.fvd_feature,
                                          device=device))
                    tick(len(f[-1]))
                feats.append(np.concatenate(f))
            value = frechet_distance(feats[0], feats[1])
            fvd_info = {
                "value": value, "clips": n, "clip_length": cfg.horizon,
                "clip_contents": (f"generated: {p} real prompt frame(s) + {cfg.horizon - p} frames generated with "
                                  f"LAM-inferred actions; real: the same {cfg.horizon} real frames"),
                "feature": cfg.fvd_feature,
                "feature_dim": int(feats[0].shape[1]),
                "network": "Inception-I3D, Kinetics-400 (PyTorch port of the TF-Hub module)",
                "resolution": I3D_SIZE, "resize": "bilinear (TF1 resize_bilinear convention)",
                "biased": n < feats[0].shape[1],
                "note": (f"FVD from {n} clips per set: with fewer clips than the {feats[0].shape[1]} feature "
                         "dimensions the covariance estimates are singular and FVD is strongly biased upwards; "
                         "compare only numbers computed with the same clip count (reference practice: >= 256)."),
            }
            timing["fvd_s"] = time.perf_counter() - t0
        else:
            reason = ("disabled (--no-fvd)" if not cfg.fvd else
                      f"clips of {cfg.horizon} frames are shorter than the 9 I3D needs" if cfg.horizon < 9 else
                      "needs at least 2 clips")
            fvd_info = {"value": None, "skipped": reason}
    finally:
        bar.close()

    # 5. summaries
    gen_summary = {
        "psnr": per_step_summary(gen_psnr, p), "ssim": per_step_summary(gen_ssim, p),
        "random_actions": {"psnr": per_step_summary(rand_psnr, p), "ssim": per_step_summary(rand_ssim, p)},
        "still_prompt": {"psnr": per_step_summary(still_psnr, p),
                         "definition": "the tokenizer's reconstruction of the last prompt frame, held still: what a "
                                       "world that does nothing scores. Clips whose real view stands still score "
                                       "high for it, so a model's PSNR is read against it, not against 0"},
        "t": list(range(1, cfg.horizon + 1)),
        "prompt_steps": list(range(1, p + 1)),
        "averaged_over": f"{n} clips x {cfg.horizon - p} generated frames (t = {p + 1}..{cfg.horizon}); "
                         "per_step[i] is the mean over clips at t = i + 1",
    }
    delta = None
    if cfg.delta_t <= p or cfg.delta_t > cfg.horizon:
        warn(f"Delta_t PSNR needs {p} < t = {cfg.delta_t} <= horizon = {cfg.horizon}; not computed")
    else:
        delta = delta_t_summary(None, None, None, cfg.delta_t, gen_psnr, rand_psnr)
        delta["generated_steps_at_t"] = cfg.delta_t - p
        delta["definition"] = (f"mean over {n} clips of PSNR(x_t, x̂_t) - PSNR(x_t, x̂'_t) at t = {cfg.delta_t} "
                               f"(1-indexed frames, {p} prompt frame(s), so {cfg.delta_t - p} generated steps); "
                               "x̂ from LAM-inferred actions, x̂' from actions uniform over the "
                               f"{num_actions}-action codebook, same sampling seed")

    if true_actions is not None:
        n_true = store.num_actions
        latent = latent_action_summary(inferred, true_actions, num_actions, n_true)
    else:
        latent = {"skipped": "the evaluation store has no ground-truth actions"}

    tok_codes = int(genie.tokenizer.cfg.vq.num_codes)
    codebooks = {
        "tokenizer": {**codebook_usage(codes, tok_codes), "num_codes": tok_codes, "tokens": int(codes.size)},
        "lam": {**codebook_usage(inferred, num_actions), "num_codes": num_actions, "transitions": int(inferred.size)},
    }

    timing["total_s"] = time.perf_counter() - t_start
    metrics = {
        "format": METRICS_FORMAT,
        "format_version": METRICS_VERSION,
        "settings": {
            "model": str(Path(model_path).resolve()) if model_path else None,
            "data": str(Path(data_path or store.path).resolve()),
            "episodes_requested": cfg.episodes,
            "episodes_used": sorted({ep for ep, _ in refs}),
            "clips_per_episode": cfg.clips_per_episode,
            "clips": [{"episode": ep, "start": s, "level": store.episode_meta(ep).get("level")} for ep, s in refs],
            "num_clips": n,
            "seed": cfg.seed,
            "seeds": {
                "clip_selection": f"numpy default_rng([{cfg.seed}, 0x5E1EC7])",
                "random_actions": f"numpy default_rng([{cfg.seed}, 0xAC7]), uniform over {num_actions} actions",
                "rollouts": [batch_seed(cfg.seed, b) for b in range(n_batches)],
                "rollout_seed_rule": "batch b of --batch-size clips: SeedSequence([seed, b]); inferred- and "
                                     "random-action rollouts of a batch share it",
                "grid_seed_rule": "latent-action grid rollouts starting at sample g: SeedSequence([seed, 10000 + g])",
            },
            "fvd": {"enabled": bool(do_fvd), "clips": n if do_fvd else 0, "clip_length": cfg.horizon,
                    "feature": cfg.fvd_feature},
            "batch_size": bs,
            "frame_indexing": (f"1-indexed: t = 1..{cfg.horizon} are the clip's frames; t <= {p} is the real "
                               f"prompt, t = {p + 1}..{cfg.horizon} are generated (frame t is t - {p} generated "
                               "steps after the prompt)"),
            "prompt_frames": p,
            "horizon": cfg.horizon,
            "generated_frames": cfg.horizon - p,
            "delta_t": cfg.delta_t,
            "sampling": sampling,
            "maskgit_steps": sampling.get("maskgit_steps"),
            "temperature": sampling.get("temperature"),
            "num_actions": num_actions,
            "image_size": h_img,
            "psnr": f"10 log10(1 / MSE) on [0, 1] RGB frames at {h_img}x{h_img}, capped at {PSNR_MAX_DB:g} dB",
            "ssim": "Gaussian window sigma 1.5 (11x11), K1 0.01, K2 0.03, data range 1, averaged over RGB",
            "device": str(device), "precision": getattr(genie, "play_precision", "fp32"),
        },
        "tokenizer_reconstruction": {
            "psnr": _stats(rec_psnr)["mean"], "ssim": _stats(rec_ssim)["mean"],
            "psnr_std": _stats(rec_psnr)["std"], "ssim_std": _stats(rec_ssim)["std"],
            "frames": int(rec_psnr.size),
            "averaged_over": f"all {n} clips x {cfg.horizon} frames",
        },
        "generation": gen_summary,
        "delta_t_psnr": delta,
        "fvd": fvd_info,
        "latent_actions": latent,
        "codebook_usage": codebooks,
        "data_overlap": overlap,
        "warnings": warnings_out,
        "versions": _versions(),
        "timing": {k: round(v, 3) for k, v in timing.items()},
    }
    names = list(getattr(genie, "action_names", None) or [])
    if len(names) != num_actions:
        names = [str(i) for i in range(num_actions)]
    if grid is not None:  # what each action does to the view, from the last prompt frame on
        from genieworld.eval.motion import grid_motion

        metrics["grid_motion"] = _jsonable(grid_motion(grid[:, :, p - 1:], names))
    return EvalResult(metrics=_jsonable(metrics), real=real, generated=gen, generated_random=gen_rand, recon=recon,
                      inferred_actions=inferred, random_actions=rand, grid=grid, action_names=names,
                      warnings=warnings_out)

"""How far is the latent action model from what the data allows? LAM-only training vs a supervised ceiling; JSON out.

    PYTHONPATH=src python bench/bench_lam.py --data DATA --eval-data TEST                 # cpu preset's LAM
    PYTHONPATH=src python bench/bench_lam.py --data DATA --eval-data TEST --set lam.vq.num_codes=8
    PYTHONPATH=src python bench/bench_lam.py --model models/coinrun-cpu --eval-data TEST  # score a trained LAM
    PYTHONPATH=src python bench/bench_lam.py --model RUN/lam --eval-data TEST --data DATA --steps 4000  # + its ceiling
    PYTHONPATH=src python bench/bench_lam.py --data VIDEOS --eval-data TEST --no-ceiling  # a store ingested from videos
    PYTHONPATH=src python bench/bench_lam.py --init models/coinrun-cpu --data DATA --eval-data TEST \
        --set lam.vq.num_codes=8 --set lam.merged_actions=0    # fine-tune its 8 merged actions as 8 codes

Trains the preset's LAM alone for ``--steps`` steps on random short windows (``--seq-len``
frames, default 3) of an episode store held in memory, then, on the held-out store, infers the
latent action of every transition x_t -> x_{t+1} whose x_{t-1} is in the episode (at most
``--eval-transitions`` of them) and reports, against the held-out store's *effective* actions (the
classes of raw ids that act differently in its game: CoinRun's 6, {left, none, right} x {jump, no
jump}; any Procgen game's measured partition from its manifest, ``genie data procgen``; the raw ids
themselves for a store without one) and against the raw recorded ids:

* ``nmi_eff`` / ``nmi_raw`` and ``purity_eff`` / ``purity_raw``, each with ``*_shuffled`` (the codes
  permuted: what the metric reads by chance on this many transitions);
* ``nmi_direction`` / ``nmi_jump`` (Procgen stores): the raw id's horizontal part (left, none, right)
  and whether it presses up (a jump in a platformer); Procgen's 15 ids mean the same in every game;
* ``probe_eff``: held-out accuracy of a linear probe on the *continuous* (pre-quantiser) latent,
  with ``majority_eff`` (always guessing the commonest action);
* ``nmi_eff_kmeans`` (and ``nmi_direction_kmeans``): the continuous latent cut into as many
  clusters as the LAM has actions by k-means (``genieworld.eval.metrics.kmeans_labels``), the
  buttons AdaWorld reads from a continuous latent, against the codebook's;
* ``codes_used`` and ``max_code_share`` (the largest fraction of transitions one code takes);
* ``mse`` against ``copy_mse`` (reconstruction of x_{t+1} against copying x_t, last 100 batches);
* for a LAM whose codes were merged into fewer actions (``lam.merged_actions``), everything above
  is about the merged actions, and ``trained_codes`` scores the codes it trained.

``--ceiling`` (on by default) also trains the LAM's own inverse-dynamics encoder *supervised*
on the true effective action, same windows, steps and batch: ``ceiling.acc_eff`` and
``ceiling.nmi_eff`` bound what any latent action model with this encoder can recover, and
``probe_vs_ceiling`` = probe_eff / ceiling.acc_eff is the "80 % of the ceiling" figure.
The ceiling needs the conv LAM's encoder (``lam.arch = conv``). ``--past-ceiling`` trains the same
encoder with x_t in place of x_{t+1} (``ceiling_past``): how much of the action (x_{t-1}, x_t) alone
give away, which a forward model that sees them needs no latent action for.

Measured on this project's 2-core machine (one thread each): see docs/experiments.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import apply_sets, camera_moves, emit_json, parse_sets  # noqa: E402


def load_store(path, max_episodes: int | None = None, need_actions: bool = True):
    """All frames of a store in memory: frames (N, H, W, C) uint8, actions (N,) (-1 after an episode's
    last frame, and everywhere in an episode without recorded actions, which only ``need_actions=False``
    keeps), centres: every t whose x_{t-1} and x_{t+1} are in t's episode."""
    from genieworld.data.store import EpisodeStore

    st = EpisodeStore(path)
    frames, acts, centres, n = [], [], [], 0
    for i in range(st.num_episodes if max_episodes is None else min(max_episodes, st.num_episodes)):
        f, a, _ = st.read_episode(i)
        if len(f) < 3 or (a is None and need_actions):
            continue
        frames.append(f)
        acts.append(np.full(len(f), -1, dtype=np.int64) if a is None
                    else np.concatenate([np.asarray(a, dtype=np.int64), [-1]]))
        centres.append(np.arange(n + 1, n + len(f) - 1))
        n += len(f)
    if not frames:
        raise SystemExit(f"{path}: no episode of 3 or more frames" + (" with recorded actions" if need_actions else ""))
    return np.concatenate(frames), np.concatenate(acts), np.concatenate(centres)


class Actions:
    """How a store's raw recorded ids are scored: ``eff(raw)`` -> effective class ids (the store's
    measured partition; the raw ids themselves when it has none), ``names`` of the classes, and
    ``axes(raw)`` -> (horizontal 0/1/2, presses up 0/1) for Procgen's shared 15 ids (None elsewhere)."""

    def __init__(self, path):
        from genieworld.data.procgen import effective_actions_of
        from genieworld.data.store import EpisodeStore

        st = EpisodeStore(path)
        ea = effective_actions_of(st)
        if ea is None:
            n = int(st.num_actions or 0)
            if n <= 0:
                raise SystemExit(f"{path}: the store records no action space (num_actions)")
            self.table, self.names, self.procgen = np.arange(n), [str(i) for i in range(n)], False
        else:
            self.table, self.names, self.procgen = np.asarray(ea["map"], dtype=np.int64), list(ea["names"]), True
        self.num_classes = len(self.names)

    def eff(self, raw) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.int64)
        if raw.size and (raw.min() < 0 or raw.max() >= len(self.table)):
            raise SystemExit(f"recorded action ids {int(raw.min())}..{int(raw.max())} are outside the store's "
                             f"{len(self.table)}")
        return self.table[raw]

    def axes(self, raw):
        if not self.procgen:
            return None
        from genieworld.data.coinrun import effective_action

        six = effective_action(raw)  # Procgen's shared ids as 2 * (left, none, right) + presses up
        return six // 2, six % 2


def windows(frames: np.ndarray, centres: np.ndarray, seq_len: int) -> torch.Tensor:
    """(B, seq_len, H, W, C) uint8 windows whose second frame is each centre (x_{t-1}, x_t, x_{t+1}, ...)."""
    idx = centres[:, None] - 1 + np.arange(seq_len)[None]
    return torch.from_numpy(frames[idx])


def score(codes, latents, acts_raw, num_codes: int, seed: int, actions: Actions, camera=None) -> dict:
    from genieworld.eval.metrics import kmeans_labels, linear_probe_accuracy, nmi, purity

    rng = np.random.default_rng(seed)
    acts_eff = actions.eff(acts_raw)
    sh = rng.permutation(codes)
    counts = np.bincount(codes, minlength=num_codes)
    out = {}
    for name, y in (("eff", acts_eff), ("raw", acts_raw)):
        out[f"nmi_{name}"] = round(nmi(codes, y), 4)
        out[f"nmi_{name}_shuffled"] = round(nmi(sh, y), 4)
        out[f"purity_{name}"] = round(purity(codes, y), 4)
        out[f"purity_{name}_shuffled"] = round(purity(sh, y), 4)
    axes = actions.axes(acts_raw)
    if axes is not None:  # what the codes follow: the action's direction (left/none/right) and jump
        out["nmi_direction"] = round(nmi(codes, axes[0]), 4)
        out["nmi_jump"] = round(nmi(codes, axes[1]), 4)
    if camera is not None:  # and the camera's motion
        out["nmi_camera_x"] = round(nmi(codes, camera[:, 0]), 4)
        out["nmi_camera_y"] = round(nmi(codes, camera[:, 1]), 4)
        if axes is not None:
            out["nmi_camera_x_vs_direction"] = round(nmi(camera[:, 0], axes[0]), 4)
    out["probe_eff"] = round(linear_probe_accuracy(latents, acts_eff, seed=seed), 4)
    # the continuous latent cut into as many buttons by k-means instead of by the codebook (AdaWorld)
    km = kmeans_labels(latents, num_codes, seed=seed)
    out["nmi_eff_kmeans"] = round(nmi(km, acts_eff), 4)
    if axes is not None:
        out["nmi_direction_kmeans"] = round(nmi(km, axes[0]), 4)
    out["majority_eff"] = round(float(np.bincount(acts_eff).max() / len(acts_eff)), 4)
    out["codes_used"] = int((counts > 0).sum())
    out["max_code_share"] = round(float(counts.max() / counts.sum()), 4)
    out["code_counts"] = counts.tolist()
    return out


@torch.no_grad()
def infer(lam, frames, centres, batch: int = 256):
    """Codes and continuous latents of the transition x_t -> x_{t+1} for every centre t (x_{t-1} in view)."""
    lam.eval()
    codes, lats = [], []
    for i in range(0, len(centres), batch):
        w = windows(frames, centres[i:i + batch], 3)
        idx, _ = lam.encode_actions(w)
        codes.append(idx[:, 1])
        lats.append(lam.encode_latents(w)[:, 1].float())
    lam.train()
    return torch.cat(codes).numpy(), torch.cat(lats).numpy()


def merge_codes(lam, data: str | None) -> None:
    """Merge a LAM's trained codes into ``lam.cfg.merged_actions`` actions, as ``genie train lam`` does
    (``lam.merge = "context"`` or ``"camera"`` reads the training store ``data`` in video order)."""
    from genieworld.data.store import EpisodeStore
    from genieworld.train.lam_task import merge_groups

    was_training = lam.training
    store = EpisodeStore(data) if lam.cfg.merge in ("context", "camera") else None
    lam.merge_codes(merge_groups(lam, store, progress=False))
    lam.train(was_training)


@torch.no_grad()
def trained_codes(lam, frames, centres, batch: int = 256) -> np.ndarray:
    """The code a LAM trained (before any merge into actions) of x_t -> x_{t+1} for every centre t."""
    return np.concatenate([lam.encode_codes(windows(frames, centres[i:i + batch], 3))[:, 1].numpy()
                           for i in range(0, len(centres), batch)])


def train_ceiling(cfg, frames, acts, centres, eval_frames, eval_acts, eval_centres, steps, batch, lr, seed,
                  actions: Actions, past_only: bool = False):
    """The LAM's encoder trained on the true effective action of x_t -> x_{t+1}. ``past_only``: it sees
    x_t in place of x_{t+1}, so it reads only what (x_{t-1}, x_t) tell of the action -- what a forward
    model that sees them can predict without any latent action."""
    from genieworld.eval.metrics import nmi
    from genieworld.lam_conv import InverseDynamics

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed + 1)
    net = InverseDynamics(replace(cfg, vq=replace(cfg.vq, code_dim=actions.num_classes)))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)

    def split(w):
        x = (w.float() / 127.5 - 1).permute(0, 1, 4, 2, 3)
        return x[:, 0], x[:, 1], x[:, 1 if past_only else 2]

    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, step / 100)
        t = centres[rng.integers(0, len(centres), batch)]
        y = torch.from_numpy(actions.eff(acts[t]))
        loss = F.cross_entropy(net(*split(windows(frames, t, 3))), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        pred = torch.cat([net(*split(windows(eval_frames, eval_centres[i:i + 256], 3))).argmax(-1)
                          for i in range(0, len(eval_centres), 256)]).numpy()
    raw = eval_acts[eval_centres]
    y = actions.eff(raw)
    out = {"acc_eff": round(float((pred == y).mean()), 4), "nmi_eff": round(nmi(pred, y), 4)}
    if actions.procgen:  # the predicted class's axes, through its smallest raw id
        rep = np.array([int(np.flatnonzero(actions.table == k)[0]) for k in range(actions.num_classes)])
        (ph, pu), (yh, yu) = actions.axes(rep[pred]), actions.axes(raw)
        out.update(acc_direction=round(float((ph == yh).mean()), 4), acc_jump=round(float((pu == yu).mean()), 4))
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def load_lam(path):
    """A trained LAM from a model dir (its ``lam/``) or a LAM folder."""
    from genieworld.config import LAMConfig
    from genieworld.genie import load_component
    from genieworld.lam import build_lam

    p = Path(path)
    return load_component(build_lam, LAMConfig, p / "lam" if (p / "lam" / "config.json").exists() else p)


def ceilings(cfg, fr, ac, ce, ef, ea, ec, probe: float, actions: Actions, args) -> dict:
    """The supervised ceiling of ``cfg``'s encoder, the probe against it and, with ``--past-ceiling``, the
    ceiling of (x_{t-1}, x_t) alone."""
    run = dict(steps=args.steps, batch=args.batch_size, lr=args.lr, seed=args.seed, actions=actions)
    c = train_ceiling(cfg, fr, ac, ce, ef, ea, ec, **run)
    out = {"ceiling": c, "probe_vs_ceiling": round(probe / max(c["acc_eff"], 1e-9), 4)}
    if args.past_ceiling:
        out["ceiling_past"] = train_ceiling(cfg, fr, ac, ce, ef, ea, ec, **run, past_only=True)
    return out


def init_from(lam, path) -> None:
    """Start ``lam`` from a trained LAM's weights. When ``lam`` trains as many codes as the trained LAM has
    merged actions, its codebook starts as those actions' vectors: the encoder then adapts to the merge
    instead of losing to it what merging the codes loses."""
    src = load_lam(path)
    skip = ("vq.", "merge_map", "merged_codebook")
    state = {k: v for k, v in src.state_dict().items() if not k.startswith(skip)}
    try:
        missing, unexpected = lam.load_state_dict(state, strict=False)
    except RuntimeError as e:  # a tensor of another shape
        raise SystemExit(f"--init {path}: its weights do not fit this LAM: {e}") from None
    if unexpected or any(not k.startswith(skip) for k in missing):
        raise SystemExit(f"--init {path}: its weights do not fit this LAM (missing {missing}, unexpected {unexpected})")
    with torch.no_grad():
        if src.cfg.merged_actions and src.is_merged and src.cfg.merged_actions == lam.cfg.vq.num_codes:
            lam.vq.codebook.copy_(src.merged_codebook)
        elif src.cfg.vq.num_codes == lam.cfg.vq.num_codes:
            lam.vq.codebook.copy_(src.vq.codebook)
        else:
            return  # a fresh codebook, initialised from the first batch's latents
        lam.vq.initialized.fill_(1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="training store (not needed with --model); its recorded actions are needed "
                    "only for the ceiling: a store ingested from videos trains with --no-ceiling")
    ap.add_argument("--eval-data", required=True, help="held-out store with recorded actions")
    ap.add_argument("--model", help="score this trained LAM (a model dir, or a LAM folder) instead of training one")
    ap.add_argument("--init", help="start the LAM it trains from this trained LAM's weights (a model dir or LAM "
                    "folder); with --set lam.vq.num_codes=N equal to its merged actions, from those actions")
    ap.add_argument("--preset", default="cpu", help="preset (or .json) whose LAM is trained (default: cpu)")
    ap.add_argument("--set", action="append", default=[], metavar="lam.KEY=VALUE",
                    help="override a LAM setting, e.g. lam.vq.num_codes=8 or lam.conv.nce_weight=0.1 (repeatable)")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--eval-every", type=int, default=0, help="also score every N steps (default: only at the end)")
    ap.add_argument("--eval-transitions", type=int, default=3000)
    ap.add_argument("--max-episodes", type=int, help="read at most this many training episodes")
    ap.add_argument("--no-ceiling", dest="ceiling", action="store_false", help="skip the supervised ceiling")
    ap.add_argument("--past-ceiling", action="store_true",
                    help="also train the ceiling on (x_{t-1}, x_t) alone: how much of the action the past gives away")
    ap.add_argument("--save", help="write the trained LAM here (config.json + model.safetensors)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.model is None and args.data is None:
        raise SystemExit("need --data (to train a LAM) or --model (to score one)")

    from genieworld.config import load_preset
    from genieworld.data.store import EpisodeStore
    from genieworld.lam import build_lam

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    ef, ea, ec = load_store(args.eval_data)
    ec = ec[rng.permutation(len(ec))[: args.eval_transitions]]
    cam = np.concatenate([camera_moves(ef[i:i + 2], 6, 10) for i in ec])  # (n, 2) direction the picture moved
    actions = Actions(args.eval_data)
    if args.data and EpisodeStore(args.data).has_actions and not np.array_equal(Actions(args.data).table, actions.table):
        raise SystemExit(f"{args.data} and {args.eval_data} map their actions differently: not the same game and settings")
    result: dict = {"bench": "lam", "eval_data": str(args.eval_data), "eval_transitions": int(len(ec)),
                    "effective_actions": actions.names}

    if args.model:
        lam = load_lam(args.model)
        codes, lats = infer(lam, ef, ec)
        result.update({"model": str(args.model), "lam": {"arch": lam.cfg.arch, "num_codes": lam.num_actions},
                       **score(codes, lats, ea[ec], lam.num_actions, args.seed, actions, cam)})
        if lam.cfg.merged_actions:  # also the codes it trained, before they were merged into actions
            k = lam.cfg.vq.num_codes
            trained = score(trained_codes(lam, ef, ec), lats, ea[ec], k, args.seed, actions, cam)
            result["lam"]["trained_codes"] = k
            result["trained_codes"] = {key: trained[key] for key in ("nmi_eff", "nmi_eff_shuffled", "nmi_direction",
                                                                     "nmi_jump", "codes_used", "max_code_share")
                                       if key in trained}
        if args.ceiling and args.data and lam.cfg.arch == "conv":  # the ceiling of this LAM's encoder
            fr, ac, ce = load_store(args.data, args.max_episodes)
            result.update({**ceilings(lam.cfg, fr, ac, ce, ef, ea, ec, result["probe_eff"], actions, args),
                           "ceiling_steps": args.steps})
        emit_json(result)
        return 0

    cfg = apply_sets(load_preset(args.preset).lam, parse_sets(args.set))
    cfg = replace(cfg, max_frames=max(cfg.max_frames, args.seq_len))
    fr, ac, ce = load_store(args.data, args.max_episodes, need_actions=args.ceiling)  # videos without actions train
    lam = build_lam(cfg)
    if args.init:
        init_from(lam, args.init)
    opt = torch.optim.AdamW(lam.parameters(), lr=args.lr, weight_decay=1e-4)
    history, mse_l, copy_l = [], [], []
    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        for g in opt.param_groups:
            g["lr"] = args.lr * min(1.0, step / 100)
        w = windows(fr, ce[rng.integers(0, len(ce), args.batch_size)], args.seq_len)
        _, info = lam(w)
        opt.zero_grad()
        info["loss"].backward()
        torch.nn.utils.clip_grad_norm_(lam.parameters(), 1.0)
        opt.step()
        x = w.float() / 255
        mse_l.append(float(info["mse"]))
        copy_l.append(float(F.mse_loss(x[:, :-1], x[:, 1:])))
        if step == args.steps or (args.eval_every and step % args.eval_every == 0):
            if cfg.merged_actions:  # merge the trained codes into actions as `genie train lam` does
                merge_codes(lam, args.data)
            codes, lats = infer(lam, ef, ec)
            r = {"step": step, "seconds": round(time.perf_counter() - t0, 1),
                 "mse": round(float(np.mean(mse_l[-100:])), 5), "copy_mse": round(float(np.mean(copy_l[-100:])), 5),
                 **score(codes, lats, ea[ec], lam.num_actions, args.seed, actions, cam)}
            history.append(r)
            print(json.dumps(r), file=sys.stderr, flush=True)
    if args.save:
        from genieworld.genie import save_component

        save_component(lam, lam.cfg, Path(args.save))
    result.update({"data": str(args.data), "train_transitions": int(len(ce)), "steps": args.steps,
                   "batch_size": args.batch_size, "seq_len": args.seq_len, "lr": args.lr, "sets": args.set,
                   "init": args.init,
                   "lam": {"arch": cfg.arch, "num_codes": cfg.vq.num_codes, "actions": lam.num_actions,
                           "params": sum(p.numel() for p in lam.parameters())},
                   **history[-1], "history": history[:-1]})
    if args.ceiling:
        if cfg.arch != "conv":
            result["ceiling"] = None
        else:
            result.update(ceilings(cfg, fr, ac, ce, ef, ea, ec, result["probe_eff"], actions, args))
    emit_json(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Can the latent action model find the actions in this data at all? A short LAM-only run; prints JSON.

    PYTHONPATH=src python bench/bench_lam_probe.py --data runs/coinrun-cpu/data/train
    PYTHONPATH=src python bench/bench_lam_probe.py --data DATA --set lam.residual_decoder=false --batch-size 8
    PYTHONPATH=src python bench/bench_lam_probe.py --data DATA --continuous        # no quantisation
    PYTHONPATH=src python bench/bench_lam_probe.py --data DATA --device cuda --steps 20000 --batch-size 32
                                     # the longer test a GPU allows (not yet run on one)

Trains the preset's LAM alone (AdamW with the preset's co-training settings, linear warm-up over
100 steps) for ``--steps`` steps on random windows of an episode store with ground-truth actions, then
infers the latent action of every transition in ``--eval-episodes`` episodes (the store's last
ones, or ``--eval-data``) and reports:

* ``mse_last100`` against ``copy_mse_last100``: the LAM's reconstruction error of x_{t+1} over the
  last 100 training batches, and that of copying x_t on the same batches. A LAM that is not
  clearly below copying has learned nothing its actions could carry;
* ``nmi_true`` / ``purity_true``: latent actions against the recorded actions (``*_shuffled``: the
  same with the codes shuffled, what NMI reads by chance on this many transitions);
* ``nmi_camera_x`` / ``nmi_camera_y`` / ``nmi_camera_xy``: against the direction (-, 0, +) in
  which the picture moved, found by the whole-pixel shift (up to ``--max-shift-x`` / ``-y``) that
  best maps x_t onto x_{t+1}. In CoinRun the camera follows the agent, so this is the visible
  effect of moving;
* ``codes``: how often each latent action was used, with the share of camera moves per code.

``--continuous`` bypasses the quantiser (the decoder gets the continuous latent): if even that
stays near copying, the codebook is not what fails. This is the probe behind the LAM findings in
README's Results section (600 steps at batch 2 took 90 s on one core of our 2-core machine).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import apply_sets, camera_moves, device_info, emit_json, parse_sets, pick_device  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="episode store with ground-truth actions (training windows)")
    ap.add_argument("--eval-data", help="store for the evaluation (default: the last episodes of --data)")
    ap.add_argument("--preset", default="cpu", help="preset (or .json) whose LAM is probed (default: cpu)")
    ap.add_argument("--set", action="append", default=[], metavar="lam.KEY=VALUE",
                    help="override a LAM setting, e.g. lam.context_mask_rate=0.5 or lam.vq.num_codes=8 (repeatable)")
    ap.add_argument("--continuous", action="store_true", help="bypass the quantiser (continuous latent actions)")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=16)
    ap.add_argument("--lr", type=float, help="default: the preset's dynamics_train.lr")
    ap.add_argument("--eval-episodes", type=int, default=40)
    ap.add_argument("--max-shift-x", type=int, default=6)
    ap.add_argument("--max-shift-y", type=int, default=10)
    ap.add_argument("--device", default="cpu", help="cpu | cuda | auto (default: cpu)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.steps < 1 or args.batch_size < 1 or args.seq_len < 2 or args.eval_episodes < 1:
        raise SystemExit("need --steps >= 1, --batch-size >= 1, --seq-len >= 2, --eval-episodes >= 1")

    from genieworld.config import load_preset
    from genieworld.data.loader import WindowLoader
    from genieworld.data.store import EpisodeStore
    from genieworld.eval.metrics import nmi, purity
    from genieworld.lam import LatentActionModel

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    preset = load_preset(args.preset)
    sets = parse_sets(args.set)
    cfg = apply_sets(replace(preset.lam, max_frames=max(preset.lam.max_frames, args.seq_len)), sets)
    device = pick_device(args.device)
    lam = LatentActionModel(cfg).to(device)
    if args.continuous:
        quantise = lam.vq.forward

        def straight_through(z):  # the codes are still chosen (for the report), the decoder gets z itself
            _, idx, info = quantise(z)
            return z, idx, info

        lam.vq.forward = straight_through
    tc = preset.dynamics_train  # the LAM's optimiser settings in co-training
    lr = args.lr or tc.lr
    opt = torch.optim.AdamW(lam.parameters(), lr=lr, betas=(tc.beta1, tc.beta2), weight_decay=tc.weight_decay)
    batches = iter(WindowLoader(args.data, seq_len=args.seq_len, batch_size=args.batch_size, seed=args.seed))
    mse, copy = [], []
    t0 = time.perf_counter()
    lam.train()
    for step in range(args.steps):
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / 100)
        frames = torch.as_tensor(np.asarray(next(batches)["frames"])).to(device)
        _, info = lam(frames)
        opt.zero_grad(set_to_none=True)
        info["loss"].backward()
        torch.nn.utils.clip_grad_norm_(lam.parameters(), tc.grad_clip)
        opt.step()
        f = frames.float() / 255
        mse.append(float(info["mse"]))
        copy.append(float(((f[:, 1:] - f[:, :-1]) ** 2).mean()))
        if step % 100 == 0 or step == args.steps - 1:
            print(f"step {step}: mse {np.mean(mse[-100:]):.4f} (copying x_t: {np.mean(copy[-100:]):.4f}), "
                  f"codes used {int(info['codes_used'])}", file=sys.stderr, flush=True)
    train_s = time.perf_counter() - t0

    lam.eval()
    store = EpisodeStore(args.eval_data or args.data)
    eps = [i for i in range(store.num_episodes) if store.episode_length(i) >= 2][-args.eval_episodes:]
    codes, true, moves = [], [], []
    with torch.no_grad():
        for ep in eps:
            frames, actions, _ = store.read_episode(ep)
            frames = frames[: 10 * (args.seq_len - 1) + 1]  # at most 10 windows per episode
            for s in range(0, len(frames) - 1, args.seq_len - 1):
                clip = frames[s:s + args.seq_len]
                if len(clip) < 2:
                    break
                idx, _ = lam.encode_actions(torch.from_numpy(np.ascontiguousarray(clip))[None].to(device))
                codes += idx[0].cpu().tolist()
                acts = actions[s:s + len(clip) - 1] if actions is not None else np.full(len(clip) - 1, -1)
                true += np.asarray(acts).tolist()
                moves.append(camera_moves(clip, args.max_shift_x, args.max_shift_y))
    codes, true, moves = np.array(codes), np.array(true), np.concatenate(moves)
    has_true = bool((true >= 0).all())
    shuffled = np.random.default_rng(args.seed).permutation(codes)
    per_code = []
    for c in range(cfg.vq.num_codes):
        sel = codes == c
        n = int(sel.sum())
        per_code.append({"code": c, "transitions": n,
                         "camera_x_moved": round(float((moves[sel, 0] != 0).mean()), 3) if n else None,
                         "camera_y_moved": round(float((moves[sel, 1] != 0).mean()), 3) if n else None})
    result = {
        "bench": "lam_probe", "data": str(args.data), "eval_data": str(args.eval_data or args.data),
        "preset": args.preset, "set": sets, "continuous": args.continuous, "steps": args.steps,
        "batch_size": args.batch_size, "seq_len": args.seq_len, "lr": lr, "seed": args.seed,
        "train_seconds": round(train_s, 1),
        "mse_last100": round(float(np.mean(mse[-100:])), 5), "copy_mse_last100": round(float(np.mean(copy[-100:])), 5),
        "eval_transitions": int(len(codes)), "codes_used": int(len(set(codes.tolist()))),
        "nmi_true": round(float(nmi(codes, true)), 4) if has_true else None,
        "purity_true": round(float(purity(codes, true)), 4) if has_true else None,
        # the same with the codes shuffled: what NMI reads for codes unrelated to anything
        "nmi_true_shuffled": round(float(nmi(shuffled, true)), 4) if has_true else None,
        "nmi_camera_x": round(float(nmi(codes, moves[:, 0])), 4),
        "nmi_camera_y": round(float(nmi(codes, moves[:, 1])), 4),
        "nmi_camera_xy": round(float(nmi(codes, moves[:, 0] * 3 + moves[:, 1])), 4),
        "nmi_camera_xy_shuffled": round(float(nmi(shuffled, moves[:, 0] * 3 + moves[:, 1])), 4),
        "codes": per_code,
        "device": device_info(device),
    }
    emit_json(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

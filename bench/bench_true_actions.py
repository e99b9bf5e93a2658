"""Generation PSNR and ΔtPSNR of a ground-truth-action dynamics, on `genie eval`'s own clips. Prints JSON.

    python bench/bench_true_actions.py --model runs/s9/world-a/model \\
        --true-actions runs/s9/world-true/dynamics-true-actions --data runs/cpu/data/test

`genie train dynamics --actions true` trains the dynamics on the recorded effective actions (CoinRun's
6 controls, as fixed vectors) instead of the LAM's codes: the dynamics' own ceiling for actions that mean
what the player pressed. `genie eval` cannot score it (it reads actions with a LAM), so this bench rolls
it out on the clips `genie eval --episodes E --seed S` draws (same selection, same per-batch sampling
seeds, the model's eval sampling), with the clip's recorded effective actions, and with actions uniform
over the 6, and reports per-step generation PSNR and ΔtPSNR at t = 4, as `genie eval` defines them.
``--model`` gives the tokenizer and the sampling settings.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit_json, true_action_world  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="model folder (genie.json): tokenizer and sampling")
    ap.add_argument("--true-actions", required=True, metavar="DIR", help="RUN/dynamics-true-actions")
    ap.add_argument("--data", required=True, help="held-out episode store with recorded actions")
    ap.add_argument("--episodes", type=int, default=32, help="as genie eval's --episodes (default 32)")
    ap.add_argument("--horizon", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--t", type=int, default=4, help="frame of ΔtPSNR (1-indexed, default 4)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args(argv)

    import torch

    from genieworld.data.coinrun import effective_action
    from genieworld.data.store import EpisodeStore
    from genieworld.eval.evaluate import (batch_seed, delta_t_summary, frame_metrics, load_clips, random_actions,
                                          select_clips)
    from genieworld.genie import Genie

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    genie = true_action_world(Genie.from_pretrained(args.model), Path(args.true_actions))
    store = EpisodeStore(args.data)
    refs = select_clips(store.episode_lengths, args.episodes, args.horizon, args.seed)
    real, acts = load_clips(store, refs, args.horizon)
    if acts is None:
        raise SystemExit(f"{args.data}: the clips have no recorded actions")
    true6 = effective_action(acts)
    rand = random_actions(len(real), args.horizon - 1, genie.num_actions, args.seed)
    gen, gen_rand = np.empty_like(real), np.empty_like(real)
    for b in range(0, len(real), args.batch_size):
        sl = slice(b, b + args.batch_size)
        prompt = torch.from_numpy(real[sl, :1])
        seed = batch_seed(args.seed, b // args.batch_size)
        with torch.no_grad():
            gen[sl] = genie.rollout(prompt, torch.from_numpy(true6[sl]), seed=seed).numpy()
            gen_rand[sl] = genie.rollout(prompt, torch.from_numpy(rand[sl]), seed=seed).numpy()
    p_true, _ = frame_metrics(real, gen)
    p_rand, _ = frame_metrics(real, gen_rand)
    dt = delta_t_summary(real, gen, gen_rand, args.t, p_true, p_rand)
    out = {"bench": "true_actions", "model": args.model, "true_actions": args.true_actions, "data": args.data,
           "clips": len(real), "horizon": args.horizon, "seed": args.seed,
           "gen_psnr_per_step": [round(float(x), 3) for x in p_true.mean(0)],
           "gen_psnr_t4": round(float(p_true[:, 3].mean()), 3), "gen_psnr_t16": round(float(p_true[:, -1].mean()), 3),
           "random_psnr_per_step": [round(float(x), 3) for x in p_rand.mean(0)],
           "delta_t_psnr": round(dt["value"], 3), "delta_t_psnr_sem": round(dt["sem"], 3),
           "seconds": round(time.perf_counter() - t0, 1)}
    emit_json(out, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

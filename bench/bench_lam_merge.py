"""How should a trained LAM's codes be merged into fewer play actions?  Label-free merges scored on held-out data; JSON out.

    PYTHONPATH=src python bench/bench_lam_merge.py --model models/coinrun-cpu --to 6 \\
        --data runs/cpu/data/train --eval-data runs/cpu/data/test

Reads the LAM's *trained* codes (before any merge it carries) of the first ``--transitions``
training transitions in video order and of ``--eval-transitions`` held-out ones, groups the
codes into ``--to`` actions in several ways, and reports the NMI of each grouping against
CoinRun's 6 effective actions (and its direction and jump parts) on the held-out transitions:

* ``cooccurrence``: the project's merge (``lam_codebook.merge_by_cooccurrence``, what
  ``genie train lam`` does): greedy, joins the groups that consecutive transitions use together;
* ``cooccurrence_average``: average linkage on 1 - normalised co-occurrence;
* ``vectors``: Ward linkage on the codebook vectors;
* ``effect``: average linkage on what the decoder draws for each code on the same 192 contexts;
* ``context_ib``: agglomerative information bottleneck on each code's neighbours in time
  (``lam_codebook.merge_by_context``, ``genie train lam`` with ``lam.merge = "context"``);
* ``camera``: information bottleneck on the camera's measured motion during each code's
  transitions (the whole-pixel shift, as the sign of dx and dy; pixels only, no labels), on the
  first ``--camera-transitions`` training transitions;
* ``context_camera``: the same on each code's neighbours in time and its camera motion together;
* ``label_oracle``: each code to its commonest true action (uses the labels: a reference only).

Each grouping also reports the NMI of its actions against the camera's measured motion on the
held-out transitions (``nmi_camera_x`` / ``nmi_camera_y``), what the dynamics can predict from an
action without knowing the agent's speed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_lam import infer, load_store, score, trained_codes, windows  # noqa: E402
from bench_lam_probe import camera_moves  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a model dir or a LAM folder (config.json + model.safetensors)")
    ap.add_argument("--to", type=int, default=8, help="actions to merge into")
    ap.add_argument("--data", required=True, help="training store (videos in order)")
    ap.add_argument("--eval-data", required=True)
    ap.add_argument("--transitions", type=int, default=60_000)
    ap.add_argument("--eval-transitions", type=int, default=3000)
    ap.add_argument("--camera-transitions", type=int, default=20_000,
                    help="training transitions whose camera motion the camera merges read (default 20000)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    from genieworld.config import LAMConfig
    from genieworld.data.coinrun import effective_action
    from genieworld.genie import load_component
    from genieworld.lam import build_lam
    from genieworld.data.store import EpisodeStore
    from genieworld.lam_codebook import merge_by_context, merge_by_cooccurrence, merge_by_counts
    from genieworld.train.lam_task import camera_counts

    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    p = Path(args.model)
    lam = load_component(build_lam, LAMConfig, p / "lam" if (p / "lam" / "config.json").exists() else p)
    lam.eval()
    k, m = lam.cfg.vq.num_codes, args.to
    rng = np.random.default_rng(args.seed)
    tf, ta, tc = load_store(args.data)
    tc = tc[: args.transitions]
    ef, ea, ec = load_store(args.eval_data)
    ec = np.sort(ec[rng.permutation(len(ec))[: args.eval_transitions]])
    tr, te = trained_codes(lam, tf, tc), trained_codes(lam, ef, ec)
    seqs = np.split(tr, np.flatnonzero(np.diff(tc) != 1) + 1)
    _, lats = infer(lam, ef, ec)
    lam.eval()  # infer() leaves the model in training mode

    pair = np.zeros((k, k))
    for s in seqs:
        np.add.at(pair, (s[:-1], s[1:]), 1)
    sym = pair + pair.T
    np.fill_diagonal(sym, 0)
    norm = sym / np.sqrt(np.outer(sym.sum(1), sym.sum(1)) + 1e-9)
    dist = 1 - norm
    np.fill_diagonal(dist, 0)
    cb = lam.vq.normalized_codebook().detach().numpy()
    ctx = windows(tf, rng.choice(tc, 192, replace=False), 3)
    prev, cur, _ = lam._windows(ctx)
    prev, cur = prev[0::2], cur[0::2]
    effect = np.stack([(lam.fdm(prev, cur, torch.from_numpy(cb[i]).expand(len(cur), -1)) - cur).reshape(-1).numpy()
                       for i in range(k)])
    a6 = effective_action(ta[tc])
    oracle = np.array([np.bincount(a6[tr == i], minlength=6).argmax() if (tr == i).any() else 0 for i in range(k)])
    merges = {
        "cooccurrence": merge_by_cooccurrence(seqs, k, m),
        "cooccurrence_average": fcluster(linkage(squareform(dist, checks=False), "average"), m, "maxclust") - 1,
        "vectors": fcluster(linkage(cb, "ward"), m, "maxclust") - 1,
        "effect": fcluster(linkage(effect, "average"), m, "maxclust") - 1,
        "label_oracle": oracle,
    }
    merges["context_ib"] = merge_by_context(seqs, k, m)
    # the camera's motion on each transition x_t -> x_{t+1}: 9 classes (sign dx, sign dy)
    # the library's counts (genie train lam with lam.merge = "camera"), on the same first transitions
    moves = camera_counts(lam, EpisodeStore(args.data), k, args.camera_transitions)
    merges["camera"] = merge_by_counts(moves, m)
    cam_ev = np.concatenate([camera_moves(ef[i:i + 2], 6, 10) for i in ec])
    ctx = np.zeros((k, 2 * k))
    for s_ in seqs:
        np.add.at(ctx, (s_[:-1], s_[1:]), 1)
        np.add.at(ctx, (s_[1:], k + s_[:-1]), 1)
    # both halves weighted equally: each row's context and motion as distributions of equal mass
    both = np.concatenate([ctx / np.maximum(ctx.sum(1, keepdims=True), 1),
                           moves / np.maximum(moves.sum(1, keepdims=True), 1)], 1) * ctx.sum(1, keepdims=True)
    merges["context_camera"] = merge_by_counts(both, m)
    keys = ("nmi6", "nmi6_shuffled", "nmi_direction", "nmi_jump", "nmi_camera_x", "nmi_camera_y", "probe6",
            "codes_used", "max_code_share")
    out = {"bench": "lam_merge", "model": str(args.model), "trained_codes": k, "to": m,
           "train_transitions": int(len(tc)), "eval_transitions": int(len(ec)),
           "unmerged": {x: score(te, lats, ea[ec], k, args.seed, cam_ev)[x] for x in keys}}
    for name, g in merges.items():
        g = np.asarray(g, dtype=np.int64)
        s = score(g[te], lats, ea[ec], int(g.max()) + 1, args.seed, cam_ev)
        out[name] = {"groups": g.tolist(), **{x: s[x] for x in keys if x != "probe6"}}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

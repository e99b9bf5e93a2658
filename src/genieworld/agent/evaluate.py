"""Fraction of held-out levels solved, with 95% confidence intervals.

Held-out levels are ``100000 .. 100000 + levels - 1`` (hard mode, never in the training range
0..9,999 of the expert or the recordings).  Each (level, seed) is one game, scored on its first
episode: solved when the coin is collected within ``max_steps`` game steps (1000, CoinRun's own
limit).  The interval is Wilson's score interval over all levels x seeds games (binomial; it treats
the games as independent, which slightly understates the spread between levels).
"""

from __future__ import annotations

import math
import time

import numpy as np

HELD_OUT_START = 100000


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score 95% interval for k successes in n trials."""
    if n <= 0:
        return (0.0, 1.0)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def evaluate_actor(actor, levels: int = 100, start_level: int = HELD_OUT_START, seeds=(0, 1, 2, 3, 4),
                   max_steps: int = 1000, frame_skip: int = 4, mode: str = "hard", backgrounds: bool = False,
                   progress: bool = False, desc: str = "agent eval", actor_for_seed=None) -> dict:
    """Roll ``actor`` (or ``actor_for_seed(seed)``, e.g. a map drawn per seed) on every level for every seed."""
    from genieworld.agent.envs import rollout_levels

    lv = list(range(int(start_level), int(start_level) + int(levels)))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(lv) * len(seeds), desc=desc, unit="game", mininterval=5)
    t0 = time.time()
    per_seed, solved_all, steps_all = [], [], []
    try:
        for s in seeds:
            a = actor if actor_for_seed is None else actor_for_seed(int(s))
            r = rollout_levels(a, lv, seed=int(s), max_steps=max_steps, frame_skip=frame_skip, mode=mode,
                               backgrounds=backgrounds, progress=None if bar is None else bar.update)
            per_seed.append(round(float(r["solved"].mean()), 4))
            solved_all.append(r["solved"])
            steps_all.append(r["game_steps"])
    finally:
        if bar is not None:
            bar.close()
    solved = np.concatenate(solved_all)
    k, n = int(solved.sum()), int(solved.size)
    lo, hi = wilson(k, n)
    return {"solved": round(k / n, 4), "ci95": [round(lo, 4), round(hi, 4)], "games": n, "solved_games": k,
            "per_seed": per_seed, "levels": [lv[0], lv[-1]], "seeds": [int(s) for s in seeds],
            "max_steps": int(max_steps), "frame_skip": int(frame_skip), "mode": mode,
            "mean_game_steps": round(float(np.concatenate(steps_all).mean()), 1),
            "solved_by_level": np.stack(solved_all).mean(0).round(3).tolist(),
            "seconds": round(time.time() - t0, 1)}

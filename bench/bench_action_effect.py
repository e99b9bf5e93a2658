"""How much does one recorded transition of CoinRun show its action? Prints JSON.

    PYTHONPATH=src python bench/bench_action_effect.py                 # frame skips 1, 2, 4; 20 levels
    PYTHONPATH=src python bench/bench_action_effect.py --skips 1 4 8 --levels 50

For each level a random agent plays 10-59 steps, the game state is saved, and from that one
state each of five actions (LEFT, NOOP, RIGHT, UP, DOWN) is held for K game steps. Reported per
K, averaged over levels:

* ``motion_mse``: mean squared change from the saved frame to the frames the actions lead to
  (pixels in [0, 1]): how much the picture moves in one recorded transition;
* ``action_spread_mse``: mean squared distance of those frames from their average: how much the
  *choice* of action changes the next frame;
* ``action_spread_psnr_db``: the same as PSNR (the error of a predictor that knows the state but
  not the action); the higher, the less visible the action.

This is the measurement behind the ``cpu`` recipe's frame skip of 4 (see ``genie data coinrun
--help``): at K = 1 the action is invisible next to a small tokenizer's reconstruction error.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

ACTIONS = {"LEFT": 1, "NOOP": 4, "RIGHT": 7, "UP": 5, "DOWN": 3}  # Procgen's action ids


def measure(skip: int, levels: int, seed: int) -> dict:
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        from procgen import ProcgenGym3Env
    rng = np.random.default_rng(seed)
    motion, spread, psnr = [], [], []
    for level in range(levels):
        env = ProcgenGym3Env(num=1, env_name="coinrun", num_levels=1, start_level=level, distribution_mode="hard",
                             rand_seed=level)
        for _ in range(int(rng.integers(10, 60))):
            env.act(np.array([rng.integers(0, 15)], dtype=np.int32))
        state = env.callmethod("get_state")
        x0 = env.observe()[1]["rgb"][0].astype(np.float32) / 255
        outs = []
        for a in ACTIONS.values():
            env.callmethod("set_state", state)
            for _ in range(skip):
                env.act(np.array([a], dtype=np.int32))
            outs.append(env.observe()[1]["rgb"][0].astype(np.float32) / 255)
        outs = np.stack(outs)
        mean = outs.mean(0)
        motion.append(float(np.mean([((o - x0) ** 2).mean() for o in outs])))
        spread.append(float(((outs - mean) ** 2).mean()))
        psnr.append(float(np.mean(-10 * np.log10(((outs - mean) ** 2).mean((1, 2, 3)) + 1e-10))))
    return {"frame_skip": skip, "levels": levels, "motion_mse": round(float(np.mean(motion)), 5),
            "action_spread_mse": round(float(np.mean(spread)), 5),
            "spread_over_motion": round(float(np.mean(spread) / np.mean(motion)), 3),
            "action_spread_psnr_db": round(float(np.mean(psnr)), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skips", type=int, nargs="+", default=[1, 2, 4], help="frame skips to measure (default 1 2 4)")
    ap.add_argument("--levels", type=int, default=20, help="levels (one saved state each; default 20)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(json.dumps({"bench": "action_effect", "actions": list(ACTIONS),
                      "results": [measure(k, args.levels, args.seed) for k in args.skips]}, indent=2))


if __name__ == "__main__":
    main()

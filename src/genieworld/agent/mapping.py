"""The dictionary D from latent actions to real ones (paper §3.3).

Filled from a small labelled set of transitions (x_t, u_t, x_{t+1}): the frozen LAM reads the
latent action a_t of each, and D[a] collects the real actions u that came with latent a.  D
ignores the observation.  At test time, after a ~ pi(x_t):

- ``sample`` (the default, as the paper): u is drawn from D[a], i.e. with the frequencies it
  co-occurred with a;
- ``argmax``: u is the real action that co-occurred most with a (ties: the lowest id).

A latent action that never occurs in the labelled set falls back to the labelled set's overall
real-action frequencies (uniform over the real actions when the set is empty).  Real actions
are CoinRun's 6 effective actions (:data:`~genieworld.data.coinrun.EFFECTIVE_ACTIONS`).

File: ``map.json`` with the count table ``counts[latent][real]`` and how it was made.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from genieworld.errors import UserError

FORMAT = "genieworld-agent-map"
MODES = ("sample", "argmax")


class LatentMap:
    def __init__(self, counts, mode: str = "sample"):
        counts = np.asarray(counts, dtype=np.int64)
        if counts.ndim != 2 or counts.shape[0] < 1 or counts.shape[1] < 1 or (counts < 0).any():
            raise UserError(f"map counts must be a non-negative (latent, real) table, got shape {counts.shape}")
        if mode not in MODES:
            raise UserError(f"map mode must be one of {list(MODES)}, got {mode!r}")
        self.counts, self.mode = counts, mode
        marginal = counts.sum(0).astype(np.float64)
        if marginal.sum() == 0:
            marginal = np.ones(counts.shape[1])
        rows = counts.astype(np.float64)
        empty = rows.sum(1) == 0
        rows[empty] = marginal
        self.probs = rows / rows.sum(1, keepdims=True)
        self.best = self.probs.argmax(1)

    @property
    def num_latent(self) -> int:
        return self.counts.shape[0]

    def __call__(self, latent: np.ndarray, gen: torch.Generator) -> np.ndarray:
        latent = np.asarray(latent, dtype=np.int64)
        if self.mode == "argmax":
            return self.best[latent]
        p = torch.from_numpy(self.probs[latent])
        return torch.multinomial(p, 1, generator=gen)[:, 0].numpy()

    def to_json(self, **info) -> dict:
        return {"format": FORMAT, "counts": self.counts.tolist(), "argmax": self.best.tolist(),
                "labelled_transitions": int(self.counts.sum()), **info}

    @classmethod
    def from_json(cls, data: dict, where: str = "map", mode: str | None = None) -> "LatentMap":
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise UserError(f"{where}: not a genieworld latent-action map ({FORMAT})")
        try:
            counts = np.asarray(data["counts"], dtype=np.int64)
        except (KeyError, TypeError, ValueError, OverflowError):
            raise UserError(f"{where}: counts must be a table of integers") from None
        return cls(counts, mode or data.get("mode", "sample"))


def count_table(latents: np.ndarray, reals: np.ndarray, num_latent: int, num_real: int) -> np.ndarray:
    """``counts[a, u]``: how often latent ``a`` came with real action ``u``."""
    latents, reals = np.asarray(latents, dtype=np.int64), np.asarray(reals, dtype=np.int64)
    if latents.shape != reals.shape:
        raise UserError(f"latents {latents.shape} and real actions {reals.shape} differ in length")
    if latents.size and (latents.min() < 0 or latents.max() >= num_latent or reals.min() < 0 or reals.max() >= num_real):
        raise UserError("latent or real action id out of range")
    counts = np.zeros((num_latent, num_real), dtype=np.int64)
    np.add.at(counts, (latents, reals), 1)
    return counts


def labelled_subset(n_total: int, n: int, seed: int) -> np.ndarray:
    """Which ``n`` of ``n_total`` transitions are labelled: the first ``n`` of a seeded permutation, so the
    sets for growing ``n`` are nested."""
    if n < 0:
        raise UserError("the number of labelled transitions must be >= 0")
    if n > n_total:
        raise UserError(f"asked for {n} labelled transitions, only {n_total} are available")
    return np.random.default_rng([int(seed), 0x6D6170]).permutation(n_total)[:n]


def build_map(latents: np.ndarray, reals: np.ndarray, num_latent: int, num_real: int, n: int, seed: int = 0,
              mode: str = "sample") -> LatentMap:
    idx = labelled_subset(len(latents), n, seed)
    return LatentMap(count_table(np.asarray(latents)[idx], np.asarray(reals)[idx], num_latent, num_real), mode)


def save_map(m: LatentMap, path, **info) -> None:
    from genieworld.data.store import atomic_write_json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path.parent, path.name, m.to_json(mode=m.mode, **info))


def load_map(path, mode: str | None = None) -> LatentMap:
    from genieworld.utils import read_json

    return LatentMap.from_json(read_json(Path(path), UserError), str(path), mode)

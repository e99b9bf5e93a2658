"""A tiny deterministic "moving square" store for tests of other modules.

Each episode shows a coloured square on a plain background.  The recorded action
moves it: 0 left, 1 right, 2 up, 3 down (by ``size // 16`` pixels, wrapping around the
borders so every action is always visible); actions >= 4 leave it in place.  Colours,
start position and actions are drawn from ``seed``, so the store is identical for the
same arguments.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from genieworld.data.store import MANIFEST, EpisodeStore, EpisodeWriter, StoreError

__all__ = ["make_synthetic_store", "synthetic_episode", "MOVES"]

# (dy, dx) per action; actions beyond this table do not move the square
MOVES = {0: (0, -1), 1: (0, 1), 2: (-1, 0), 3: (1, 0)}


def synthetic_episode(length: int, size: int = 64, num_actions: int = 4, rng: np.random.Generator | None = None,
                      actions: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One episode: uint8 frames ``(length, size, size, 3)`` and ``length - 1`` int64 actions."""
    rng = np.random.default_rng(0) if rng is None else rng
    side = max(2, size // 8)
    step = max(1, size // 16)
    bg = rng.integers(0, 80, size=3).astype(np.uint8)
    fg = rng.integers(150, 256, size=3).astype(np.uint8)
    if actions is None:
        actions = rng.integers(0, num_actions, size=length - 1)
    actions = np.asarray(actions, dtype=np.int64)
    y, x = (int(v) for v in rng.integers(0, size, size=2))
    frames = np.empty((length, size, size, 3), dtype=np.uint8)
    frames[:] = bg
    offs = np.arange(side)
    for t in range(length):
        if t > 0:
            dy, dx = MOVES.get(int(actions[t - 1]), (0, 0))
            y, x = (y + dy * step) % size, (x + dx * step) % size
        rows, cols = (y + offs) % size, (x + offs) % size
        frames[t][np.ix_(rows, cols)] = fg
    return frames, actions


def make_synthetic_store(path: str | os.PathLike, episodes: int = 8, length: int = 32, size: int = 64,
                         num_actions: int = 4, seed: int = 0, fps: float = 10.0,
                         overwrite: bool = False) -> EpisodeStore:
    """Write a small moving-square store at ``path`` and open it (deterministic given ``seed``)."""
    path = Path(path)
    if (path / MANIFEST).exists():
        if not overwrite:
            raise StoreError(f"{path}: already a store (pass overwrite=True to replace it)")
        from genieworld import owned

        owned.remove(path, "store", "the synthetic store")
    rng = np.random.default_rng(seed)
    with EpisodeWriter(path, resolution=(size, size), fps=fps, source="synthetic", num_actions=num_actions,
                       extra_manifest={"generator": "moving_square", "seed": seed,
                                       "moves": {str(k): list(v) for k, v in MOVES.items()}}) as w:
        for i in range(episodes):
            frames, actions = synthetic_episode(length, size, num_actions, rng)
            w.add_episode(frames, actions, meta={"episode": i, "seed": seed})
    return EpisodeStore(path)

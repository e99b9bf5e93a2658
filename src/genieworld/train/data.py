"""Opening training data for the trainer: an episode store (``genie data ...``) or a plain clip array.

A ``.npy`` file of uint8 clips shaped (N, T, H, W, 3) is also accepted (handy for
quick experiments); :class:`ArrayClipLoader` samples windows from it with the same
seeded, resumable contract as :class:`genieworld.data.loader.WindowLoader`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from genieworld.data.loader import WindowLoader, episode_ids, episodes_digest, spread_episodes
from genieworld.errors import UserError
from genieworld.utils import check_regular


class ArrayClipLoader:
    """Seeded, resumable, rank-aware windows from a uint8 array of clips (N, T, H, W, 3)."""

    def __init__(self, clips: np.ndarray, seq_len: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                 clip_ids=None):
        if clips.ndim != 5 or clips.dtype != np.uint8 or clips.shape[-1] != 3:
            raise ValueError(f"expected a uint8 array (N, T, H, W, 3), got {clips.dtype} {clips.shape}")
        if clips.shape[1] < seq_len:
            raise ValueError(f"clips have {clips.shape[1]} frames, fewer than seq_len={seq_len}")
        self.clips = clips
        self.seq_len, self.batch_size, self.seed = seq_len, batch_size, seed
        self.rank, self.world = rank, world_size
        self.episodes = episode_ids(clip_ids, clips.shape[0])
        ids = range(clips.shape[0]) if self.episodes is None else self.episodes.tolist()
        self.windows = [(i, s) for i in ids for s in range(clips.shape[1] - seq_len + 1)]
        self.epoch, self.pos = 0, 0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos, "seed": self.seed, "episodes": episodes_digest(self.episodes)}

    def load_state_dict(self, state: dict) -> None:
        if "episodes" in state and state["episodes"] != episodes_digest(self.episodes):
            raise ValueError("loader state was made from another subset of the clips (another --data-fraction); "
                             "the batch order would differ")
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])

    def _order(self) -> np.ndarray:
        perm = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.windows))
        perm = perm[: len(perm) // self.world * self.world]  # equal shares: ranks never drift apart
        return perm[self.rank :: self.world]

    def __iter__(self):
        while True:
            order = self._order()
            n_batches = len(order) // self.batch_size
            if n_batches == 0:
                raise ValueError("not enough windows for one batch")
            while self.pos < n_batches:
                sel = order[self.pos * self.batch_size : (self.pos + 1) * self.batch_size]
                self.pos += 1
                frames = np.stack([self.clips[i, s : s + self.seq_len] for i, s in (self.windows[j] for j in sel)])
                yield {
                    "frames": torch.from_numpy(frames),
                    "actions": torch.full((len(sel), self.seq_len - 1), -1, dtype=torch.long),
                }
            self.epoch, self.pos = self.epoch + 1, 0


def open_training_data(path: str | Path, seq_len: int, batch_size: int, seed: int, rank: int = 0,
                       world_size: int = 1, num_workers: int = 0, data_fraction: float = 1.0):
    """A resumable batch iterator over ``path`` (an episode store folder or a .npy clip array).

    ``data_fraction``: windows come from that share of the episodes (clips), evenly spread
    (:func:`genieworld.data.loader.spread_episodes`); the loader's ``episodes`` says which."""
    path = Path(path)
    if path.suffix == ".npy" and path.is_file():
        check_regular(path, None, UserError, ".npy clip array")
        clips = np.load(path, mmap_mode="r")
        ids = spread_episodes(clips.shape[0], data_fraction) if clips.ndim == 5 else None
        return ArrayClipLoader(clips, seq_len, batch_size, seed, rank, world_size, clip_ids=ids)
    from genieworld.data.store import EpisodeStore

    store = EpisodeStore(path)
    episodes = spread_episodes(store.num_episodes, data_fraction)
    return WindowLoader(store, seq_len=seq_len, batch_size=batch_size, seed=seed, rank=rank,
                        world_size=world_size, num_workers=num_workers, episodes=episodes)


def data_resolution(path: str | Path) -> int | None:
    """Square frame size of a data source, or None when it cannot be read cheaply."""
    path = Path(path)
    if path.suffix == ".npy" and path.is_file():
        arr = np.load(path, mmap_mode="r")
        return int(arr.shape[2])
    try:
        from genieworld.data.store import EpisodeStore

        return int(EpisodeStore(path).resolution[0])
    except Exception:
        return None

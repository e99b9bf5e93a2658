"""Seeded, resumable, rank- and worker-aware sampling of fixed-length windows.

A *window* is ``seq_len`` consecutive frames of one episode starting at a multiple
of ``stride``; episodes shorter than ``seq_len`` contribute none.  Windows are
numbered ``0 .. N-1`` in (episode, start) order.

Order.  Epoch ``e`` visits all ``N`` windows in the order of a pseudo-random
permutation keyed by ``(seed, e)``.  The permutation is a 4-round Feistel network
over the next power of four >= N with cycle-walking, so it needs O(1) memory and
any position can be computed directly (no 80 MB ``np.random.permutation`` per
epoch for 10M windows, and resuming is free).

Splitting.  Epoch position ``p`` belongs to rank ``p % world_size``; each rank
keeps ``N // world_size`` positions (the tail is dropped so every rank has the same
number of batches, which DDP needs).  A rank's positions are cut into batches of
``batch_size`` (the last partial batch of an epoch is dropped with
``drop_last=True``).  Batch ``k`` of a rank (counted from the start of training,
across epochs) is built by worker ``(k - k0) % num_workers`` where ``k0`` is the
batch the iterator started at; PyTorch's DataLoader returns worker outputs
round-robin, so the sequence seen by the training loop is the same for any
``num_workers``.  Ranks and workers therefore never overlap and together cover
every window of an epoch (up to the dropped tails).

Resuming.  ``state_dict()`` is the number of batches consumed so far (plus the
settings that define the order); ``load_state_dict()`` on a fresh loader continues
with exactly the batch that would have come next.
"""

from __future__ import annotations

import math
import os
from typing import Iterator

import numpy as np
import torch

from genieworld.data.store import EpisodeStore

__all__ = ["WindowLoader", "FeistelPermutation", "window_table"]

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray, key: np.uint64) -> np.ndarray:
    """splitmix64 finaliser of ``x ^ key`` (uint64 arithmetic wraps)."""
    x = x ^ key
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


class FeistelPermutation:
    """A seeded bijection of ``[0, n)`` evaluated pointwise: ``perm(np.arange(n))`` is a permutation."""

    ROUNDS = 4

    def __init__(self, n: int, seed: int, epoch: int = 0):
        self.n = int(n)
        bits = max(2, math.ceil(math.log2(max(self.n, 2))))
        self.half = (bits + 1) // 2
        self.mask = np.uint64((1 << self.half) - 1)
        ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch) & 0xFFFFFFFF, 0x6E1E])
        self.keys = [np.uint64(k) for k in ss.generate_state(self.ROUNDS, dtype=np.uint64)]

    def _round(self, x: np.ndarray) -> np.ndarray:
        h = np.uint64(self.half)
        left, right = x >> h, x & self.mask
        for k in self.keys:
            left, right = right, left ^ (_mix(right, k) & self.mask)
        return (left << h) | right

    def __call__(self, idx) -> np.ndarray:
        x = np.asarray(idx, dtype=np.uint64).copy()
        if self.n <= 1:
            return x.astype(np.int64)
        if x.size and int(x.max()) >= self.n:
            raise IndexError("position out of range")
        todo = np.arange(x.size)
        flat = x.reshape(-1)
        while todo.size:  # cycle-walk until back inside [0, n)
            y = self._round(flat[todo])
            flat[todo] = y
            todo = todo[y >= np.uint64(self.n)]
        return flat.reshape(x.shape).astype(np.int64)


def spread_episodes(num_episodes: int, fraction: float) -> np.ndarray | None:
    """``round(fraction * num_episodes)`` episode ids (at least one) spread evenly over ``0..num_episodes-1``,
    or None (all of them) when ``fraction >= 1``.  A store records its levels in order, so every stretch
    of levels keeps its share."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"data fraction must be in (0, 1], got {fraction}")
    if fraction >= 1.0 or num_episodes == 0:
        return None
    k = max(1, int(round(fraction * num_episodes)))
    return (np.arange(k, dtype=np.int64) * num_episodes) // k


def episode_ids(episodes, num_episodes: int) -> np.ndarray | None:
    """``episodes`` as sorted, distinct int64 ids, checked to lie in ``0..num_episodes-1``; None stays None (all)."""
    if episodes is None:
        return None
    ids = np.asarray(sorted(set(int(e) for e in episodes)), dtype=np.int64)
    if len(ids) and not (0 <= ids[0] and ids[-1] < num_episodes):
        raise ValueError(f"episodes must be ids in 0..{num_episodes - 1}")
    return ids


def episodes_digest(episodes) -> str | None:
    """A short digest of an episode subset from :func:`episode_ids` (None: all episodes), for loader states."""
    if episodes is None:
        return None
    import hashlib

    return hashlib.sha256(np.asarray(episodes, dtype="<i8").tobytes()).hexdigest()[:16]


def window_table(lengths: np.ndarray, seq_len: int, stride: int = 1, episodes=None):
    """Per eligible episode: (episode ids, cumulative window counts) for ``seq_len``-frame windows."""
    lengths = np.asarray(lengths, dtype=np.int64)
    ids = episode_ids(episodes, len(lengths))
    ids = np.arange(len(lengths)) if ids is None else ids
    n = np.where(lengths[ids] >= seq_len, (lengths[ids] - seq_len) // stride + 1, 0)
    keep = n > 0
    return ids[keep], np.cumsum(n[keep])


class _WindowStream(torch.utils.data.IterableDataset):
    """Yields the batches ``start, start + W, start + 2W, ...`` for worker ``w`` (batch ``start + w`` first)."""

    def __init__(self, loader: "WindowLoader", start: int):
        self.loader = loader
        self.start = start

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid, nw = (0, 1) if info is None else (info.id, info.num_workers)
        if info is not None:
            torch.set_num_threads(1)
        k = self.start + wid
        while True:
            yield self.loader.make_batch(k)
            k += nw


class WindowLoader:
    """Infinite iterator of batches of ``seq_len``-frame windows from an :class:`EpisodeStore`.

    Each batch is a dict: ``frames`` uint8 ``(B, T, H, W, 3)``, ``actions`` int64
    ``(B, T-1)`` (-1 where the store has no ground-truth actions), ``episode`` and
    ``start`` int64 ``(B,)`` (the window is ``store.read_frames(episode, start, start+T)``).

    ``rank``/``world_size`` default to the torch.distributed ones when left as None.
    """

    def __init__(self, store: EpisodeStore | str | os.PathLike, seq_len: int = 16, batch_size: int = 8,
                 seed: int = 0, rank: int | None = 0, world_size: int | None = 1, num_workers: int = 0,
                 drop_last: bool = True, stride: int = 1, episodes=None, prefetch_factor: int = 4):
        if not isinstance(store, EpisodeStore):
            store = EpisodeStore(store)
        if world_size is None or rank is None:
            dist = torch.distributed
            on = dist.is_available() and dist.is_initialized()
            world_size = dist.get_world_size() if on else 1 if world_size is None else world_size
            rank = dist.get_rank() if on else 0 if rank is None else rank
        if seq_len < 1 or batch_size < 1 or stride < 1:
            raise ValueError("seq_len, batch_size and stride must be >= 1")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} not in [0, {world_size})")
        self.store = store
        self.seq_len, self.batch_size, self.seed = int(seq_len), int(batch_size), int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.num_workers, self.drop_last, self.stride = int(num_workers), bool(drop_last), int(stride)
        self.prefetch_factor = int(prefetch_factor)
        self.episodes = episode_ids(episodes, store.num_episodes)  # the episodes asked for, or None: all of them
        self._ep_ids, self._cum = window_table(store.episode_lengths, self.seq_len, self.stride, self.episodes)
        self.num_windows = int(self._cum[-1]) if len(self._cum) else 0
        self.windows_per_rank = self.num_windows // self.world_size
        if self.drop_last:
            self.batches_per_epoch = self.windows_per_rank // self.batch_size
        else:
            self.batches_per_epoch = -(-self.windows_per_rank // self.batch_size)
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"{store.path}: only {self.num_windows} windows of {self.seq_len} frames "
                f"({store.num_episodes} episodes, longest {int(store.episode_lengths.max(initial=0))} frames) "
                f"for {self.world_size} rank(s) x batch {self.batch_size}; need more data or a smaller batch/seq_len")
        self._step = 0  # batches consumed by the caller
        self._perms: dict[int, FeistelPermutation] = {}

    # -- order
    def __len__(self) -> int:
        """Batches per epoch for this rank (iteration itself is infinite)."""
        return self.batches_per_epoch

    @property
    def epoch(self) -> int:
        return self._step // self.batches_per_epoch

    def _perm(self, epoch: int) -> FeistelPermutation:
        p = self._perms.get(epoch)
        if p is None:
            if len(self._perms) > 4:
                self._perms.clear()
            p = self._perms[epoch] = FeistelPermutation(self.num_windows, self.seed, epoch)
        return p

    def batch_windows(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(episode ids, start frames) of this rank's ``k``-th batch since the beginning of training."""
        epoch, b = divmod(int(k), self.batches_per_epoch)
        lo = b * self.batch_size
        hi = min(lo + self.batch_size, self.windows_per_rank)
        pos = np.arange(lo, hi, dtype=np.int64) * self.world_size + self.rank
        wid = self._perm(epoch)(pos)
        j = np.searchsorted(self._cum, wid, side="right")
        before = np.where(j > 0, self._cum[np.maximum(j - 1, 0)], 0)
        return self._ep_ids[j], (wid - before) * self.stride

    def make_batch(self, k: int) -> dict:
        eps, starts = self.batch_windows(k)
        t = self.seq_len
        h, w = self.store.resolution
        frames_t = torch.empty((len(eps), t, h, w, 3), dtype=torch.uint8)
        if torch.utils.data.get_worker_info() is not None:
            frames_t.share_memory_()  # decode straight into shared memory: no copy when sent to the main process
        frames = frames_t.numpy()
        actions = np.full((len(eps), t - 1), -1, dtype=np.int64)
        for n, (e, s) in enumerate(zip(eps.tolist(), starts.tolist())):
            frames[n] = self.store.read_frames(e, s, s + t)
            a = self.store.read_actions(e, s, s + t - 1)
            if a is not None:
                actions[n, :len(a)] = a
        return {"frames": frames_t, "actions": torch.from_numpy(actions),
                "episode": torch.from_numpy(eps.astype(np.int64)), "start": torch.from_numpy(starts.astype(np.int64))}

    # -- iteration
    def __iter__(self) -> Iterator[dict]:
        start = self._step
        if self.num_workers <= 0:
            k = start
            while True:
                batch = self.make_batch(k)
                k += 1
                self._step = k
                yield batch
        dl = torch.utils.data.DataLoader(_WindowStream(self, start), batch_size=None, num_workers=self.num_workers,
                                         prefetch_factor=self.prefetch_factor, persistent_workers=False)
        for k, batch in enumerate(dl, start=start + 1):
            self._step = k
            yield batch

    # -- checkpointing
    def state_dict(self) -> dict:
        return {"version": 1, "step": self._step, "epoch": self.epoch,
                "batch_in_epoch": self._step % self.batches_per_epoch, "seed": self.seed,
                "seq_len": self.seq_len, "batch_size": self.batch_size, "stride": self.stride,
                "rank": self.rank, "world_size": self.world_size, "num_windows": self.num_windows,
                "episodes": episodes_digest(self.episodes)}

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        """Continue from ``state``; with ``strict`` the settings that define the order must match."""
        if strict:
            if "episodes" in state and state["episodes"] != episodes_digest(self.episodes):
                raise ValueError("loader state was made from another subset of the store's episodes (another "
                                 "--data-fraction); the batch order would differ (strict=False to force)")
            for key in ("seed", "seq_len", "batch_size", "stride", "world_size", "num_windows"):
                if key in state and state[key] != getattr(self, key):
                    raise ValueError(f"loader state has {key}={state[key]!r} but this loader has "
                                     f"{getattr(self, key)!r}; the batch order would differ (strict=False to force)")
        self._step = int(state["step"])

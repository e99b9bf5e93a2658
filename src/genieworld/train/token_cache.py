"""Tokens and latent actions of a training store, computed once and kept on disk for dynamics training.

With a frozen tokenizer and a frozen LAM, every dynamics step used to re-encode its frames
with both.  The cache encodes each episode once and the dynamics step runs its transformer
alone::

    CACHE/
      cache.json       {"version", "key": {store, tokenizer, lam fingerprints}, "frames", "tokens_per_frame",
                        "encoded": episode ids encoded, or null for all of them, ...}
      tokens.npy       (F, N) uint16    tokenizer ids of every frame of every (encoded) episode, in store order
      actions.npy      (F,)   int16     latent action of x_t -> x_{t+1} at row t; -1 at an episode's last frame

The key holds a digest of the store's manifest (which names every shard and its checksum)
and digests of the tokenizer's and the LAM's weights and configs: when any of them changes the
cache is rebuilt, never silently reused.  A run that trains on a share of the store's episodes
(``--data-fraction``) encodes only those: the other episodes' rows stay 0 (tokens) and -1 (actions)
and are never read, and a cache that holds every episode a run asks for serves it.  A cache is
written to ``CACHE.tmp`` and renamed into place when complete, so an interrupted build leaves no
half cache (the next run starts it again).  Both folders carry genieworld's ``token-cache`` marker
(:mod:`genieworld.owned`): a ``--cache`` folder that holds anything else -- a dataset, a user's
files -- is refused, never deleted or replaced.

Tokens are encoded per episode in overlapping chunks: the tokenizer's temporal attention
reaches ``num_layers * (max_frames - 1)`` frames back, so each chunk is preceded by that many
frames of context whose outputs are dropped, and every frame sees the same past as in one
pass over the whole episode.  Latent actions come from ``lam.encode_actions`` on chunks that
overlap by two frames (the first transition of a later chunk, which lacks x_{t-1}, is
dropped).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from genieworld import owned
from genieworld.data.loader import WindowLoader, episode_ids
from genieworld.data.store import EpisodeStore, store_digest  # noqa: F401  (store_digest: re-exported)

CACHE_VERSION = 1
_CHUNK = 64  # frames encoded per tokenizer call (plus the context that precedes them)


def module_digest(module: torch.nn.Module, cfg=None) -> str:
    """sha256 over a module's state dict (names, dtypes, shapes, bytes) and its config."""
    h = hashlib.sha256()
    if cfg is not None:
        from genieworld.config import digest_dict

        h.update(json.dumps(digest_dict(cfg), sort_keys=True).encode())
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def cache_key(store: EpisodeStore, tokenizer, lam) -> dict:
    return {"store": store_digest(store), "tokenizer": module_digest(tokenizer, tokenizer.cfg),
            "lam": module_digest(lam, lam.cfg)}


@torch.no_grad()
def encode_episode_tokens(tokenizer, frames_thwc: np.ndarray, device="cpu", chunk: int = _CHUNK) -> np.ndarray:
    """(T, N) token ids of one episode, each frame with the temporal context of a single full pass."""
    reach = tokenizer.cfg.encoder.num_layers * (tokenizer.cfg.max_frames - 1)
    out = []
    for s in range(0, len(frames_thwc), chunk):
        lo = max(0, s - reach)
        x = torch.from_numpy(frames_thwc[lo:s + chunk]).to(device)[None]
        out.append(tokenizer.encode(x)[0, s - lo:].cpu().numpy())
    return np.concatenate(out).astype(np.uint16)


@torch.no_grad()
def encode_episode_actions(lam, frames_thwc: np.ndarray, device="cpu", trained_codes: bool = False) -> np.ndarray:
    """(T-1,) latent action ids of one episode's transitions (``trained_codes``: the codes the LAM trained,
    before any merge into actions)."""
    chunk = max(3, int(getattr(lam.cfg, "max_frames", 16)))
    out, s = [], 0
    while s < len(frames_thwc) - 1:
        x = torch.from_numpy(frames_thwc[s:s + chunk]).to(device)[None]
        idx = (lam.encode_codes(x) if trained_codes else lam.encode_actions(x)[0])[0].cpu().numpy()
        out.append(idx if s == 0 else idx[1:])
        s += chunk - 2
    return np.concatenate(out)[: len(frames_thwc) - 1].astype(np.int16)


class TokenCache:
    """A finished cache folder, opened read-only (memory-mapped)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        from genieworld.utils import read_json

        meta = read_json(self.path / "cache.json", ValueError)
        if meta.get("version") != CACHE_VERSION:
            raise ValueError(f"{self.path}: cache version {meta.get('version')!r}, expected {CACHE_VERSION}")
        self.meta = meta
        from genieworld.utils import check_regular

        for name in ("tokens.npy", "actions.npy"):  # a FIFO or device is refused (numpy would block on it)
            check_regular(self.path / name, None, ValueError, "cache array")
        self.tokens = np.load(self.path / "tokens.npy", mmap_mode="r")
        self.actions = np.load(self.path / "actions.npy", mmap_mode="r")
        self.offsets = np.asarray(meta["offsets"], dtype=np.int64)

    @property
    def key(self) -> dict:
        return self.meta["key"]

    @property
    def encoded(self) -> np.ndarray | None:
        """Sorted ids of the episodes this cache encoded, or None: every episode of its store."""
        enc = self.meta.get("encoded")
        return None if enc is None else np.asarray(enc, dtype=np.int64)

    def check(self, num_codes: int | None = None) -> None:
        """Raise ``ValueError`` naming the first way the arrays disagree with ``cache.json``: shapes,
        dtypes, offsets, token ids outside ``[0, num_codes)``, latent actions outside
        ``[-1, num_actions)``, or an encoded episode whose last row is not -1."""
        m, f = self.meta, self.meta.get("frames")
        n, a = m.get("tokens_per_frame"), m.get("num_actions")
        for name, v in (("frames", f), ("tokens_per_frame", n), ("num_actions", a)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"cache.json: {name} {str(v)[:40]!r} is not a positive integer")
        if self.tokens.dtype != np.uint16 or self.tokens.shape != (f, n):
            raise ValueError(f"tokens.npy is {self.tokens.dtype} {self.tokens.shape}, cache.json says uint16 {(f, n)}")
        if self.actions.dtype != np.int16 or self.actions.shape != (f,):
            raise ValueError(f"actions.npy is {self.actions.dtype} {self.actions.shape}, cache.json says int16 {(f,)}")
        o = self.offsets
        if o.ndim != 1 or len(o) < 2 or o[0] != 0 or o[-1] != f or (np.diff(o) < 0).any():
            raise ValueError("cache.json: offsets do not split its frames into episodes")
        step = 1 << 20  # bounded memory: check the memory-mapped arrays in slices
        for lo in range(0, f, max(1, step // n)):
            hi = min(f, lo + max(1, step // n))
            if num_codes is not None and int(self.tokens[lo:hi].max()) >= num_codes:
                raise ValueError(f"tokens.npy holds token ids >= the tokenizer's {num_codes} codes")
            act = self.actions[lo:hi]
            if int(act.min()) < -1 or int(act.max()) >= a:
                raise ValueError(f"actions.npy holds latent actions outside [-1, {a})")
        enc = self.encoded
        eps = np.arange(len(o) - 1) if enc is None else enc
        if len(eps) and (eps.min() < 0 or eps.max() >= len(o) - 1):
            raise ValueError("cache.json: encoded names episodes the cache does not hold")
        if len(eps) and (self.actions[o[eps + 1] - 1] != -1).any():
            raise ValueError("actions.npy: an episode's last frame has an action (rows out of place)")

    def covers(self, episodes) -> bool:
        """Whether every episode in ``episodes`` (None: all) was encoded."""
        enc = self.encoded
        if enc is None:
            return True
        if episodes is None:
            return False
        return bool(np.isin(np.asarray(episodes, dtype=np.int64), enc).all())


def build_token_cache(path, store: EpisodeStore, tokenizer, lam, progress: bool = True, device="cpu",
                      episodes=None) -> TokenCache:
    """Open the cache at ``path`` when its key matches (store, tokenizer, LAM) and it holds ``episodes``
    (ids; None: all), else (re)build it with those episodes."""
    path = Path(path)
    episodes = episode_ids(episodes, store.num_episodes)
    key = cache_key(store, tokenizer, lam)
    lengths = store.episode_lengths.astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    n_tok = tokenizer.cfg.tokens_per_frame
    keep_tokens = False  # the old cache's tokens are still right: only the LAM changed
    num_codes = int(getattr(getattr(tokenizer.cfg, "vq", None), "num_codes", 0)) or None
    owned.check(path, "token-cache", "--cache")  # refuse a folder that is not a cache before reading or encoding
    if (path / "cache.json").is_file():
        why = "made from another store, tokenizer or LAM, or without some of this run's episodes"
        try:
            cache = TokenCache(path)
            cache.check(num_codes)
            same_frames = np.array_equal(cache.offsets, offsets)
            if cache.key == key and same_frames and cache.covers(episodes):
                return cache
            keep_tokens = (cache.key.get("store") == key["store"] and cache.key.get("tokenizer") == key["tokenizer"]
                           and same_frames and cache.tokens.shape == (int(offsets[-1]), n_tok)
                           and cache.covers(episodes))
            del cache
        except (ValueError, OSError, KeyError, TypeError, AttributeError, IndexError) as e:
            keep_tokens, why = False, f"damaged ({str(e)[:200]})"
        print(f"[cache] {path}: " + ("made with another LAM; re-encoding the latent actions, keeping the tokens"
                                     if keep_tokens else f"{why}; rebuilding it"), flush=True)
    tmp = path.with_name(path.name + ".tmp")
    owned.remove(tmp, "token-cache", "--cache's temporary folder")
    owned.claim(tmp, "token-cache")
    if keep_tokens:
        shutil.copyfile(path / "tokens.npy", tmp / "tokens.npy")
        tokens = None
    else:
        tokens = np.lib.format.open_memmap(tmp / "tokens.npy", mode="w+", dtype=np.uint16,
                                           shape=(int(offsets[-1]), n_tok))
    actions = np.lib.format.open_memmap(tmp / "actions.npy", mode="w+", dtype=np.int16, shape=(int(offsets[-1]),))
    actions[:] = -1  # rows of episodes left out stay -1 (never read)
    todo = np.arange(store.num_episodes) if episodes is None else episodes
    bar = None
    if progress:
        from tqdm.auto import tqdm

        what = "latent actions" if keep_tokens else "tokens + latent actions"
        bar = tqdm(total=int(lengths[todo].sum()), desc=f"cache: {what}", unit="frame", dynamic_ncols=True)
    tokenizer.eval()
    lam.eval()
    for i in todo.tolist():
        frames = store.read_frames(i)
        lo, hi = int(offsets[i]), int(offsets[i + 1])
        if tokens is not None:
            tokens[lo:hi] = encode_episode_tokens(tokenizer, frames, device)
        actions[hi - 1] = -1
        if hi - lo > 1:
            actions[lo:hi - 1] = encode_episode_actions(lam, frames, device)
        if bar is not None:
            bar.update(hi - lo)
    if bar is not None:
        bar.close()
    if tokens is not None:
        tokens.flush()
    actions.flush()
    del tokens, actions
    meta = {"version": CACHE_VERSION, "key": key, "frames": int(offsets[-1]), "episodes": int(store.num_episodes),
            "tokens_per_frame": n_tok, "num_actions": int(lam.num_actions), "offsets": offsets.tolist(),
            "encoded": None if episodes is None else episodes.tolist()}
    (tmp / "cache.json").write_text(json.dumps(meta) + "\n")
    owned.replace_dir(tmp, path, "token-cache", "--cache")
    return TokenCache(path)


class CachedWindowLoader(WindowLoader):
    """:class:`WindowLoader`'s window order (same seed -> same windows, same resume state), read from a
    :class:`TokenCache`: batches hold ``tokens`` (B, T, N) long, ``latent_actions`` (B, T-1) long and the
    store's ground-truth ``actions`` (B, T-1) (-1 where it has none) instead of frames."""

    def __init__(self, store: EpisodeStore, cache: TokenCache, **kw):
        super().__init__(store, **kw)
        if len(cache.offsets) != store.num_episodes + 1:
            raise ValueError(f"{cache.path} holds {len(cache.offsets) - 1} episodes, the store {store.num_episodes}")
        if not cache.covers(self.episodes):
            raise ValueError(f"{cache.path} did not encode every episode this loader reads "
                             "(it was built for a smaller --data-fraction); rebuild it")
        self.cache = cache

    def make_batch(self, k: int) -> dict:
        eps, starts = self.batch_windows(k)
        t = self.seq_len
        rows = self.cache.offsets[eps][:, None] + starts[:, None] + np.arange(t)[None]  # (B, T)
        tokens = torch.from_numpy(self.cache.tokens[rows.reshape(-1)].astype(np.int64)).reshape(len(eps), t, -1)
        latent = torch.from_numpy(self.cache.actions[rows[:, :-1].reshape(-1)].astype(np.int64)).reshape(len(eps), t - 1)
        actions = np.full((len(eps), t - 1), -1, dtype=np.int64)
        for n, (e, s) in enumerate(zip(eps.tolist(), starts.tolist())):
            a = self.store.read_actions(e, s, s + t - 1)
            if a is not None:
                actions[n, :len(a)] = a
        return {"tokens": tokens, "latent_actions": latent, "actions": torch.from_numpy(actions),
                "episode": torch.from_numpy(eps.astype(np.int64)), "start": torch.from_numpy(starts.astype(np.int64))}

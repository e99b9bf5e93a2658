"""One store of several (``genie data merge OUT STORE...``): a world of many games trains on one store.

Every episode of each source store is copied, in order, into ``OUT``. Its meta gains ``"from"`` (the
source store's folder name) and ``"game"`` (the source's ``source``, such as ``procgen:ninja``, unless the
episode says already), so per-game measurements can find their episodes again. Sources must share the
frame size and the frame rate (a world model learns one step of time).

Actions are evaluation labels only (genieworld trains on frames alone). They are kept when every source
records them with the same count and the same meaning: Procgen's 15 buttons, whose meaning every game
shares. Otherwise the merged store has none; evaluate such a world per game, on each game's own store.
The merged manifest's ``source`` is the sources' common one, ``procgen:mix`` for several Procgen games,
else ``merge``; ``extra.merged_from`` lists each source (folder name, source, digest, episodes).

Resumable: each source episode is one unit of the store writer, keyed by the source's digest and the
episode's index, so a killed merge continues where it stopped. ``OUT`` is created, or must be a merge of
the same sources; nothing else is ever written into or deleted from it.
"""

from __future__ import annotations

import os
from pathlib import Path

from tqdm import tqdm

from genieworld.data.store import MANIFEST, EpisodeStore, EpisodeWriter, store_digest

__all__ = ["merge_stores"]


def _common_source(stores: list[EpisodeStore]) -> str:
    sources = {s.source for s in stores}
    if len(sources) == 1:
        return sources.pop()
    if all(s.startswith("procgen:") or s == "coinrun" for s in sources):
        return "procgen:mix"
    return "merge"


def _same_actions(stores: list[EpisodeStore]) -> bool:
    """Every source records actions, with one count, and their meaning is shared (one source kind, or Procgen's
    buttons in every game)."""
    if not all(s.has_actions and s.num_actions is not None for s in stores):
        return False
    return len({s.num_actions for s in stores}) == 1 and _common_source(stores) != "merge"


def merge_stores(out: str | os.PathLike, sources: list[str | os.PathLike], progress: bool = True) -> dict:
    """Copy every episode of ``sources`` into the store ``out`` (module docstring); returns a summary
    ``{"out", "episodes", "frames", "copied", "actions", "source", "from": [...]}``. Raises ``ValueError``
    naming the problem for sources that cannot be merged or an ``out`` that is another store."""
    if not sources:
        raise ValueError("name at least one store to merge")
    out = Path(out)
    paths = [Path(p) for p in sources]
    if len({p.resolve() for p in paths}) != len(paths):
        raise ValueError("a store is named twice")
    if any(p.resolve() == out.resolve() for p in paths):
        raise ValueError(f"{out} is also one of the stores to merge")
    stores = [EpisodeStore(p) for p in paths]
    first = stores[0]
    for p, s in zip(paths[1:], stores[1:]):
        if s.resolution != first.resolution:
            raise ValueError(f"{p}: frames are {s.resolution[0]}x{s.resolution[1]}, {paths[0]}'s "
                             f"{first.resolution[0]}x{first.resolution[1]}")
        if abs(s.fps - first.fps) > 1e-9:
            raise ValueError(f"{p}: {s.fps:g} fps, {paths[0]}'s {first.fps:g} (record both at one frame skip)")
    keep_actions = _same_actions(stores)
    merged_from = [{"store": p.resolve().name, "source": s.source, "digest": store_digest(s),
                    "episodes": s.num_episodes} for p, s in zip(paths, stores)]
    if (out / MANIFEST).exists():
        old = EpisodeStore(out)
        if old.extra.get("merged_from") != merged_from:
            raise ValueError(f"{out}: an existing store that is not a merge of these stores; choose a new folder")
    source = _common_source(stores)
    total = sum(s.num_episodes for s in stores)
    copied = 0
    with EpisodeWriter(out, resolution=first.resolution, fps=first.fps, source=source,
                       num_actions=first.num_actions if keep_actions else None,
                       extra_manifest={"merged_from": merged_from}) as w:
        done = w.done_keys
        bar = tqdm(total=total, desc="merge", unit="episode", disable=not progress, dynamic_ncols=True)
        try:
            for info, s in zip(merged_from, stores):
                game = s.source or info["store"]
                for i in range(s.num_episodes):
                    key = f"{info['digest'][:16]}:{i}"
                    if key not in done:
                        frames, actions, meta = s.read_episode(i)
                        meta = {**meta, "from": info["store"], "game": meta.get("game", game)}
                        w.add_episode(frames, actions if keep_actions else None, meta=meta, key=key)
                        w.mark_done(key)
                        copied += 1
                    bar.update(1)
        finally:
            bar.close()
    merged = EpisodeStore(out)
    return {"out": str(out), "episodes": merged.num_episodes, "frames": merged.num_frames, "copied": copied,
            "actions": keep_actions, "source": merged.source, "from": merged_from}

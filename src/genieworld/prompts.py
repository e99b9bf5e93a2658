"""Prompt frames that ship with a model: ``MODEL/prompts/prompt-00.png`` ...

``genie play MODEL`` opens on the first of them and offers all of them as a small
gallery, so playing a model needs no dataset.  :func:`write_prompts` picks them
from an episode store -- pass a *held-out* store (levels the model never saw in
training, e.g. the recipe's ``data-test``) -- and writes them with Pillow:

    MODEL/prompts/prompt-00.png ... prompt-NN.png   uint8 RGB frames as stored (64x64 for CoinRun)
    MODEL/prompts/index.json                        {"prompts": [{"file", "label", "episode", "frame", ...}],
                                                     "seed": 0, "store": "<store folder name>"}

The choice is deterministic for a seed: ``n`` distinct episodes in a seeded random
order (episodes are reused, with other frames, only when the store has fewer than
``n``), one frame from the first half of each, skipping near-uniform frames
(fades, blank transitions) and exact duplicates.  ``index.json`` records names
relative to nothing on this machine (the store's folder name, episode and frame
indices), never absolute paths.

Readers (:mod:`genieworld.play.server`) need only the PNG files; ``index.json``
supplies gallery labels when present.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np

__all__ = ["PROMPTS_DIR", "PROMPT_INDEX", "PROMPT_FILE_RE", "pick_prompt_frames", "write_prompts",
           "read_prompt_labels"]

PROMPTS_DIR = "prompts"
PROMPT_INDEX = "index.json"
MAX_INDEX_BYTES = 1 << 20  # an index of a few hundred prompts is a few KB
# what a prompt file may be called (the play server lists only these: no path can leave the folder)
PROMPT_FILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}\.png$")
MIN_STD = 4.0  # frames whose pixel standard deviation is below this are "uniform" (fades, blank screens)


def _label(meta: dict, ep: int, t: int) -> str:
    level = meta.get("level")  # CoinRun / Procgen stores record the level of each episode
    if isinstance(level, (int, np.integer)) and not isinstance(level, bool):
        return f"level {int(level)}, frame {t}"
    return f"episode {ep}, frame {t}"


def pick_prompt_frames(store, n: int = 8, seed: int = 0, max_tries: int = 8) -> list[dict]:
    """Pick up to ``n`` prompt frames from ``store`` (an :class:`~genieworld.data.store.EpisodeStore`).

    Returns ``[{"frame": uint8 (H, W, 3), "episode": i, "index": t, "label": str}, ...]``,
    deterministic for ``seed`` (module docstring for the rules).  Fewer than ``n`` only when the
    store lacks enough distinct, non-uniform frames.
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    lengths = [store.episode_length(i) for i in range(store.num_episodes)]
    usable = [i for i, length in enumerate(lengths) if length > 0]
    if not usable:
        return []
    rng = np.random.default_rng(seed)
    order = [usable[i] for i in rng.permutation(len(usable))]  # distinct episodes first, in a seeded order
    picked: list[dict] = []
    seen: set[bytes] = set()
    used: set[tuple[int, int]] = set()
    progress, budget = True, 64 * n  # frames read at most (a store of blank frames must not be read whole)
    while len(picked) < n and progress and budget > 0:  # small stores: the same episodes again, other frames
        progress = False
        for ep in order:
            if len(picked) >= n or budget <= 0:
                break
            horizon = max(1, (lengths[ep] + 1) // 2)  # the first half: the level is still ahead of the player
            ts = [int(t) for t in rng.permutation(horizon) if (ep, int(t)) not in used][:max_tries]
            for t in ts:
                used.add((ep, t))
                progress, budget = True, budget - 1
                frame = np.ascontiguousarray(store.read_frames(ep, t, t + 1)[0], dtype=np.uint8)
                if frame.ndim != 3 or frame.shape[2] != 3 or float(frame.std()) < MIN_STD:
                    continue
                key = frame.tobytes()
                if key in seen:
                    continue
                seen.add(key)
                picked.append({"frame": frame, "episode": int(ep), "index": t,
                               "label": _label(store.episode_meta(ep), ep, t)})
                break
    return picked


def _png(frame: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame, "RGB").save(buf, "PNG", optimize=True)
    return buf.getvalue()


def write_prompts(model_dir, store, n: int = 8, seed: int = 0) -> list[Path]:
    """Write ``n`` prompt frames picked from ``store`` to ``model_dir/prompts/`` (module docstring).

    ``store``: an :class:`~genieworld.data.store.EpisodeStore` or a path to one; use held-out
    levels.  Earlier ``prompt-*.png`` files in the folder are replaced.  Returns the written paths.
    Raises ``ValueError`` when the store yields no usable frame.
    """
    from genieworld.data.store import EpisodeStore, atomic_write_bytes, atomic_write_json

    if not isinstance(store, EpisodeStore):
        store = EpisodeStore(store)
    picks = pick_prompt_frames(store, n=n, seed=seed)
    if not picks:
        raise ValueError(f"{store.path}: no usable (non-uniform) frame to use as a prompt")
    from genieworld import owned

    out = owned.claim(Path(model_dir) / PROMPTS_DIR, "prompts", "the prompts folder")
    for old in out.glob("prompt-*.png"):
        old.unlink()
    paths, entries = [], []
    for k, p in enumerate(picks):
        name = f"prompt-{k:02d}.png"
        paths.append(atomic_write_bytes(out, name, _png(p["frame"])))
        entries.append({"file": name, "label": p["label"], "episode": p["episode"], "frame": p["index"]})
    # drawn prompts (genieworld.sketches: entries with a "kind") are not store frames: they stay
    before = _read_index(out).get("prompts")
    drawn = [e for e in (before if isinstance(before, list) else []) if isinstance(e, dict) and "kind" in e
             and PROMPT_FILE_RE.match(str(e.get("file", ""))) and (out / e["file"]).is_file()]
    atomic_write_json(out, PROMPT_INDEX, {"prompts": entries + drawn, "seed": int(seed),
                                          "store": Path(store.path).name, "source": store.source})
    return paths


def _read_index(prompts_dir) -> dict:
    """``prompts/index.json`` as a dict; ``{}`` when it is missing or malformed."""
    from genieworld.errors import UserError
    from genieworld.utils import read_json

    try:  # bounded, regular files only: a FIFO or a link to /dev/zero is refused, never read
        data = read_json(Path(prompts_dir) / PROMPT_INDEX, max_bytes=MAX_INDEX_BYTES)
    except UserError:
        return {}
    return data if isinstance(data, dict) else {}


def read_prompt_labels(prompts_dir) -> dict[str, str]:
    """``{file name: label}`` from ``prompts/index.json``; ``{}`` when it is missing or malformed."""
    items = _read_index(prompts_dir).get("prompts")
    labels = {}
    if isinstance(items, list):
        for it in items:
            if isinstance(it, dict) and isinstance(it.get("file"), str) and isinstance(it.get("label"), str):
                labels[it["file"]] = it["label"][:80]
    return labels

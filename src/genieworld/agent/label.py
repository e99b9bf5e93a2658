"""Step 1 of §3.3: the frozen LAM reads a latent action for every transition of a store.

Each episode goes through ``genie.infer_actions`` whole (the conv LAM reads transition t from
x_{t-1}, x_t, x_{t+1}; the first uses x_t for the missing x_{t-1}, as in its training), in chunks of
``window`` frames overlapping by one for long episodes (at most the LAM's ``max_frames`` for the
transformer LAM).  Output ``labels.safetensors``: ``latents``
(all transitions, episode by episode, int64) and ``offsets`` (episode e's transitions are
``latents[offsets[e]:offsets[e+1]]``), with ``labels.json`` naming the store (by manifest digest),
the model and the count of each latent action.  The true actions are not read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from genieworld.actions import frame_windows
from genieworld.errors import UserError

FORMAT = "genieworld-agent-labels"


def label_store(model, data, out, window: int = 256, progress: bool = True) -> dict:
    from genieworld.data.store import EpisodeStore, atomic_write_json, store_digest
    from genieworld.genie import Genie
    from genieworld.weights import save_tensors

    out = Path(out)
    genie = Genie.from_pretrained(model)
    store = EpisodeStore(data)
    if tuple(store.resolution) != (genie.image_size, genie.image_size):
        raise UserError(f"{data}: frames are {store.resolution}, the model wants {genie.image_size}")
    if getattr(genie.lam.cfg, "arch", "") != "conv":  # the transformer LAM sees at most max_frames at once
        window = min(window, int(genie.lam.cfg.max_frames))
    lat, offsets = [], [0]
    it = range(store.num_episodes)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="label (LAM)", unit="episode", mininterval=5)
    for e in it:
        n = store.episode_length(e)
        ep = []
        for a, b in frame_windows(n, window):
            with torch.inference_mode():
                ep.append(np.asarray(genie.infer_actions(store.read_frames(e, a, b)[None])[0].cpu(), dtype=np.int64))
        ep = np.concatenate(ep) if ep else np.zeros(0, dtype=np.int64)
        lat.append(ep)
        offsets.append(offsets[-1] + len(ep))
    latents = np.concatenate(lat) if lat else np.zeros(0, dtype=np.int64)
    out.mkdir(parents=True, exist_ok=True)
    save_tensors({"latents": torch.from_numpy(latents), "offsets": torch.tensor(offsets, dtype=torch.int64)},
                 out / "labels.safetensors")
    info = {"format": FORMAT, "model": str(model), "num_latent": int(genie.num_actions), "store": Path(data).name,
            "store_sha256": store_digest(store), "transitions": int(len(latents)), "episodes": store.num_episodes,
            "latent_counts": np.bincount(latents, minlength=genie.num_actions).tolist()}
    atomic_write_json(out, "labels.json", info)
    return info


def load_labels(path, store=None) -> tuple[list[np.ndarray], dict]:
    """Per-episode latent labels and the info; with ``store``, checked against it."""
    from safetensors.torch import load_file

    from genieworld.data.store import EpisodeStore, store_digest
    from genieworld.utils import read_json

    path = Path(path)
    info = read_json(path / "labels.json", UserError)
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise UserError(f"{path}/labels.json: not genieworld latent labels ({FORMAT})")
    t = load_file(str(path / "labels.safetensors"))
    if set(t) != {"latents", "offsets"} or t["latents"].dtype != torch.int64 or t["offsets"].dtype != torch.int64:
        raise UserError(f"{path}/labels.safetensors: expected int64 tensors 'latents' and 'offsets'")
    latents, offsets = t["latents"].numpy(), t["offsets"].numpy()
    if (offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != len(latents)
            or (np.diff(offsets) < 0).any()):
        raise UserError(f"{path}/labels.safetensors: offsets do not index the latents")
    if latents.size and (latents.min() < 0 or latents.max() >= int(info.get("num_latent", 0))):
        raise UserError(f"{path}/labels.safetensors: latent ids out of range")
    per_ep = [latents[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
    if store is not None:
        store = store if isinstance(store, EpisodeStore) else EpisodeStore(store)
        if info.get("store_sha256") != store_digest(store):
            raise UserError(f"{path}: these labels were made for another store (digest differs); run `genie agent label` again")
    return per_ep, info

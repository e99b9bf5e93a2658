"""Latent action model training on its own (``genie train lam``): MSE reconstruction + VQ loss on short windows.

The LAM is trained before the dynamics model and then frozen (``genie train dynamics --lam``):
its job only needs a few frames at a time, so it trains on short windows (the ``cpu`` preset:
3 frames) at a large batch, where co-training with the dynamics model gave it 16-frame windows
at batch 2.  Logs the reconstruction MSE against copying x_t (``copy_mse``): a LAM that is not
clearly below copying has learned nothing for its actions to carry.

With ``LAMConfig.merged_actions`` the LAM trains more codes than play offers actions; the export
then reads up to ``MERGE_TRANSITIONS`` transitions of the training store, in order, and merges
the codes by how often consecutive transitions use them together
(:func:`genieworld.lam_codebook.merge_by_cooccurrence`) before it writes ``RUN/lam``.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch.nn.functional as F

import numpy as np
import torch

from genieworld.config import LAMConfig
from genieworld.lam import build_lam
from genieworld.lam_codebook import merge_by_cooccurrence
from genieworld.tokenizer import to_float_video
from genieworld.train.task import TrainTask


MERGE_TRANSITIONS = 60_000  # transitions of the training store read to merge codes into actions


def episode_codes(lam, store, limit: int = MERGE_TRANSITIONS) -> list[np.ndarray]:
    """The trained (unmerged) code of every transition of the store's first episodes, per episode in
    order, up to ``limit`` transitions; windows of ``max_frames`` overlap by two frames so each
    transition (but an episode's first) sees its x_{t-1}."""
    chunk = max(3, int(lam.cfg.max_frames))
    out, n = [], 0
    was = lam.training
    lam.eval()
    for i in range(store.num_episodes):
        frames = store.read_frames(i)
        if len(frames) < 2:
            continue
        codes, s = [], 0
        while s < len(frames) - 1:
            c = lam.encode_codes(torch.from_numpy(frames[s:s + chunk])[None])[0].numpy()
            codes.append(c if s == 0 else c[1:])
            s += chunk - 2
        out.append(np.concatenate(codes)[: len(frames) - 1])
        n += len(out[-1])
        if n >= limit:
            break
    lam.train(was)
    return out


class LAMTask(TrainTask):
    component = "lam"

    def __init__(self, cfg: LAMConfig, merge_store=None):
        super().__init__()
        self.lam = build_lam(cfg)
        self.data_provenance: dict = {}
        self.merge_store = merge_store  # the training EpisodeStore, read to merge codes (merged_actions)

    def training_step(self, batch: dict, step: int):
        frames = batch["frames"]  # (B, T, H, W, C) uint8
        _, info = self.lam(frames)
        x = to_float_video(frames)
        logs = {
            "loss": float(info["loss"].detach()),
            "mse": float(info["mse"]),
            "copy_mse": float(F.mse_loss(x[:, :-1], x[:, 1:])),
            "vq_loss": float(info["vq_loss"]),
            "codes_used": float(info["codes_used"]),
            "perplexity": float(info["perplexity"]),
        }
        return info["loss"], logs

    def model_configs(self) -> dict:
        return {"lam": asdict(self.lam.cfg)}

    def export(self, run_dir: Path) -> None:
        from genieworld.genie import save_component

        cfg = self.lam.cfg
        if cfg.merged_actions and not self.lam.is_merged:
            if self.merge_store is None:
                raise ValueError("merging the LAM's codes into actions needs its training store")
            groups = merge_by_cooccurrence(episode_codes(self.lam, self.merge_store), cfg.vq.num_codes,
                                           cfg.merged_actions)
            self.lam.merge_codes(groups)
            print(f"[lam] merged {cfg.vq.num_codes} codes into {cfg.merged_actions} actions: {groups.tolist()}",
                  flush=True)
        save_component(self.lam, self.lam.cfg, Path(run_dir) / "lam")

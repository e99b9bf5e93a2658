"""Latent action model training on its own (``genie train lam``): MSE reconstruction + VQ loss on short windows.

The LAM is trained before the dynamics model and then frozen (``genie train dynamics --lam``):
its job only needs a few frames at a time, so it trains on short windows (the ``cpu`` preset:
3 frames) at a large batch, where co-training with the dynamics model gave it 16-frame windows
at batch 2.  Logs the reconstruction MSE against copying x_t (``copy_mse``): a LAM that is not
clearly below copying has learned nothing for its actions to carry.

With ``LAMConfig.merged_actions`` the LAM trains more codes than play offers actions; the export
merges the codebook into that many actions (:func:`genieworld.lam_codebook.merge_by_vectors`)
before it writes ``RUN/lam``.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch.nn.functional as F

from genieworld.config import LAMConfig
from genieworld.lam import build_lam
from genieworld.lam_codebook import merge_by_vectors
from genieworld.tokenizer import to_float_video
from genieworld.train.task import TrainTask


class LAMTask(TrainTask):
    component = "lam"

    def __init__(self, cfg: LAMConfig):
        super().__init__()
        self.lam = build_lam(cfg)
        self.data_provenance: dict = {}

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
            groups = merge_by_vectors(self.lam.vq.normalized_codebook().detach().cpu().numpy(), cfg.merged_actions)
            self.lam.merge_codes(groups)
            print(f"[lam] merged {cfg.vq.num_codes} codes into {cfg.merged_actions} actions: {groups.tolist()}",
                  flush=True)
        save_component(self.lam, self.lam.cfg, Path(run_dir) / "lam")

"""Tokenizer training step: MSE reconstruction + VQ loss on windows of frames."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from genieworld.config import TokenizerConfig
from genieworld.tokenizer import VideoTokenizer
from genieworld.train.task import TrainTask


def batch_psnr(recon: torch.Tensor, target: torch.Tensor) -> float:
    mse = torch.mean((recon.float() - target.float()) ** 2).clamp_min(1e-10)
    return float(10 * torch.log10(1.0 / mse))


class TokenizerTask(TrainTask):
    component = "tokenizer"

    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        self.tokenizer = VideoTokenizer(cfg)

    def training_step(self, batch: dict, step: int):
        frames = batch["frames"]  # (B, T, H, W, C) uint8
        recon, info = self.tokenizer(frames)
        target = frames.float() / 255.0
        logs = {
            "loss": info["loss"].item(),
            "recon_mse": float(info["recon_loss"]),
            "psnr": batch_psnr(recon.detach(), target),
            "vq_loss": float(info["vq_loss"]),
            "codes_used": float(info["codes_used"]),
            "perplexity": float(info["perplexity"]),
        }
        return info["loss"], logs

    def model_configs(self) -> dict:
        return {"tokenizer": asdict(self.tokenizer.cfg)}

    def export(self, run_dir: Path) -> None:
        from genieworld.genie import save_component

        save_component(self.tokenizer, self.tokenizer.cfg, Path(run_dir) / "tokenizer")

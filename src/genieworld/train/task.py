"""Base class for what the trainer trains: model-specific loss in ``training_step``."""

from __future__ import annotations

from pathlib import Path

from torch import nn


class TrainTask(nn.Module):
    component = "task"

    def training_step(self, batch: dict, step: int):  # -> (loss, logs)
        raise NotImplementedError

    def forward(self, batch: dict, step: int):  # DDP / torch.compile call the module itself
        return self.training_step(batch, step)

    def model_configs(self) -> dict:
        raise NotImplementedError

    def export(self, run_dir: Path) -> None:
        raise NotImplementedError

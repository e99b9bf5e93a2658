"""Co-training of the latent action model and the dynamics model on a frozen tokenizer (paper section 2.1).

One training step on a batch of frames x_1..x_T (B, T, H, W, 3) uint8::

    tokens  = tokenizer.encode(frames)                      no grad, frozen tokenizer
    pred, i = lam(frames)                                   loss_lam = MSE(pred, x_{2:T}) + VQ
    a       = lam codebook vectors of i["indices"], detached (stop-gradient, exactly what play uses)
    loss_dyn = masked CE of dynamics(masked tokens, a)      mask from dynamics.sample_train_mask
    loss    = loss_lam + loss_dyn

The frozen tokenizer is held outside the module tree (``self._frozen``), so the optimizer
never sees it and checkpoints hold only ``lam.*`` and ``dynamics.*``; ``.to(device)`` still
moves it (see :meth:`DynamicsTask._apply`).  Masks use the global torch RNG, which the trainer
checkpoints, so a resumed run continues exactly.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import torch

from genieworld.config import Preset, SamplingConfig, TokenizerConfig
from genieworld.dynamics import DynamicsModel
from genieworld.genie import ModelDirError, check_compatible, load_component, save_model_dir
from genieworld.lam import LatentActionModel
from genieworld.tokenizer import VideoTokenizer
from genieworld.train.task import TrainTask


def resolve_tokenizer_dir(path) -> Path:
    """``path`` when it holds a tokenizer (config.json + model.safetensors), else ``path/tokenizer`` (a RUN folder)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"--tokenizer {p}: no such folder")
    for cand in (p, p / "tokenizer"):
        if (cand / "config.json").is_file() and (cand / "model.safetensors").is_file():
            return cand
    if (p / "checkpoints").is_dir():
        raise ModelDirError(f"--tokenizer {p}: this tokenizer run has not finished (no {p / 'tokenizer'} yet); "
                            "run `genie train tokenizer` on it again to finish, or pass --steps to stop earlier")
    raise ModelDirError(f"--tokenizer {p}: not a tokenizer folder (expected RUN or RUN/tokenizer with "
                        "config.json and model.safetensors)")


class DynamicsTask(TrainTask):
    component = "dynamics"

    def __init__(self, tokenizer: VideoTokenizer, lam_cfg, dyn_cfg, sampling: SamplingConfig | None = None,
                 tokenizer_source: str | None = None):
        super().__init__()
        try:
            check_compatible(tokenizer.cfg, lam_cfg, dyn_cfg)
        except ModelDirError as e:
            raise ModelDirError(f"the tokenizer and the preset do not fit: {e}") from None
        tokenizer.eval()
        for p in tokenizer.parameters():
            p.requires_grad_(False)
        self._frozen = {"tokenizer": tokenizer}  # not a submodule: not trained, not checkpointed
        self.lam = LatentActionModel(lam_cfg)
        self.dynamics = DynamicsModel(dyn_cfg)
        ctx = dyn_cfg.max_frames if sampling is None else min(sampling.context_frames, dyn_cfg.max_frames)
        self.sampling = replace(sampling or SamplingConfig(), context_frames=ctx)
        self.tokenizer_source = tokenizer_source
        self.data_provenance: dict = {}  # what the model was trained on, written to genie.json

    @property
    def tokenizer(self) -> VideoTokenizer:
        return self._frozen["tokenizer"]

    def _apply(self, fn, *args, **kwargs):  # .to() / .cuda() / .float() reach the frozen tokenizer too
        super()._apply(fn, *args, **kwargs)
        self._frozen["tokenizer"]._apply(fn, *args, **kwargs)
        return self

    def train(self, mode: bool = True):
        super().train(mode)
        self.tokenizer.eval()  # always frozen
        return self

    def training_step(self, batch: dict, step: int):
        frames = batch["frames"]  # (B, T, H, W, C) uint8
        with torch.no_grad():
            tokens = self.tokenizer.encode(frames)
        _, lam_info = self.lam(frames)
        actions = self.lam.action_vectors(lam_info["indices"]).detach()  # stop-gradient, as at play time
        dyn_loss, dyn_info = self.dynamics.loss(tokens, actions)
        loss = lam_info["loss"] + dyn_loss
        logs = {
            "loss": float(loss.detach()),
            "lam_mse": float(lam_info["mse"]),
            "lam_vq_loss": float(lam_info["vq_loss"]),
            "lam_codes_used": float(lam_info["codes_used"]),
            "lam_perplexity": float(lam_info["perplexity"]),
            "dyn_ce": float(dyn_info["ce"]),
            "dyn_acc": float(dyn_info["acc"]),
            "mask_rate": float(dyn_info["mask_rate"]),
        }
        return loss, logs

    def model_configs(self) -> dict:
        return {"tokenizer": asdict(self.tokenizer.cfg), "lam": asdict(self.lam.cfg),
                "dynamics": asdict(self.dynamics.cfg)}

    def export(self, run_dir: Path) -> None:
        """Write the self-contained model directory RUN/model (see :mod:`genieworld.genie`)."""
        prov = {"tokenizer": self.tokenizer_source} if self.tokenizer_source else {}
        prov.update(self.data_provenance)
        save_model_dir(Path(run_dir) / "model", self.tokenizer, self.lam, self.dynamics, self.sampling,
                       provenance=prov)


def build_dynamics_task(preset: Preset, tokenizer_path, seq_len: int, action_injection: str | None = None
                        ) -> DynamicsTask:
    """Load the trained tokenizer (RUN or RUN/tokenizer), check it fits the preset, build LAM + dynamics.

    ``max_frames`` of the LAM and the dynamics model is raised to ``seq_len`` when the training
    window is longer than the preset's.
    """
    tok_dir = resolve_tokenizer_dir(tokenizer_path)
    tokenizer = load_component(VideoTokenizer, TokenizerConfig, tok_dir)
    lam_cfg = replace(preset.lam, max_frames=max(preset.lam.max_frames, seq_len))
    dyn_cfg = replace(preset.dynamics, max_frames=max(preset.dynamics.max_frames, seq_len))
    if action_injection is not None:
        dyn_cfg = replace(dyn_cfg, action_injection=action_injection)
    try:
        return DynamicsTask(tokenizer, lam_cfg, dyn_cfg, preset.sampling, tokenizer_source=str(tok_dir.resolve()))
    except ModelDirError as e:
        raise ModelDirError(f"--tokenizer {tok_dir}: {e}") from None

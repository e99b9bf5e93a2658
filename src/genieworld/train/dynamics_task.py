"""Dynamics training on a frozen tokenizer: with a co-trained LAM (paper section 2.1), a frozen one, or true actions.

One co-training step on a batch of frames x_1..x_T (B, T, H, W, 3) uint8::

    tokens  = tokenizer.encode(frames)                      no grad, frozen tokenizer
    pred, i = lam(frames)                                   loss_lam = MSE(pred, x_{2:T}) + VQ
    a       = lam codebook vectors of i["indices"], detached (stop-gradient, exactly what play uses)
    loss_dyn = masked CE of dynamics(masked tokens, a)      mask from dynamics.sample_train_mask
    loss    = loss_lam + loss_dyn

With a frozen LAM (``genie train lam`` first, then ``--lam``), the loss is ``loss_dyn`` alone,
and batches may come from a :class:`~genieworld.train.token_cache.CachedWindowLoader`: they then
carry ``tokens`` and ``latent_actions`` instead of frames, and the step runs the dynamics
transformer only.  With ``action_source="true"`` (ground-truth mode, as GenieRedux-G and
Jasmine have) the dynamics model gets the recorded actions instead of latent ones -- for
CoinRun the 6 effective actions -- as fixed random unit vectors of the LAM's code size: its
controllability at the same budget is the dynamics' own ceiling.

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
from genieworld.lam import build_lam
from genieworld.tokenizer import VideoTokenizer
from genieworld.train.task import TrainTask


def _resolve_component_dir(path, part: str) -> Path:
    """``path`` when it holds a trained ``part`` (config.json + model.safetensors), else ``path/part``
    (the RUN folder of ``genie train part``)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"--{part} {p}: no such folder")
    for cand in (p, p / part):
        if (cand / "config.json").is_file() and (cand / "model.safetensors").is_file():
            return cand
    if (p / "checkpoints").is_dir():
        raise ModelDirError(f"--{part} {p}: this {part} run has not finished (no {p / part} yet); "
                            f"run `genie train {part}` on it again to finish, or pass --steps to stop earlier")
    raise ModelDirError(f"--{part} {p}: not a {part} folder (expected RUN or RUN/{part} with "
                        "config.json and model.safetensors)")


def resolve_tokenizer_dir(path) -> Path:
    """``path`` when it holds a tokenizer, else ``path/tokenizer`` (a ``genie train tokenizer`` RUN)."""
    return _resolve_component_dir(path, "tokenizer")


def resolve_lam_dir(path) -> Path:
    """``path`` when it holds a LAM, else ``path/lam`` (a ``genie train lam`` RUN)."""
    return _resolve_component_dir(path, "lam")


class DynamicsTask(TrainTask):
    component = "dynamics"

    def __init__(self, tokenizer: VideoTokenizer, lam_cfg, dyn_cfg, sampling: SamplingConfig | None = None,
                 tokenizer_source: str | None = None, frozen_lam=None, action_source: str = "lam",
                 num_true_actions: int | None = None):
        super().__init__()
        if frozen_lam is not None:
            lam_cfg = frozen_lam.cfg
        try:
            check_compatible(tokenizer.cfg, lam_cfg, dyn_cfg)
        except ModelDirError as e:
            raise ModelDirError(f"the tokenizer and the preset do not fit: {e}") from None
        if action_source not in ("lam", "true"):
            raise ValueError(f"action_source must be 'lam' or 'true', got {action_source!r}")
        if action_source == "true" and not num_true_actions:
            raise ValueError("ground-truth actions need a store with recorded actions")
        tokenizer.eval()
        for p in tokenizer.parameters():
            p.requires_grad_(False)
        self._frozen = {"tokenizer": tokenizer}  # not a submodule: not trained, not checkpointed
        if frozen_lam is not None:
            frozen_lam.eval()
            for p in frozen_lam.parameters():
                p.requires_grad_(False)
            self._frozen["lam"] = frozen_lam
        else:
            self.lam = build_lam(lam_cfg)
        self.action_source = action_source
        if action_source == "true":
            g = torch.Generator().manual_seed(1234)
            table = torch.nn.functional.normalize(torch.randn(num_true_actions, dyn_cfg.action_dim, generator=g), dim=-1)
            self.register_buffer("true_action_table", table)
        self.dynamics = DynamicsModel(dyn_cfg)
        self.control_check = None  # optional ControlCheck, run by the trainer every few steps
        ctx = dyn_cfg.max_frames if sampling is None else min(sampling.context_frames, dyn_cfg.max_frames)
        self.sampling = replace(sampling or SamplingConfig(), context_frames=ctx)
        self.tokenizer_source = tokenizer_source
        self.data_provenance: dict = {}  # what the model was trained on, written to genie.json

    @property
    def tokenizer(self) -> VideoTokenizer:
        return self._frozen["tokenizer"]

    @property
    def lam_frozen(self) -> bool:
        return "lam" in self._frozen

    @property
    def the_lam(self):
        """The LAM, co-trained (a submodule) or frozen."""
        return self._frozen["lam"] if self.lam_frozen else self.lam

    def _apply(self, fn, *args, **kwargs):  # .to() / .cuda() / .float() reach the frozen parts too
        super()._apply(fn, *args, **kwargs)
        for part in self._frozen.values():
            part._apply(fn, *args, **kwargs)
        return self

    def train(self, mode: bool = True):
        super().train(mode)
        for part in self._frozen.values():
            part.eval()  # always frozen
        return self

    def true_action_vectors(self, actions: torch.Tensor) -> torch.Tensor:
        """Fixed vectors (..., action_dim) of ground-truth action ids (ground-truth mode)."""
        if actions.numel() and int(actions.min()) < 0:
            raise ValueError("ground-truth mode needs a recorded action for every transition of the window")
        return self.true_action_table[actions]

    def action_ids_of(self, batch: dict) -> torch.Tensor:
        """Ids (B, T-1) the dynamics model is conditioned on: true (effective) actions or the frozen LAM's."""
        if self.action_source == "true":
            return batch["true_actions"] if "true_actions" in batch else batch["actions"]
        if "latent_actions" in batch:
            return batch["latent_actions"]
        return self.the_lam.encode_actions(batch["frames"])[0]

    def training_step(self, batch: dict, step: int):
        if "tokens" in batch:  # a token cache: the frozen tokenizer already ran
            tokens = batch["tokens"]
        else:
            with torch.no_grad():
                tokens = self.tokenizer.encode(batch["frames"])  # (B, T, H, W, C) uint8 -> (B, T, N)
        logs = {}
        lam_loss = None
        if self.action_source == "true":
            actions = self.true_action_vectors(self.action_ids_of(batch))
        elif self.lam_frozen:
            with torch.no_grad():
                actions = self.the_lam.action_vectors(self.action_ids_of(batch))
        else:
            _, lam_info = self.lam(batch["frames"])
            actions = self.lam.action_vectors(lam_info["indices"]).detach()  # stop-gradient, as at play time
            lam_loss = lam_info["loss"]
            logs.update({"lam_mse": float(lam_info["mse"]), "lam_vq_loss": float(lam_info["vq_loss"]),
                         "lam_codes_used": float(lam_info["codes_used"]),
                         "lam_perplexity": float(lam_info["perplexity"])})
        dyn_loss, dyn_info = self.dynamics.loss(tokens, actions)
        loss = dyn_loss if lam_loss is None else lam_loss + dyn_loss
        logs = {"loss": float(loss.detach()), **logs, "dyn_ce": float(dyn_info["ce"]),
                "dyn_acc": float(dyn_info["acc"]), "mask_rate": float(dyn_info["mask_rate"])}
        return loss, logs

    def periodic_eval(self, step: int) -> dict | None:
        """Scalars of the quick controllability check (see :class:`genieworld.eval.control.ControlCheck`)."""
        if self.control_check is None:
            return None
        if self.action_source == "true":
            return self.control_check.run(self.tokenizer, self.dynamics, self.true_action_vectors,
                                          self.true_action_table.shape[0], self.sampling, actions="true")
        lam = self.the_lam
        return self.control_check.run(self.tokenizer, self.dynamics, lam.action_vectors, lam.num_actions,
                                      self.sampling, actions="lam", lam=lam)

    def model_configs(self) -> dict:
        return {"tokenizer": asdict(self.tokenizer.cfg), "lam": asdict(self.the_lam.cfg),
                "dynamics": asdict(self.dynamics.cfg), "action_source": self.action_source,
                "lam_frozen": self.lam_frozen}

    def export(self, run_dir: Path) -> None:
        """Write the self-contained model directory RUN/model (see :mod:`genieworld.genie`).

        Ground-truth mode has no latent actions to play with: it writes RUN/dynamics-true-actions
        (the dynamics weights and the fixed action table), for measurement only."""
        if self.action_source == "true":
            from genieworld.genie import save_component
            from genieworld.weights import save_tensors

            out = Path(run_dir) / "dynamics-true-actions"
            save_component(self.dynamics, self.dynamics.cfg, out)
            save_tensors({"true_action_table": self.true_action_table}, out / "true_action_table.safetensors")
            return
        out = Path(run_dir) / "model"
        save_model_dir(out, self.tokenizer, self.the_lam, self.dynamics, self.sampling,
                       provenance=relative_provenance(out, self.tokenizer_source, self.data_provenance))


def relative_provenance(model_dir: Path, tokenizer_source: str | None, data_provenance: dict) -> dict:
    """What a model was made from, for its genie.json: folders as paths relative to the model
    directory (never the absolute paths of the machine that trained it), plus content digests."""
    import os

    prov = dict(data_provenance)
    if tokenizer_source:
        prov["tokenizer"] = os.path.relpath(tokenizer_source, model_dir.resolve())
    if isinstance(prov.get("data"), str) and os.path.isabs(prov["data"]):
        prov["data"] = os.path.relpath(prov["data"], model_dir.resolve())
    return prov


def build_dynamics_task(preset: Preset, tokenizer_path, seq_len: int, action_injection: str | None = None,
                        lam_path=None, action_source: str = "lam", num_true_actions: int | None = None
                        ) -> DynamicsTask:
    """Load the trained tokenizer (RUN or RUN/tokenizer), check it fits the preset, build LAM + dynamics.

    ``lam_path`` (a ``genie train lam`` RUN or its RUN/lam): a frozen, already trained LAM instead
    of a co-trained one.  ``max_frames`` of the LAM and the dynamics model is raised to ``seq_len``
    when the training window is longer than the preset's.
    """
    from genieworld.config import LAMConfig

    tok_dir = resolve_tokenizer_dir(tokenizer_path)
    tokenizer = load_component(VideoTokenizer, TokenizerConfig, tok_dir)
    frozen_lam = None
    if lam_path is not None:
        lam_dir = resolve_lam_dir(lam_path)
        frozen_lam = load_component(build_lam, LAMConfig, lam_dir)
    lam_cfg = replace(preset.lam, max_frames=max(preset.lam.max_frames, seq_len))
    if frozen_lam is None and action_source == "lam" and lam_cfg.merged_actions:
        raise ValueError(f"preset {preset.name}: lam.merged_actions = {lam_cfg.merged_actions} merges a LAM's codes "
                         "after it is trained, so it cannot be co-trained; train it first (genie train lam) and "
                         "pass --lam RUN")
    dyn_cfg = replace(preset.dynamics, max_frames=max(preset.dynamics.max_frames, seq_len))
    if action_injection is not None:
        dyn_cfg = replace(dyn_cfg, action_injection=action_injection)
    try:
        return DynamicsTask(tokenizer, lam_cfg, dyn_cfg, preset.sampling, tokenizer_source=str(tok_dir.resolve()),
                            frozen_lam=frozen_lam, action_source=action_source, num_true_actions=num_true_actions)
    except ModelDirError as e:
        raise ModelDirError(f"--tokenizer {tok_dir}: {e}") from None

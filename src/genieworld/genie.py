"""The model directory: one folder per component, safetensors weights + JSON config.

    MODEL/
      genie.json                 format marker, versions, sampling defaults, training provenance
      tokenizer/model.safetensors  tokenizer/config.json
      lam/model.safetensors        lam/config.json          (the play loop needs only its codebook)
      dynamics/model.safetensors   dynamics/config.json
      actions.json               optional: names for the latent actions (``genie actions name``)

:class:`Genie` (``from_pretrained`` / ``save_pretrained``) bundles the three and
checks that they fit together (vocabulary, resolution, action count and size),
failing with a message that names the mismatch.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from genieworld.config import from_dict, ConfigError
from genieworld.train.checkpoint import CheckpointError, load_weights, save_weights
from genieworld.utils import atomic_write_text

FORMAT_VERSION = 1


class ModelDirError(ValueError):
    """A model directory is missing parts or its parts do not fit together."""


def save_component(module: torch.nn.Module, cfg: Any, out_dir: Path) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "config.json", json.dumps(asdict(cfg), indent=2, sort_keys=True) + "\n")
    save_weights(module, out_dir / "model.safetensors")


def load_config(cls, directory: Path):
    path = Path(directory) / "config.json"
    if not path.exists():
        raise ModelDirError(f"{directory}: no config.json (is this a genieworld component folder?)")
    try:
        return from_dict(cls, json.loads(path.read_text()), where=str(path))
    except (ConfigError, json.JSONDecodeError) as e:
        raise ModelDirError(f"{path}: {e}") from None


def load_component(cls_model, cls_cfg, directory: Path, device="cpu"):
    """Build ``cls_model(config)`` from ``directory/config.json`` and load its weights."""
    cfg = load_config(cls_cfg, directory)
    model = cls_model(cfg)
    try:
        load_weights(model, Path(directory) / "model.safetensors")
    except CheckpointError as e:
        raise ModelDirError(str(e)) from None
    return model.to(device).eval()

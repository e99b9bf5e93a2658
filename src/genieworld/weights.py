"""Weights on disk: safetensors files written atomically and read back with checks that name the mismatch.

The lowest layer of model I/O: model bundles (:mod:`genieworld.genie`) and training checkpoints
(:mod:`genieworld.train.checkpoint`) both use it.  safetensors holds plain tensors, so loading
never unpickles anything.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


class CheckpointError(RuntimeError):
    """A weights file or checkpoint is missing, unreadable or does not fit the model."""


def state_dict_for_save(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}


def save_weights(module: torch.nn.Module, path: Path, metadata: dict | None = None) -> None:
    """safetensors weights, written atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(state_dict_for_save(module), str(tmp), metadata={k: str(v) for k, v in (metadata or {}).items()})
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_weights(module: torch.nn.Module, path: Path, strict: bool = True) -> None:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        state = load_file(str(path))
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if strict and (missing or unexpected):
        raise CheckpointError(
            f"{path}: weights do not match the model: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    bad = [f"{k!r} is {tuple(v.shape)} in the file but {tuple(own[k].shape)} in the model"
           for k, v in state.items() if k in own and own[k].shape != v.shape]
    if bad:
        raise CheckpointError(
            f"{path}: the config does not match these weights: " + "; ".join(bad[:6]) + ("; ..." if len(bad) > 6 else "")
        )
    module.load_state_dict(state, strict=strict)


def save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """A plain dict of tensors as safetensors, written atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, str(tmp))
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)

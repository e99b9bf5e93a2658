"""What a checkpoint holds, and how it is written and read back.

A training run directory looks like::

    RUN/
      run.json                    what was trained: component, preset, data, seed (checked on resume)
      checkpoints/
        step_00000500/
          model.safetensors       weights of the trainable modules (prefixed "tokenizer.", "lam.", ...)
          config.json             the model configs (dataclasses as JSON)
          trainer.pt              optimizer + LR scheduler state + torch RNG state
                                  (plain tensors/dicts: loaded with torch.load(weights_only=True))
          state.json              step, data-loader position, python/numpy RNG state, metrics
        latest                    text file naming the newest complete checkpoint folder
      tb/                         TensorBoard scalars
      <component>/                exported model (model.safetensors + config.json) for later stages

Atomicity: a checkpoint is assembled in ``.tmp-step_XXXXXXXX`` and renamed into place
only when every file is written and fsynced, then ``latest`` is replaced atomically.
A crash at any point leaves the previous checkpoint intact and ``latest`` pointing at it.
Nothing here unpickles arbitrary objects.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from genieworld.utils import atomic_write_text, fsync_dir


class CheckpointError(RuntimeError):
    pass


def _rng_state_json() -> dict:
    py = random.getstate()
    np_state = np.random.get_state()
    return {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }


def _restore_rng_json(state: dict) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))


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


def checkpoint_dir(run: Path) -> Path:
    return Path(run) / "checkpoints"


def latest_checkpoint(run: Path) -> Path | None:
    """The newest complete checkpoint folder of ``run``, or None."""
    ck = checkpoint_dir(run)
    pointer = ck / "latest"
    if pointer.exists():
        cand = ck / pointer.read_text().strip()
        if (cand / "state.json").exists():
            return cand
    # Fall back to scanning (e.g. the pointer was lost); only complete folders count.
    done = sorted(p for p in ck.glob("step_*") if (p / "state.json").exists())
    return done[-1] if done else None


def save_checkpoint(
    run: Path,
    step: int,
    module: torch.nn.Module,
    configs: dict,
    optimizer: torch.optim.Optimizer,
    scheduler,
    state: dict,
    keep: int = 3,
) -> Path:
    ck = checkpoint_dir(run)
    ck.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:08d}"
    final = ck / name
    tmp = ck / f".tmp-{name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_weights(module, tmp / "model.safetensors", {"step": step})
    (tmp / "config.json").write_text(json.dumps(configs, indent=2, sort_keys=True))
    trainer_state = {
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        trainer_state["cuda_rng"] = torch.cuda.get_rng_state_all()
    torch.save(trainer_state, tmp / "trainer.pt")
    full_state = dict(state, step=step, rng=_rng_state_json())
    (tmp / "state.json").write_text(json.dumps(full_state, indent=2))
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    fsync_dir(tmp)
    if final.exists():  # re-saving the same step (e.g. final save right after a periodic one)
        shutil.rmtree(final)
    os.rename(tmp, final)
    fsync_dir(ck)
    atomic_write_text(ck / "latest", name + "\n")
    # retention: keep the newest ``keep`` checkpoints
    done = sorted(p for p in ck.glob("step_*") if p.is_dir())
    for old in done[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: Path, module: torch.nn.Module, optimizer, scheduler, map_location="cpu") -> dict:
    """Restore weights, optimizer, scheduler and RNG from checkpoint folder ``path``; returns state.json."""
    path = Path(path)
    load_weights(module, path / "model.safetensors")
    trainer_state = torch.load(path / "trainer.pt", map_location=map_location, weights_only=True)
    optimizer.load_state_dict(trainer_state["optimizer"])
    scheduler.load_state_dict(trainer_state["scheduler"])
    torch.set_rng_state(trainer_state["torch_rng"])
    if "cuda_rng" in trainer_state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(trainer_state["cuda_rng"])
    state = json.loads((path / "state.json").read_text())
    _restore_rng_json(state["rng"])
    return state

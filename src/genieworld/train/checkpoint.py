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

from genieworld.utils import atomic_write_text, fsync_dir
from genieworld.weights import CheckpointError, load_weights, save_weights, state_dict_for_save  # noqa: F401


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

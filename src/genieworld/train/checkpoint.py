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

Reading back: :func:`checkpoint_candidates` lists the complete checkpoint folders, the one
``latest`` names first (only a plain ``step_XXXXXXXX`` folder directly inside ``RUN/checkpoints``:
the pointer cannot lead out of the run), then the others, newest first.  :func:`load_checkpoint`
reads and checks every file before it changes anything, and raises :class:`CheckpointError`
naming the file when one is damaged; the trainer then resumes from the next candidate.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from genieworld import owned
from genieworld.errors import DiskFullError
from genieworld.utils import atomic_write_text, disk_full_message, fsync_dir, is_disk_full, read_json
from genieworld.weights import CheckpointError, read_weights, save_weights, state_dict_for_save  # noqa: F401

#: the name of a checkpoint folder (and the only thing ``latest`` may name)
CHECKPOINT_NAME = re.compile(r"step_\d{8}")
CHECKPOINT_FILES = ("model.safetensors", "config.json", "trainer.pt", "state.json")


def _rng_state_json() -> dict:
    py = random.getstate()
    np_state = np.random.get_state()
    return {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }


def _parse_rng_json(state) -> tuple[tuple, tuple]:
    """(python, numpy) RNG states from ``state.json``'s ``rng``; raises ValueError/TypeError/KeyError/IndexError."""
    py = state["python"]
    py_state = (int(py[0]), tuple(int(x) for x in py[1]), py[2])
    if len(py_state[1]) != 625 or py_state[2] is not None:
        raise ValueError("python RNG state has the wrong size")
    n = state["numpy"]
    keys = np.asarray(n[1], dtype=np.uint32)
    if str(n[0]) != "MT19937" or keys.shape != (624,):
        raise ValueError("numpy RNG state has the wrong size")
    return py_state, (str(n[0]), keys, int(n[2]), int(n[3]), float(n[4]))


def _restore_rng_json(state: dict) -> None:
    py_state, np_state = _parse_rng_json(state)
    random.setstate(py_state)
    np.random.set_state(np_state)


def checkpoint_dir(run: Path) -> Path:
    return Path(run) / "checkpoints"


def _checkpoint_folder(ck: Path, name: str) -> Path | None:
    """``ck/name`` when ``name`` is a checkpoint folder name and that folder is a real (not symlinked)
    folder directly inside ``ck`` holding a state.json; else None."""
    if not CHECKPOINT_NAME.fullmatch(name):
        return None
    cand = ck / name
    if cand.is_symlink() or not cand.is_dir() or not (cand / "state.json").is_file():
        return None
    return cand


def _read_pointer(ck: Path) -> str:
    pointer = ck / "latest"
    if pointer.is_symlink() or not pointer.is_file():
        return ""
    try:
        with open(pointer, "rb") as f:
            return f.read(64).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""


def checkpoint_candidates(run: Path) -> list[Path]:
    """Complete checkpoint folders of ``run`` to resume from, in order: the one ``latest`` names, then
    every other ``step_XXXXXXXX`` folder, newest first.  Nothing outside ``RUN/checkpoints`` is ever named."""
    ck = checkpoint_dir(run)
    if not ck.is_dir():
        return []
    out = []
    first = _checkpoint_folder(ck, _read_pointer(ck))
    if first is not None:
        out.append(first)
    for p in sorted(ck.glob("step_*"), reverse=True):
        cand = _checkpoint_folder(ck, p.name)
        if cand is not None and cand not in out:
            out.append(cand)
    return out


def latest_checkpoint(run: Path) -> Path | None:
    """The newest complete checkpoint folder of ``run`` (what ``latest`` names, else the newest), or None."""
    cands = checkpoint_candidates(run)
    return cands[0] if cands else None


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
    if not final.is_symlink():
        owned.check_removable(final, "checkpoint", "checkpoint")  # refuse before writing anything
    owned.remove(tmp, "checkpoint", "an unfinished checkpoint")
    owned.claim(tmp, "checkpoint")
    try:
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
    except (OSError, RuntimeError) as e:
        shutil.rmtree(tmp, ignore_errors=True)  # no half checkpoint is left behind
        if is_disk_full(e):
            need = sum(p.numel() * p.element_size() for p in module.parameters()) * 3  # weights + Adam moments
            raise DiskFullError(disk_full_message(ck, need)) from None
        raise
    if final.is_symlink():  # never follow a planted link out of the run
        final.unlink()
    # re-saving the same step (e.g. the final save right after a periodic one) replaces only a checkpoint
    owned.replace_dir(tmp, final, "checkpoint", "checkpoint")
    fsync_dir(ck)
    atomic_write_text(ck / "latest", name + "\n")
    # retention: keep the newest ``keep`` checkpoints
    done = sorted(p for p in ck.glob("step_*") if p.is_dir() and not p.is_symlink())
    for old in done[:-keep] if keep > 0 else []:
        if owned.is_ours(old, "checkpoint"):  # a folder that holds anything else is left alone
            shutil.rmtree(old, ignore_errors=True)
    return final


def read_checkpoint(path: Path, own_weights: dict, map_location="cpu") -> tuple[dict, dict, dict]:
    """(weights, trainer state, state.json) of checkpoint folder ``path``, every file read and checked
    (weights against the model's state dict ``own_weights``); :class:`CheckpointError` names the damaged file."""
    path = Path(path)
    for name in CHECKPOINT_FILES:
        f = path / name
        if f.is_symlink() or not f.is_file():
            raise CheckpointError(f"{f}: missing or not a plain file")
    state = read_json(path / "state.json", CheckpointError)
    try:
        if not isinstance(state, dict):
            raise TypeError("not a JSON object")
        step = state["step"]
        if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step <= 10**12:
            raise ValueError(f"step {str(step)[:40]!r} is not a step number")
        if state.get("data") is not None and not isinstance(state["data"], dict):
            raise TypeError("data (the loader position) is not an object")
        _parse_rng_json(state["rng"])
    except (KeyError, TypeError, ValueError, IndexError, OverflowError) as e:
        raise CheckpointError(f"{path / 'state.json'}: malformed ({type(e).__name__}: {e})") from None
    weights = read_weights(path / "model.safetensors", own_weights)
    try:
        trainer_state = torch.load(path / "trainer.pt", map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, a pickle that is not plain tensors/dicts, ...
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise CheckpointError(f"{path / 'trainer.pt'}: unreadable ({type(e).__name__}: {first})") from None
    if not isinstance(trainer_state, dict) or not {"optimizer", "scheduler", "torch_rng"} <= set(trainer_state):
        raise CheckpointError(f"{path / 'trainer.pt'}: not a trainer state (optimizer, scheduler, torch_rng)")
    return weights, trainer_state, state


def load_checkpoint(path: Path, module: torch.nn.Module, optimizer, scheduler, map_location="cpu") -> dict:
    """Restore weights, optimizer, scheduler and RNG from checkpoint folder ``path``; returns state.json.

    Every file is read and checked first (:func:`read_checkpoint`), so a damaged checkpoint raises
    :class:`CheckpointError` before the module is changed; a readable one that does not fit raises it too.
    """
    path = Path(path)
    weights, trainer_state, state = read_checkpoint(path, module.state_dict(), map_location)
    try:
        module.load_state_dict(weights, strict=True)
        optimizer.load_state_dict(trainer_state["optimizer"])
        scheduler.load_state_dict(trainer_state["scheduler"])
        torch.set_rng_state(trainer_state["torch_rng"])
        if "cuda_rng" in trainer_state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(trainer_state["cuda_rng"])
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise CheckpointError(f"{path / 'trainer.pt'}: does not fit this run ({type(e).__name__}: {first})") from None
    _restore_rng_json(state["rng"])
    return state


def set_aside(path: Path) -> Path:
    """Rename a checkpoint folder that could not be loaded to ``damaged-step_XXXXXXXX`` before the same
    step is saved again (never deleted: retention and re-saves only touch ``step_*``); returns the new path."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return path
    for k in range(1000):
        dest = path.with_name(f"damaged-{path.name}" + (f".{k}" if k else ""))
        if not dest.exists():
            os.rename(path, dest)
            fsync_dir(path.parent)
            return dest
    return path

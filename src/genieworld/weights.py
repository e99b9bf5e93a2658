"""Weights on disk: safetensors files written atomically and read back with checks that name the mismatch.

The lowest layer of model I/O: model bundles (:mod:`genieworld.genie`) and training checkpoints
(:mod:`genieworld.train.checkpoint`) both use it.  safetensors holds plain tensors, so loading
never unpickles anything.  A file is refused (:class:`CheckpointError`, naming the tensor) unless
its tensors have exactly the model's names, shapes and dtypes and every float in it is finite.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from genieworld.errors import UserError
from genieworld.utils import check_regular


class CheckpointError(UserError, RuntimeError):
    """A weights file or checkpoint is missing, unreadable, damaged or does not fit the model."""


#: safetensors dtype names (as in a file's header) -> torch dtypes
_ST_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
              "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
              "BOOL": torch.bool}


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


def _compare(path: Path, found: dict[str, tuple[tuple, torch.dtype | str]], own: dict, strict: bool) -> None:
    """Raise :class:`CheckpointError` naming how the tensors ``found`` in ``path`` ({name: (shape, dtype)})
    differ from the model's ``own`` state dict: missing or unexpected names, shapes, dtypes."""
    missing = sorted(set(own) - set(found))
    unexpected = sorted(set(found) - set(own))
    if strict and (missing or unexpected):
        raise CheckpointError(
            f"{path}: weights do not match the model: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    bad = [f"{k!r} is {shape} in the file but {tuple(own[k].shape)} in the model"
           for k, (shape, _) in found.items() if k in own and tuple(own[k].shape) != shape]
    if bad:
        raise CheckpointError(
            f"{path}: the config does not match these weights: " + "; ".join(bad[:6]) + ("; ..." if len(bad) > 6 else "")
        )
    bad = [f"{k!r} is {str(dt).replace('torch.', '')} in the file but {str(own[k].dtype).replace('torch.', '')} "
           "in the model" for k, (_, dt) in found.items() if k in own and dt != own[k].dtype]
    if bad:
        raise CheckpointError(f"{path}: wrong tensor dtype: " + "; ".join(bad[:6]) + ("; ..." if len(bad) > 6 else ""))


def check_weights_header(path: Path, own: dict, strict: bool = True) -> None:
    """Check names, shapes and dtypes of the tensors in ``path`` against state dict ``own`` from the
    file's header alone: no tensor is read, so a config that does not fit its weights (or a huge
    one, built on the meta device) is refused before any memory is allocated for it."""
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"weights file not found: {path}")
    check_regular(path, None, CheckpointError, "weights file")
    try:
        with safe_open(str(path), framework="pt") as f:
            found = {}
            for k in f.keys():
                sl = f.get_slice(k)
                found[k] = (tuple(sl.get_shape()), _ST_DTYPES.get(sl.get_dtype(), sl.get_dtype()))
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{path}: not a readable safetensors file ({_first_line(e)})") from None
    _compare(path, found, own, strict)


def read_weights(path: Path, own: dict, strict: bool = True) -> dict[str, torch.Tensor]:
    """The tensors of ``path``, checked against state dict ``own``: the same names (``strict``), shapes
    and dtypes, and every floating-point value finite.  Raises :class:`CheckpointError` naming the tensor."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"weights file not found: {path}")
    check_regular(path, None, CheckpointError, "weights file")
    try:
        state = load_file(str(path))
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{path}: not a readable safetensors file ({_first_line(e)})") from None
    _compare(path, {k: (tuple(v.shape), v.dtype) for k, v in state.items()}, own, strict)
    for k, v in state.items():
        if v.is_floating_point() and v.numel():
            n_bad = int((~torch.isfinite(v)).sum())
            if n_bad:
                raise CheckpointError(f"{path}: tensor {k!r} has {n_bad} non-finite values (NaN or inf) "
                                      f"of {v.numel()}")
    return state


def load_weights(module: torch.nn.Module, path: Path, strict: bool = True) -> None:
    """Load ``path`` into ``module`` after :func:`read_weights` checked every tensor."""
    module.load_state_dict(read_weights(path, module.state_dict(), strict), strict=strict)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    line = text[0] if text else type(e).__name__
    return line if len(line) <= 300 else line[:297] + "..."


def save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """A plain dict of tensors as safetensors, written atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, str(tmp))
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)

"""Small shared helpers: atomic file writes, bounded JSON reads, seeding, device selection."""

from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old or the new file, never a torn one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


#: the largest JSON file read by default (configs, genie.json, actions.json, state.json, run.json)
MAX_JSON_BYTES = 16 << 20


def read_json(path, error: type[Exception] | None = None, max_bytes: int = MAX_JSON_BYTES):
    """Parse the JSON file ``path``; every way it can fail is one ``error`` (default
    :class:`~genieworld.errors.UserError`) whose message names the file and the problem:
    missing or unreadable, larger than ``max_bytes``, not UTF-8, not JSON, nested too deeply
    (Python's parser would raise RecursionError), or a number too long to convert."""
    from genieworld.errors import UserError

    error = error or UserError
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except OSError as e:
        raise error(f"{path}: cannot read it ({e.strerror or e})") from None
    if len(raw) > max_bytes:
        raise error(f"{path}: larger than {max_bytes} bytes, refusing to parse it") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise error(f"{path}: not valid JSON ({e})") from None
    except RecursionError:
        raise error(f"{path}: JSON nested too deeply") from None
    except ValueError as e:  # e.g. an integer with more digits than Python converts
        raise error(f"{path}: not valid JSON ({e})") from None


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

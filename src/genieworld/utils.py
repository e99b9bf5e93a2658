"""Small shared helpers: atomic file writes, bounded JSON reads, seeding, device selection."""

from __future__ import annotations

import functools
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


def _kind_of_mode(mode: int) -> str:
    import stat

    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path, max_bytes: int | None = None, error: type[Exception] | None = None, what: str = "file") -> int:
    """THE guarded open of genieworld: a read-only descriptor of ``path`` when it is (or a link leads to) a
    regular file of at most ``max_bytes`` bytes; otherwise one ``error`` (default UserError) that says why.
    Opened non-blocking first, so a FIFO planted where a file should be is refused instead of hanging."""
    import fcntl
    import stat

    from genieworld.errors import UserError

    error = error or UserError
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise error(f"{path}: no such {what}") from None
    except OSError as e:
        raise error(f"{path}: cannot read the {what} ({e.strerror or e})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{path}: {_kind_of_mode(st.st_mode)}, not a regular file; refusing to read it as a {what}")
        if max_bytes is not None and st.st_size > max_bytes:
            raise error(f"{path}: {st.st_size} bytes, more than the {max_bytes} a {what} may have; refusing to read it")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_regular(path, max_bytes: int | None = None, error: type[Exception] | None = None, what: str = "file") -> None:
    """Refuse (``error``) what :func:`open_regular` refuses, for readers that open the file themselves
    (numpy's memory maps, safetensors, torch.load, Pillow)."""
    os.close(open_regular(path, max_bytes, error, what))


def read_bytes_bounded(path, max_bytes: int, error: type[Exception] | None = None, what: str = "file") -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` (:func:`open_regular`); a file that grows past
    the bound while it is read is refused too."""
    from genieworld.errors import UserError

    fd = open_regular(path, max_bytes, error, what)
    with os.fdopen(fd, "rb") as f:
        raw = f.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise (error or UserError)(f"{path}: larger than {max_bytes} bytes, refusing to read it")
    return raw


def read_json(path, error: type[Exception] | None = None, max_bytes: int = MAX_JSON_BYTES):
    """Parse the JSON file ``path``; every way it can fail is one ``error`` (default
    :class:`~genieworld.errors.UserError`) whose message names the file and the problem:
    missing or unreadable, larger than ``max_bytes``, not UTF-8, not JSON, nested too deeply
    (Python's parser would raise RecursionError), or a number too long to convert."""
    from genieworld.errors import UserError

    error = error or UserError
    path = Path(path)
    try:
        raw = read_bytes_bounded(path, max_bytes, error, "JSON file")
    except OSError as e:
        raise error(f"{path}: cannot read it ({e.strerror or e})") from None
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


def is_disk_full(e: BaseException) -> bool:
    """Whether ``e`` is the file system running out of space or quota, as Python or a C++ writer
    (torch.save, safetensors) reports it."""
    import errno

    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(e)
    return isinstance(e, (OSError, RuntimeError)) and ("No space left" in text or "file write failed" in text
                                                       or "Disk quota exceeded" in text)


def _mb(n: float) -> str:
    return f"{n / 2**20:.1f} MB"


def disk_full_message(path, need_bytes: int | None = None) -> str:
    """One line for a full disk: where, how much was needed (when known) and how much is free."""
    import shutil

    where = Path(path)
    probe = where if where.exists() else where.parent
    try:
        free = shutil.disk_usage(probe if probe.exists() else ".").free
        free_s = f"{_mb(free)} free"
    except OSError:
        free_s = "free space unknown"
    need = f"about {_mb(need_bytes)} needed, " if need_bytes else ""
    return f"{path}: no space left on the device ({need}{free_s}); nothing was lost, free some space and run it again"


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


def bf16_supported(device: torch.device | str = "cpu") -> bool:
    """Whether bf16 arithmetic is native on ``device``: a CUDA GPU that says so, or a CPU with avx512_bf16
    or AMX (on others PyTorch emulates bf16 matmuls, slower than fp32).  ``GENIEWORLD_NO_BF16=1`` says no."""
    if os.environ.get("GENIEWORLD_NO_BF16", "") not in ("", "0"):
        return False
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device.type == "cpu" and _cpu_has_bf16()


@functools.lru_cache(maxsize=1)
def _cpu_has_bf16() -> bool:
    """The CPU's flags, read once (the trainer asks at every step)."""
    try:
        with open("/proc/cpuinfo", "rb") as f:
            flags = f.read(1 << 20)
    except OSError:
        return False
    return b" avx512_bf16" in flags or b" amx_bf16" in flags


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

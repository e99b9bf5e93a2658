"""The only folders genieworld removes, replaces or fills: the ones it made.

Every folder genieworld creates as a whole (a token cache, a checkpoint, an episode store, an eval
report, a model directory, demo output, ...) carries a marker file ``.genieworld`` that names its
*kind*::

    {"kind": "token-cache", "by": "genieworld"}

and genieworld removes or replaces a folder only when

1. it is a real folder (not a symlink), marked with the expected kind, and
2. it holds nothing but the entries that kind is made of (:data:`KINDS`): a user's file dropped
   into a cache, or a dataset named as ``--cache``, makes it someone else's folder, never deleted.

A folder made by a genieworld older than the marker is recognised by rule 2 alone (it holds only
the kind's entries, and at least one of them), and is marked the first time it is claimed.

:func:`claim` is the gate for an output folder that genieworld fills (created when absent; an empty
folder is taken; a foreign one is refused with :class:`NotOursError`, one line); :func:`remove` and
:func:`replace_dir` are the only ways genieworld deletes a folder.  ``tests/test_owned.py`` tries
each command that writes a folder against a folder it did not make.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
from pathlib import Path

from genieworld.errors import UserError

MARKER = ".genieworld"
_MARKER_MAX_BYTES = 4096

#: kind -> the entry names (fnmatch patterns) a folder of that kind is made of
KINDS: dict[str, tuple[str, ...]] = {
    "token-cache": ("cache.json", "tokens.npy", "actions.npy"),
    "checkpoint": ("model.safetensors", "config.json", "trainer.pt", "state.json"),
    "component": ("config.json", "model.safetensors"),
    "model": ("genie.json", "actions.json", "tokenizer", "lam", "dynamics", "prompts", "README.md", "judge"),
    "prompts": ("index.json", "prompt-*.png", ".prompt-*.png.*", ".index.json.*",
                "sketch-*.png", ".sketch-*.png.*", "snapshot-*.png", ".snapshot-*.png.*"),  # genieworld.sketches
    "store": ("manifest.json", "ingest_report.json", "shard-*.gws", ".lock", ".tmp-*"),
    "eval-report": ("metrics.json", "report.md", "rollouts.gif", "rollouts.png", "action_grid.png",
                    "psnr_per_step.png", "play_quality.json", "play_drift.png", "judge", ".*.tmp"),
    "judge": ("config.json", "model.safetensors", "judge.json"),
    "demo": ("data", "runs", "reconstruction.gif", "rollout.gif", "metrics.json", ".*.tmp"),
}


class NotOursError(UserError):
    """A folder genieworld was asked to remove, replace or fill holds something it did not make."""


def _entries(path: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(path))


def _foreign(names, kind: str) -> list[str]:
    pats = KINDS[kind]
    return [n for n in names if n != MARKER and not any(fnmatch.fnmatchcase(n, p) for p in pats)]


def marked_kind(path) -> str | None:
    """The kind named by ``path/.genieworld``, or None (no marker, or one that is not a small regular file
    holding ``{"kind": ...}``: a FIFO or a link planted there is not followed)."""
    m = Path(path) / MARKER
    try:
        fd = os.open(m, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        import stat

        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        raw = os.read(fd, _MARKER_MAX_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        kind = json.loads(raw.decode("utf-8")).get("kind")
    except (ValueError, UnicodeDecodeError, AttributeError):
        return None
    return kind if isinstance(kind, str) else None


def why_not_ours(path, kind: str) -> str | None:
    """None when ``path`` is genieworld's folder of ``kind`` (module docstring), else why not, in words."""
    if kind not in KINDS:
        raise ValueError(f"unknown folder kind {kind!r}")
    path = Path(path)
    if path.is_symlink():
        return "it is a symbolic link"
    if not path.is_dir():
        return "it is not a folder"
    try:
        names = _entries(path)
    except OSError as e:
        return f"cannot list it ({e.strerror or e})"
    foreign = _foreign(names, kind)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        return f"it holds {shown}, which genieworld did not write there"
    marked = marked_kind(path)
    if MARKER in names and marked != kind:
        return f"it is marked as a {marked or 'damaged'} folder, not a {kind}"
    return None  # marked as this kind, or (made before the marker, or empty) holding only its entries


def is_ours(path, kind: str) -> bool:
    return why_not_ours(path, kind) is None


def mark(path, kind: str) -> None:
    """Write ``path/.genieworld`` naming ``kind`` (the folder must exist)."""
    if kind not in KINDS:
        raise ValueError(f"unknown folder kind {kind!r}")
    from genieworld.utils import atomic_write_text

    if marked_kind(path) != kind:
        atomic_write_text(Path(path) / MARKER, json.dumps({"kind": kind, "by": "genieworld"}) + "\n")


_FILLS = "(genieworld only fills folders it made; choose a new or empty folder)"


def _require_ours(path: Path, kind: str, what: str, refusing: str, advice: str) -> bool:
    """Whether ``path`` exists; :class:`NotOursError` (``what path: refusing ...: why advice``) when it does
    and is not genieworld's folder of ``kind``."""
    if not path.exists() and not path.is_symlink():
        return False
    why = why_not_ours(path, kind)
    if why is not None:
        label = f"{what} " if what else ""
        raise NotOursError(f"{label}{path}: {refusing}: {why} {advice}")
    return True


def check(path, kind: str, what: str = "") -> None:
    """:class:`NotOursError` unless ``path`` is absent or genieworld's folder of ``kind``; writes nothing
    (for a folder that is only read, such as a token cache that may sit on a read-only disk)."""
    _require_ours(Path(path), kind, what, f"refusing to use it as a {kind}", _FILLS)


def claim(path, kind: str, what: str = "") -> Path:
    """Make ``path`` genieworld's folder of ``kind`` to write into: create it (and its parents) when
    absent, take it when empty or already ours, and refuse (:class:`NotOursError`) otherwise."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        path.mkdir(parents=True, exist_ok=True)
    _require_ours(path, kind, what, f"refusing to write a {kind} there", _FILLS)
    mark(path, kind)
    return path


def check_removable(path, kind: str, what: str = "") -> bool:
    """Whether ``path`` exists and may be removed (:func:`remove`); :class:`NotOursError` when it may not.
    Call it before work whose result would replace ``path``, so that a refusal leaves nothing behind."""
    return _require_ours(Path(path), kind, what, "refusing to delete or replace it",
                         f"(genieworld deletes only {kind} folders it made)")


def remove(path, kind: str, what: str = "") -> None:
    """Delete ``path`` when it is genieworld's folder of ``kind``; nothing when absent; otherwise
    :class:`NotOursError` and nothing is touched."""
    path = Path(path)
    if check_removable(path, kind, what):
        shutil.rmtree(path)


def replace_dir(src, dest, kind: str, what: str = "") -> Path:
    """Move the finished folder ``src`` (ours, of ``kind``) to ``dest``, removing an earlier ``dest``
    only when it is ours too (:func:`remove`)."""
    src, dest = Path(src), Path(dest)
    mark(src, kind)
    remove(dest, kind, what)
    os.replace(src, dest)
    return dest

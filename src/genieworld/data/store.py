"""On-disk episode store: sharded, compressed, checksummed, crash-safe.

An *episode* is a variable-length sequence of uint8 RGB frames at the store's one
resolution ``(H, W)``, with optional ground-truth actions (kept for evaluation only)
and a JSON-serialisable metadata dict (source file, level seed, ...).

Action convention
-----------------
``actions[j]`` is the action taken at frame ``j`` that produced frame ``j + 1``, so an
episode of ``L`` frames has ``L - 1`` actions (``len(actions) == len(frames) - 1``).
A transition across an environment reset is not a transition: generators end the
episode there and start a new one.

Layout of a store directory::

    manifest.json          the only entry point: format, resolution, fps, shard list
    shard-000000.gws       immutable shard files (listed in the manifest with sha256)
    shard-000001.gws
    .lock                  advisory lock held by a writer (fcntl.flock)

Shard file (``.gws``, "genieworld shard", version 1)::

    b"GWSHARD1"                                  8-byte magic
    chunk, chunk, ...                            zlib-compressed frame chunks
    index                                        zlib-compressed JSON (see below)
    struct "<QQ8s": index_offset, index_length, b"GWSEND01"   24-byte trailer

Each episode's frames are cut into chunks of ``chunk_frames`` (default 16)
consecutive frames; a chunk is the raw ``(n, H, W, 3)`` uint8 bytes compressed with
zlib.  The index holds, per episode, its length, the absolute file offsets of its
chunks (``n_chunks + 1`` boundaries; an episode's chunks are contiguous), its
actions and its metadata, so a shard is self-describing.  Reading a window touches
one contiguous byte range (one ``os.pread``) and decompresses at most
``ceil(T / chunk_frames) + 1`` chunks.

``manifest.json`` lists the committed shards with their size and sha256, and per
episode its length, whether it has actions and its metadata, so opening a store
never touches a shard.  It also records, per shard, the *keys* of the work units
(e.g. ``"level:17"``, a source file) whose episodes are all inside that shard;
interrupted generation/ingestion resumes by skipping recorded keys.

Crash safety: a shard is written to a temporary file, fsynced, renamed to its final
name, the directory fsynced, and only then is the manifest rewritten (temporary
file, fsync, rename, directory fsync).  A crash or a full disk at any point leaves
the previous manifest in force, which names only complete, checksummed shards;
leftover temporary files and unreferenced shards are ignored by readers and
cleaned up or overwritten by the next writer.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import struct
import time
import zlib
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from genieworld.errors import UserError

__all__ = ["EpisodeStore", "EpisodeWriter", "StoreError", "FORMAT", "VERSION", "MANIFEST"]

FORMAT = "genieworld-episodes"
VERSION = 1
MANIFEST = "manifest.json"
LOCK = ".lock"
SHARD_MAGIC = b"GWSHARD1"
SHARD_END = b"GWSEND01"
_TRAILER = struct.Struct("<QQ8s")
_SHARD_PREFIX = "shard-"
_SHARD_SUFFIX = ".gws"
_TMP_PREFIX = ".tmp-"
_OWN_FILES = {MANIFEST, LOCK, "ingest_report.json"}  # files a store folder may hold besides shards
DEFAULT_CHUNK_FRAMES = 16
DEFAULT_SHARD_BYTES = 64 << 20
DEFAULT_ZLIB_LEVEL = 6
MAX_EPISODE_FRAMES = 10**7  # longest episode a manifest may declare (the paper's whole CoinRun set is 10^7 frames)
MAX_RESOLUTION = 4096
MAX_SHARD_BYTES = 1 << 40
MAX_INDEX_BYTES = 1 << 30  # a shard index inflates to at most this much JSON
MAX_MANIFEST_BYTES = 1 << 30  # largest manifest.json read


class StoreError(UserError):
    """The path is not a valid episode store, or it is corrupt or inconsistent."""


# ----------------------------------------------------------------------------- helpers


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_new(path: Path) -> int:
    """Create ``path`` exclusively for writing; never follows a planted symlink."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _child(root: Path, name: str) -> Path:
    """``root / name`` for a plain file name; refuses anything that could leave ``root``."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise StoreError(f"refusing unsafe file name {name!r} in {root}")
    return root / name


def atomic_write_bytes(root: Path, name: str, data: bytes) -> Path:
    """Write ``root/name`` atomically (temp file, fsync, rename, dir fsync)."""
    root = Path(root)
    final = _child(root, name)
    tmp = _child(root, f"{_TMP_PREFIX}{name}.{os.getpid()}.{time.monotonic_ns()}")
    fd = _open_new(tmp)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink_quiet(tmp)
        raise
    os.close(fd)
    try:
        os.replace(tmp, final)
    except BaseException:
        _unlink_quiet(tmp)
        raise
    _fsync_dir(root)
    return final


def atomic_write_json(root: Path, name: str, obj: Any) -> Path:
    return atomic_write_bytes(root, name, (json.dumps(obj, indent=1, sort_keys=False) + "\n").encode())


def _unlink_quiet(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _shard_name(n: int) -> str:
    return f"{_SHARD_PREFIX}{n:06d}{_SHARD_SUFFIX}"


def _jsonable(meta: dict | None) -> dict:
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise TypeError(f"meta must be a dict, got {type(meta).__name__}")
    try:
        return json.loads(json.dumps(meta))
    except (TypeError, ValueError) as e:
        raise TypeError(f"meta must be JSON-serialisable: {e}") from None


def _int(v, what: str, lo: int, hi: int) -> int:
    """``v`` when it is a JSON integer (not a bool, not a float such as 41.9) in ``[lo, hi]``."""
    if type(v) is not int:
        raise TypeError(f"{what} {str(v)[:40]!r} is not an integer")
    if not lo <= v <= hi:
        raise ValueError(f"{what} {v} is outside [{lo}, {hi}]")
    return v


def _number(v, what: str, lo: float, hi: float) -> float:
    """``v`` when it is a finite JSON number (not a bool) in ``(lo, hi]``."""
    if type(v) not in (int, float) or not math.isfinite(v):
        raise TypeError(f"{what} {str(v)[:40]!r} is not a finite number")
    if not lo < v <= hi:
        raise ValueError(f"{what} {v} is outside ({lo}, {hi}]")
    return float(v)


def _validate_manifest(root: Path, m: dict) -> None:
    """THE validation of a store's metadata (types, finiteness, ranges) before any of it is used: every field
    a reader relies on, so that a hostile or damaged manifest is one StoreError, never a crash later."""
    h, w = m["resolution"]
    _int(h, "resolution height", 1, MAX_RESOLUTION)
    _int(w, "resolution width", 1, MAX_RESOLUTION)
    _number(m["fps"], "fps", 0.0, 10_000.0)
    _int(m["chunk_frames"], "chunk_frames", 1, 1 << 20)
    if m.get("num_actions") is not None:
        _int(m["num_actions"], "num_actions", 1, 1 << 16)
    if not isinstance(m.get("source", ""), str):
        raise TypeError("source is not a string")
    if m.get("extra") is not None and not isinstance(m["extra"], dict):
        raise TypeError("extra is not an object")
    if not isinstance(m["shards"], list):
        raise TypeError("shards is not a list")
    for s in m["shards"]:
        if not isinstance(s, dict):
            raise TypeError("a shard entry is not an object")
        if not isinstance(s["file"], str):
            raise TypeError("a shard's file is not a string")
        _child(root, s["file"])
        if not isinstance(s["sha256"], str) or len(s["sha256"]) != 64:
            raise ValueError(f"{s['file']}: sha256 is not 64 hex digits")
        _int(s["bytes"], f"{s['file']}: bytes", 0, MAX_SHARD_BYTES)
        if not isinstance(s["episodes"], list):
            raise TypeError(f"{s['file']}: episodes is not a list")
        for e in s["episodes"]:
            if not isinstance(e, dict):
                raise TypeError(f"{s['file']}: an episode entry is not an object")
            _int(e["length"], "episode length", 1, MAX_EPISODE_FRAMES)
            if not isinstance(e.get("has_actions", False), bool):
                raise TypeError("has_actions is not true or false")
            if e.get("meta") is not None and not isinstance(e["meta"], dict):
                raise TypeError("an episode's meta is not an object")


def _read_manifest(root: Path) -> dict:
    path = root / MANIFEST
    if not root.exists():
        raise StoreError(f"{root}: no such directory (not an episode store)")
    if not root.is_dir():
        raise StoreError(f"{root}: not a directory (an episode store is a folder with {MANIFEST})")
    if not path.is_file():
        raise StoreError(f"{root}: not an episode store (no {MANIFEST}); create one with `genie data ...`")
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise ValueError(f"larger than {MAX_MANIFEST_BYTES} bytes")
        manifest = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError, RecursionError) as e:
        raise StoreError(f"{path}: unreadable manifest ({type(e).__name__}: {e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise StoreError(f"{path}: not a genieworld episode manifest (format != {FORMAT!r})")
    if type(manifest.get("version")) is not int or manifest.get("version") != VERSION:
        raise StoreError(f"{path}: unsupported store version {manifest.get('version')!r} (this code reads {VERSION})")
    try:
        _validate_manifest(root, manifest)
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise StoreError(f"{path}: malformed manifest ({type(e).__name__}: {e})") from None
    return manifest


# ----------------------------------------------------------------------------- reader


class EpisodeStore:
    """Read-only view of a store directory (see the module docstring for the format).

    Safe to share with forked DataLoader workers: files are opened lazily per
    process and read with ``os.pread`` (no shared file offset).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.manifest = _read_manifest(self.path)
        m = self.manifest
        self.resolution: tuple[int, int] = (int(m["resolution"][0]), int(m["resolution"][1]))
        self.fps: float = float(m["fps"])
        self.source: str = str(m.get("source", ""))
        self.num_actions: int | None = None if m.get("num_actions") is None else int(m["num_actions"])
        self.chunk_frames: int = int(m["chunk_frames"])
        self.extra: dict = dict(m.get("extra") or {})
        self.shards: list[dict] = list(m["shards"])
        lengths, shard_of, index_in_shard, has_act, metas = [], [], [], [], []
        for si, s in enumerate(self.shards):
            for j, e in enumerate(s["episodes"]):
                lengths.append(int(e["length"]))
                shard_of.append(si)
                index_in_shard.append(j)
                has_act.append(bool(e.get("has_actions", False)))
                metas.append(e.get("meta") or {})
        self._lengths = np.asarray(lengths, dtype=np.int64)
        self._shard_of = np.asarray(shard_of, dtype=np.int64)
        self._index_in_shard = np.asarray(index_in_shard, dtype=np.int64)
        self._has_actions = np.asarray(has_act, dtype=bool)
        self._metas = metas
        self._index_cache: dict[int, dict] = {}
        self._fds: dict[int, int] = {}
        self._pid = os.getpid()

    # -- summary
    @property
    def num_episodes(self) -> int:
        return int(self._lengths.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self._lengths.sum())

    @property
    def episode_lengths(self) -> np.ndarray:
        return self._lengths.copy()

    @property
    def has_actions(self) -> bool:
        """True when every episode carries ground-truth actions (and there is at least one)."""
        return bool(self.num_episodes > 0 and self._has_actions.all())

    @property
    def done_keys(self) -> set[str]:
        return {k for s in self.shards for k in s.get("keys", [])}

    @property
    def bytes_on_disk(self) -> int:
        total = 0
        for name in [MANIFEST] + [s["file"] for s in self.shards]:
            try:
                total += (self.path / name).stat().st_size
            except OSError:
                pass
        return total

    def __len__(self) -> int:
        return self.num_episodes

    def __repr__(self) -> str:
        h, w = self.resolution
        return (f"EpisodeStore({str(self.path)!r}: {self.num_episodes} episodes, {self.num_frames} frames, "
                f"{h}x{w}, {self.fps:g} fps, actions={self.has_actions})")

    def summary(self) -> dict:
        return {
            "path": str(self.path),
            "source": self.source,
            "episodes": self.num_episodes,
            "frames": self.num_frames,
            "resolution": list(self.resolution),
            "fps": self.fps,
            "has_actions": self.has_actions,
            "episodes_with_actions": int(self._has_actions.sum()),
            "num_actions": self.num_actions,
            "shards": len(self.shards),
            "bytes_on_disk": self.bytes_on_disk,
            "bytes_per_frame": round(self.bytes_on_disk / max(1, self.num_frames), 1),
            "min_episode_length": int(self._lengths.min()) if self.num_episodes else 0,
            "max_episode_length": int(self._lengths.max()) if self.num_episodes else 0,
            "chunk_frames": self.chunk_frames,
            "codec": self.manifest.get("codec", "zlib"),
            "extra": self.extra,
        }

    # -- per episode
    def _check(self, i: int) -> int:
        n = self.num_episodes
        i = int(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"episode {i} out of range (store has {n})")
        return i

    def episode_length(self, i: int) -> int:
        return int(self._lengths[self._check(i)])

    def episode_meta(self, i: int) -> dict:
        i = self._check(i)
        meta = {"source": self.source, "fps": self.fps}
        meta.update(self._metas[i])
        meta["length"] = int(self._lengths[i])
        meta["shard"] = self.shards[int(self._shard_of[i])]["file"]
        return meta

    def _fd(self, si: int) -> int:
        if self._pid != os.getpid():  # forked: never share descriptors with the parent
            self._fds = {}
            self._pid = os.getpid()
        fd = self._fds.get(si)
        if fd is None:
            path = self.path / self.shards[si]["file"]
            from genieworld.utils import open_regular

            fd = open_regular(path, None, StoreError, "shard")  # a FIFO or device is refused, never read
            self._fds[si] = fd
        return fd

    def _shard_index(self, si: int) -> dict:
        idx = self._index_cache.get(si)
        if idx is not None:
            return idx
        name = self.shards[si]["file"]
        fd = self._fd(si)
        size = os.fstat(fd).st_size
        if size < len(SHARD_MAGIC) + _TRAILER.size or size != int(self.shards[si]["bytes"]):
            raise StoreError(f"{self.path / name}: shard size {size} != {self.shards[si]['bytes']} in manifest "
                             "(truncated or replaced; run `genie data info --verify`)")
        off, length, end = _TRAILER.unpack(os.pread(fd, _TRAILER.size, size - _TRAILER.size))
        if end != SHARD_END or off + length + _TRAILER.size != size or off < len(SHARD_MAGIC):
            raise StoreError(f"{self.path / name}: bad shard trailer (corrupt shard)")
        try:
            d = zlib.decompressobj()
            blob = d.decompress(os.pread(fd, length, off), MAX_INDEX_BYTES)
            if d.unconsumed_tail:
                raise ValueError(f"inflates to more than {MAX_INDEX_BYTES} bytes")
            index = json.loads(blob)
        except (zlib.error, ValueError, RecursionError) as e:
            raise StoreError(f"{self.path / name}: corrupt shard index ({e})") from None
        idx = {"episodes": self._check_index(si, index, off)}
        self._index_cache[si] = idx
        return idx

    def _check_index(self, si: int, index, data_end: int) -> list[dict]:
        """The episodes of shard ``si``'s index, checked against the manifest and the file: the same
        episodes and lengths, ``ceil(length / chunk_frames)`` chunks each at increasing offsets inside the
        shard's data, ``length - 1`` actions in range where the manifest says there are actions."""
        where = self.path / self.shards[si]["file"]
        listed = self.shards[si]["episodes"]
        c = self.chunk_frames
        try:
            entries = index["episodes"]
            if not isinstance(entries, list):
                raise TypeError("episodes is not a list")
            if len(entries) != len(listed):
                raise StoreError(f"{where}: the shard index holds {len(entries)} episodes but the manifest lists "
                                 f"{len(listed)}")
            eps, low = [], len(SHARD_MAGIC)
            for j, (e, m) in enumerate(zip(entries, listed)):
                n, n_listed = _int(e["length"], "episode length", 1, MAX_EPISODE_FRAMES), int(m["length"])
                if n != n_listed:
                    raise StoreError(f"{where}: episode {j} of the shard has {n} frames in the shard index but "
                                     f"{n_listed} in the manifest")
                offs = np.asarray(e["offsets"], dtype=np.int64)
                chunks = -(-n // c)
                if offs.ndim != 1 or len(offs) != chunks + 1:
                    raise StoreError(f"{where}: episode {j} of the shard has {max(len(offs) - 1, 0)} chunks in the "
                                     f"shard index, but {n} frames need {chunks} chunks of {c}")
                if offs[0] < low or offs[-1] > data_end or (np.diff(offs) <= 0).any():
                    raise StoreError(f"{where}: episode {j} of the shard has chunk offsets out of order or outside "
                                     "the shard's data")
                low = int(offs[-1])
                acts = e.get("actions")
                if (acts is not None) != bool(m.get("has_actions", False)):
                    raise StoreError(f"{where}: episode {j} of the shard: the shard index and the manifest disagree "
                                     "on whether it has actions")
                if acts is not None:
                    if not isinstance(acts, list) or not all(type(a) is int for a in acts):
                        raise TypeError(f"episode {j}'s actions are not a list of integers")
                    acts = np.asarray(acts, dtype=np.int64)
                    if acts.shape != (n - 1,):
                        raise StoreError(f"{where}: episode {j} of the shard has {acts.size} actions for {n} frames "
                                         f"(expected {n - 1})")
                    if acts.size and (acts.min() < 0 or (self.num_actions is not None
                                                         and acts.max() >= self.num_actions)):
                        raise StoreError(f"{where}: episode {j} of the shard has actions outside "
                                         f"[0, {self.num_actions})")
                eps.append({"length": n, "offsets": offs, "actions": acts})
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise StoreError(f"{where}: malformed shard index ({type(e).__name__}: {e})") from None
        return eps

    def _episode_entry(self, i: int) -> tuple[int, dict]:
        si = int(self._shard_of[i])
        ep = self._shard_index(si)["episodes"][int(self._index_in_shard[i])]
        if ep["length"] != self._lengths[i]:
            raise StoreError(f"{self.path / self.shards[si]['file']}: episode length disagrees with manifest")
        return si, ep

    @staticmethod
    def _range(length: int, start: int, stop: int | None) -> tuple[int, int]:
        start, stop, _ = slice(start, stop).indices(length)
        return start, max(start, stop)

    def read_frames(self, i: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Frames ``[start, stop)`` of episode ``i`` as uint8 ``(L, H, W, 3)`` (slice semantics)."""
        i = self._check(i)
        length = int(self._lengths[i])
        start, stop = self._range(length, start, stop)
        h, w = self.resolution
        out = np.empty((stop - start, h, w, 3), dtype=np.uint8)
        if stop == start:
            return out
        si, ep = self._episode_entry(i)
        c = self.chunk_frames
        c0, c1 = start // c, (stop - 1) // c + 1
        offs = ep["offsets"]
        base = int(offs[c0])
        buf = os.pread(self._fd(si), int(offs[c1]) - base, base)
        view = memoryview(buf)
        frame_bytes = h * w * 3
        flat = out.reshape(-1)
        pos = 0
        for ci in range(c0, c1):
            a, b = int(offs[ci]) - base, int(offs[ci + 1]) - base
            first = ci * c
            need = min(stop, first + c) - first  # frames of this chunk up to `stop`
            try:
                # inflate only the frames needed (never more: a chunk cannot be a decompression bomb)
                d = zlib.decompressobj()
                raw = d.decompress(view[a:b], need * frame_bytes)
                if len(raw) != need * frame_bytes:
                    raise zlib.error("chunk shorter than recorded")
            except zlib.error as e:
                raise StoreError(f"{self.path / self.shards[si]['file']}: corrupt chunk {ci} of episode {i} ({e}); "
                                 "run `genie data info --verify`") from None
            n = len(raw) // frame_bytes
            lo, hi = max(start, first), min(stop, first + n)
            flat[pos * frame_bytes:(pos + hi - lo) * frame_bytes] = np.frombuffer(
                raw, dtype=np.uint8, count=(hi - lo) * frame_bytes, offset=(lo - first) * frame_bytes)
            pos += hi - lo
        if pos != stop - start:
            raise StoreError(f"{self.path / self.shards[si]['file']}: episode {i} decoded to the wrong length")
        return out

    def read_actions(self, i: int, start: int = 0, stop: int | None = None) -> np.ndarray | None:
        """Actions ``[start, stop)`` of episode ``i`` (int64, ``L - 1`` in total), or None if it has none."""
        i = self._check(i)
        if not self._has_actions[i]:
            return None
        _, ep = self._episode_entry(i)
        acts = ep["actions"]
        if acts is None:
            return None
        start, stop = self._range(len(acts), start, stop)
        return acts[start:stop].copy()

    def read_episode(self, i: int) -> tuple[np.ndarray, np.ndarray | None, dict]:
        return self.read_frames(i), self.read_actions(i), self.episode_meta(i)

    # -- integrity
    def verify_detailed(self, progress: bool = False) -> list[tuple[str, str]]:
        """Check every shard's size and sha256 against the manifest, and its index against the manifest's
        episodes (lengths, chunk counts and offsets, actions): ``[(shard, reason), ...]``."""
        bad = []
        shards = self.shards
        if progress:
            from tqdm import tqdm

            shards = tqdm(shards, desc="verify", unit="shard")
        for s in shards:
            path = self.path / s["file"]
            try:
                size = path.stat().st_size
                if size != int(s["bytes"]):
                    bad.append((s["file"], f"size {size} != {s['bytes']} recorded in manifest"))
                    continue
                h = hashlib.sha256()
                from genieworld.utils import open_regular

                with os.fdopen(open_regular(path, int(s["bytes"]), StoreError, "shard"), "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        h.update(block)
                if h.hexdigest() != s["sha256"]:
                    bad.append((s["file"], "sha256 mismatch (corrupt shard)"))
                    continue
                problem = self._verify_index(s)
                if problem:
                    bad.append((s["file"], problem))
            except FileNotFoundError:
                bad.append((s["file"], "missing"))
            except OSError as e:
                bad.append((s["file"], f"unreadable ({e.strerror})"))
        return bad

    def _verify_index(self, shard: dict) -> str | None:
        """Why the index of ``shard`` (an entry of ``self.shards``) disagrees with the manifest, or None."""
        si = next(i for i, s in enumerate(self.shards) if s is shard)
        self._index_cache.pop(si, None)  # read it afresh
        try:
            self._shard_index(si)
        except StoreError as e:
            return str(e).removeprefix(f"{self.path / shard['file']}: ")
        listed = sum(int(e["length"]) for e in shard["episodes"])
        if "frames" in shard and int(shard["frames"]) != listed:
            return f"the manifest says the shard has {shard['frames']} frames but its episodes add up to {listed}"
        return None

    def verify(self) -> list[str]:
        """Names of bad shards (missing, wrong size or sha256 mismatch); empty when intact."""
        return [name for name, _ in self.verify_detailed()]

    def close(self) -> None:
        if self._pid == os.getpid():
            for fd in self._fds.values():
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._fds = {}
        self._index_cache = {}

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __getstate__(self):  # picklable (spawned workers): reopen lazily
        state = self.__dict__.copy()
        state["_fds"] = {}
        state["_index_cache"] = {}
        return state


# ----------------------------------------------------------------------------- writer


class EpisodeWriter:
    """Append episodes to a store, one atomically committed shard at a time.

    ``EpisodeWriter(path, resolution=(64, 64), fps=10, source="coinrun")`` creates the
    store (or reopens an existing one for appending; resolution and fps must match).
    Use it as a context manager: a clean exit commits the last shard; an exception
    discards the uncommitted shard (at most ``shard_bytes`` of work) and leaves the
    previous manifest in force.

    Resumable work: tag episodes with a unit ``key`` and call :meth:`mark_done` when
    the unit is complete; a shard is only closed between units, and
    :attr:`done_keys` lists the units whose episodes are committed.
    """

    def __init__(self, path: str | os.PathLike, resolution: tuple[int, int] = (64, 64), fps: float = 10.0,
                 source: str = "", extra_manifest: dict | None = None, num_actions: int | None = None,
                 chunk_frames: int = DEFAULT_CHUNK_FRAMES, shard_bytes: int = DEFAULT_SHARD_BYTES,
                 zlib_level: int = DEFAULT_ZLIB_LEVEL):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(f"{self.path}: exists and is not a directory")
        if self.path.is_dir() and not (self.path / MANIFEST).exists():
            foreign = [p.name for p in self.path.iterdir()
                       if p.name not in _OWN_FILES and not p.name.startswith(_TMP_PREFIX)]
            if foreign:
                raise StoreError(f"{self.path}: folder is not empty and not an episode store "
                                 f"(contains {', '.join(sorted(foreign)[:3])}{', ...' if len(foreign) > 3 else ''}); "
                                 "choose a new or empty folder")
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(_child(self.path, LOCK), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise StoreError(f"{self.path}: another process is writing this store") from None
        try:
            self._open(resolution, fps, source, extra_manifest, num_actions, chunk_frames)
        except BaseException:
            self._release()
            raise
        self.shard_bytes = int(shard_bytes)
        self.zlib_level = int(zlib_level)
        self._cur: dict | None = None  # the uncommitted shard
        self._ep: dict | None = None  # the episode being streamed
        self._open_units: dict[str, int] = {}  # unit key -> finished episodes in the open shard
        self._closed = False

    def _open(self, resolution, fps, source, extra_manifest, num_actions, chunk_frames) -> None:
        res = [int(resolution[0]), int(resolution[1])]
        if (self.path / MANIFEST).exists():
            m = _read_manifest(self.path)
            if list(m["resolution"]) != res:
                raise StoreError(f"{self.path}: existing store has resolution {m['resolution']}, not {res}")
            if abs(float(m["fps"]) - float(fps)) > 1e-9:
                raise StoreError(f"{self.path}: existing store has fps {m['fps']}, not {fps}")
            if num_actions is not None and m.get("num_actions") not in (None, int(num_actions)):
                raise StoreError(f"{self.path}: existing store has num_actions {m['num_actions']}, not {num_actions}")
            if num_actions is not None:
                m["num_actions"] = int(num_actions)
            if extra_manifest:
                m.setdefault("extra", {}).update(_jsonable(extra_manifest))
            self.manifest = m
        else:
            if res[0] <= 0 or res[1] <= 0 or fps <= 0:
                raise ValueError(f"bad resolution {res} or fps {fps}")
            self.manifest = {
                "format": FORMAT,
                "version": VERSION,
                "source": str(source),
                "resolution": res,
                "fps": float(fps),
                "num_actions": None if num_actions is None else int(num_actions),
                "codec": "zlib",
                "chunk_frames": int(chunk_frames),
                "action_convention": "actions[j] is taken at frame j and produces frame j+1; len = frames - 1",
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "extra": _jsonable(extra_manifest or {}),
                "shards": [],
            }
        self.resolution = (res[0], res[1])
        self.chunk_frames = int(self.manifest["chunk_frames"])
        self.num_actions = self.manifest.get("num_actions")
        # leftovers of a crashed writer (we hold the lock, so nobody else is writing)
        for p in self.path.iterdir():
            if p.name.startswith(_TMP_PREFIX) and p.is_file() and not p.is_symlink():
                _unlink_quiet(p)
        self._write_manifest()

    # -- manifest
    def _write_manifest(self) -> None:
        self.manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        atomic_write_json(self.path, MANIFEST, self.manifest)

    @property
    def done_keys(self) -> set[str]:
        """Keys of units committed to disk (use them to skip work when resuming)."""
        return {k for s in self.manifest["shards"] for k in s.get("keys", [])}

    @property
    def num_episodes(self) -> int:
        """Episodes committed or finished in the open shard."""
        n = sum(len(s["episodes"]) for s in self.manifest["shards"])
        return n + (len(self._cur["episodes"]) if self._cur else 0)

    @property
    def num_frames(self) -> int:
        """Frames committed or finished in the open shard (cheap: per-shard totals)."""
        n = sum(int(s.get("frames", 0)) for s in self.manifest["shards"])
        return n + (self._cur["frames"] if self._cur else 0)

    def set_extra(self, **kv) -> None:
        """Update the manifest's ``extra`` dict (written with the next commit)."""
        self.manifest.setdefault("extra", {}).update(_jsonable(kv))

    # -- shard
    def _next_shard_name(self) -> str:
        used = [int(s["file"][len(_SHARD_PREFIX):-len(_SHARD_SUFFIX)]) for s in self.manifest["shards"]]
        return _shard_name(max(used, default=-1) + 1)

    def _start_shard(self) -> dict:
        name = self._next_shard_name()
        tmp = _child(self.path, f"{_TMP_PREFIX}{name}.{os.getpid()}.{time.monotonic_ns()}")
        fd = _open_new(tmp)
        cur = {"name": name, "tmp": tmp, "fd": fd, "hash": hashlib.sha256(), "pos": 0,
               "episodes": [], "index": [], "keys": [], "frames": 0}
        self._cur = cur
        self._append_bytes(SHARD_MAGIC)
        return cur

    def _append_bytes(self, data: bytes) -> int:
        cur = self._cur
        off = cur["pos"]
        _write_all(cur["fd"], data)
        cur["hash"].update(data)
        cur["pos"] += len(data)
        return off

    def _discard_shard(self) -> None:
        cur, self._cur, self._ep = self._cur, None, None
        if cur is None:
            return
        try:
            os.close(cur["fd"])
        except OSError:
            pass
        _unlink_quiet(cur["tmp"])

    def _commit_shard(self) -> None:
        cur = self._cur
        if cur is None:
            return
        if self._ep is not None:
            raise RuntimeError("cannot commit a shard while an episode is being written")
        index = {"version": VERSION, "resolution": list(self.resolution), "chunk_frames": self.chunk_frames,
                 "episodes": cur["index"]}
        blob = zlib.compress(json.dumps(index, separators=(",", ":")).encode(), 6)
        off = self._append_bytes(blob)
        self._append_bytes(_TRAILER.pack(off, len(blob), SHARD_END))
        try:
            os.fsync(cur["fd"])
        finally:
            os.close(cur["fd"])
        final = _child(self.path, cur["name"])
        os.replace(cur["tmp"], final)
        _fsync_dir(self.path)
        self._cur = None
        entry = {"file": cur["name"], "bytes": cur["pos"], "sha256": cur["hash"].hexdigest(),
                 "frames": int(cur["frames"]),
                 "episodes": cur["episodes"], "keys": cur["keys"]}
        self.manifest["shards"].append(entry)
        try:
            self._write_manifest()
        except BaseException:
            self.manifest["shards"].pop()  # the renamed shard stays an unreferenced orphan
            raise

    # -- episodes (streaming)
    def begin_episode(self, meta: dict | None = None, key: str | None = None) -> None:
        """Start an episode; feed it with :meth:`append` and finish with :meth:`end_episode`."""
        self._check_open()
        if self._ep is not None:
            raise RuntimeError("begin_episode() while another episode is open")
        if self._cur is None:
            self._start_shard()
        cur = self._cur
        self._ep = {"meta": _jsonable(meta), "key": key, "length": 0, "offsets": [], "actions": [],
                    "has_actions": None, "pending": [], "npending": 0,
                    "rollback": (cur["pos"], cur["hash"].copy())}
        if key is not None:
            self._open_units.setdefault(str(key), 0)

    def append(self, frames: np.ndarray, actions: Iterable[int] | np.ndarray | None = None) -> None:
        """Append frames to the open episode.

        ``actions`` are the actions taken at the *preceding* frames: for the first call
        of an episode ``len(actions) == len(frames) - 1``, afterwards ``len(frames)``
        (the first one links the previous call's last frame to this call's first frame).
        """
        ep = self._ep
        if ep is None:
            raise RuntimeError("append() without begin_episode()")
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        h, w = self.resolution
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (h, w, 3):
            raise ValueError(f"frames must be uint8 (L, {h}, {w}, 3), got {frames.dtype} {frames.shape}")
        n = frames.shape[0]
        if n == 0:
            return
        expect = n - 1 if ep["length"] == 0 else n
        if actions is None:
            if ep["has_actions"]:
                raise ValueError("this episode has actions; every append() must pass them")
            ep["has_actions"] = False
        else:
            acts = np.asarray(actions)
            if ep["has_actions"] is False:
                raise ValueError("this episode was started without actions")
            if acts.ndim != 1 or acts.shape[0] != expect:
                raise ValueError(f"expected {expect} actions for {n} frames (actions[j] links frame j to j+1), "
                                 f"got shape {acts.shape}")
            if acts.size and not np.issubdtype(acts.dtype, np.integer):
                raise ValueError(f"actions must be integers, got {acts.dtype}")
            if acts.size and (acts.min() < 0 or (self.num_actions is not None and acts.max() >= self.num_actions)):
                raise ValueError(f"actions must be in [0, {self.num_actions}), got [{acts.min()}, {acts.max()}]")
            ep["has_actions"] = True
            ep["actions"].extend(int(a) for a in acts)
        ep["pending"].append(np.ascontiguousarray(frames))
        ep["npending"] += n
        ep["length"] += n
        self._flush_chunks(final=False)

    def _flush_chunks(self, final: bool) -> None:
        ep = self._ep
        c = self.chunk_frames
        if ep["npending"] < c and not (final and ep["npending"]):
            return
        buf = np.concatenate(ep["pending"]) if len(ep["pending"]) > 1 else ep["pending"][0]
        full = (len(buf) // c) * c if not final else len(buf)
        for s in range(0, full, c):
            off = self._append_bytes(zlib.compress(buf[s:s + c].tobytes(), self.zlib_level))
            ep["offsets"].append(off)
        rest = buf[full:]
        ep["pending"] = [rest] if len(rest) else []
        ep["npending"] = len(rest)

    def end_episode(self, meta: dict | None = None) -> None:
        """Finish the open episode; ``meta`` (optional) is merged into its metadata."""
        ep = self._ep
        if ep is None:
            raise RuntimeError("end_episode() without begin_episode()")
        if meta:
            ep["meta"].update(_jsonable(meta))
        if ep["length"] == 0:
            self.abort_episode()
            raise ValueError("an episode needs at least one frame")
        self._flush_chunks(final=True)
        ep["offsets"].append(self._cur["pos"])
        has = bool(ep["has_actions"])
        self._cur["index"].append({"length": ep["length"], "offsets": ep["offsets"],
                                   "actions": ep["actions"] if has else None, "meta": ep["meta"]})
        self._cur["episodes"].append({"length": ep["length"], "has_actions": has, "meta": ep["meta"]})
        self._cur["frames"] += ep["length"]
        if ep["key"] is not None:
            self._open_units[str(ep["key"])] += 1
        self._ep = None
        self._maybe_roll()

    def abort_episode(self) -> None:
        """Drop the open episode (its bytes are truncated away from the uncommitted shard)."""
        ep, self._ep = self._ep, None
        if ep is None:
            return
        pos, h = ep["rollback"]
        cur = self._cur
        os.ftruncate(cur["fd"], pos)
        os.lseek(cur["fd"], pos, os.SEEK_SET)
        cur["pos"], cur["hash"] = pos, h
        key = None if ep["key"] is None else str(ep["key"])
        if key is not None and self._open_units.get(key) == 0:  # nothing of this unit is in the shard
            del self._open_units[key]

    def add_episode(self, frames: np.ndarray, actions: np.ndarray | None = None, meta: dict | None = None,
                    key: str | None = None) -> None:
        """Add a whole episode: uint8 ``(L, H, W, 3)`` frames, optional ``L - 1`` actions, a meta dict.

        ``key`` tags the episode as part of a resumable unit (see :meth:`mark_done`).
        """
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[0] < 1:
            raise ValueError(f"frames must be (L>=1, H, W, 3), got {frames.shape}")
        self.begin_episode(meta, key=key)
        try:
            self.append(frames, actions)
        except BaseException:
            self.abort_episode()
            raise
        self.end_episode()

    def mark_done(self, key: str) -> None:
        """Declare unit ``key`` complete: it is recorded in the manifest with the shard holding its episodes."""
        self._check_open()
        key = str(key)
        self._open_units.pop(key, None)
        if self._cur is None:
            self._start_shard()
        self._cur["keys"].append(key)
        self._maybe_roll()

    def _maybe_roll(self) -> None:
        if self._cur is not None and self._cur["pos"] >= self.shard_bytes and not self._open_units \
                and self._ep is None:
            self._commit_shard()

    def flush(self) -> bool:
        """Commit the uncommitted shard now, if no unit or episode is half-written. Returns True if committed."""
        self._check_open()
        if self._cur is None or self._ep is not None or self._open_units:
            return False
        if not self._cur["episodes"] and not self._cur["keys"]:
            self._discard_shard()
            return False
        self._commit_shard()
        return True

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("writer is closed")

    def close(self) -> None:
        """Commit complete work and release the lock (an episode still open is dropped)."""
        if self._closed:
            return
        try:
            if self._ep is not None:
                self.abort_episode()
            if self._cur is not None:
                if self._open_units:  # half-written units would be recorded as not done: keep only whole ones
                    self._discard_shard()
                elif self._cur["episodes"] or self._cur["keys"]:
                    self._commit_shard()
                else:
                    self._discard_shard()
            else:
                self._write_manifest()
        finally:
            self._closed = True
            self._release()

    def abort(self) -> None:
        """Discard everything not yet committed and release the lock."""
        if self._closed:
            return
        try:
            self._discard_shard()
        finally:
            self._closed = True
            self._release()

    def _release(self) -> None:
        fd, self._lock_fd = getattr(self, "_lock_fd", None), None
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def __enter__(self) -> "EpisodeWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self):
        try:
            if not getattr(self, "_closed", True):
                self.abort()
        except Exception:
            pass


def store_digest(store: "EpisodeStore") -> str:
    """sha256 of what a store holds: its manifest (every shard with its checksum, every episode's
    length and metadata) without the write timestamps, which change when a finished store is
    opened for writing again (a resumed `genie data` run that had nothing left to record)."""
    from genieworld.utils import read_json

    manifest = read_json(Path(store.path) / MANIFEST, ValueError)
    content = {k: v for k, v in manifest.items() if k not in ("created", "updated")}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()

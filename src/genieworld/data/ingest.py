"""Ingest arbitrary videos and numbered-image folders into an episode store.

Every source becomes one episode (no actions): video files are decoded with PyAV,
resampled to the target fps by timestamps and resized with
:func:`genieworld.data.video.prepare_frame`; a folder holding images is one
episode whose frames are its images in natural order (``frame_2`` before
``frame_10``).  Folders are searched recursively; dot-files are ignored.

Inputs that are missing, empty, of an unsupported type, undecodable, truncated or
shorter than ``min_frames`` after resampling are skipped and reported with the
reason; the rest is ingested.  The report is printed and written atomically to
``OUT/ingest_report.json``.  Only fixed file names inside ``OUT`` are ever written
(see :mod:`genieworld.data.store`); source names never become output paths, and
``OUT`` itself is never scanned as a source.

Resuming: each ingested source is recorded in the manifest under the key
``file:<realpath>:<size>`` (or ``images:<realpath>:<count>``), and a rerun skips them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from genieworld.data.store import EpisodeStore, EpisodeWriter, StoreError, atomic_write_json
from genieworld.data.video import IMAGE_EXTS, VIDEO_EXTS, iter_image_sequence, iter_video_frames, natural_key

__all__ = ["ingest", "discover_sources", "REPORT_NAME"]

REPORT_NAME = "ingest_report.json"
_BLOCK = 64


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def discover_sources(sources, out) -> tuple[list[dict], list[dict]]:
    """Expand ``sources`` into ingestible items and skipped entries (``{"source", "reason"}``)."""
    out_real = Path(os.path.realpath(out))
    items, skipped, seen = [], [], set()

    def skip(p, reason):
        skipped.append({"source": str(p), "reason": reason})

    def add_file(p: Path):
        real = Path(os.path.realpath(p))
        if real in seen:
            return
        seen.add(real)
        if _inside(real, out_real):
            return skip(p, "inside the output folder")
        ext = p.suffix.lower()
        if ext in VIDEO_EXTS:
            try:
                size = real.stat().st_size
            except OSError as e:
                return skip(p, f"unreadable ({e.strerror})")
            if size == 0:
                return skip(p, "empty file (0 bytes)")
            items.append({"kind": "video", "source": str(p), "real": str(real), "size": size,
                          "key": f"file:{real}:{size}"})
        elif ext in IMAGE_EXTS:
            skip(p, "a single image is not a video (put numbered images in a folder to ingest a sequence)")
        else:
            skip(p, f"unsupported file type '{ext or '(no extension)'}' (videos: {', '.join(sorted(VIDEO_EXTS))}; "
                    "or a folder of numbered images)")

    for src in sources:
        p = Path(src)
        if not p.exists():
            skip(p, "does not exist")
            continue
        if p.is_file():
            add_file(p)
            continue
        if not p.is_dir():
            skip(p, "not a regular file or folder")
            continue
        real_root = Path(os.path.realpath(p))
        if _inside(real_root, out_real):
            skip(p, "is (inside) the output folder")
            continue
        for dirpath, dirnames, filenames in os.walk(p, followlinks=False):
            d = Path(dirpath)
            if _inside(Path(os.path.realpath(d)), out_real):
                dirnames[:] = []
                continue
            dirnames[:] = sorted((n for n in dirnames if not n.startswith(".")), key=natural_key)
            names = sorted((n for n in filenames if not n.startswith(".")), key=natural_key)
            images = [d / n for n in names if Path(n).suffix.lower() in IMAGE_EXTS]
            for n in names:
                if Path(n).suffix.lower() not in IMAGE_EXTS:
                    add_file(d / n)
            if images:
                real = Path(os.path.realpath(d))
                if real not in seen:
                    seen.add(real)
                    items.append({"kind": "images", "source": str(d), "real": str(real), "files": images,
                                  "key": f"images:{real}:{len(images)}"})
    return items, skipped


def ingest(sources, out, fps: float = 10.0, size: int = 64, min_frames: int = 16, fit: str = "crop",
           image_fps: float | None = None, progress: bool = True, shard_bytes: int | None = None) -> dict:
    """Ingest ``sources`` (files/folders) into the store at ``out``; returns the report dict."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise StoreError(f"{out}: output exists and is not a folder")
    items, skipped = discover_sources(sources, out)
    kw = {} if shard_bytes is None else {"shard_bytes": shard_bytes}
    ingested, already = [], []
    t_start = time.time()
    params = {"fps": fps, "size": size, "min_frames": min_frames, "fit": fit, "image_fps": image_fps}
    with EpisodeWriter(out, resolution=(size, size), fps=fps, source="ingest",
                       extra_manifest={"ingest": {"fit": fit, "resample": "timestamps, sample-and-hold",
                                                  "resize": "centre-crop + area" if fit == "crop"
                                                  else "letterbox pad + area"}}, **kw) as w:
        done = w.done_keys
        it = items
        if progress:
            from tqdm import tqdm

            it = tqdm(items, desc="ingest", unit="src")
        for item in it:
            if item["key"] in done:
                already.append(item["source"])
                continue
            info: dict = {}
            if item["kind"] == "video":
                frames = iter_video_frames(item["real"], fps=fps, size=size, fit=fit, info=info)
            else:
                frames = iter_image_sequence(item["files"], fps=fps, size=size, fit=fit, src_fps=image_fps)
                info = {"images": len(item["files"])}
            meta = {"source": item["source"], "kind": item["kind"]}
            w.begin_episode(meta, key=item["key"])
            n = 0
            try:
                block = []
                for f in frames:
                    block.append(f)
                    if len(block) == _BLOCK:
                        w.append(np.stack(block))
                        n += len(block)
                        block = []
                if block:
                    w.append(np.stack(block))
                    n += len(block)
            except (KeyboardInterrupt, SystemExit):
                w.abort_episode()
                raise
            except Exception as e:  # noqa: BLE001 - any decoder failure skips this source
                w.abort_episode()
                skipped.append({"source": item["source"], "reason": _reason(e)})
                continue
            if n < min_frames:
                w.abort_episode()
                src_fps = info.get("src_fps")
                skipped.append({"source": item["source"],
                                "reason": f"too short: {n} frames at {fps:g} fps < --min-frames {min_frames}"
                                          + (f" (source {src_fps:.3g} fps)" if src_fps else "")})
                continue
            w.end_episode()
            w.mark_done(item["key"])
            ingested.append({"source": item["source"], "frames": n,
                             **{k: v for k, v in info.items() if v is not None}})
    store = EpisodeStore(out)
    report = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(time.time() - t_start, 2),
        "params": params,
        "ingested": ingested,
        "already_in_store": already,
        "skipped": skipped,
        "store": {"episodes": store.num_episodes, "frames": store.num_frames, "bytes_on_disk": store.bytes_on_disk},
    }
    atomic_write_json(out, REPORT_NAME, report)
    return report


def _reason(e: BaseException) -> str:
    msg = str(e).strip() or type(e).__name__
    name = type(e).__name__
    low = msg.lower()
    if "invalid data" in low or "moov atom" in low:
        return f"unreadable or truncated video ({name}: {msg})"
    return f"{name}: {msg}"

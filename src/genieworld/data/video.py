"""Frame preparation, image loading and video decoding shared by ingestion, generation and play.

Resize policy (:func:`prepare_frame`), used everywhere a frame enters the model:

* ``fit="crop"`` (default): centre-crop the largest box with the target aspect ratio
  (a centred square for ``size=64``), then resize that box to the target with an
  *area* filter (Pillow ``BOX``, i.e. each output pixel is the mean of the input
  pixels it covers) when shrinking, or bilinear when enlarging.  Nothing is
  distorted; the edges of non-square sources are cut.
* ``fit="pad"``: resize the whole image to fit inside the target keeping its aspect
  ratio (same filters), centred on black bars.  Nothing is cut; the bars cost tokens.

Frame-rate resampling (:func:`iter_video_frames`) is by timestamps, sample-and-hold:
output frame ``k`` shows the last source frame whose presentation time is
``<= t0 + k / fps`` (``t0`` = first frame), for every ``k`` with ``k / fps`` before the
end of the last frame (its timestamp plus its duration).  So a 3 s 30 fps clip gives
exactly 30 frames at 10 fps (source frames 0, 3, 6, ...), a 5 fps clip has each frame
repeated twice, and variable-frame-rate sources (GIF delays) keep real time.
Timestamps are exact rationals (pts x time_base), so no frame is picked by rounding.

Source frames larger than :data:`MAX_SOURCE_PIXELS` (8K UHD, 7680 x 4320) are refused before they
are decoded (from the image header or the video stream's size, and again per decoded frame): an
8192 x 8192 video of a few hundred KB would otherwise need gigabytes while it is downscaled.
"""

from __future__ import annotations

import io
import math
import os
import re
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = ["prepare_frame", "load_image", "iter_video_frames", "iter_image_sequence", "natural_key",
           "VIDEO_EXTS", "IMAGE_EXTS", "FITS", "probe_video"]

VIDEO_EXTS = {".mp4", ".webm", ".mkv", ".avi", ".gif", ".mov", ".m4v", ".mpg", ".mpeg", ".ogv", ".flv", ".wmv"}
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
FITS = ("crop", "pad")
MAX_SOURCE_PIXELS = 7680 * 4320  # largest source frame decoded (8K UHD)


#: the largest image file read as a frame or a prompt (a 4000x4000 PNG is far below it)
MAX_IMAGE_FILE_BYTES = 64 << 20

def _check_pixels(width: int, height: int, name: str) -> None:
    if int(width or 0) * int(height or 0) > MAX_SOURCE_PIXELS:
        raise ValueError(f"{name}: {width}x{height} frames are larger than {MAX_SOURCE_PIXELS} pixels (8K UHD); "
                         "downscale it first")


def _hw(size) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        h = w = int(size)
    else:
        h, w = (int(v) for v in size)
    if h <= 0 or w <= 0:
        raise ValueError(f"bad target size {size!r}")
    return h, w


def _to_pil_rgb(img) -> Image.Image:
    if isinstance(img, Image.Image):
        return _pil_rgb(img)
    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        return Image.fromarray(np.ascontiguousarray(arr), "L").convert("RGB")
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected an HxWx3 (or HxW, HxWx4) image, got shape {arr.shape}")
    if arr.shape[2] == 4:
        return _pil_rgb(Image.fromarray(np.ascontiguousarray(arr), "RGBA"))
    return Image.fromarray(np.ascontiguousarray(arr), "RGB")


def _pil_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "RGB":
        return im
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (0, 0, 0, 255))
        return Image.alpha_composite(bg, im).convert("RGB")  # transparent -> black
    return im.convert("RGB")


def _resample(src_w: float, src_h: float, dst_w: int, dst_h: int):
    return Image.BOX if (src_w >= dst_w and src_h >= dst_h) else Image.BILINEAR


def prepare_pil(im: Image.Image, size, fit: str = "crop") -> np.ndarray:
    """:func:`prepare_frame` for a Pillow image (any mode)."""
    h, w = _hw(size)
    im = _pil_rgb(im)
    sw, sh = im.size
    if sw < 1 or sh < 1:
        raise ValueError("empty image")
    if fit == "crop":
        if (sw, sh) == (w, h):
            return np.asarray(im, dtype=np.uint8).copy()
        # largest centred box with aspect w:h
        if sw * h > sh * w:  # too wide
            bw, bh = sh * w / h, float(sh)
        else:
            bw, bh = float(sw), sw * h / w
        left, top = (sw - bw) / 2, (sh - bh) / 2
        out = im.resize((w, h), _resample(bw, bh, w, h), box=(left, top, left + bw, top + bh))
        return np.asarray(out, dtype=np.uint8).copy()
    if fit == "pad":
        scale = min(w / sw, h / sh)
        nw, nh = max(1, round(sw * scale)), max(1, round(sh * scale))
        inner = im.resize((nw, nh), _resample(sw, sh, nw, nh)) if (nw, nh) != (sw, sh) else im
        canvas = Image.new("RGB", (w, h), (0, 0, 0))
        canvas.paste(inner, ((w - nw) // 2, (h - nh) // 2))
        return np.asarray(canvas, dtype=np.uint8).copy()
    raise ValueError(f"fit must be one of {FITS}, got {fit!r}")


def prepare_frame(img_hwc_uint8, size=64, fit: str = "crop") -> np.ndarray:
    """Resize an image to the model resolution with the project's one policy.

    ``img_hwc_uint8``: uint8 ``HxWx3`` (``HxW`` grey and ``HxWx4`` RGBA are accepted;
    alpha is composited on black) or a Pillow image.  ``size``: int (square) or
    ``(H, W)``.  Returns a new uint8 array ``(H, W, 3)``.  See the module docstring
    for the crop/pad policy.
    """
    return prepare_pil(_to_pil_rgb(img_hwc_uint8), size, fit)


def load_image(path_or_bytes) -> np.ndarray:
    """Decode an image file (path, bytes or binary file object) to uint8 ``HxWx3``.

    Any format Pillow reads (PNG, JPEG, GIF (first frame), BMP, WebP, TIFF, ...).
    Alpha is composited on black, greyscale/palette are converted to RGB.
    Raises ``ValueError`` naming the input when it is not a decodable image.
    """
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        src, name = io.BytesIO(bytes(path_or_bytes)), f"<{len(path_or_bytes)} bytes>"
    elif isinstance(path_or_bytes, (str, os.PathLike)):
        from genieworld.utils import read_bytes_bounded

        name = os.fspath(path_or_bytes)
        raw = read_bytes_bounded(name, MAX_IMAGE_FILE_BYTES, ValueError, "image")  # regular files only, bounded
        if not raw:
            raise ValueError(f"{name}: empty file, not an image")
        src = io.BytesIO(raw)
    elif hasattr(path_or_bytes, "read"):
        src, name = path_or_bytes, getattr(path_or_bytes, "name", "<file object>")
    else:
        raise ValueError(f"load_image expects a path, bytes or a file object, got {type(path_or_bytes).__name__}")
    try:
        with Image.open(src) as im:
            _check_pixels(im.width, im.height, name)
            im.load()
            return np.asarray(_pil_rgb(im), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"{name}: not a decodable image ({type(e).__name__}: {e})") from None


_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str):
    """Sort key with numbers compared by value: frame_2 < frame_10."""
    return [(0, int(t), t) if t.isdigit() else (1, 0, t.lower()) for t in _DIGITS.split(os.fspath(name)) if t != ""]


def probe_video(path) -> dict:
    """Container facts for reports: frames (0 if unknown), fps, duration_s, width, height."""
    import av

    with av.open(os.fspath(path)) as c:
        if not c.streams.video:
            raise ValueError("no video stream")
        s = c.streams.video[0]
        rate = s.average_rate or s.guessed_rate
        return {"frames": int(s.frames or 0), "fps": float(rate) if rate else None,
                "duration_s": (c.duration / 1e6) if c.duration else None,
                "width": s.codec_context.width, "height": s.codec_context.height}


def iter_video_frames(path, fps: float = 10.0, size=64, fit: str = "crop", info: dict | None = None,
                      check_truncation: bool = True) -> Iterator[np.ndarray]:
    """Decode a video file with PyAV, resample to ``fps`` by timestamps and prepare each frame.

    Yields uint8 ``(H, W, 3)`` frames.  Raises (``av`` errors, ``ValueError``) on
    unreadable or truncated input.  If ``info`` is a dict it is filled with source
    facts (src_fps, src_frames, src_width, src_height, decoded, duration_s).
    """
    import av

    target = Fraction(fps).limit_denominator(1_000_000)
    if target <= 0:
        raise ValueError("fps must be > 0")
    info = {} if info is None else info
    with av.open(os.fspath(path)) as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        tb = stream.time_base
        rate = stream.average_rate or stream.guessed_rate
        info.update(src_fps=float(rate) if rate else None, src_frames=int(stream.frames or 0),
                    src_width=stream.codec_context.width, src_height=stream.codec_context.height)
        _check_pixels(info["src_width"], info["src_height"], os.fspath(path))
        k = 0
        t0 = prev = prev_t = None
        decoded = 0
        last_gap = None
        for frame in container.decode(stream):
            decoded += 1
            _check_pixels(frame.width, frame.height, os.fspath(path))
            if frame.pts is not None and tb is not None:
                t = Fraction(frame.pts) * tb
            elif rate:
                t = Fraction(decoded - 1) / Fraction(rate)
            else:
                t = Fraction(decoded - 1) / target
            if t0 is None:
                t0 = t
            t -= t0
            if prev is not None:
                if t <= prev_t:  # duplicate / out-of-order timestamp: the newer frame wins
                    prev = frame
                    continue
                last_gap = t - prev_t
                while Fraction(k) / target < t:
                    yield prepare_pil(prev.to_image(), size, fit)
                    k += 1
            prev, prev_t = frame, t
        if prev is None:
            raise ValueError("no decodable video frames")
        dur = None
        if getattr(prev, "duration", None) and tb is not None:
            dur = Fraction(prev.duration) * tb
        if not dur:
            dur = last_gap or (1 / Fraction(rate) if rate else 1 / target)
        end = prev_t + dur
        while Fraction(k) / target < end:
            yield prepare_pil(prev.to_image(), size, fit)
            k += 1
        info.update(decoded=decoded, duration_s=float(end))
        expected = info["src_frames"]
        if check_truncation and expected > 0 and decoded < expected - max(2, expected // 20):
            raise ValueError(f"truncated: decoded {decoded} of {expected} frames the container declares")


def iter_image_sequence(files, fps: float = 10.0, size=64, fit: str = "crop",
                        src_fps: float | None = None) -> Iterator[np.ndarray]:
    """Prepared frames of a numbered image sequence (``files`` already in order).

    With ``src_fps=None`` every image is one output frame (the sequence is taken to
    be at the target fps); otherwise image ``i`` is shown at ``i / src_fps`` and the
    sequence is resampled to ``fps`` like a video.
    """
    files = [Path(f) for f in files]
    if src_fps is None:
        for f in files:
            yield prepare_frame(load_image(f), size, fit)
        return
    target = Fraction(fps).limit_denominator(1_000_000)
    src = Fraction(src_fps).limit_denominator(1_000_000)
    n_out = math.ceil(Fraction(len(files)) / src * target) if files else 0
    cache_i, cache = -1, None
    for k in range(n_out):
        i = min(len(files) - 1, int(Fraction(k) / target * src))  # last image with i/src <= k/target
        if i != cache_i:
            cache_i, cache = i, prepare_frame(load_image(files[i]), size, fit)
        yield cache.copy()

"""Writing frames out as GIF or MP4: one implementation for `genie generate` and the play server's recordings.

Frames are uint8 ``(T, H, W, 3)``; ``target`` is a path or a binary file object (``io.BytesIO``).
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np


def upscale(frames_thwc: np.ndarray, k: int) -> np.ndarray:
    """Nearest-neighbour upscaling by an integer factor."""
    if k == 1:
        return frames_thwc
    return frames_thwc.repeat(k, axis=1).repeat(k, axis=2)


def write_gif(frames_thwc: np.ndarray, target: Path | BinaryIO, fps: float, min_frame_ms: int = 1) -> None:
    """An endlessly looping GIF; each frame lasts ``round(1000 / fps)`` ms, at least ``min_frame_ms``."""
    from PIL import Image

    ims = [Image.fromarray(f, "RGB") for f in frames_thwc]
    ims[0].save(target, format="GIF", save_all=True, append_images=ims[1:],
                duration=max(min_frame_ms, round(1000 / fps)), loop=0, optimize=False)


def write_mp4(frames_thwc: np.ndarray, target: Path | BinaryIO, fps: float, crf: int = 18, preset: str | None = None,
              max_rate_denominator: int = 1000, lossless: bool = False) -> None:
    """H.264 (libx264, yuv420p) in MP4 via PyAV; odd sizes are padded to even by repeating the edge.
    ``lossless``: H.264 in RGB at crf 0 (libx264rgb) instead, which decodes to exactly the same pixels
    (yuv420p, even at crf 0, bleeds colour across sharp edges and rounds each pixel's conversion)."""
    from fractions import Fraction

    import av

    t, h, w, _ = frames_thwc.shape
    ph, pw = (h, w) if lossless else (h + h % 2, w + w % 2)  # yuv420p needs even sizes
    if (ph, pw) != (h, w):
        frames_thwc = np.pad(frames_thwc, ((0, 0), (0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    with av.open(str(target) if isinstance(target, (str, Path)) else target, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264rgb" if lossless else "libx264",
                                      rate=Fraction(fps).limit_denominator(max_rate_denominator))
        stream.width, stream.height, stream.pix_fmt = pw, ph, "rgb24" if lossless else "yuv420p"
        stream.options = {"crf": "0" if lossless else str(crf), **({"preset": preset} if preset else {})}
        for f in frames_thwc:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)

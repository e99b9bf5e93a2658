"""Write a store's episodes out as video files: one H.264 MP4 per episode (``genie data export``).

The way back from an episode store to the kind of files users have: to look at a dataset in any
player, or to test the path their own videos take (``genie data ingest``) against the native store
the videos came from (README, "A world from your own videos"). Frames are written at the store's frame
rate, optionally upscaled by an integer factor (nearest neighbour) as a screen capture would be.
``lossless`` writes RGB H.264 at crf 0 (libx264rgb), which decodes to exactly the store's pixels: the
way to test the ingest path alone. The default (yuv420p, crf 18) is what video files usually are.

Only ``OUT/episode-NNNNNN.mp4`` files are ever written, each first to a hidden temporary file in
``OUT`` and then renamed, so a killed export leaves no half-written video under a real name.
Rerunning skips the videos that exist (resume); nothing is deleted or overwritten.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from genieworld.data.store import EpisodeStore
from genieworld.media import upscale, write_mp4

__all__ = ["export_videos", "video_name"]


def video_name(episode: int) -> str:
    return f"episode-{episode:06d}.mp4"


def export_videos(store: str | os.PathLike, out: str | os.PathLike, episodes: int | None = None, scale: int = 1,
                  crf: int = 18, min_frames: int = 1, lossless: bool = False, progress: bool = True) -> dict:
    """Write the first ``episodes`` episodes (all by default) of ``min_frames`` frames or more as MP4
    files in ``out``; returns ``{"written", "existing", "too_short", "fps", "size"}``."""
    st = EpisodeStore(store)
    if scale < 1 or min_frames < 1 or not 0 <= crf <= 51 or (episodes is not None and episodes < 1):
        raise ValueError("--scale and --min-frames must be >= 1, --episodes >= 1 and --crf in [0, 51]")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a folder")
    if os.path.realpath(out) == os.path.realpath(st.path):
        raise ValueError("OUT must not be the store's own folder")
    out.mkdir(parents=True, exist_ok=True)
    n = st.num_episodes if episodes is None else min(episodes, st.num_episodes)
    done = {"written": 0, "existing": 0, "too_short": 0}
    it = range(n)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="export", unit="episode")
    for i in it:
        target = out / video_name(i)
        if target.exists():
            done["existing"] += 1
            continue
        if st.episode_length(i) < min_frames:
            done["too_short"] += 1
            continue
        frames, _, _ = st.read_episode(i)
        tmp = out / f".{target.name}.{secrets.token_hex(4)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the user's umask applies
        try:
            with os.fdopen(fd, "wb") as f:
                write_mp4(upscale(frames, scale), f, fps=st.fps, crf=crf, lossless=lossless)
            os.replace(tmp, target)
        except BaseException:
            os.unlink(tmp)
            raise
        done["written"] += 1
    h, w = st.resolution
    return {"store": str(st.path), "out": str(out), "episodes": n, **done, "fps": st.fps, "size": [h * scale, w * scale],
            "codec": "libx264rgb crf 0" if lossless else f"libx264 yuv420p crf {crf}"}

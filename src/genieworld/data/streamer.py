"""Push frames one at a time into an :class:`~genieworld.data.store.EpisodeWriter` episode."""

from __future__ import annotations

import numpy as np

from genieworld.data.store import EpisodeWriter

__all__ = ["EpisodeStreamer"]

_BLOCK = 128


class EpisodeStreamer:
    """Feed one frame at a time into an :class:`EpisodeWriter` episode, in blocks."""

    def __init__(self, writer: EpisodeWriter, meta: dict, key: str | None, min_frames: int = 2):
        self.w, self.meta, self.key, self.min_frames = writer, meta, key, min_frames
        self.frames: list[np.ndarray] = []
        self.actions: list[int] = []
        self.length = 0
        self.started = False

    def push(self, frame: np.ndarray, action_before: int | None) -> None:
        """Add a frame; ``action_before`` is the action that produced it (None for the first frame)."""
        if self.length + len(self.frames) > 0:
            self.actions.append(int(action_before))
        self.frames.append(frame)
        if len(self.frames) >= _BLOCK:
            self._flush()

    def _flush(self) -> None:
        if not self.frames:
            return
        if not self.started:
            self.w.begin_episode(self.meta, key=self.key)
            self.started = True
        self.w.append(np.stack(self.frames), np.asarray(self.actions, dtype=np.int64))
        self.length += len(self.frames)
        self.frames, self.actions = [], []

    @property
    def total(self) -> int:
        return self.length + len(self.frames)

    def finish(self, **extra_meta) -> int:
        """End the episode (dropped if shorter than ``min_frames``); returns its length (0 if dropped)."""
        n = self.total
        if n < self.min_frames:
            if self.started:
                self.w.abort_episode()
            return 0
        self._flush()
        self.w.end_episode(extra_meta)
        return n

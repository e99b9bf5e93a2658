"""Play sessions: one generated world per browser tab, bounded in number, memory and input.

A :class:`Session` owns one ``World`` (``genie.world(prompt, seed)``), the frames
generated since the last reset (the recording offered for download, at most
``max_frames``, oldest dropped first) and a small queue of pending commands.

Pending-action queue (the "key queue")
--------------------------------------
Keys can arrive faster than the model generates frames.  Each session keeps at
most ``max_pending`` (default 4) actions waiting.  When an action arrives and the
queue is full, it *replaces the newest pending action* (the last intent wins, the
older ones keep their order) and the session's ``dropped`` counter goes up; so the
delay between a key press and its frame is bounded by ``max_pending + 1`` frame
times, however fast keys arrive.  A reset clears every pending action (and any
earlier pending reset) and is never dropped.

Thread-safety: the bookkeeping here (queue, recording, timestamps) is only touched
from the server's event loop; :attr:`Session.lock` (a ``threading.Lock``) guards the
world itself, whose ``step``/``reset`` run in the server's thread pool.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

__all__ = ["Session", "SessionManager", "TooManySessions", "TokenBucket", "PendingQueue"]


class TooManySessions(RuntimeError):
    """Every session slot is held by a connected, recently active player."""


class TokenBucket:
    """Classic token bucket: ``rate`` tokens per second, at most ``burst`` stored."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic):
        if rate <= 0 or burst < 1:
            raise ValueError("need rate > 0 and burst >= 1")
        self.rate, self.burst, self.clock = float(rate), float(burst), clock
        self.tokens = float(burst)
        self.t = clock()

    def take(self, n: float = 1.0) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
        self.t = now
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False


@dataclass
class Command:
    kind: str                      # "action" | "reset"
    action: int = 0
    msg_id: Any = None             # the client's "id", echoed in the frame reply
    received: float = 0.0          # time.monotonic() when the message arrived
    prompt: np.ndarray | None = None
    prompt_id: str | None = None
    seed: int | None = None


class PendingQueue:
    """Bounded FIFO of pending commands with the replace-newest policy (module docstring)."""

    def __init__(self, max_actions: int):
        if max_actions < 1:
            raise ValueError("max_actions must be >= 1")
        self.max_actions = int(max_actions)
        self._items: deque[Command] = deque()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def num_actions(self) -> int:
        return sum(1 for c in self._items if c.kind == "action")

    def push_action(self, cmd: Command) -> bool:
        """Queue an action; returns False when it replaced the newest pending action."""
        if self.num_actions >= self.max_actions:
            for i in range(len(self._items) - 1, -1, -1):
                if self._items[i].kind == "action":
                    self._items[i] = cmd
                    break
            self.dropped += 1
            return False
        self._items.append(cmd)
        return True

    def push_reset(self, cmd: Command) -> int:
        """Clear everything pending and queue a reset; returns how many commands were discarded."""
        n = len(self._items)
        self._items.clear()
        self._items.append(cmd)
        return n

    def pop(self) -> Command | None:
        return self._items.popleft() if self._items else None

    def clear(self) -> None:
        self._items.clear()


@dataclass
class Session:
    id: str
    world: Any
    prompt: np.ndarray
    prompt_id: str
    seed: int
    max_frames: int
    max_pending: int
    last_active: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)
    attached: Any = None           # the connection currently playing this session, if any
    steps: int = 0                 # frames generated since the last reset
    closed: bool = False
    played: Any = None             # gravity's state since the last reset (genieworld.controls.Played)

    def __post_init__(self):
        self.queue = PendingQueue(self.max_pending)
        self.frames: deque[np.ndarray] = deque([self.prompt], maxlen=self.max_frames)

    def touch(self) -> None:
        self.last_active = time.monotonic()

    def record(self, frame: np.ndarray) -> None:
        self.frames.append(frame)
        self.steps += 1

    def restart_recording(self, prompt: np.ndarray, prompt_id: str, seed: int) -> None:
        self.prompt, self.prompt_id, self.seed = prompt, prompt_id, seed
        self.frames.clear()
        self.frames.append(prompt)
        self.steps = 0
        self.played = None

    @property
    def last_frame(self) -> np.ndarray:
        return self.frames[-1]


class SessionManager:
    """At most ``max_sessions`` sessions; idle ones are evicted after ``idle_timeout`` seconds.

    A new session first evicts idle sessions, then the least recently active
    *detached* one (its tab is gone); when every slot is held by a connected, active
    player it raises :class:`TooManySessions`.  Slots are reserved synchronously
    (:meth:`reserve`) before the slow world construction, so a burst of
    connections can never overshoot the limit.
    """

    def __init__(self, max_sessions: int = 8, idle_timeout: float = 300.0,
                 on_evict: Callable[[Session, str], None] | None = None):
        if max_sessions < 1:
            raise ValueError("max_sessions must be >= 1")
        self.max_sessions = int(max_sessions)
        self.idle_timeout = float(idle_timeout)
        self.on_evict = on_evict
        self._sessions: "OrderedDict[str, Session]" = OrderedDict()
        self._reserved = 0

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, sid: str) -> bool:
        return sid in self._sessions

    def get(self, sid: str | None) -> Session | None:
        if not isinstance(sid, str):
            return None
        return self._sessions.get(sid)

    def new_id(self) -> str:
        while True:
            sid = secrets.token_urlsafe(12)
            if sid not in self._sessions:
                return sid

    def evict(self, sid: str, reason: str) -> Session | None:
        s = self._sessions.pop(sid, None)
        if s is not None:
            s.closed = True
            s.queue.clear()
            if self.on_evict is not None:
                self.on_evict(s, reason)
        return s

    def evict_idle(self, now: float | None = None) -> list[str]:
        now = time.monotonic() if now is None else now
        idle = [sid for sid, s in self._sessions.items() if now - s.last_active > self.idle_timeout]
        for sid in idle:
            self.evict(sid, "idle_timeout")
        return idle

    def reserve(self) -> None:
        """Claim a slot for a session about to be built (see :meth:`add`/:meth:`release`)."""
        self.evict_idle()
        while len(self._sessions) + self._reserved >= self.max_sessions:
            detached = [s for s in self._sessions.values() if s.attached is None]
            if not detached:
                raise TooManySessions(f"all {self.max_sessions} sessions are in use; try again later")
            oldest = min(detached, key=lambda s: s.last_active)
            self.evict(oldest.id, "capacity")
        self._reserved += 1

    def release(self) -> None:
        self._reserved = max(0, self._reserved - 1)

    def add(self, session: Session) -> None:
        """Store a session built after :meth:`reserve` (consumes the reservation)."""
        self.release()
        self._sessions[session.id] = session

    def close_all(self, reason: str = "shutdown") -> None:
        for sid in list(self._sessions):
            self.evict(sid, reason)

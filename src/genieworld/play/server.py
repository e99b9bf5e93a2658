"""The play server: FastAPI app, WebSocket protocol, uploads, prompts and recordings.

``create_app(genie, ...)`` builds the app; ``genie play MODEL`` serves it with uvicorn
(see :mod:`genieworld.commands.play`).  Everything a browser sends is validated
here -- this is the place to read to see what happens with malformed input.

HTTP
----
``GET /``                               the play page (``static/index.html``)
``GET /api/info``                       model facts, action names, default keys, limits
``GET /api/prompts``                    prompt frames offered, the default first: the model's own
                                        (``MODEL/prompts/NAME.png`` -> id ``NAME``), ``data-K``
                                        (``--data``), ``grey``, then uploads
``GET /api/prompts/{id}.png``           a prompt frame as PNG (thumbnails); ids are looked up in the
                                        table above, never joined to a path
``POST /api/upload``                    body = the image file itself (``fetch(url, {body: file})``,
                                        ``curl --data-binary @shot.png``); any format Pillow reads
                                        among PNG/JPEG/GIF/BMP/WebP/TIFF/PPM; returns ``{"prompt": id}``
``GET /api/sessions/{sid}/recording.mp4|.gif?scale=4``   the frames since the last reset
``GET /healthz``

WebSocket ``/ws?session=SID&prompt=ID&seed=N`` (all optional)
-------------------------------------------------------------
Client -> server: JSON text messages of at most ``max_message_bytes`` (4 KiB):

* ``{"type": "action", "action": 3}`` (or the action's name, ``"action": "LEFT"``)
* ``{"type": "reset", "prompt": "data-2", "seed": 7}`` (both optional: same prompt / seed)
* ``{"type": "ping"}``

Any message may carry ``"id"`` (an int or a string of <= 64 chars); it is echoed in
the reply.  Server -> client:

* ``{"type": "hello", "session": ..., "action_names": [...], "keymap": {...}, ...}`` once;
* per frame, a text message ``{"type": "frame", "index": n, "action": a, "pressed": p, "id": ...,
  "gen_ms": ..., "latency_ms": ..., "pending": ..., "dropped": ...}`` immediately
  followed by one *binary* message: the frame as a PNG file (same size as the
  model's frames; the page scales it up with ``image-rendering: pixelated``).
  ``index`` counts frames since the last reset (0 = the prompt frame); ``action`` is the latent
  action played and ``pressed`` the one asked for: they differ where gravity
  (:mod:`genieworld.controls`, ``hello``'s ``"gravity": true``) turned a press into a fall (after a
  jump, or while the player comes down);
* ``{"type": "error", "code": ..., "message": ..., "id": ...}`` for anything rejected:
  ``bad_json``, ``bad_message``, ``unknown_type``, ``bad_action``, ``bad_prompt``,
  ``bad_seed``, ``too_large``, ``binary_not_supported``, ``rate_limited``,
  ``generation_failed``; and before the server closes the socket:
  ``too_many_sessions`` (close code 1013), ``idle_timeout`` / ``replaced`` /
  ``shutdown`` (1001).  A rejected message changes nothing else.

Limits (``PlayConfig``): sessions (8; idle ones evicted after 300 s, detached ones
first when a new player needs a slot), pending actions per session (4, newest
replaced when full -- :mod:`genieworld.play.sessions`), message size (4 KiB checked
here; uvicorn closes the socket with 1009 above 64 KiB), message rate (token
bucket: 50/s, bursts of 100; one ``rate_limited`` reply per second at most), upload
size (8 MiB, checked before and while reading), image size (25 megapixels, checked
from the header before decoding), uploads kept (32, least recent dropped), frames
kept per session for recordings (1000, oldest dropped), concurrent uploads /
recording encodes (2 each), time to send a request's headers (10 s, then 408) and
connections per client address (32, then 429; :mod:`genieworld.play.limits`).
Generation, image decoding and video encoding run in a thread pool, never on the
event loop; each session's world is guarded by its own lock.  Host and Origin
headers are checked (DNS rebinding / cross-site WebSocket use): with a loopback bind only ``127.0.0.1``, ``localhost`` and
``::1`` are accepted as Host, and a WebSocket's Origin, when sent, must name the
same host and port as its Host header.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import math
import secrets
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from fastapi import FastAPI, HTTPException, Request, WebSocket
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image, UnidentifiedImageError

from genieworld.actions import default_key_map, load_action_names, load_gravity, load_jump_action
from genieworld.controls import Played, view_dy
from genieworld.play.sessions import Command, Session, SessionManager, TokenBucket, TooManySessions

log = logging.getLogger("genieworld.play")

__all__ = ["PlayConfig", "create_app", "serve", "bind_socket", "resolve_bind", "url_for", "encode_png",
           "encode_recording", "decode_upload", "LOOPBACK_HOSTS", "UploadError"]

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
UPLOAD_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF", "PPM")
GREY = 128


@dataclass
class PlayConfig:
    max_sessions: int = 8
    idle_timeout: float = 300.0
    max_pending: int = 4
    max_message_bytes: int = 4096
    ws_max_size: int = 64 * 1024
    rate: float = 50.0
    burst: float = 100.0
    max_upload_bytes: int = 8 << 20
    max_upload_pixels: int = 25_000_000
    max_uploads: int = 32
    max_recorded_frames: int = 1000
    max_prompts: int = 24
    workers: int = 2
    max_parallel_encodes: int = 2
    max_parallel_uploads: int = 2
    recording_fps: float = 10.0
    recording_scale: int = 4
    allowed_hosts: tuple[str, ...] | None = None  # None: any Host header (the CLI sets loopback names)
    # slow clients (genieworld.play.limits): seconds to deliver a request's headers, connections per address
    header_timeout: float = 10.0
    max_connections_per_client: int = 32
    # a pressed key plays a fall where the recordings show one (genieworld.controls; needs the model's
    # actions.json to hold sequence_counts and a Fall latent, otherwise keys always play as pressed)
    gravity: bool = True

    def public(self) -> dict:
        keep = ("max_sessions", "idle_timeout", "max_pending", "max_message_bytes", "rate", "burst",
                "max_upload_bytes", "max_upload_pixels", "max_recorded_frames")
        d = asdict(self)
        return {k: d[k] for k in keep}


class UploadError(ValueError):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Prompt:
    id: str
    label: str
    kind: str            # "model" | "data" | "grey" | "upload"
    frame: np.ndarray    # uint8 (H, W, 3) at the model's resolution

    def describe(self) -> dict:
        return {"id": self.id, "label": self.label, "kind": self.kind, "thumbnail": f"/api/prompts/{self.id}.png"}


# ------------------------------------------------------------------------------------------------
# pure helpers (thread pool)


def encode_png(frame: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8), "RGB").save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def encode_recording(frames: list[np.ndarray], fmt: str, fps: float = 10.0, scale: int = 4) -> bytes:
    """Encode frames (uint8 HxWx3) as ``mp4`` (H.264, PyAV) or ``gif`` (Pillow), upscaled ``scale`` x (nearest)."""
    from genieworld.media import upscale, write_gif, write_mp4

    if not frames:
        raise ValueError("no frames")
    if fmt not in ("gif", "mp4"):
        raise ValueError(f"unknown format {fmt!r}")
    video = upscale(np.stack([np.asarray(f, dtype=np.uint8) for f in frames]), scale)
    buf = io.BytesIO()
    if fmt == "gif":
        write_gif(video, buf, fps, min_frame_ms=20)
    else:
        write_mp4(video, buf, fps, crf=16, preset="veryfast", max_rate_denominator=1001)
    return buf.getvalue()


def decode_upload(data: bytes, size: int, max_pixels: int) -> tuple[np.ndarray, dict]:
    """Decode an uploaded image safely and resize it like ingestion.

    Only Pillow's image decoders in :data:`UPLOAD_FORMATS` are tried; the pixel count
    is read from the header and checked *before* any pixel is decoded, and the image
    is decoded once, by the decoder that read that header.
    """
    from genieworld.data.video import prepare_pil

    if not data:
        raise UploadError(400, "empty upload")
    try:
        with Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS) as im:
            w, h = im.size
            fmt = im.format
            if w < 1 or h < 1:
                raise UploadError(415, "empty image")
            if w * h > max_pixels:
                raise UploadError(413, f"image is {w}x{h} = {w * h} pixels; the limit is {max_pixels}")
            im.load()
            frame = prepare_pil(im, size)
    except UploadError:
        raise
    except Image.DecompressionBombError:
        raise UploadError(413, f"image has more pixels than the limit ({max_pixels})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, MemoryError) as e:
        raise UploadError(415, f"not a supported image ({type(e).__name__}); send PNG, JPEG, GIF, BMP, WebP "
                               f"or TIFF") from None
    return frame, {"width": w, "height": h, "format": fmt}


HISTORY_KEEP = 256  # frames of history a session's World keeps (World(max_history=...)); bounds memory


def _step_world(session: Session, action: int, gravity=None) -> tuple[np.ndarray, bytes, float, int]:
    """One step of the session's world for the pressed ``action``; returns the frame, its PNG, the time
    it took and the latent action played (``gravity.choose`` may turn the press into a fall)."""
    with session.lock:
        if gravity is not None and session.played is None:
            session.played = Played(gravity)
        played = action if gravity is None else session.played.press(action)
        prev = session.last_frame
        t0 = time.perf_counter()
        frame = session.world.step(played)
        ms = (time.perf_counter() - t0) * 1000
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise RuntimeError(f"world.step returned {frame.dtype} {frame.shape}, expected uint8 (H, W, 3)")
        if gravity is not None and prev.shape == frame.shape:
            session.played.seen(view_dy(prev, frame))
    return frame, encode_png(frame), ms, played


def _new_world(genie, session: Session | None, prompt: np.ndarray, seed: int):
    # max_history bounds the frames/tokens/actions a World keeps (~16 KB per step at 64x64
    # otherwise: ~0.6 GB for an hour of play at 10 fps); generation itself needs only the context.
    world = genie.world(prompt, seed=seed, max_history=HISTORY_KEEP, **genie.play_overrides())
    if session is not None:
        with session.lock:
            session.world = world
    return world


def _load_data_prompts(data_dir, size: int, limit: int) -> list[Prompt]:
    from genieworld.data.store import EpisodeStore
    from genieworld.data.video import prepare_frame

    store = EpisodeStore(data_dir)
    n = store.num_episodes
    if n == 0 or limit <= 0:
        return []
    picks = sorted({int(round(i)) for i in np.linspace(0, n - 1, num=min(limit, n))})
    out = []
    for k, ep in enumerate(picks):
        frame = store.read_frames(ep, 0, 1)[0]
        if frame.shape[:2] != (size, size):
            frame = prepare_frame(frame, size)
        meta = store.episode_meta(ep)
        label = f"episode {ep}"
        for key in ("level", "seed", "episode"):
            if key in meta and key != "episode":
                label += f" ({key} {meta[key]})"
                break
        out.append(Prompt(f"data-{k}", label, "data", np.ascontiguousarray(frame, dtype=np.uint8)))
    return out


MAX_PROMPT_FILE_BYTES = 1 << 20  # a 64x64 PNG is a few KB


def _load_model_prompts(model_dir, size: int, limit: int) -> list[Prompt]:
    """The frames in ``MODEL/prompts/*.png`` (:mod:`genieworld.prompts`), read once at start-up.

    Only plain files (no symlinks) whose names match :data:`genieworld.prompts.PROMPT_FILE_RE`
    are read, each at most 1 MiB, decoded like an upload; a prompt's id is its file name
    without ``.png``.  Unreadable files are skipped with a warning.
    """
    import stat

    from genieworld.prompts import PROMPT_FILE_RE, PROMPTS_DIR, read_prompt_labels

    if model_dir is None or limit <= 0:
        return []
    folder = Path(model_dir) / PROMPTS_DIR
    try:
        names = sorted(name for name in (e.name for e in folder.iterdir()) if PROMPT_FILE_RE.match(name))
    except OSError:  # no prompts/ folder: nothing to offer
        return []
    labels = read_prompt_labels(folder)
    out = []
    for name in names:
        pid = name[:-4]
        if pid == "grey" or pid.startswith(("data-", "upload-")):
            log.warning("ignoring prompt %s: the name is reserved", name)
            continue
        path = folder / name
        try:
            st = path.lstat()
            if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_PROMPT_FILE_BYTES:
                raise UploadError(415, "not a plain file of at most 1 MiB")
            frame, _ = decode_upload(path.read_bytes(), size, max_pixels=4_000_000)
        except (OSError, UploadError) as e:
            log.warning("ignoring prompt %s: %s", path, e)
            continue
        out.append(Prompt(pid, labels.get(name, pid), "model", frame))
        if len(out) >= limit:
            break
    return out


# ------------------------------------------------------------------------------------------------
# host / origin guard


def _split_host(value: str | None) -> tuple[str, str] | None:
    """``"127.0.0.1:8000"`` -> ``("127.0.0.1", "8000")``; ``"[::1]:80"`` -> ``("::1", "80")``."""
    if not value or len(value) > 300:
        return None
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[1:end], value[end + 1:]
        port = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        host, port = value.split(":")
    else:
        host, port = value, ""
    return host, port


class HostOriginGuard:
    """ASGI middleware: reject unexpected Host headers and cross-origin WebSockets."""

    def __init__(self, app, allowed_hosts: tuple[str, ...] | None):
        self.app = app
        self.allowed = None if allowed_hosts is None else {h.lower().strip("[]") for h in allowed_hosts}

    async def _reject(self, scope, receive, send, why: str):
        log.warning("rejected %s request: %s", scope["type"], why)
        if scope["type"] == "websocket":
            msg = await receive()
            if msg.get("type") == "websocket.connect":
                await send({"type": "websocket.close", "code": 1008, "reason": why[:100]})
            return
        body = json.dumps({"detail": why}).encode()
        await send({"type": "http.response.start", "status": 403 if "origin" in why else 400,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        raw = scope.get("headers", [])
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw}
        if sum(1 for k, _ in raw if k.lower() == b"host") > 1:  # which one would a proxy have checked?
            return await self._reject(scope, receive, send, "more than one Host header")
        host_hdr = headers.get("host")
        if self.allowed is not None:
            parsed = _split_host(host_hdr)
            if parsed is None or parsed[0] not in self.allowed:
                return await self._reject(scope, receive, send, f"host {host_hdr!r} not allowed")
        if scope["type"] == "websocket" and "origin" in headers:
            origin = headers["origin"]
            try:
                o = urlsplit(origin)
                o_host = (o.hostname or "", str(o.port or {"http": 80, "https": 443}.get(o.scheme, "")))
            except ValueError:
                o_host = None
            h = _split_host(host_hdr)
            h_host = None if h is None else (h[0], h[1] or "80")
            if o_host is None or h_host is None or o_host != h_host:
                return await self._reject(scope, receive, send, f"cross-origin websocket from {origin!r} refused")
        return await self.app(scope, receive, send)


# ------------------------------------------------------------------------------------------------
# state


class PlayState:
    def __init__(self, genie, config: PlayConfig, model_dir=None, data_dir=None, model_name: str | None = None):
        self.genie = genie
        self.config = config
        self.num_actions = int(genie.num_actions)
        self.image_size = int(genie.image_size)
        names = getattr(genie, "action_names", None)
        if not names or len(names) != self.num_actions:
            names = load_action_names(model_dir, self.num_actions)
        self.action_names = [str(n) for n in names]
        self.name_to_action = {n: i for i, n in enumerate(self.action_names)}
        # the up arrow and space play the most jump-like action when none is named Jump
        self.keymap = default_key_map(self.action_names, jump=load_jump_action(model_dir, self.num_actions))
        self.gravity = load_gravity(model_dir, self.num_actions) if config.gravity else None
        self.model_name = model_name or (Path(model_dir).name if model_dir else "model")
        self.pool: ThreadPoolExecutor | None = None  # made by start(), on the first request at the latest
        self.sessions = SessionManager(config.max_sessions, config.idle_timeout, on_evict=self._on_evict)
        grey = np.full((self.image_size, self.image_size, 3), GREY, dtype=np.uint8)
        # offered in this order: the model's own prompt frames (MODEL/prompts/*.png), --data frames,
        # the neutral grey frame; the first is the default
        self.prompts: "OrderedDict[str, Prompt]" = OrderedDict()
        self.model_prompts = _load_model_prompts(model_dir, self.image_size, config.max_prompts)
        self.data_prompts: list[Prompt] = []
        if data_dir is not None:
            self.data_prompts = _load_data_prompts(data_dir, self.image_size, config.max_prompts)
        for p in self.model_prompts + self.data_prompts:
            self.prompts[p.id] = p
        self.prompts["grey"] = Prompt("grey", "grey", "grey", grey)
        self.default_prompt = next(iter(self.prompts))
        self.uploads: "OrderedDict[str, Prompt]" = OrderedDict()
        self.encode_sem = self.upload_sem = None
        self.stats = {"frames": 0, "errors": 0, "connections": 0, "rejected_sessions": 0}

    # prompts
    def get_prompt(self, pid: Any) -> Prompt | None:
        if not isinstance(pid, str) or len(pid) > 64:
            return None
        p = self.prompts.get(pid)
        if p is None:
            p = self.uploads.get(pid)
            if p is not None:
                self.uploads.move_to_end(pid)
        return p

    def add_upload(self, frame: np.ndarray, label: str) -> Prompt:
        pid = "upload-" + secrets.token_hex(8)
        p = Prompt(pid, label, "upload", frame)
        self.uploads[pid] = p
        while len(self.uploads) > self.config.max_uploads:
            self.uploads.popitem(last=False)
        return p

    def _on_evict(self, session: Session, reason: str) -> None:
        conn = session.attached
        if conn is not None:
            conn.kick(reason)

    def start(self) -> None:
        """Per serving loop: the thread pool and the loop-bound semaphores (idempotent)."""
        if self.pool is None:
            self.pool = ThreadPoolExecutor(max_workers=max(1, int(self.config.workers)), thread_name_prefix="genie-play")
            self.encode_sem = asyncio.Semaphore(self.config.max_parallel_encodes)
            self.upload_sem = asyncio.Semaphore(self.config.max_parallel_uploads)

    def stop(self) -> None:
        self.sessions.close_all("shutdown")
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None

    async def run_in_pool(self, fn, *args):
        self.start()
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    def info(self) -> dict:
        return {"model": self.model_name, "num_actions": self.num_actions, "action_names": self.action_names,
                "keymap": self.keymap, "image_size": self.image_size, "default_prompt": self.default_prompt,
                "frame_format": "png", "limits": self.config.public(),
                "precision": getattr(self.genie, "play_precision", "fp32"),
                "compiled": bool(getattr(self.genie, "play_compiled", False)),
                "sessions": len(self.sessions)}


# ------------------------------------------------------------------------------------------------
# one WebSocket connection


class BadMessage(ValueError):
    def __init__(self, code: str, message: str, msg_id=None):
        super().__init__(message)
        self.code, self.msg_id = code, msg_id


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


class Connection:
    CLOSE_CODES = {"too_many_sessions": 1013, "idle_timeout": 1001, "replaced": 1001, "shutdown": 1001,
                   "capacity": 1001}

    def __init__(self, ws, state: PlayState):
        self.ws = ws
        self.state = state
        cfg = state.config
        self.bucket = TokenBucket(cfg.rate, cfg.burst)
        self.send_lock = asyncio.Lock()
        self.wake = asyncio.Event()
        self.kicked = asyncio.Event()
        self.kick_reason = ""
        self.session: Session | None = None
        self.last_rate_error = -math.inf
        self.open = True

    def kick(self, reason: str) -> None:
        self.kick_reason = reason
        self.kicked.set()

    # sending
    async def send_json(self, obj: dict) -> bool:
        return await self._send(text=json.dumps(obj))

    async def _send(self, text: str | None = None, data: bytes | None = None) -> bool:
        if not self.open:
            return False
        try:
            async with self.send_lock:
                if text is not None:
                    await self.ws.send_text(text)
                if data is not None:
                    await self.ws.send_bytes(data)
            return True
        except Exception:  # the peer went away mid-send
            self.open = False
            return False

    async def send_frame(self, meta: dict, png: bytes) -> bool:
        ok = await self._send(json.dumps(meta), png)
        if ok:
            self.state.stats["frames"] += 1
        return ok

    async def send_error(self, code: str, message: str, msg_id=None) -> None:
        self.state.stats["errors"] += 1
        obj = {"type": "error", "code": code, "message": message}
        if msg_id is not None:
            obj["id"] = msg_id
        await self.send_json(obj)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if not self.open:
            return
        self.open = False
        try:
            await self.ws.close(code=code, reason=reason[:100])
        except Exception:
            pass

    # session set-up
    def _query(self) -> tuple[str | None, Prompt, int]:
        q = self.ws.query_params
        sid = q.get("session") or None
        pid = q.get("prompt") or self.state.default_prompt
        prompt = self.state.get_prompt(pid)
        if prompt is None:
            raise BadMessage("bad_prompt", f"unknown prompt {pid[:64]!r}")
        seed_s = q.get("seed")
        if seed_s in (None, ""):
            seed = secrets.randbelow(2**31)
        else:
            try:
                seed = int(seed_s)
            except ValueError:
                raise BadMessage("bad_seed", "seed must be an integer") from None
            if not 0 <= seed < 2**63:
                raise BadMessage("bad_seed", "seed must be in [0, 2**63)")
        return sid, prompt, seed

    async def _open_session(self) -> tuple[Session, bool]:
        st = self.state
        sid, prompt, seed = self._query()
        existing = st.sessions.get(sid)
        if existing is not None and not existing.closed:
            if existing.attached is not None and existing.attached is not self:
                existing.attached.kick("replaced")
            existing.attached = self
            existing.touch()
            return existing, True
        st.sessions.reserve()  # raises TooManySessions
        try:
            world = await st.run_in_pool(_new_world, st.genie, None, prompt.frame, seed)
        except BaseException:
            st.sessions.release()
            raise
        s = Session(id=st.sessions.new_id(), world=world, prompt=prompt.frame, prompt_id=prompt.id, seed=seed,
                    max_frames=st.config.max_recorded_frames, max_pending=st.config.max_pending)
        s.attached = self
        st.sessions.add(s)
        return s, False

    def _frame_meta(self, s: Session, action=None, cmd: Command | None = None, gen_ms=None, reset=False) -> dict:
        meta = {"type": "frame", "index": s.steps, "action": action,
                "name": None if action is None else self.state.action_names[action],
                "pending": len(s.queue), "dropped": s.queue.dropped, "reset": reset}
        if cmd is not None:
            if cmd.msg_id is not None:
                meta["id"] = cmd.msg_id
            meta["latency_ms"] = round((time.monotonic() - cmd.received) * 1000, 2)
        if gen_ms is not None:
            meta["gen_ms"] = round(gen_ms, 2)
        return meta

    async def run(self) -> None:
        st = self.state
        st.stats["connections"] += 1
        try:
            try:
                s, resumed = await self._open_session()
            except TooManySessions as e:
                st.stats["rejected_sessions"] += 1
                await self.send_error("too_many_sessions", str(e))
                await self.close(self.CLOSE_CODES["too_many_sessions"], "too many sessions")
                return
            except BadMessage as e:
                await self.send_error(e.code, str(e))
                await self.close(1008, e.code)
                return
            except Exception as e:  # the model could not start a world
                log.exception("could not start a session")
                await self.send_error("generation_failed", f"could not start a world: {type(e).__name__}: {e}")
                await self.close(1011, "generation failed")
                return
            self.session = s
            hello = {"type": "hello", "session": s.id, "resumed": resumed, "model": st.model_name,
                     "num_actions": st.num_actions, "action_names": st.action_names, "keymap": st.keymap,
                     "image_size": st.image_size, "seed": s.seed, "prompt": s.prompt_id,
                     "max_pending": st.config.max_pending, "frame_format": "png", "limits": st.config.public(),
                     "gravity": st.gravity is not None,
                     "precision": getattr(st.genie, "play_precision", "fp32"),
                     "compiled": bool(getattr(st.genie, "play_compiled", False))}
            await self.send_json(hello)
            png = await st.run_in_pool(encode_png, s.last_frame)
            await self.send_frame(self._frame_meta(s, reset=not resumed), png)
            tasks = {asyncio.create_task(self._receive_loop(), name="recv"),
                     asyncio.create_task(self._worker(), name="work"),
                     asyncio.create_task(self.kicked.wait(), name="kick")}
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:  # also when this handler itself is cancelled (server shutdown)
                for t in tasks:
                    t.cancel()
                # asyncio.wait, not gather: a cancellation of this task keeps its own message
                # (anyio/uvicorn tell their cancellations apart by it)
                await asyncio.wait(tasks)
            for t in done:
                if not t.cancelled() and t.exception() is not None:
                    log.error("connection task failed", exc_info=t.exception())
            if self.kicked.is_set() and self.open:
                msgs = {"idle_timeout": f"closed after {st.config.idle_timeout:g} s without input",
                        "replaced": "this session was opened in another tab",
                        "capacity": "session closed to make room for another player",
                        "shutdown": "the server is shutting down"}
                await self.send_error(self.kick_reason, msgs.get(self.kick_reason, self.kick_reason))
                await self.close(self.CLOSE_CODES.get(self.kick_reason, 1001), self.kick_reason)
            else:
                await self.close(1000)
        finally:
            self.open = False
            s = self.session
            if s is not None and s.attached is self:
                s.attached = None
                s.touch()  # a detached session lives idle_timeout more seconds (for downloads / resume)

    # receiving
    async def _receive_loop(self) -> None:
        cfg = self.state.config
        while True:
            msg = await self.ws.receive()
            if msg["type"] == "websocket.disconnect":
                return
            now = time.monotonic()
            if not self.bucket.take():
                if now - self.last_rate_error >= 1.0:
                    self.last_rate_error = now
                    await self.send_error("rate_limited", f"more than {cfg.rate:g} messages per second; "
                                                          f"message dropped")
                continue
            text = msg.get("text")
            if text is None:
                await self.send_error("binary_not_supported", "send JSON text messages")
                continue
            if len(text) > cfg.max_message_bytes or len(text.encode("utf-8", "replace")) > cfg.max_message_bytes:
                await self.send_error("too_large", f"message larger than {cfg.max_message_bytes} bytes")
                continue
            try:
                await self._handle(text, now)
            except BadMessage as e:
                await self.send_error(e.code, str(e), e.msg_id)

    async def _handle(self, text: str, now: float) -> None:
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):
            raise BadMessage("bad_json", "message is not valid JSON") from None
        if not isinstance(obj, dict):
            raise BadMessage("bad_message", "message must be a JSON object")
        msg_id = obj.get("id")
        if msg_id is not None and not ((_is_int(msg_id) and abs(msg_id) < 2**53)
                                       or (isinstance(msg_id, str) and len(msg_id) <= 64)):
            raise BadMessage("bad_message", "id must be an integer or a string of at most 64 characters")
        kind = obj.get("type")
        s = self.session
        if not isinstance(kind, str):
            raise BadMessage("bad_message", "missing \"type\" (action, reset or ping)", msg_id)
        if kind == "action":
            action = self._parse_action(obj.get("action"), msg_id)
            s.touch()
            s.queue.push_action(Command("action", action=action, msg_id=msg_id, received=now))
            self.wake.set()
        elif kind == "reset":
            pid = obj.get("prompt")
            if pid is None:
                pid = s.prompt_id
            prompt = self.state.get_prompt(pid)
            if prompt is None:
                shown = pid[:64] if isinstance(pid, str) else type(pid).__name__
                raise BadMessage("bad_prompt", f"unknown prompt {shown!r}", msg_id)
            seed = obj.get("seed")
            if seed is None:
                seed = s.seed
            elif not _is_int(seed) or not 0 <= seed < 2**63:
                raise BadMessage("bad_seed", "seed must be an integer in [0, 2**63)", msg_id)
            s.touch()
            s.queue.push_reset(Command("reset", msg_id=msg_id, received=now, prompt=prompt.frame,
                                       prompt_id=prompt.id, seed=int(seed)))
            self.wake.set()
        elif kind == "ping":
            s.touch()
            reply = {"type": "pong", "index": s.steps, "pending": len(s.queue), "dropped": s.queue.dropped}
            if msg_id is not None:
                reply["id"] = msg_id
            await self.send_json(reply)
        else:
            raise BadMessage("unknown_type", f"unknown message type {kind[:32]!r} (action, reset or ping)", msg_id)

    def _parse_action(self, a, msg_id) -> int:
        n = self.state.num_actions
        if isinstance(a, str):
            if a in self.state.name_to_action:
                return self.state.name_to_action[a]
            raise BadMessage("bad_action", f"unknown action name {a[:40]!r}", msg_id)
        if not _is_int(a):
            raise BadMessage("bad_action", f"action must be an integer in [0, {n}) or an action name", msg_id)
        if not 0 <= a < n:
            raise BadMessage("bad_action", f"action {a} out of range [0, {n})", msg_id)
        return int(a)

    # generating
    async def _worker(self) -> None:
        st = self.state
        while True:
            s = self.session
            if s.closed:
                await asyncio.Event().wait()  # evicted: wait for the kick to end the connection
            cmd = s.queue.pop()
            if cmd is None:
                self.wake.clear()
                await self.wake.wait()
                continue
            try:
                if cmd.kind == "reset":
                    await st.run_in_pool(_new_world, st.genie, s, cmd.prompt, cmd.seed)
                    s.restart_recording(cmd.prompt, cmd.prompt_id, cmd.seed)
                    png = await st.run_in_pool(encode_png, cmd.prompt)
                    meta = self._frame_meta(s, cmd=cmd, reset=True)
                    meta.update(seed=s.seed, prompt=s.prompt_id)
                    await self.send_frame(meta, png)
                else:
                    frame, png, ms, played = await st.run_in_pool(_step_world, s, cmd.action, st.gravity)
                    s.record(frame)
                    meta = self._frame_meta(s, played, cmd, gen_ms=ms)
                    meta["pressed"] = cmd.action
                    await self.send_frame(meta, png)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.exception("generation failed")
                await self.send_error("generation_failed", f"{type(e).__name__}: {e}", cmd.msg_id)


# ------------------------------------------------------------------------------------------------
# the app


def _static_dir() -> Path:
    return Path(str(resources.files("genieworld.play") / "static"))


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": ("default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
                                "style-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none'"),
}


def create_app(genie, *, model_dir=None, data_dir=None, config: PlayConfig | None = None,
               model_name: str | None = None):
    """The play app for a loaded ``genie`` (see the module docstring for routes and protocol)."""
    config = config or PlayConfig()
    state = PlayState(genie, config, model_dir=model_dir, data_dir=data_dir, model_name=model_name)

    @asynccontextmanager
    async def lifespan(app):
        interval = min(max(config.idle_timeout / 4, 0.05), 5.0)

        async def reaper():
            while True:
                await asyncio.sleep(interval)
                state.sessions.evict_idle()

        state.start()
        task = asyncio.create_task(reaper())
        try:
            yield
        finally:
            task.cancel()
            state.sessions.close_all("shutdown")
            await asyncio.sleep(0.05)  # let kicked connections say goodbye
            state.stop()

    app = FastAPI(title="genieworld play", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.play = state
    static = _static_dir()

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        return response

    @app.get("/")
    async def index():
        return FileResponse(static / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=static), name="static")

    @app.get("/healthz")
    async def healthz():
        return {"ok": True, "sessions": len(state.sessions), **state.stats}

    @app.get("/api/info")
    async def info():
        return state.info()

    @app.get("/api/prompts")
    async def prompts():
        items = [p.describe() for p in state.prompts.values()] + [p.describe() for p in state.uploads.values()]
        return {"default": state.default_prompt, "prompts": items}

    @app.get("/api/prompts/{pid}.png")
    async def prompt_png(pid: str):
        p = state.get_prompt(pid)
        if p is None:
            raise HTTPException(404, "unknown prompt")
        png = await state.run_in_pool(encode_png, p.frame)
        return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    @app.post("/api/upload")
    async def upload(request: Request):
        limit = config.max_upload_bytes
        cl = request.headers.get("content-length")
        if cl is not None:
            try:
                if int(cl) > limit:
                    return JSONResponse({"detail": f"upload larger than {limit} bytes"}, status_code=413)
            except ValueError:
                return JSONResponse({"detail": "bad Content-Length"}, status_code=400)
        state.start()
        if state.upload_sem.locked():
            return JSONResponse({"detail": "too many uploads in progress; retry"}, status_code=429)
        async with state.upload_sem:
            body = bytearray()
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    return JSONResponse({"detail": f"upload larger than {limit} bytes"}, status_code=413)
            try:
                frame, facts = await state.run_in_pool(decode_upload, bytes(body), state.image_size,
                                                       config.max_upload_pixels)
            except UploadError as e:
                return JSONResponse({"detail": str(e)}, status_code=e.status)
            del body
        label = f"upload {facts['format']} {facts['width']}x{facts['height']}"
        p = state.add_upload(frame, label)
        return {"prompt": p.id, **p.describe(), **facts}

    @app.get("/api/sessions/{sid}/recording.{fmt}")
    async def recording(sid: str, fmt: str, scale: int | None = None):
        if fmt not in ("mp4", "gif"):
            raise HTTPException(404, "format must be mp4 or gif")
        s = state.sessions.get(sid)
        if s is None:
            raise HTTPException(404, "unknown or expired session")
        scale = config.recording_scale if scale is None else scale
        if not 1 <= scale <= 8:
            raise HTTPException(422, "scale must be between 1 and 8")
        frames = list(s.frames)  # event-loop thread: the recording only changes here
        state.start()
        async with state.encode_sem:
            data = await state.run_in_pool(encode_recording, frames, fmt, config.recording_fps, scale)
        media = "video/mp4" if fmt == "mp4" else "image/gif"
        name = f"genie-{s.id[:8]}-{len(frames)}f.{fmt}"
        return Response(data, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @app.websocket("/ws")
    async def ws_endpoint(ws: WebSocket):
        await ws.accept()
        await Connection(ws, state).run()

    app.add_middleware(HostOriginGuard, allowed_hosts=config.allowed_hosts)
    return app


# ------------------------------------------------------------------------------------------------
# serving


def resolve_bind(host: str) -> tuple[str, bool]:
    """``host`` as an IP address to bind, and whether it is a loopback address."""
    import ipaddress
    import socket

    try:
        addr = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except socket.gaierror as e:
            raise ValueError(f"cannot resolve host {host!r}: {e}") from None
        addr = ipaddress.ip_address(infos[0][4][0])
    return str(addr), bool(addr.is_loopback)


def url_for(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def bind_socket(host: str, port: int):
    """A listening TCP socket on ``host:port`` (``port=0``: a free port)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock


def uvicorn_config(app, config: PlayConfig, log_level: str = "warning"):
    """The ``uvicorn.Config`` :func:`serve` runs ``app`` with (its HTTP protocol bounds slow clients:
    :mod:`genieworld.play.limits`)."""
    import uvicorn

    from genieworld.play.limits import guarded_http_protocol

    total = max(64, 4 * config.max_sessions + 32)  # our cap evicts idle connections before uvicorn's 503
    return uvicorn.Config(app, log_level=log_level, ws_max_size=config.ws_max_size, ws_per_message_deflate=False,
                          ws_ping_interval=20.0, ws_ping_timeout=20.0,
                          limit_concurrency=total + 16, timeout_graceful_shutdown=3,
                          http=guarded_http_protocol(config.header_timeout, config.max_connections_per_client,
                                                     max_total=total,
                                                     max_request_bytes=config.max_upload_bytes + (1 << 20)),
                          server_header=False, access_log=log_level in ("info", "debug"))


def serve(app, sock, config: PlayConfig, log_level: str = "warning") -> None:
    """Run ``app`` on an already bound socket with uvicorn until Ctrl-C."""
    import uvicorn

    uvicorn.Server(uvicorn_config(app, config, log_level)).run(sockets=[sock])

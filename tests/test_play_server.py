"""The play server: protocol, hostile input, limits, uploads, recordings, the CLI.

Most tests use ``untrained_model_dir`` (real Genie code, random weights: fast, and
every action changes the frame) or a controllable fake for timing-sensitive cases;
one uses the trained ``tiny_model_dir`` with named actions.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import threading
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from fixtures_models import one_torch_thread, synthetic_store_dir, tiny_model_dir, untrained_model_dir  # noqa: F401

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402
from starlette.websockets import WebSocketDisconnect  # noqa: E402

from genieworld.play.server import LOOPBACK_HOSTS, PlayConfig, create_app, decode_upload  # noqa: E402
from genieworld.play.sessions import Command, PendingQueue, TokenBucket  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see fixtures_models.torch_threads


# ------------------------------------------------------------------------------------------------ helpers


class FakeWorld:
    def __init__(self, genie, prompt, seed):
        self.g, self.frame, self.n = genie, np.array(prompt, dtype=np.uint8), 0

    def step(self, action):
        g = self.g
        g.started.set()
        assert g.gate.wait(timeout=30), "test never released the gate"
        if g.fail:
            raise RuntimeError("boom")
        self.n += 1
        f = self.frame.copy()
        f[..., 0] = (int(action) * 50 + self.n) % 256
        return f


class FakeGenie:
    """Contract-compatible stand-in whose steps can be held back (``gate``) or made to fail."""

    num_actions = 4
    image_size = 16
    action_names = ["LEFT", "RIGHT", "UP", "DOWN"]

    def __init__(self):
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()
        self.fail = False

    def world(self, prompt, seed=None, **sampling_overrides):
        return FakeWorld(self, prompt, seed)

    def play_overrides(self):
        return {}


def png_array(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def image_bytes(fmt: str, size=(40, 30), color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, fmt)
    return buf.getvalue()


def recv_frame(ws) -> tuple[dict, np.ndarray]:
    """The next frame (meta, pixels), skipping nothing: fails on any other message."""
    meta = ws.receive_json()
    assert meta["type"] == "frame", meta
    return meta, png_array(ws.receive_bytes())


def recv_error(ws) -> dict:
    msg = ws.receive_json()
    assert msg["type"] == "error", msg
    return msg


def open_ws(client, query: str = ""):
    """Enter a WebSocket session and read its greeting; the caller must ``__exit__`` it.

    (A session never exited keeps the test client's portal alive and hangs the teardown.)
    """
    ws = client.websocket_connect("/ws" + query)
    ws.__enter__()
    try:
        hello = ws.receive_json()
        assert hello["type"] == "hello", hello
        meta, first = recv_frame(ws)
        assert meta["reset"] == (not hello["resumed"]) and (hello["resumed"] or meta["index"] == 0)
    except BaseException:
        ws.__exit__(None, None, None)
        raise
    return ws, hello, first


@pytest.fixture(scope="module")
def genie(untrained_model_dir):
    from genieworld.genie import Genie

    return Genie.from_pretrained(untrained_model_dir)


@pytest.fixture
def make_client(genie, untrained_model_dir, synthetic_store_dir):
    clients = []

    def make(config: PlayConfig | None = None, model=None, data=True, **kw):
        app = create_app(model or genie, model_dir=None if model else untrained_model_dir,
                         data_dir=synthetic_store_dir if data else None, config=config or PlayConfig(), **kw)
        c = TestClient(app)
        c.__enter__()
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.__exit__(None, None, None)


# ------------------------------------------------------------------------------------------------ units


def test_pending_queue_replaces_newest_when_full():
    q = PendingQueue(max_actions=3)
    for i in range(6):
        q.push_action(Command("action", action=i))
    assert [c.action for c in q._items] == [0, 1, 5] and q.dropped == 3
    assert q.push_reset(Command("reset")) == 3 and len(q) == 1
    q.push_action(Command("action", action=7))
    assert [c.kind for c in q._items] == ["reset", "action"]


def test_token_bucket():
    t = [0.0]
    b = TokenBucket(rate=2, burst=3, clock=lambda: t[0])
    assert [b.take() for _ in range(4)] == [True, True, True, False]
    t[0] += 0.5
    assert b.take() and not b.take()
    t[0] += 100
    assert sum(b.take() for _ in range(10)) == 3


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb's header)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def test_decode_upload_formats_and_refusals():
    for fmt in ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF"):
        frame, facts = decode_upload(image_bytes(fmt), 16, 10**6)
        assert frame.shape == (16, 16, 3) and frame.dtype == np.uint8 and facts["format"] in (fmt, "MPO")
    with pytest.raises(ValueError, match="limit"):
        decode_upload(_png_claiming(100_000, 100_000), 16, 25_000_000)  # refused from the header alone
    with pytest.raises(ValueError, match="not a supported image"):
        decode_upload(b"<svg xmlns='http://www.w3.org/2000/svg'/>", 16, 10**6)
    with pytest.raises(ValueError, match="empty"):
        decode_upload(b"", 16, 10**6)
    with pytest.raises(ValueError):
        decode_upload(image_bytes("PNG")[:60], 16, 10**6)  # truncated
    for fmt in ("PCX", "ICO", "TGA"):  # formats Pillow reads that uploads do not accept
        buf = io.BytesIO()
        Image.new("RGB", (16, 16), (9, 99, 199)).save(buf, format=fmt)
        with pytest.raises(ValueError, match="not a supported image"):
            decode_upload(buf.getvalue(), 16, 10**6)


def test_world_history_is_bounded_without_changing_frames(genie, monkeypatch):
    """Long sessions must not grow without bound; the server's bounded World gives the same frames."""
    from genieworld.play import server

    monkeypatch.setattr(server, "HISTORY_KEEP", 4)
    prompt = np.full((genie.image_size, genie.image_size, 3), 90, dtype=np.uint8)
    plain = genie.world(prompt, seed=4)
    bounded = server._new_world(genie, None, prompt, 4)
    for i in range(40):
        a = (i * 7) % genie.num_actions
        assert np.array_equal(plain.step(a), bounded.step(a)), f"step {i}"
    assert len(bounded.frames) <= 4 < len(plain.frames)
    assert len(bounded._tokens) <= max(4, bounded._reach() + 1) + 1


# ------------------------------------------------------------------------------------------------ HTTP


def test_page_info_prompts_and_headers(make_client):
    c = make_client()
    r = c.get("/")
    assert r.status_code == 200 and "<canvas" in r.text
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"
    js = c.get("/static/app.js")
    assert js.status_code == 200 and "WebSocket" in js.text
    css = c.get("/static/style.css")
    assert "pixelated" in css.text
    info = c.get("/api/info").json()
    assert info["num_actions"] == 4 and info["image_size"] == 64 and info["frame_format"] == "png"
    assert sorted(info["keymap"].values()) == [0, 1, 2, 3]
    prompts = c.get("/api/prompts").json()
    ids = [p["id"] for p in prompts["prompts"]]
    assert ids[0] == "data-0" == prompts["default"] and ids[-1] == "grey"  # no MODEL/prompts here
    thumb = c.get("/api/prompts/data-0.png")
    assert thumb.status_code == 200 and png_array(thumb.content).shape == (64, 64, 3)
    assert c.get("/api/prompts/nope.png").status_code == 404
    assert c.get("/static/../server.py").status_code == 404
    assert c.get("/healthz").json()["ok"] is True


def test_model_prompts_are_offered_first_and_safely(genie, untrained_model_dir, synthetic_store_dir, tmp_path):
    """MODEL/prompts/*.png (written by genieworld.prompts.write_prompts) open the page; odd files are ignored."""
    from genieworld.prompts import write_prompts

    model = tmp_path / "model"
    shutil.copytree(untrained_model_dir, model)
    paths = write_prompts(model, synthetic_store_dir, n=6, seed=0)
    folder = model / "prompts"
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (folder / "grey.png").write_bytes(paths[0].read_bytes())          # reserved id
    (folder / "bad name.png").write_bytes(paths[0].read_bytes())      # not a prompt file name
    (folder / "big.png").write_bytes(b"\0" * ((1 << 20) + 1))
    (tmp_path / "outside.png").write_bytes(paths[1].read_bytes())
    os.symlink(tmp_path / "outside.png", folder / "link.png")         # never followed
    with TestClient(create_app(genie, model_dir=model, config=PlayConfig())) as c:
        _check_model_prompts(c, paths)


def _check_model_prompts(c, paths):
    listing = c.get("/api/prompts").json()
    ids = [p["id"] for p in listing["prompts"]]
    assert ids == [f"prompt-{k:02d}" for k in range(6)] + ["grey"] and listing["default"] == "prompt-00"
    first = listing["prompts"][0]
    assert first["kind"] == "model" and first["label"].startswith("episode ")
    want = np.asarray(Image.open(paths[0]))
    assert np.array_equal(png_array(c.get(first["thumbnail"]).content), want)
    for bad in ("link", "broken", "bad%20name", "..%2Fgenie.json", "%2E%2E%2Fprompts%2Fprompt-00", "prompts"):
        assert c.get(f"/api/prompts/{bad}.png").status_code == 404, bad
    assert c.get("/api/info").json()["default_prompt"] == "prompt-00"
    ws, hello, frame = open_ws(c, "?seed=1")
    try:
        assert hello["prompt"] == "prompt-00" and np.array_equal(frame, want)
        ws.send_json({"type": "reset", "prompt": "prompt-03"})
        meta, f3 = recv_frame(ws)
        assert meta["prompt"] == "prompt-03" and np.array_equal(f3, np.asarray(Image.open(paths[3])))
    finally:
        ws.__exit__(None, None, None)


# ------------------------------------------------------------------------------------------------ WebSocket


def test_frames_follow_actions_and_are_deterministic(make_client):
    c = make_client()
    ws, hello, first = open_ws(c, "?seed=11&prompt=data-1")
    try:
        assert hello["seed"] == 11 and hello["prompt"] == "data-1" and first.shape == (64, 64, 3)
        got = {}
        for a in (0, 1, 0):
            ws.send_json({"type": "reset"})
            meta, f0 = recv_frame(ws)
            assert meta["reset"] and meta["index"] == 0 and np.array_equal(f0, first)
            ws.send_json({"type": "action", "action": a, "id": f"k{a}"})
            meta, f = recv_frame(ws)
            assert meta["action"] == a and meta["id"] == f"k{a}" and meta["index"] == 1
            assert meta["gen_ms"] > 0 and meta["latency_ms"] >= meta["gen_ms"] - 1
            if a in got:
                assert np.array_equal(got[a], f), "same prompt, seed and action must give the same frame"
            got[a] = f
        assert not np.array_equal(got[0], got[1]), "different actions gave the same frame"
        ws.send_json({"type": "action", "action": "1"})  # by name
        meta, _ = recv_frame(ws)
        assert meta["action"] == 1 and meta["index"] == 2
    finally:
        ws.__exit__(None, None, None)


BAD_MESSAGES = [
    ("{not json", "bad_json"),
    ("[1, 2]", "bad_message"),
    ("42", "bad_message"),
    ('"action"', "bad_message"),
    ("{}", "bad_message"),
    ('{"type": 5}', "bad_message"),
    ('{"type": "teleport"}', "unknown_type"),
    ('{"type": "action"}', "bad_action"),
    ('{"type": "action", "action": -1}', "bad_action"),
    ('{"type": "action", "action": 4}', "bad_action"),
    ('{"type": "action", "action": 99999999999999999999999}', "bad_action"),
    ('{"type": "action", "action": 1.5}', "bad_action"),
    ('{"type": "action", "action": true}', "bad_action"),
    ('{"type": "action", "action": "JUMP"}', "bad_action"),
    ('{"type": "action", "action": [1]}', "bad_action"),
    ('{"type": "action", "action": 1, "id": {"a": 1}}', "bad_message"),
    ('{"type": "action", "action": 1, "id": "' + "x" * 65 + '"}', "bad_message"),
    ('{"type": "reset", "prompt": "../../etc/passwd"}', "bad_prompt"),
    ('{"type": "reset", "prompt": 3}', "bad_prompt"),
    ('{"type": "reset", "seed": -1}', "bad_seed"),
    ('{"type": "reset", "seed": "7"}', "bad_seed"),
    ("[" * 3000 + "]" * 3000, "too_large"),
    ('{"type": "action", "action": 1, "pad": "' + "x" * 5000 + '"}', "too_large"),
    ("\u00e9" * 2100, "too_large"),  # 2100 chars but 4200 bytes
    ("[" * 2000 + "]" * 2000, "bad_json"),  # nesting deep enough to exhaust the recursion limit
]


def test_malformed_messages_get_errors_and_change_nothing(make_client):
    c = make_client()
    ws, hello, first = open_ws(c, "?seed=3")
    try:
        for text, code in BAD_MESSAGES:
            ws.send_text(text)
            err = recv_error(ws)
            assert err["code"] == code, (text[:60], err)
        ws.send_json({"type": "action", "action": 9, "id": 77})
        assert recv_error(ws)["id"] == 77
        ws.send_bytes(b"\x00\x01binary")
        assert recv_error(ws)["code"] == "binary_not_supported"
        ws.send_json({"type": "ping", "id": 1})
        pong = ws.receive_json()
        assert pong == {"type": "pong", "index": 0, "pending": 0, "dropped": 0, "id": 1}
        ws.send_json({"type": "action", "action": 2})  # still playing
        meta, frame = recv_frame(ws)
        assert meta["index"] == 1 and meta["action"] == 2 and frame.shape == (64, 64, 3)
    finally:
        ws.__exit__(None, None, None)
    assert c.get("/healthz").json()["ok"]


def test_too_many_sessions(make_client):
    c = make_client(PlayConfig(max_sessions=1))
    ws1, hello1, _ = open_ws(c)
    try:
        with c.websocket_connect("/ws") as ws2:
            err = recv_error(ws2)
            assert err["code"] == "too_many_sessions"
            with pytest.raises(WebSocketDisconnect) as exc:
                ws2.receive_json()
            assert exc.value.code == 1013
        ws1.send_json({"type": "action", "action": 1})  # the first player is unaffected
        assert recv_frame(ws1)[0]["index"] == 1
    finally:
        ws1.__exit__(None, None, None)
    # the first tab is gone: its (detached) session gives way to a new player
    ws3, hello3, _ = open_ws(c)
    ws3.__exit__(None, None, None)
    assert hello3["session"] != hello1["session"]
    health = c.get("/healthz").json()
    assert health["sessions"] == 1 and health["rejected_sessions"] == 1


def test_bad_connect_parameters(make_client):
    c = make_client()
    for query, code in (("?prompt=nope", "bad_prompt"), ("?seed=abc", "bad_seed"), ("?seed=-4", "bad_seed")):
        with c.websocket_connect("/ws" + query) as ws:
            assert recv_error(ws)["code"] == code
            with pytest.raises(WebSocketDisconnect) as exc:
                ws.receive_json()
            assert exc.value.code == 1008
    assert c.get("/healthz").json()["sessions"] == 0


def test_resume_and_replace(make_client):
    c = make_client()
    ws1, hello1, _ = open_ws(c, "?seed=5")
    ws1.send_json({"type": "action", "action": 3})
    _, last = recv_frame(ws1)
    ws2, hello2, resumed_frame = open_ws(c, f"?session={hello1['session']}")
    try:
        assert hello2["resumed"] and hello2["session"] == hello1["session"] and hello2["seed"] == 5
        assert np.array_equal(resumed_frame, last)
        err = recv_error(ws1)
        assert err["code"] == "replaced"
        with pytest.raises(WebSocketDisconnect) as exc:
            ws1.receive_json()
        assert exc.value.code == 1001
    finally:
        ws2.__exit__(None, None, None)
        ws1.__exit__(None, None, None)
    ws3, hello3, _ = open_ws(c, "?session=unknown-id")  # unknown ids just start a new session
    ws3.__exit__(None, None, None)
    assert not hello3["resumed"]


def test_key_queue_is_bounded_and_keeps_the_newest():
    g = FakeGenie()
    app = create_app(g, config=PlayConfig(max_pending=4))
    with TestClient(app) as c:
        ws, hello, _ = open_ws(c)
        try:
            assert hello["action_names"] == FakeGenie.action_names and hello["keymap"]["ArrowLeft"] == 0
            g.gate.clear()
            g.started.clear()
            ws.send_json({"type": "action", "action": 0, "id": 0})
            assert g.started.wait(10)  # the worker holds action 0 now
            for i in range(1, 11):
                ws.send_json({"type": "action", "action": i % 4, "id": i})
            ws.send_json({"type": "ping"})
            pong = ws.receive_json()
            assert pong["pending"] == 4 and pong["dropped"] == 6
            g.gate.set()
            ids = [recv_frame(ws)[0]["id"] for _ in range(5)]
            assert ids == [0, 1, 2, 3, 10]  # ids 4..9 were replaced by newer presses
            ws.send_json({"type": "ping"})
            assert ws.receive_json()["pending"] == 0
            # a reset discards what is queued
            g.gate.clear()
            g.started.clear()
            ws.send_json({"type": "action", "action": 1, "id": "a"})
            assert g.started.wait(10)
            ws.send_json({"type": "action", "action": 2, "id": "b"})
            ws.send_json({"type": "reset", "id": "r"})
            g.gate.set()
            assert recv_frame(ws)[0]["id"] == "a"
            meta, _ = recv_frame(ws)
            assert meta["id"] == "r" and meta["reset"]
        finally:
            g.gate.set()
            ws.__exit__(None, None, None)


def test_generation_failure_is_reported_and_survivable():
    g = FakeGenie()
    app = create_app(g)
    with TestClient(app) as c:
        ws, _, _ = open_ws(c)
        try:
            g.fail = True
            ws.send_json({"type": "action", "action": 1, "id": 9})
            err = recv_error(ws)
            assert err["code"] == "generation_failed" and err["id"] == 9 and "boom" in err["message"]
            g.fail = False
            ws.send_json({"type": "action", "action": 1})
            assert recv_frame(ws)[0]["index"] == 1
        finally:
            ws.__exit__(None, None, None)


def test_rate_limit():
    app = create_app(FakeGenie(), config=PlayConfig(rate=0.5, burst=3))
    with TestClient(app) as c:
        ws, _, _ = open_ws(c)
        try:
            for i in range(10):
                ws.send_json({"type": "ping", "id": i})
            replies = [ws.receive_json() for _ in range(4)]
            assert [r["type"] for r in replies].count("pong") == 3
            assert [r.get("code") for r in replies if r["type"] == "error"] == ["rate_limited"]
            ws.send_json({"type": "ping"})  # still connected; more input is dropped until tokens refill
            time.sleep(2.1)
            ws.send_json({"type": "ping", "id": "later"})
            assert ws.receive_json()["id"] == "later"
        finally:
            ws.__exit__(None, None, None)


def test_idle_sessions_are_evicted():
    app = create_app(FakeGenie(), config=PlayConfig(idle_timeout=0.4))
    with TestClient(app) as c:
        with c.websocket_connect("/ws") as ws:
            ws.receive_json()
            recv_frame(ws)
            err = recv_error(ws)  # arrives by itself after ~0.4 s
            assert err["code"] == "idle_timeout"
            with pytest.raises(WebSocketDisconnect) as exc:
                ws.receive_json()
            assert exc.value.code == 1001
        time.sleep(0.2)
        assert c.get("/healthz").json()["sessions"] == 0


def test_host_and_origin_checks():
    app = create_app(FakeGenie(), config=PlayConfig(allowed_hosts=LOOPBACK_HOSTS))
    with TestClient(app, base_url="http://evil.example") as c:  # DNS rebinding: foreign Host header
        assert c.get("/api/info").status_code == 400
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        assert c.get("/api/info").status_code == 200
        host = {"Host": "127.0.0.1:8000"}
        for origin in ("http://evil.example", "http://127.0.0.1:9999", "null"):
            with pytest.raises(WebSocketDisconnect) as exc:  # a foreign page driving the socket
                with c.websocket_connect("/ws", headers={**host, "Origin": origin}) as ws:
                    ws.receive_json()
            assert exc.value.code == 1008 and "origin" in exc.value.reason
        with pytest.raises(WebSocketDisconnect) as exc:
            with c.websocket_connect("/ws", headers={"Host": "evil.example:8000"}) as ws:
                ws.receive_json()
        assert exc.value.code == 1008 and "host" in exc.value.reason
        with c.websocket_connect("/ws", headers={**host, "Origin": "http://127.0.0.1:8000"}) as ws:
            assert ws.receive_json()["type"] == "hello"
        with c.websocket_connect("/ws", headers={"Host": "localhost:8000"}) as ws:  # no Origin: not a browser
            assert ws.receive_json()["type"] == "hello"


# ------------------------------------------------------------------------------------------------ uploads, recordings


def test_uploads(make_client):
    c = make_client(PlayConfig(max_upload_bytes=200_000, max_upload_pixels=1_000_000, max_uploads=3))
    src = np.zeros((90, 120, 3), dtype=np.uint8)
    src[:, 60:] = (0, 200, 0)
    buf = io.BytesIO()
    Image.fromarray(src).save(buf, "PNG")
    r = c.post("/api/upload", content=buf.getvalue(), headers={"Content-Type": "image/png"})
    assert r.status_code == 200, r.text
    up = r.json()
    assert up["prompt"].startswith("upload-") and (up["width"], up["height"]) == (120, 90)
    from genieworld.data.video import prepare_frame
    expected = prepare_frame(src, 64)
    assert np.array_equal(png_array(c.get(up["thumbnail"]).content), expected)
    ws, _, _ = open_ws(c)
    try:
        ws.send_json({"type": "reset", "prompt": up["prompt"]})
        meta, f0 = recv_frame(ws)
        assert meta["prompt"] == up["prompt"] and np.array_equal(f0, expected)
    finally:
        ws.__exit__(None, None, None)
    assert c.post("/api/upload", content=image_bytes("JPEG")).status_code == 200
    # refusals, each with a JSON reason
    bad = [
        (b"hello, not an image", 415),
        (b"", 400),
        (b"GIF89a" + b"\0" * 30, 415),
        (image_bytes("PNG", size=(1200, 1000)), 413),  # 1.2 Mpx > 1 Mpx limit
        (_png_claiming(60_000, 60_000), 413),
        (b"\0" * 200_001, 413),
    ]
    for body, status in bad:
        r = c.post("/api/upload", content=body)
        assert r.status_code == status, (body[:20], r.status_code, r.text)
        assert r.json()["detail"]
    # a lying Content-Length is refused before reading
    r = c.post("/api/upload", content=b"x", headers={"Content-Length": str(10**9)})
    assert r.status_code in (400, 413)
    # a chunked upload with no Content-Length is counted while it streams
    r = c.post("/api/upload", content=(b"\0" * 50_000 for _ in range(5)))
    assert r.status_code == 413
    # only the newest max_uploads are kept
    ids = [c.post("/api/upload", content=image_bytes("PNG", color=(i, i, i))).json()["prompt"] for i in range(5)]
    listed = [p["id"] for p in c.get("/api/prompts").json()["prompts"] if p["kind"] == "upload"]
    assert listed == ids[-3:]
    assert c.get("/healthz").json()["ok"]


def test_recording_download(make_client):
    import av

    c = make_client()
    ws, hello, _ = open_ws(c)
    try:
        for a in (0, 1):
            ws.send_json({"type": "action", "action": a})
            recv_frame(ws)
        sid = hello["session"]
        r = c.get(f"/api/sessions/{sid}/recording.mp4")
        assert r.status_code == 200 and r.headers["content-type"] == "video/mp4" and r.content[4:8] == b"ftyp"
        assert "attachment" in r.headers["content-disposition"]
        with av.open(io.BytesIO(r.content)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert len(frames) == 3 and frames[0].shape == (256, 256, 3)
        r = c.get(f"/api/sessions/{sid}/recording.gif?scale=2")
        assert r.status_code == 200 and r.content[:6] == b"GIF89a"
        gif = Image.open(io.BytesIO(r.content))
        assert gif.n_frames == 3 and gif.size == (128, 128)
        assert c.get(f"/api/sessions/{sid}/recording.avi").status_code == 404
        assert c.get(f"/api/sessions/{sid}/recording.gif?scale=0").status_code == 422
        assert c.get(f"/api/sessions/{sid}/recording.gif?scale=x").status_code == 422
        assert c.get("/api/sessions/nope/recording.mp4").status_code == 404
    finally:
        ws.__exit__(None, None, None)


def test_recording_is_bounded():
    app = create_app(FakeGenie(), config=PlayConfig(max_recorded_frames=5))
    with TestClient(app) as c:
        ws, hello, _ = open_ws(c)
        try:
            for i in range(8):
                ws.send_json({"type": "action", "action": i % 4})
                recv_frame(ws)
            gif = Image.open(io.BytesIO(c.get(f"/api/sessions/{hello['session']}/recording.gif").content))
            assert gif.n_frames == 5
        finally:
            ws.__exit__(None, None, None)


# ------------------------------------------------------------------------------------------------ trained model, CLI


def test_up_arrow_plays_the_jump_like_action_of_actions_json(tmp_path):
    # names as a LAM gives them, none plain "Jump": the naming counts pick the jump action (2)
    names = ["Left", "Right", "Right+Jump#2", "Stay"]
    counts = [[90, 5, 5, 0, 0, 0], [0, 0, 5, 0, 90, 5], [5, 10, 0, 40, 5, 40], [5, 0, 90, 0, 5, 0]]
    (tmp_path / "actions.json").write_text(json.dumps({
        "names": names, "counts": counts,
        "source": {"true_action_names": ["Left", "Left+Jump", "Stay", "Jump", "Right", "Right+Jump"]}}))
    genie = FakeGenie()
    genie.action_names = names
    with TestClient(create_app(genie, model_dir=tmp_path)) as c:
        km = c.get("/api/info").json()["keymap"]
    assert km["ArrowUp"] == km[" "] == 2 and km["ArrowLeft"] == 0 and km["ArrowRight"] == 1
    assert km["ArrowDown"] == 3


def _gravity_actions_json(path):
    """A 4-action model: Stay 0, Jump 1 (rises), Fall 2, Left 3; real actions Stay 0, Jump 1, Left 2. The
    recordings show two falling steps after two jumps whatever is held, and Stay / Left as pressed otherwise."""
    from genieworld.controls import Gravity  # noqa: F401  (the reader under test)

    counts = np.zeros((3, 4, 4, 4), dtype=int)
    counts[:, 1, 1, 2] = 40  # after two rises: a fall
    counts[:, 1, 1, 1] = 5
    counts[:, 1, 2, 2] = 30  # and the fall goes on one more step
    counts[0, 0, 0, 0] = counts[2, 3, 3, 3] = 50
    (path / "actions.json").write_text(json.dumps({
        "names": ["Stay", "Jump", "Fall", "Left"],
        "mapping": [{"latent": 0, "true_action": 0}, {"latent": 1, "true_action": 1},
                    {"latent": 2, "true_action": 0, "effect": "fall"}, {"latent": 3, "true_action": 2}],
        "sequence_counts": counts.tolist(),
        "motion": [{"down": 0.0, "up": 0.0}, {"down": 0.0, "up": 0.9}, {"down": 0.9, "up": 0.0},
                   {"down": 0.0, "up": 0.0}]}))


@pytest.mark.parametrize("gravity", [True, False])
def test_gravity_turns_a_press_after_two_jumps_into_a_fall(tmp_path, gravity):
    _gravity_actions_json(tmp_path)
    genie = FakeGenie()
    genie.action_names = ["Stay", "Jump", "Fall", "Left"]
    with TestClient(create_app(genie, model_dir=tmp_path, config=PlayConfig(gravity=gravity))) as c:
        ws, hello, _ = open_ws(c, "?prompt=grey")
        try:
            assert hello["gravity"] is gravity and hello["keymap"]["ArrowDown"] == 2
            played = []
            for pressed in ["Jump", "Jump", "Stay", "Left", "Left", "Stay"]:
                ws.send_json({"type": "action", "action": pressed})
                meta, frame = recv_frame(ws)
                assert meta["pressed"] == genie.action_names.index(pressed)
                assert frame[0, 0, 0] == (meta["action"] * 50 + meta["index"]) % 256  # the world got the played one
                played.append(meta["name"])
            # with gravity the two presses after the jumps fall, then keys play as pressed
            assert played == (["Jump", "Jump", "Fall", "Fall", "Left", "Stay"] if gravity
                              else ["Jump", "Jump", "Stay", "Left", "Left", "Stay"])
            # a reset forgets what was played: two more jumps are needed before anything falls
            ws.send_json({"type": "reset"})
            recv_frame(ws)
            ws.send_json({"type": "action", "action": "Jump"})
            ws.send_json({"type": "action", "action": "Stay"})
            assert [recv_frame(ws)[0]["name"] for _ in range(2)] == ["Jump", "Stay"]
        finally:
            ws.__exit__(None, None, None)


class JumpingGenie(FakeGenie):
    """Its world's view moves up 4 px for each Jump played (latent 1) and down 2 px for each Fall (latent 2)."""

    level = np.kron(np.random.default_rng(0).integers(0, 255, (32, 8, 3)), np.ones((2, 2, 1))).astype(np.uint8)

    def world(self, prompt, seed=None, **sampling_overrides):
        genie = self

        class World:
            y = 24

            def step(self, action):
                self.y += {1: -4, 2: 2}.get(int(action), 0)
                return genie.level[self.y:self.y + 16].copy()

        return World()


def test_gravity_falls_on_while_the_player_comes_down(tmp_path):
    """Closed loop: after the table's falls, keys go on playing a fall while the world's view comes down
    above the height it left, and play as pressed once it is back down."""
    _gravity_actions_json(tmp_path)
    genie = JumpingGenie()
    genie.action_names = ["Stay", "Jump", "Fall", "Left"]
    with TestClient(create_app(genie, model_dir=tmp_path)) as c:
        ws, hello, _ = open_ws(c, "?prompt=grey")
        try:
            played = []
            for pressed in ["Stay", "Jump", "Jump", "Stay", "Left", "Left", "Stay", "Left"]:
                ws.send_json({"type": "action", "action": pressed})
                played.append(recv_frame(ws)[0]["name"])
            # up 8 px; the table falls twice (4 px); still 4 px above and falling, so Left falls too; then 2 px
            # above: keys play as pressed (without the closed loop the first Left plays Left)
            assert played == ["Stay", "Jump", "Jump", "Fall", "Fall", "Fall", "Stay", "Left"]
        finally:
            ws.__exit__(None, None, None)


def test_no_gravity_without_a_table(tmp_path):
    (tmp_path / "actions.json").write_text(json.dumps({"names": ["Stay", "Jump", "Fall", "Left"]}))
    genie = FakeGenie()
    with TestClient(create_app(genie, model_dir=tmp_path)) as c:
        ws, hello, _ = open_ws(c, "?prompt=grey")
        ws.__exit__(None, None, None)
    assert hello["gravity"] is False


def test_trained_model_with_named_actions(tiny_model_dir, tmp_path):
    from genieworld.genie import Genie

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    g0 = Genie.from_pretrained(model)
    names = ["LEFT", "RIGHT", "UP", "DOWN", "NOOP", "JUMP"][: g0.num_actions]
    (model / "actions.json").write_text(json.dumps({"names": names}))
    g = Genie.from_pretrained(model)
    app = create_app(g, model_dir=model)
    with TestClient(app) as c:
        info = c.get("/api/info").json()
        assert info["action_names"] == names and info["keymap"]["ArrowLeft"] == 0
        ws, hello, first = open_ws(c, "?prompt=grey")
        try:
            assert (first == 128).all()
            ws.send_json({"type": "action", "action": "UP"})
            meta, frame = recv_frame(ws)
            assert meta["name"] == "UP" and frame.shape == (g.image_size, g.image_size, 3)
        finally:
            ws.__exit__(None, None, None)


def test_cli_play_serves_and_refuses_bad_input(untrained_model_dir, tmp_path):
    from genieworld.cli import main

    assert main(["play", str(tmp_path / "missing")]) == 2
    assert main(["play", str(untrained_model_dir), "--max-sessions", "0"]) == 2
    assert main(["play", str(untrained_model_dir), "--port", "70000"]) == 2
    # a training RUN folder works too, and its RUN/model/actions.json names the buttons
    run = tmp_path / "run"
    shutil.copytree(untrained_model_dir, run / "model")
    (run / "model" / "actions.json").write_text(json.dumps({"names": ["LEFT", "RIGHT", "UP", "NOOP"]}))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "genieworld.cli", "play", str(run), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        url, lines, deadline = None, [], time.monotonic() + 120
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            m = re.search(r"open (http://127\.0\.0\.1:\d+/)", line)
            url = m.group(1) if m else None
        assert url, "".join(lines)
        import httpx

        for _ in range(50):
            try:
                r = httpx.get(url + "api/info", timeout=5)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert r.status_code == 200 and r.json()["num_actions"] == 4
        assert r.json()["action_names"] == ["LEFT", "RIGHT", "UP", "NOOP"], r.json()
        assert httpx.get(url, timeout=5, headers={"Host": "attacker.example"}).status_code == 400
        assert "WARNING" not in "".join(lines)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_bind_address_checks():
    from genieworld.play.server import resolve_bind, url_for

    assert resolve_bind("127.0.0.1") == ("127.0.0.1", True)
    assert resolve_bind("localhost")[1] is True
    assert resolve_bind("::1") == ("::1", True)
    assert resolve_bind("0.0.0.0") == ("0.0.0.0", False)  # would get the loud warning (never bound here)
    assert resolve_bind("192.168.1.5") == ("192.168.1.5", False)
    assert url_for("::1", 8000) == "http://[::1]:8000/" and url_for("127.0.0.1", 80) == "http://127.0.0.1:80/"

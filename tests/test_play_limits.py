"""The play server under slow clients: half-open HTTP connections cannot starve /healthz (issue 17).

A real uvicorn server on a loopback port, run with :func:`genieworld.play.server.uvicorn_config`
(what ``genie play`` serves with).  The attacker connects from 127.0.0.2 (Linux routes all of
127/8 to the loopback interface), the honest client from 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time

import pytest

pytest.importorskip("uvicorn")
import httpx  # noqa: E402

from test_play_server import FakeGenie  # noqa: E402
from genieworld.play.server import PlayConfig, bind_socket, create_app  # noqa: E402

ATTACKER = "127.0.0.2"


@contextlib.contextmanager
def running_server(config: PlayConfig):
    import uvicorn

    from genieworld.play.server import uvicorn_config

    app = create_app(FakeGenie(), config=config)
    sock = bind_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn_config(app, config, log_level="error"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def half_open(port: int, n: int, source: str = ATTACKER) -> list[socket.socket]:
    """``n`` connections that send the start of a request head and never finish it."""
    out = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        out.append(s)
    return out


def read_all(s: socket.socket, timeout: float) -> bytes:
    s.settimeout(timeout)
    data = b""
    with contextlib.suppress(OSError):
        while chunk := s.recv(4096):
            data += chunk
    return data


def test_half_open_connections_cannot_starve_healthz():
    with running_server(PlayConfig(header_timeout=30.0)) as port:
        socks = half_open(port, 70)
        try:
            time.sleep(0.3)
            r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            assert r.status_code == 200, r.text  # was 503 for as long as the 70 stayed open
            # the attacker's address holds at most max_connections_per_client; the rest got 429 at once
            refused = [s for s in socks if read_all(s, 0.05).startswith(b"HTTP/1.1 429")]
            assert len(refused) == 70 - PlayConfig().max_connections_per_client
        finally:
            for s in socks:
                s.close()


def test_a_request_head_must_arrive_within_the_header_timeout():
    with running_server(PlayConfig(header_timeout=0.5, max_connections_per_client=100)) as port:
        socks = half_open(port, 70, source="127.0.0.1")
        try:
            deadline = time.monotonic() + 5
            replies = [read_all(s, max(0.01, deadline - time.monotonic())) for s in socks]
            assert all(r.startswith(b"HTTP/1.1 408") for r in replies), replies[:2]
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        finally:
            for s in socks:
                s.close()


def test_keep_alive_and_websockets_are_not_cut_by_the_header_timeout():
    from websockets.sync.client import connect

    with running_server(PlayConfig(header_timeout=0.5)) as port:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            for _ in range(3):  # a slow but complete exchange, request after request on one connection
                assert client.get("/healthz").status_code == 200
                time.sleep(0.2)
        with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=5) as ws:
            assert json.loads(ws.recv(timeout=5))["type"] == "hello"
            time.sleep(1.0)  # longer than header_timeout: an upgraded connection is left alone
            ws.send(json.dumps({"type": "ping"}))
            msgs = [ws.recv(timeout=5) for _ in range(3)]
            assert any(isinstance(m, str) and json.loads(m)["type"] == "pong" for m in msgs), msgs

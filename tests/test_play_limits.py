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
            # past the server's total (64) the oldest idle ones were closed to make room (503); the rest timed out
            assert all(r.startswith((b"HTTP/1.1 408", b"HTTP/1.1 503")) for r in replies), replies[:2]
            assert sum(r.startswith(b"HTTP/1.1 408") for r in replies) >= 60
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


def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_a_request_head_is_bounded_in_bytes_and_lines():
    with running_server(PlayConfig(header_timeout=30.0)) as port:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        with contextlib.suppress(OSError):  # the server closes the connection
            for _ in range(2000):  # 2 MB of header lines, where the bound is 16 KiB
                s.sendall(b"X-A: " + b"a" * 1000 + b"\r\n")
        assert read_all(s, 2).startswith(b"HTTP/1.1 431")
        s.close()
        many = socket.create_connection(("127.0.0.1", port), timeout=5)
        many.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X: 1\r\n" * 150 + b"\r\n")
        assert read_all(many, 2).startswith(b"HTTP/1.1 431")  # 150 short lines: over the 100-line bound
        many.close()
        ok = httpx.get(f"http://127.0.0.1:{port}/healthz", headers={"X-Big": "a" * 8000}, timeout=5)
        assert ok.status_code == 200  # an ordinary large header still passes


def test_pipelining_clients_that_never_read_are_cut_and_healthz_recovers():
    cfg = PlayConfig(header_timeout=2.0)
    with running_server(cfg) as port:
        socks = []
        req = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        for _ in range(cfg.max_connections_per_client):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.setblocking(False)
            with contextlib.suppress(OSError):  # a full send buffer, or the server already cut it
                for _ in range(3000):
                    s.sendall(req)
            socks.append(s)
        try:
            t0 = time.monotonic()
            status = None
            while time.monotonic() - t0 < 12:
                with contextlib.suppress(httpx.HTTPError):
                    status = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code
                    if status == 200:
                        break
                time.sleep(0.25)
            assert status == 200, status
            assert time.monotonic() - t0 < 3 * cfg.header_timeout + 2  # the bound, not 40 s
        finally:
            for s in socks:
                s.close()


def test_idle_connections_from_a_few_addresses_cannot_fill_the_server():
    with running_server(PlayConfig(header_timeout=30.0)) as port:
        socks = []
        for src in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
            socks += half_open(port, 30, source=src)  # 90 idle connections, 30 per address (under 32 each)
        try:
            time.sleep(0.3)
            for _ in range(3):
                r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
                assert r.status_code == 200, r.text  # was 503 until the header timeout
        finally:
            for s in socks:
                s.close()


def test_a_duplicate_host_header_is_refused():
    with running_server(PlayConfig()) as port:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
        assert read_all(s, 2).startswith(b"HTTP/1.1 400")
        s.close()


def test_a_huge_head_pipelined_behind_a_slow_request_is_bounded_too():
    cfg = PlayConfig(header_timeout=30.0, max_upload_bytes=1 << 20)
    with running_server(cfg) as port:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        sent = 0
        with contextlib.suppress(OSError):  # the server aborts the connection
            for _ in range(4000):  # 4 MB of header lines behind the first request, never finished
                s.sendall(b"X-A: " + b"a" * 1000 + b"\r\n")
                sent += 1
        assert sent < 4000  # the server cut the connection long before 4 MB (without a bound it reads them all)
        s.close()
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200

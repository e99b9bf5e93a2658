"""Connection limits for the play server, where uvicorn handles connections: its HTTP protocol class.

uvicorn bounds the number of connections in all (``limit_concurrency``: above it every request
gets 503) and the idle time *between* requests (``timeout_keep_alive``), but not the time a client
may take to send a request's head, its size, how many connections one client address may hold,
how many requests one connection may pipeline, nor how long a response may wait for a client that
does not read.  :func:`guarded_http_protocol` subclasses the HTTP protocol uvicorn would use (h11,
or httptools where installed, as with ``uvicorn[standard]``) and adds those bounds, at the transport level, before any request
reaches the app:

* ``header_timeout``: a connection that has not delivered a complete request head this many
  seconds after it opened (or after its previous response) gets ``408`` and is closed;
* ``max_head_bytes`` / ``max_head_lines``: a request head larger than 16 KiB or of more than 100
  lines gets ``431`` and is closed (the server's memory per connection stays bounded);
* ``max_per_client``: a new connection from an address that already holds this many (HTTP and
  WebSocket together) gets ``429`` and is closed at once;
* ``max_request_bytes``: the bytes a client may send while one of its requests is being served (its
  body, or requests pipelined behind it; the upload limit plus 1 MiB) before the connection is aborted;
* ``max_pipelined``: a connection whose next request was already waiting when a response finished
  (pipelining) this many times is closed after that response;
* a response that cannot be written for ``header_timeout`` seconds (the client does not read, the
  send buffer stays full) aborts the connection;
* ``max_total``: when the server holds this many connections, a new one first evicts a connection
  that is waiting for a request head from the address holding the most connections
  (that client loses an idle connection, nothing in flight); with none to evict it gets ``503``.
  So idle connections from a few addresses can never lock every other client out.

WebSockets, once upgraded, are left alone here (their sessions, message sizes and rates are
bounded by the server and :mod:`genieworld.play.sessions`).
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("genieworld.play")


def _raw_response(status: int, reason: str, text: str) -> bytes:
    body = text.encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


MAX_HEAD_BYTES = 16 * 1024
MAX_HEAD_LINES = 100
MAX_PIPELINED = 16


def guarded_http_protocol(header_timeout: float, max_per_client: int, base: type | None = None,
                          max_total: int | None = None, max_head_bytes: int = MAX_HEAD_BYTES,
                          max_head_lines: int = MAX_HEAD_LINES, max_pipelined: int = MAX_PIPELINED,
                          max_request_bytes: int = 16 << 20) -> type:
    """An ``asyncio.Protocol`` class for ``uvicorn.Config(http=...)``: uvicorn's own HTTP protocol
    (``base``; default: the one uvicorn's "auto" picks) with the bounds of the module docstring."""
    if base is None:
        from uvicorn.protocols.http.auto import AutoHTTPProtocol

        base = AutoHTTPProtocol

    class GuardedHTTPProtocol(base):  # type: ignore[misc, valid-type]
        _guard_timer: asyncio.TimerHandle | None = None
        _write_timer: asyncio.TimerHandle | None = None
        _head_bytes = 0
        _head_lines = 0
        _busy_bytes = 0  # bytes received while a response is pending (a body, or pipelined requests)
        _pipelined = 0
        _refused = False
        _active = None

        @staticmethod
        def _host(conn) -> str | None:
            """The client address of a connection (ours or uvicorn's WebSocket protocol), or None."""
            return (getattr(conn, "client", None) or (None,))[0]

        def _cut(self, why: str) -> None:
            """Log why, then abort the connection (:meth:`_drop`)."""
            log.warning("closed a connection from %s: %s", self._host(self) or "?", why)
            self._drop()

        def _refuse(self, transport, status: int, reason: str, text: str) -> None:
            self._refused = True
            self._cancel_header_timer()
            transport.write(_raw_response(status, reason, text))
            transport.close()

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            host = self._host(self)
            others = [c for c in list(self.connections) if c is not self]
            if host is not None and max_per_client > 0:
                held = sum(1 for c in others if self._host(c) == host)
                if held >= max_per_client:
                    log.warning("refused a connection from %s: it already holds %d", host, held)
                    self._refuse(transport, 429, "Too Many Requests",
                                 f"too many connections from this address (limit {max_per_client})")
                    return
            if max_total and len(others) >= max_total and not self._evict_one(others):
                log.warning("refused a connection from %s: %d connections, none idle", host, len(others))
                self._refuse(transport, 503, "Service Unavailable", "the server is full; retry shortly")
                return
            try:  # a small send buffer: a client that does not read is noticed early (pause_writing)
                transport.set_write_buffer_limits(high=64 * 1024)
            except (AttributeError, NotImplementedError):
                pass
            self._arm_header_timer()

        @classmethod
        def _evict_one(cls, others) -> bool:
            """Close a connection still waiting for a request head from the address that holds the most
            connections; False when no connection is idle."""
            by_host: dict = {}
            for c in others:
                by_host.setdefault(cls._host(c), []).append(c)
            for _, conns in sorted(by_host.items(), key=lambda kv: -len(kv[1])):
                for c in conns:  # insertion order of the server's set is not age; any idle one will do
                    if isinstance(c, GuardedHTTPProtocol) and c._awaiting_head() and c.transport is not None \
                            and not c.transport.is_closing() and c.transport.get_protocol() is c:
                        log.warning("closed an idle connection from %s to make room", cls._host(c) or "?")
                        c._refuse(c.transport, 503, "Service Unavailable", "closed to make room for another client")
                        return True
            return False

        def _start_asgi_task(self, cycle, app) -> None:  # httptools: the cycle in flight (self.cycle is the newest)
            self._active = cycle
            super()._start_asgi_task(cycle, app)

        def _awaiting_head(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            if not self._awaiting_head():
                self._busy_bytes += len(data)  # a body, or a pipelined request's head: bounded too
                if self._busy_bytes > max_request_bytes:
                    self._cut(f"more than {max_request_bytes} bytes sent during one request")
                    return
            else:
                self._head_bytes += len(data)
                self._head_lines += data.count(b"\n")
                end = data.find(b"\r\n\r\n")
                counted = self._head_bytes - (len(data) - end - 4 if end >= 0 else 0)  # a body after the head is not
                lines = self._head_lines - (data[end + 4:].count(b"\n") if end >= 0 else 0)
                if counted > max_head_bytes or lines > max_head_lines:
                    log.warning("closed a connection from %s: request head over %d bytes or %d lines",
                                self._host(self) or "?", max_head_bytes, max_head_lines)
                    self._refuse(self.transport, 431, "Request Header Fields Too Large",
                                 f"request head larger than {max_head_bytes} bytes or {max_head_lines} lines")
                    return
            super().data_received(data)
            pipe = getattr(self, "pipeline", None)  # httptools queues every pipelined request it parsed
            if pipe is not None and len(pipe) > max_pipelined and not self._refused:
                self._cut(f"more than {max_pipelined} pipelined requests")

        def _drop(self) -> None:
            """Abort the connection, its queued requests unserved and the one in flight told it is gone (its
            response is dropped quietly instead of failing on a closed transport)."""
            self._refused = True
            for cycle in [self.cycle, self._active] + [c for c, _ in getattr(self, "pipeline", ())]:
                if cycle is not None:
                    cycle.disconnected = True
            pipe = getattr(self, "pipeline", None)
            if pipe is not None:
                pipe.clear()
            if self.transport is not None and not self.transport.is_closing():
                self.transport.abort()

        def _arm_header_timer(self) -> None:
            self._cancel_header_timer()
            if header_timeout and header_timeout > 0:
                self._guard_timer = self.loop.call_later(header_timeout, self._header_timeout)

        def _cancel_header_timer(self) -> None:
            if self._guard_timer is not None:
                self._guard_timer.cancel()
                self._guard_timer = None

        def _header_timeout(self) -> None:
            self._guard_timer = None
            transport = self.transport
            if transport is None or transport.is_closing() or transport.get_protocol() is not self:
                return  # closed, or upgraded to a WebSocket
            if not self._awaiting_head():
                return  # a request is being served: its head arrived in time
            log.warning("closed a connection from %s: no complete request head within %g s",
                        self._host(self) or "?", header_timeout)
            self._refuse(transport, 408, "Request Timeout", f"request head not received within {header_timeout:g} s")

        def on_response_complete(self) -> None:
            self._head_bytes = self._head_lines = self._busy_bytes = 0
            conn = getattr(self, "conn", None)  # h11: a pipelined request already waits in its buffer
            waiting = bool(getattr(self, "pipeline", None)) or bool(
                getattr(conn, "trailing_data", (b"", False))[0] if conn is not None else b"")
            if waiting:
                self._pipelined += 1
                if self._pipelined > max_pipelined and not self.transport.is_closing():
                    self._cut(f"more than {max_pipelined} pipelined requests")
                    return
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm_header_timer()  # the next request's head gets the same time

        def pause_writing(self) -> None:
            super().pause_writing()
            if header_timeout and header_timeout > 0 and self._write_timer is None:
                self._write_timer = self.loop.call_later(header_timeout, self._write_timeout)

        def resume_writing(self) -> None:
            if self._write_timer is not None:
                self._write_timer.cancel()
                self._write_timer = None
            super().resume_writing()

        def _write_timeout(self) -> None:
            self._write_timer = None
            if self.transport is not None and not self.transport.is_closing() and self.transport.get_protocol() is self:
                log.warning("aborted a connection from %s: it read no response for %g s",
                            self._host(self) or "?", header_timeout)
                self._drop()

        def connection_lost(self, exc) -> None:
            self._cancel_header_timer()
            if self._write_timer is not None:
                self._write_timer.cancel()
                self._write_timer = None
            super().connection_lost(exc)

    GuardedHTTPProtocol.__name__ = GuardedHTTPProtocol.__qualname__ = f"Guarded{base.__name__}"
    return GuardedHTTPProtocol

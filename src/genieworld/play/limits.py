"""Connection limits for the play server, where uvicorn handles connections: its HTTP protocol class.

uvicorn bounds the number of connections in all (``limit_concurrency``: above it every request
gets 503) and the idle time *between* requests (``timeout_keep_alive``), but not the time a client
may take to send a request's headers, nor how many connections one client address may hold.  So a
single client that opens connections and never finishes their headers (a "slowloris") fills the
global limit and every other client gets 503 for as long as it likes.

:func:`guarded_http_protocol` subclasses the HTTP protocol uvicorn would use (httptools or h11)
and adds both bounds, at the transport level, before any request reaches the app:

* ``header_timeout``: a connection that has not delivered a complete request head this many
  seconds after it opened (or after its previous response) gets ``408`` and is closed;
* ``max_per_client``: a new connection from an address that already holds this many (HTTP and
  WebSocket together) gets ``429`` and is closed at once.

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


def guarded_http_protocol(header_timeout: float, max_per_client: int, base: type | None = None) -> type:
    """An ``asyncio.Protocol`` class for ``uvicorn.Config(http=...)``: uvicorn's own HTTP protocol
    (``base``; default: the one uvicorn's "auto" picks) with the two bounds of the module docstring."""
    if base is None:
        from uvicorn.protocols.http.auto import AutoHTTPProtocol

        base = AutoHTTPProtocol

    class GuardedHTTPProtocol(base):  # type: ignore[misc, valid-type]
        _guard_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            host = self.client[0] if self.client else None
            if host is not None and max_per_client > 0:
                held = sum(1 for c in list(self.connections)
                           if c is not self and (getattr(c, "client", None) or (None,))[0] == host)
                if held >= max_per_client:
                    log.warning("refused a connection from %s: it already holds %d", host, held)
                    transport.write(_raw_response(429, "Too Many Requests",
                                                  f"too many connections from this address (limit {max_per_client})"))
                    transport.close()
                    return
            self._arm_header_timer()

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
            if self.cycle is not None and not self.cycle.response_complete:
                return  # a request is being served: its head arrived in time
            log.warning("closed a connection from %s: no complete request head within %g s",
                        self.client[0] if self.client else "?", header_timeout)
            transport.write(_raw_response(408, "Request Timeout",
                                          f"request head not received within {header_timeout:g} s"))
            transport.close()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm_header_timer()  # the next request's head gets the same time

        def connection_lost(self, exc) -> None:
            self._cancel_header_timer()
            super().connection_lost(exc)

    GuardedHTTPProtocol.__name__ = GuardedHTTPProtocol.__qualname__ = f"Guarded{base.__name__}"
    return GuardedHTTPProtocol

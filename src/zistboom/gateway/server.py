"""Serving the gateway under uvicorn: an httptools protocol with a request-head size limit and a
request-head timeout, and the uvicorn options that go with it.

Why: uvicorn's httptools protocol has neither. A client could send a 60 MB header block (memory
and event-loop time grow with it: a 40 MB header blocked the loop ~2 s) or keep connections open
for ever by dribbling a partial head (slowloris). nginx has ``large_client_header_buffers`` and
``client_header_timeout`` for exactly this; :class:`GatewayHttpProtocol` does the same while
keeping httptools' parser (home-made on top of uvicorn's class because uvicorn offers no hook).

* **Head size** — raw bytes received while a request's head (request line + headers) is not yet
  complete are counted; over ``max_header_bytes`` the client gets **431** (Request Header Fields
  Too Large, RFC 6585 §5) with the gateway's JSON error (code ``headers_too_large``) and the
  connection is closed. While a head is incomplete the parser is fed at most the bytes still
  allowed, so it never holds more than the limit. (Exception: a head pipelined behind a body in
  the same read is counted from the next read on — at most one read, ≤ 256 KiB, more.)
* **Head timeout** — a connection must deliver a complete request head within
  ``header_timeout`` seconds of connecting, or of the first byte of a later request on a
  keep-alive connection; otherwise it is closed (with **408** Request Timeout if part of a head
  had arrived). Idle time *between* requests is uvicorn's keep-alive timeout.

Use :func:`server_options` to get the keyword arguments for ``uvicorn.run`` / ``uvicorn.Config``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from zistboom.gateway.config import GatewayConfig

log = logging.getLogger("zistboom.gateway")

_MSG_431 = ("سرآیندهای درخواست بیش از حد بزرگ است.", "The request header fields are too large.")
_MSG_408 = ("سرآیندهای درخواست در زمان مقرر کامل نرسید.", "The request head was not received in time.")


class GatewayHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a request-head size limit and timeout (module docstring).

    Class attributes ``max_header_bytes`` (bytes) and ``header_timeout`` (s) are the limits; make a
    configured subclass with :meth:`configured`.
    """

    max_header_bytes: int = 64 * 1024
    header_timeout: float = 10.0
    LINGER_S = 2.0  # how long the rest of a rejected head is read and discarded before closing

    @classmethod
    def configured(cls, max_header_bytes: int, header_timeout: float) -> type["GatewayHttpProtocol"]:
        """A subclass with these limits (uvicorn instantiates the class itself, so limits travel
        as class attributes)."""
        if max_header_bytes < 1 or header_timeout <= 0:
            raise ValueError("max_header_bytes must be >= 1 and header_timeout > 0")
        return type(cls.__name__, (cls,), {"max_header_bytes": int(max_header_bytes),
                                           "header_timeout": float(header_timeout)})

    # -- connection --------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._in_head = True  # the next bytes belong to a request head
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._discard = False
        self._head_started = False
        super().connection_made(transport)
        self._arm_head_timer()  # an idle new connection must also send its head in time

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._discard:
            return  # lingering close after 431: drop the rest of the oversized head unparsed
        while data:
            if self.parser is None or self.transport.is_closing():
                return
            if not self._in_head:
                super().data_received(data)
                return
            if self._head_timer is None:
                self._arm_head_timer()  # first byte of a new request on a keep-alive connection
            room = self.max_header_bytes - self._head_bytes
            if room <= 0:
                return self._reject_431()
            chunk, data = data[:room], data[room:]
            self._head_bytes += len(chunk)
            super().data_received(chunk)
            # loop: the rest is body (head complete), the next pipelined head (message complete),
            # or, with the head still incomplete, one byte too many (431 on the next turn)

    # -- parser callbacks --------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_started = True
        if self._head_timer is None:
            self._arm_head_timer()  # e.g. a pipelined head that began inside an earlier read

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_started = False
        self._head_bytes = 0
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True  # whatever follows is the next request's head
        self._head_bytes = 0

    # -- limits ------------------------------------------------------------------------------
    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timeout)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._in_head:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # a previous (pipelined) request is still being answered and reading is paused: wait
            self._arm_head_timer()
            return
        if self._head_started or self._head_bytes:
            self._send_error(408, "header_timeout", *_MSG_408)
        self.transport.close()

    def _reject_431(self) -> None:
        log.warning("request head over %d bytes from %s: 431", self.max_header_bytes,
                    self.client[0] if self.client else "?")
        self._cancel_head_timer()
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()  # mid-answer of a pipelined request: no room for a 431
            return
        self._send_error(431, "headers_too_large", *_MSG_431)
        # lingering close (as nginx does): closing at once with the client's bytes still unread
        # would send a TCP RST that can destroy the 431 before the client reads it. So send FIN
        # after the answer, discard whatever still arrives, and close when the client does or
        # after LINGER_S.
        self._discard = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(self.LINGER_S, self._close_now)

    def _close_now(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    def _send_error(self, status: int, code: str, message_fa: str, message_en: str) -> None:
        from zistboom.gateway.app import _new_request_id

        rid = _new_request_id()
        body = orjson.dumps({"error": {"code": code, "message_fa": message_fa, "message_en": message_en,
                                       "request_id": rid}})
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head.extend([name, b": ", value, b"\r\n"])
        head.append(b"content-type: application/json; charset=utf-8\r\ncontent-length: %d\r\n"
                    b"x-zistboom-error: %s\r\nx-request-id: %s\r\nconnection: close\r\n\r\n"
                    % (len(body), code.encode(), rid.encode()))
        self.transport.write(b"".join(head) + body)


def server_options(config: GatewayConfig | None = None) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` / ``uvicorn.Config`` serving the gateway: the HTTP
    protocol class (:class:`GatewayHttpProtocol` with ``config.max_header_bytes`` /
    ``config.header_timeout``), ``timeout_keep_alive`` (``config.keep_alive_timeout``),
    ``limit_concurrency`` (``config.limit_concurrency``: connections + tasks above which new
    requests get 503) and ``backlog`` (``config.backlog``)."""
    cfg = config or GatewayConfig()
    return {
        "http": GatewayHttpProtocol.configured(cfg.max_header_bytes, cfg.header_timeout),
        "timeout_keep_alive": cfg.keep_alive_timeout,
        "limit_concurrency": cfg.limit_concurrency,
        "backlog": cfg.backlog,
    }

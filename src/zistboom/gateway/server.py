"""The gateway's own HTTP/1.1 server: an asyncio protocol on httptools (llhttp) that hands each
request to the gateway's ASGI app with as little per-request work as possible.

Why our own server instead of uvicorn (home-made, measured with ``bench/gateway.py --uvicorn``,
figures in ``bench/README.md``): the same gateway app under uvicorn's httptools protocol cost 74.9
µs of CPU per proxied request at 32 connections, on this server 63.6 µs (nginx as a plain proxy:
16.5 µs); at 128 connections uvicorn's p99 was 75 ms against 14 ms here. uvicorn runs a general
ASGI cycle per request (message validation, flow-control objects, header checks, a body stream);
this server keeps httptools' parser and the ASGI call shape (so the app and every test stay the
same) but does only what the gateway needs:

* the request body is buffered before the app runs (the gateway reads every body whole anyway,
  bounded by ``max_request_body``: a larger ``Content-Length`` or chunked body gets **413** at
  once and the connection is closed); ``receive()`` returns it in one ``http.request`` message and
  then waits for ``http.disconnect``;
* the response is written with one ``transport.write`` (head + body), with ``Content-Length``
  added when the app did not set one and a cached ``Date``; write back-pressure
  (``pause_writing``) is honoured;
* keep-alive (HTTP/1.1 default, HTTP/1.0 on request), pipelining (requests answered strictly in
  order; reading pauses while requests queue up), ``Expect: 100-continue`` (sent when the
  requests before it are answered), a client's half-close (what it sent is still answered);
* chunked trailer fields are bounded like a head but never merged into the request's headers;
  an ``Upgrade`` / ``CONNECT`` request is answered as plain HTTP and the connection closed, and
  one that declares a body gets **400** ``upgrade_not_supported`` (llhttp would skip its body);
* limits that uvicorn lacks (nginx has them): a **request-head size limit**
  (``max_header_bytes``, **431** — RFC 6585 §5 — then a lingering close) and a **request-head
  timeout** (``header_timeout``: the head must be complete that long after the connection opens
  or after the first byte of a later request; **408** if part of a head had arrived, else a
  silent close), counted both on raw reads and on what the parser delivers, so a head pipelined
  inside another request's read is bounded too; a started body must keep arriving, at most
  ``body_timeout`` s between reads (**408** ``body_timeout``, as nginx's ``client_body_timeout``);
  idle keep-alive connections close after ``keep_alive_timeout``;
* ``limit_concurrency``: open connections + running requests above which new requests get
  **503** ``overloaded``; a malformed request gets **400** ``bad_request`` and a close;
* graceful shutdown: stop listening, close idle connections, let running requests finish (at
  most ``shutdown_timeout`` s), then the app's ``shutdown()``.

Every error this module writes is in the gateway's format (``X-Zistboom-Error`` and a JSON body
with Persian and English messages). Header values are not re-validated on the way out: request
headers were parsed by llhttp (which rejects CR/LF inside values), upstream response headers by
httptools' response parser in :mod:`zistboom.gateway.upstream`, and every other value is made by
the gateway itself.

The app must be the gateway (:class:`zistboom.gateway.app.Gateway`): an ASGI callable with
``startup()`` and ``shutdown()`` coroutines, which :class:`GatewayServer` calls around serving
(instead of the ASGI lifespan protocol).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
import time
import urllib.parse
from collections import deque
from email.utils import formatdate
from http import HTTPStatus
from typing import Any

import httptools
import orjson

from zistboom.gateway.config import GatewayConfig

log = logging.getLogger("zistboom.gateway")

_MESSAGES: dict[str, tuple[str, str]] = {
    "headers_too_large": ("سرآیندهای درخواست بیش از حد بزرگ است.", "The request header fields are too large."),
    "header_timeout": ("سرآیندهای درخواست در زمان مقرر کامل نرسید.", "The request head was not received in time."),
    "bad_request": ("درخواست HTTP نامعتبر است.", "Invalid HTTP request."),
    "body_timeout": ("بدنهٔ درخواست در زمان مقرر نرسید.", "The request body was not received in time."),
    "upgrade_not_supported": ("درخواست ارتقای پروتکل (Upgrade) همراه با بدنه پذیرفته نیست.",
                              "Protocol upgrade requests with a body are not supported."),
    "body_too_large": ("حجم درخواست بیش از حد مجاز است.", "The request body is too large."),
    "overloaded": ("دروازه در این لحظه بیش از ظرفیت درخواست دارد؛ کمی بعد دوباره تلاش کنید.",
                   "The gateway is over capacity; retry later."),
    "internal": ("خطای درونی دروازه.", "Internal gateway error."),
}


def _status_line(status: int) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return b"HTTP/1.1 %d %s\r\n" % (status, phrase.encode("latin-1"))


_STATUS_LINES: dict[int, bytes] = {s.value: _status_line(s.value) for s in HTTPStatus}


class _DateCache:
    """``Date: ...\\r\\n`` (RFC 9110 §6.6.1 IMF-fixdate), formatted at most once per second."""

    __slots__ = ("second", "line")

    def __init__(self) -> None:
        self.second = -1
        self.line = b""

    def get(self) -> bytes:
        now = time.time()
        sec = int(now)
        if sec != self.second:
            self.second = sec
            self.line = b"date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
        return self.line


_DATE = _DateCache()


class _Request:
    """One parsed request waiting for (or being given to) the app."""

    __slots__ = ("method", "url", "headers", "body", "size", "keep_alive", "http_version", "expect_continue")

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.size = 0
        self.keep_alive = True
        self.expect_continue = False


class _Fatal:
    """A queued error answer that ends the connection (after the requests queued before it)."""

    __slots__ = ("status", "code")

    def __init__(self, status: int, code: str) -> None:
        self.status, self.code = status, code


class _Cycle:
    """``receive`` / ``send`` of one request (ASGI 3 ``http`` messages)."""

    __slots__ = ("proto", "req", "body_sent", "status", "headers", "parts", "done", "head_sent")

    def __init__(self, proto: "GatewayHttpProtocol", req: _Request) -> None:
        self.proto = proto
        self.req = req
        self.body_sent = False
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] | None = None
        self.parts: list[bytes] = []
        self.done = False
        self.head_sent = False

    async def receive(self) -> dict[str, Any]:
        if not self.body_sent:
            self.body_sent = True
            body = self.req.body
            return {"type": "http.request", "body": body[0] if len(body) == 1 else b"".join(body),
                    "more_body": False}
        await self.proto.wait_disconnect()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        proto = self.proto
        typ = message["type"]
        if typ == "http.response.start":
            if self.headers is not None:
                raise RuntimeError("http.response.start sent twice")
            self.status = message["status"]
            self.headers = list(message.get("headers") or ())
            return
        if typ != "http.response.body":
            raise RuntimeError(f"unexpected ASGI message {typ!r}")
        if self.headers is None or self.done:
            raise RuntimeError("http.response.body before http.response.start, or after the end")
        body = message.get("body", b"")
        if body:
            self.parts.append(body)
        if message.get("more_body"):
            return  # the gateway never streams: collect and write once at the end
        self.done = True
        if proto.closed:
            return
        body = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
        proto.write_response(self.req, self.status, self.headers, body)
        self.head_sent = True
        if proto.write_paused:
            await proto.drain()


class GatewayHttpProtocol(asyncio.Protocol):
    """One client connection (module docstring). Made by :class:`GatewayServer`."""

    LINGER_S = 2.0  # how long the rest of a rejected request is read and discarded before closing

    def __init__(self, server: "GatewayServer") -> None:
        self.server = server
        self.app = server.app
        self.loop = server.loop
        cfg = server.config
        self.max_header_bytes = cfg.max_header_bytes
        self.header_timeout = cfg.header_timeout
        self.keep_alive_timeout = cfg.keep_alive_timeout
        self.body_timeout = cfg.body_timeout
        self.max_body = cfg.max_request_body
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.client: tuple[str, int] | None = None
        self.sockname: tuple[str, int] | None = None
        self.req: _Request | None = None  # being parsed
        self.queue: deque[_Request | _Fatal] = deque()  # parsed, waiting for the app
        self.task: asyncio.Task | None = None
        self.closed = False
        self.discard = False
        self.reading_paused = False
        self.write_paused = False
        self._drain: asyncio.Future | None = None
        self._disconnect: asyncio.Future | None = None
        self._in_head = True
        self._head_bytes = 0  # raw bytes of the current head fed so far (reads that start in a head)
        self._cb_bytes = 0  # bytes of the current head (or trailer section) seen by the callbacks
        self._head_started = False
        self._continue_pending = False  # a head asked for 100 Continue while an earlier request ran
        self._peer_eof = False
        # deadlines on the loop clock, checked by GatewayServer's sweeper (no timer per request)
        self.head_deadline: float | None = None
        self.idle_deadline: float | None = None
        self.body_deadline: float | None = None

    # -- connection --------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.client = (str(peer[0]), int(peer[1]))
        sock = transport.get_extra_info("sockname")
        if isinstance(sock, tuple) and len(sock) >= 2:
            self.sockname = (str(sock[0]), int(sock[1]))
        self.server.connections.add(self)
        self._arm_head_timer()  # an idle new connection must also send its head in time

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        self.head_deadline = self.idle_deadline = self.body_deadline = None
        for fut in (self._disconnect, self._drain):
            if fut is not None and not fut.done():
                fut.set_result(None)

    def eof_received(self) -> bool:
        """The client half-closed: answer what it already sent, then close."""
        if self.task is not None or self.queue:
            self._peer_eof = True
            return True  # keep the transport open for the answers
        return False  # nothing to answer: close

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    async def drain(self) -> None:
        if self.write_paused and not self.closed:
            self._drain = self.loop.create_future()
            await self._drain

    async def wait_disconnect(self) -> None:
        if not self.closed:
            if self._disconnect is None:
                self._disconnect = self.loop.create_future()
            await self._disconnect

    def data_received(self, data: bytes) -> None:
        if self.discard or self.closed:
            return  # lingering close after a fatal answer: drop the rest unparsed
        self.idle_deadline = None
        while data:
            if not self._in_head:
                if self.body_deadline is not None:
                    self.body_deadline = self.loop.time() + self.body_timeout
                self._feed(data)  # a head that begins inside this read is bounded by _head_too_large
                return
            if self.head_deadline is None:
                self._arm_head_timer()  # first byte of a new request on a keep-alive connection
            room = self.max_header_bytes - self._head_bytes
            if room <= 0:
                return self._fatal(431, "headers_too_large")
            chunk, data = data[:room], data[room:]
            self._head_bytes += len(chunk)
            if not self._feed(chunk):
                return
            # loop: the rest is body (head complete), the next pipelined head (message complete),
            # or, with the head still incomplete, one byte too many (431 on the next turn)

    def _feed(self, data: bytes) -> bool:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # an Upgrade (h2c, websocket) or CONNECT: not supported. llhttp has completed the
            # message (on_headers_complete marked it keep_alive=False): it is answered as plain
            # HTTP and the connection closed after it; bytes after the upgrade point are dropped
            self.discard = True
            return False
        except httptools.HttpParserError:
            if not self.discard:  # a callback may already have queued its own answer (413)
                self._fatal(400, "bad_request")
            return False
        return not (self.discard or self.closed)

    # -- parser callbacks --------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.req = _Request()
        self._cb_bytes = 0
        self._head_started = True
        if self.head_deadline is None:
            self._arm_head_timer()  # e.g. a pipelined head that began inside an earlier read

    def on_url(self, url: bytes) -> None:
        self.req.url += url  # type: ignore[union-attr]
        self._cb_bytes += len(url)
        if self._cb_bytes > self.max_header_bytes:
            self._head_too_large()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._cb_bytes += len(name) + len(value) + 4
        if self._cb_bytes > self.max_header_bytes:
            self._head_too_large()
        if self._in_head:
            self.req.headers.append((name.lower(), value))  # type: ignore[union-attr]
        # else: a chunked body's trailer field: never merged into the request's headers (RFC 9110
        # §6.5.1 — a trailer could otherwise add X-Api-Key or X-Caller-Province after the checks)

    def _head_too_large(self) -> None:
        """The head (or, with its own budget, the trailer section) is over ``max_header_bytes`` by
        what the parser delivered (``_cb_bytes``): this also bounds a pipelined head that began
        inside a read which data_received did not count as head bytes."""
        self.req = None
        self._fatal(431, "headers_too_large")
        raise httptools.HttpParserError("request head too large")  # stop this feed

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_started = False
        self._head_bytes = 0
        self._cb_bytes = 0  # from here on: the trailer section's own budget
        self.head_deadline = None
        req = self.req
        p = self.parser
        req.method = p.get_method().decode("ascii")  # type: ignore[union-attr]
        req.http_version = p.get_http_version()  # type: ignore[union-attr]
        upgrade = p.should_upgrade()
        req.keep_alive = p.should_keep_alive() and not upgrade  # type: ignore[union-attr]
        has_body = False
        for n, v in req.headers:  # type: ignore[union-attr]
            if n == b"content-length":
                try:
                    declared = int(v)
                except ValueError:
                    declared = 0  # llhttp has already rejected a malformed Content-Length
                if declared > self.max_body:
                    self.req = None
                    self._fatal(413, "body_too_large")
                    raise httptools.HttpParserError("body too large")  # stop this feed
                has_body = has_body or declared > 0
            elif n == b"transfer-encoding":
                has_body = True
            elif n == b"expect" and v.lower() == b"100-continue" and req.http_version == "1.1":  # type: ignore[union-attr]
                req.expect_continue = True  # type: ignore[union-attr]
        if upgrade and has_body:
            # llhttp skips the body of an upgrade request (it would be read as the new protocol):
            # refuse rather than pass the request on without its body
            self.req = None
            self._fatal(400, "upgrade_not_supported")
            raise httptools.HttpParserError("upgrade with a body")
        if req.expect_continue and has_body:  # type: ignore[union-attr]
            if self.task is None and not self.queue:
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # type: ignore[union-attr]
                self.body_deadline = self.loop.time() + self.body_timeout
            else:
                self._continue_pending = True  # sent once the requests before it are answered
        elif has_body:
            self.body_deadline = self.loop.time() + self.body_timeout

    def on_body(self, body: bytes) -> None:
        req = self.req
        req.size += len(body)  # type: ignore[union-attr]
        if req.size > self.max_body:  # type: ignore[union-attr]
            self.req = None
            self._fatal(413, "body_too_large")
            raise httptools.HttpParserError("body too large")
        req.body.append(body)  # type: ignore[union-attr]

    def on_message_complete(self) -> None:
        req, self.req = self.req, None
        self._in_head = True  # whatever follows is the next request's head
        self._head_bytes = 0
        self.body_deadline = None
        self._continue_pending = False
        if req is None:
            return
        if self.task is None and not self.queue:
            self._start(req)
        else:
            self.queue.append(req)
            if not self.reading_paused and len(self.queue) >= 2:
                self.reading_paused = True
                self.transport.pause_reading()  # type: ignore[union-attr]

    # -- running requests --------------------------------------------------------------------
    def _start(self, item: _Request | _Fatal) -> None:
        if isinstance(item, _Fatal):
            self._send_fatal(item)
            return
        srv = self.server
        if srv.limit_concurrency is not None and len(srv.connections) + srv.active > srv.limit_concurrency:
            item.keep_alive = False
            self.send_error(item, 503, "overloaded", extra=b"retry-after: 1\r\n")
            self.transport.close()  # type: ignore[union-attr]
            return
        srv.active += 1
        self.task = self.loop.create_task(self._run(item))  # also the strong reference asyncio needs

    async def _run(self, req: _Request) -> None:
        url = req.url
        raw_path, _, query = url.partition(b"?")
        if raw_path[:1] != b"/":  # absolute-form (proxy request) or "*": keep only the path
            try:
                parsed = httptools.parse_url(url)
                raw_path, query = parsed.path or b"/", parsed.query or b""
            except httptools.HttpParserInvalidURLError:
                raw_path, query = b"/", b""
        if b"#" in raw_path:
            raw_path = raw_path.partition(b"#")[0]
        path = raw_path.decode("latin-1")
        if "%" in path:
            path = urllib.parse.unquote(path)
        scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": req.http_version,
            "server": self.sockname, "client": self.client, "scheme": "http", "method": req.method,
            "root_path": "", "path": path, "raw_path": raw_path, "query_string": query, "headers": req.headers,
        }
        cycle = _Cycle(self, req)
        try:
            await self.app(scope, cycle.receive, cycle.send)
        except Exception:
            log.exception("unhandled error on %s %s", req.method, path)
            if not cycle.head_sent and not self.closed:
                req.keep_alive = False
                self.send_error(req, 500, "internal")
            elif not self.closed:
                self.transport.close()  # type: ignore[union-attr]
        else:
            if not cycle.done and not self.closed:
                # the app returned without a (complete) answer
                req.keep_alive = False
                if cycle.headers is None:
                    self.send_error(req, 500, "internal")
                else:
                    self.transport.close()  # type: ignore[union-attr]
        finally:
            self.task = None
            self.server.active -= 1
            self._next(req)

    def _next(self, done: _Request) -> None:
        if self.closed:
            return
        if not done.keep_alive or self.server.draining or (self._peer_eof and not self.queue):
            self.transport.close()  # type: ignore[union-attr]
            return
        if self.queue:
            self._start(self.queue.popleft())
            if self.reading_paused and len(self.queue) < 2 and not self.closed:
                self.reading_paused = False
                self.transport.resume_reading()  # type: ignore[union-attr]
            return
        if self._continue_pending and self.req is not None:
            self._continue_pending = False
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # type: ignore[union-attr]
            self.body_deadline = self.loop.time() + self.body_timeout
        if self.reading_paused:
            self.reading_paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]
        if self._in_head and not self._head_bytes and self.req is None:
            self.idle_deadline = self.loop.time() + self.keep_alive_timeout

    # -- writing -----------------------------------------------------------------------------
    def write_response(self, req: _Request, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """Head and body in one write. Adds ``Content-Length`` (unless HEAD / 1xx / 204 / 304 or
        already set), ``Date`` and ``Connection: close`` / ``keep-alive`` as needed."""
        line = _STATUS_LINES.get(status) or _status_line(status)
        out = [line]
        has_cl = False
        for n, v in headers:
            if n == b"content-length":
                has_cl = True
            elif n == b"connection" and v.lower() == b"close":
                req.keep_alive = False
                continue  # written once below
            out.append(n + b": " + v + b"\r\n")
        if not has_cl and req.method != "HEAD" and status >= 200 and status not in (204, 304):
            out.append(b"content-length: %d\r\n" % len(body))
        out.append(_DATE.get())
        if not req.keep_alive or self.server.draining:
            req.keep_alive = False
            out.append(b"connection: close\r\n")
        elif req.http_version == "1.0":
            out.append(b"connection: keep-alive\r\n")
        out.append(b"\r\n")
        if body and req.method != "HEAD":
            out.append(body)
        self.transport.write(b"".join(out))  # type: ignore[union-attr]

    def send_error(self, req: _Request | None, status: int, code: str, extra: bytes = b"") -> None:
        """Write one of this module's errors in the gateway's JSON format."""
        from zistboom.gateway.app import _new_request_id

        fa, en = _MESSAGES[code]
        rid = _new_request_id()
        body = orjson.dumps({"error": {"code": code, "message_fa": fa, "message_en": en, "request_id": rid}})
        close = req is None or not req.keep_alive
        head = (_STATUS_LINES.get(status) or _status_line(status)) + (
            b"content-type: application/json; charset=utf-8\r\ncontent-length: %d\r\nx-zistboom-error: %s\r\n"
            b"x-request-id: %s\r\n%s%s%s\r\n" % (len(body), code.encode(), rid.encode(), extra, _DATE.get(),
                                                 b"connection: close\r\n" if close else b""))
        self.transport.write(head + (b"" if req is not None and req.method == "HEAD" else body))  # type: ignore[union-attr]

    def _fatal(self, status: int, code: str) -> None:
        """Answer ``status`` once the requests parsed before it are answered, then close."""
        if code == "headers_too_large":
            log.warning("request head over %d bytes from %s: 431", self.max_header_bytes,
                        self.client[0] if self.client else "?")
        self.head_deadline = None
        self.discard = True  # nothing after this point is parsed
        self.req = None
        fatal = _Fatal(status, code)
        if self.task is None and not self.queue:
            self._send_fatal(fatal)
        else:
            self.queue.append(fatal)

    def _send_fatal(self, fatal: _Fatal) -> None:
        if self.closed:
            return
        self.send_error(None, fatal.status, fatal.code)
        # lingering close (as nginx does): closing at once with the client's bytes still unread
        # would send a TCP RST that can destroy the answer before the client reads it. So send FIN
        # after the answer, discard whatever still arrives, and close when the client does or
        # after LINGER_S.
        self.discard = True
        self.queue.clear()
        if self.reading_paused:
            self.reading_paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]
        if self.transport.can_write_eof():  # type: ignore[union-attr]
            self.transport.write_eof()  # type: ignore[union-attr]
        self.loop.call_later(self.LINGER_S, self.close)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def close_if_idle(self) -> None:
        """Shutdown: close now unless a request is running (that one closes after its answer)."""
        if self.task is None:
            self.close()

    # -- timers (see GatewayServer._sweep) ----------------------------------------------------
    def _arm_head_timer(self) -> None:
        self.head_deadline = self.loop.time() + self.header_timeout

    def check_deadlines(self, now: float) -> None:
        """Called by the server's sweeper: enforce the head timeout and the keep-alive timeout."""
        if self.closed:
            return
        hd = self.head_deadline
        if hd is not None and now >= hd:
            self.head_deadline = None
            self._head_timeout()
        bd = self.body_deadline
        if bd is not None and now >= bd and self.req is not None and self.task is None and not self.queue:
            self.body_deadline = None
            self.send_error(None, 408, "body_timeout")
            self.close()
            return
        idle = self.idle_deadline
        if idle is not None and now >= idle:
            self.idle_deadline = None
            if self.task is None and not self.queue and self.req is None and not self._head_bytes:
                self.close()

    def _head_timeout(self) -> None:
        if self.closed or not self._in_head or self.discard:
            return
        if self.task is not None or self.queue:
            # a previous (pipelined) request is still being answered and reading is paused: wait
            self._arm_head_timer()
            return
        if self._head_started or self._head_bytes:
            self.send_error(None, 408, "header_timeout")
        self.close()


class GatewayServer:
    """Serve the gateway app on ``host:port`` (or given sockets) with :class:`GatewayHttpProtocol`.

    Shaped like ``uvicorn.Server`` where the tests and the CLI need it: :meth:`run` (blocking; the
    loop is uvloop when ``loop="uvloop"`` and it is installed, else asyncio), :meth:`serve`
    (coroutine), ``started`` (True once listening and the app's ``startup()`` has run) and
    ``should_exit`` (set it, from any thread, to stop: checked every 0.1 s). In the main thread
    SIGINT and SIGTERM also stop it. ``config`` defaults to ``app.config``; its
    ``limit_concurrency``, ``backlog``, head/body limits and timeouts apply.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 8080, *, config: GatewayConfig | None = None,
                 loop: str = "uvloop", shutdown_timeout: float = 30.0) -> None:
        self.app = app
        self.host, self.port = host, port
        self.config = config or getattr(app, "config", None) or GatewayConfig()
        self.loop_kind = loop
        self.shutdown_timeout = shutdown_timeout
        self.limit_concurrency = self.config.limit_concurrency
        self.loop: asyncio.AbstractEventLoop | None = None
        self.connections: set[GatewayHttpProtocol] = set()
        self.active = 0  # requests being answered (app running)
        self.started = False
        self.should_exit = False
        self.draining = False
        self.servers: list[asyncio.AbstractServer] = []

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        """Serve until ``should_exit`` (or SIGINT/SIGTERM in the main thread). Blocking."""
        factory = None
        if self.loop_kind == "uvloop":
            try:
                import uvloop

                factory = uvloop.new_event_loop
            except ImportError:  # pragma: no cover - uvloop is a dependency
                factory = None
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(self.serve(sockets))

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = loop = asyncio.get_running_loop()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.add_signal_handler(sig, self._on_signal)
                except (NotImplementedError, RuntimeError):  # pragma: no cover
                    pass
        await self.app.startup()
        try:
            backlog = self.config.backlog
            if sockets:
                for s in sockets:
                    self.servers.append(await loop.create_server(lambda: GatewayHttpProtocol(self), sock=s,
                                                                 backlog=backlog))
            else:
                self.servers.append(await loop.create_server(lambda: GatewayHttpProtocol(self), self.host, self.port,
                                                             backlog=backlog, reuse_address=True))
            log.info("gateway listening on http://%s:%d", self.host, self.port)
            self.started = True
            # one sweeper for every connection's head and keep-alive deadlines (the timer-wheel
            # idea of nginx/Envoy) instead of arming and cancelling timers per request
            cfg = self.config
            sweep_every = max(0.02, min(0.5, cfg.header_timeout / 4, cfg.keep_alive_timeout / 4))
            next_sweep = loop.time() + sweep_every
            while not self.should_exit:
                await asyncio.sleep(min(0.1, sweep_every))
                now = loop.time()
                if now >= next_sweep:
                    next_sweep = now + sweep_every
                    for conn in list(self.connections):
                        conn.check_deadlines(now)
        finally:
            await self._shutdown()

    def _on_signal(self) -> None:
        self.should_exit = True

    async def _shutdown(self) -> None:
        self.draining = True
        for srv in self.servers:
            srv.close()
        for conn in list(self.connections):
            conn.close_if_idle()
        deadline = time.monotonic() + self.shutdown_timeout
        while self.active and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.close()
        for srv in self.servers:
            try:
                await asyncio.wait_for(srv.wait_closed(), 1.0)
            except (asyncio.TimeoutError, Exception):
                pass
        self.servers.clear()
        try:
            await self.app.shutdown()
        finally:
            self.started = False

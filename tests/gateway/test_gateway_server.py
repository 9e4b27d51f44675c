"""The gateway's own HTTP/1.1 server (:mod:`zistboom.gateway.server`) against the real gateway and
real aiohttp operators, over real sockets on 127.0.0.1: keep-alive and its idle timeout, HTTP/1.0,
``Connection: close``, request-body limits (Content-Length and chunked), ``Expect: 100-continue``,
malformed input, HEAD, pipelining, ``limit_concurrency``, ``Upgrade``/``CONNECT``, clients that go
away, graceful shutdown, and the gateway's JSON error format on every server-level error.

Protocol-level cases use a raw :class:`socket.socket` (:class:`Conn` below reads responses framed
by ``Content-Length``, which this server always sends except for HEAD/1xx/204/304); the rest use
httpx. Every socket has a timeout, so a server that hangs fails the test instead of stalling it.
No test asserts a duration: "closed" means the server sent EOF before the socket timeout.
"""

from __future__ import annotations

import json
import random
import re
import socket
import struct
import threading
import time

import httpx
import pytest

from zistboom.gateway.config import GatewayConfig

pytestmark = pytest.mark.timeout(60)

KEY = {"X-Api-Key": "key-app1-secret"}
AUTH = b"X-Api-Key: key-app1-secret\r\n"
FINES = b"/v1/services/fines/fines/"
ECHO = b"/v1/services/fines/echo"
PERSIAN = re.compile("[\u0600-\u06ff]")


def cfg(**kw) -> GatewayConfig:
    base = dict(refresh_interval=0.2, health_interval=60, try_timeout=2.0)
    base.update(kw)
    return GatewayConfig(**base)


# ------------------------------------------------------------------------------ raw client


class Resp:
    def __init__(self, status_line: str, headers: list[tuple[str, str]], body: bytes):
        self.status_line = status_line
        self.status = int(status_line.split(" ", 2)[1])
        self.headers = headers
        self.body = body

    def h(self, name: str) -> str | None:
        """Last value of header ``name`` (lower case), or None."""
        vals = [v for n, v in self.headers if n == name]
        return vals[-1] if vals else None

    def json(self):
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<Resp {self.status_line!r} {self.headers!r} {self.body[:200]!r}>"


class Conn:
    """A raw client connection with a small HTTP/1.1 response reader."""

    def __init__(self, gw, timeout: float = 5.0):
        self.sock = socket.create_connection(("127.0.0.1", gw.port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        b = self.sock.recv(65536)  # socket.timeout propagates: a hang fails the test
        if not b:
            raise EOFError(f"server closed the connection; unparsed bytes: {self.buf[:200]!r}")
        self.buf += b

    def response(self, head: bool = False) -> Resp:
        """The next response; ``head``: it answers a HEAD request (no body follows)."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        raw, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = raw.decode("latin-1").split("\r\n")
        assert re.fullmatch(r"HTTP/1\.[01] \d{3}( .*)?", lines[0]), f"not a status line: {lines[0][:200]!r}"
        headers = [(n.strip().lower(), v.strip()) for n, _, v in (ln.partition(":") for ln in lines[1:])]
        r = Resp(lines[0], headers, b"")
        if head or r.status < 200 or r.status in (204, 304):
            return r
        cl = r.h("content-length")
        assert cl is not None, f"no content-length in {r!r}"
        n = int(cl)
        while len(self.buf) < n:
            self._fill()
        r.body, self.buf = self.buf[:n], self.buf[n:]
        return r

    def rest_until_close(self) -> bytes:
        """Every byte the server still sends until it closes (EOF or reset); socket.timeout if it
        keeps the connection open."""
        out, self.buf = self.buf, b""
        while True:
            try:
                b = self.sock.recv(65536)
            except ConnectionResetError:
                return out
            if not b:
                return out
            out += b

    def close(self) -> None:
        self.sock.close()


def req(method: bytes, target: bytes, *headers: bytes, body: bytes | None = None, version: bytes = b"1.1") -> bytes:
    """A request; ``headers`` are ready ``Name: value`` lines (a trailing CRLF is dropped)."""
    out = method + b" " + target + b" HTTP/" + version + b"\r\nHost: gw\r\n"
    for h in headers:
        out += h.rstrip(b"\r\n") + b"\r\n"
    if body is not None:
        out += b"Content-Length: %d\r\n" % len(body)
    return out + b"\r\n" + (body or b"")


def chunked(*parts: bytes, trailer: bytes = b"") -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p) + b"0\r\n" + trailer + b"\r\n"


def assert_server_error(r, status: int, code: str) -> None:
    """``r``: a :class:`Resp` or an httpx response. The gateway's error format: status,
    ``X-Zistboom-Error``, JSON ``{"error": {code, message_fa (Persian), message_en, request_id}}``
    with ``request_id`` equal to ``X-Request-Id``."""
    if isinstance(r, Resp):
        st, get, body = r.status, r.h, r.body
    else:
        st, get, body = r.status_code, r.headers.get, r.content
    assert st == status, (st, body[:300])
    assert get("x-zistboom-error") == code
    assert (get("content-type") or "").startswith("application/json")
    err = json.loads(body)["error"]
    assert err["code"] == code
    assert PERSIAN.search(err["message_fa"]), err
    assert err["message_en"].strip() and err["message_en"].isascii(), err
    assert err["request_id"] and err["request_id"] == get("x-request-id")


def wait_for(pred, timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def wait_server_idle(gw) -> None:
    """No request running and no connection open on the gateway's server."""
    srv = gw.server
    wait_for(lambda: srv.active == 0 and not srv.connections, what="server idle (no active request or connection)")


@pytest.fixture
def op_a(registry, operators):
    a = operators("a")
    registry.operator("a", "IR-01", a.url)
    return a


# ------------------------------------------------------------------------------ keep-alive


def test_keep_alive_serves_many_requests_then_idle_close(op_a, gateway):
    gw = gateway(cfg(keep_alive_timeout=0.3))
    c = Conn(gw)
    for i in range(5):
        c.send(req(b"GET", FINES + b"%d" % i, AUTH))
        r = c.response()
        assert r.status == 200 and r.h("x-zistboom-operator") == "a", r
        assert r.json()["path"] == f"/v1/services/fines/fines/{i}"
        assert r.h("connection") is None  # HTTP/1.1 keep-alive is the default: nothing to say
        c.send(req(b"POST", ECHO, AUTH, body=b"ping-%d" % i))
        r = c.response()
        assert r.status == 200 and r.json()["body"] == f"ping-{i}"
    assert op_a.count() == 10
    # now idle: closed after keep_alive_timeout (without it the socket timeout of 5 s fires)
    assert c.rest_until_close() == b""
    c.close()


def test_keep_alive_timeout_does_not_cut_a_running_request(op_a, gateway):
    gw = gateway(cfg(keep_alive_timeout=0.2))
    op_a.delays = [0.8]  # the operator takes longer than the idle timeout
    c = Conn(gw)
    c.send(req(b"GET", FINES + b"1", AUTH))
    r = c.response()
    assert r.status == 200 and r.json()["path"] == "/v1/services/fines/fines/1"
    c.send(req(b"GET", FINES + b"2", AUTH))  # and the connection is still usable afterwards
    assert c.response().status == 200
    c.close()


def test_http10_close_by_default_and_keep_alive_on_request(op_a, gateway):
    gw = gateway()
    c = Conn(gw)
    c.send(req(b"GET", b"/healthz", version=b"1.0"))
    r = c.response()
    assert r.status == 200 and r.h("connection") == "close"
    assert c.rest_until_close() == b""
    c.close()

    c = Conn(gw)
    for i in range(3):
        c.send(req(b"GET", FINES + b"%d" % i, AUTH, b"Connection: keep-alive", version=b"1.0"))
        r = c.response()
        assert r.status == 200 and r.h("connection") == "keep-alive", r
        assert r.h("content-length") == str(len(r.body))
    c.send(req(b"GET", b"/healthz", version=b"1.0"))  # the last one without keep-alive: closed
    assert c.response().h("connection") == "close"
    assert c.rest_until_close() == b""
    c.close()


def test_client_connection_close_honoured(op_a, gateway):
    gw = gateway()
    for target, extra in ((b"/healthz", ()), (FINES + b"7", (AUTH,)), (b"/nowhere", ())):
        c = Conn(gw)
        c.send(req(b"GET", target, *extra, b"Connection: close"))
        r = c.response()
        assert r.status in (200, 404) and r.h("connection") == "close", r
        assert c.rest_until_close() == b""
        c.close()
    # a request pipelined after "Connection: close" is not answered
    c = Conn(gw)
    c.send(req(b"GET", b"/healthz", b"Connection: close") + req(b"GET", b"/healthz"))
    assert c.response().status == 200
    assert c.rest_until_close() == b""
    c.close()


# ------------------------------------------------------------------------------ request bodies


def test_body_over_limit_by_content_length_gets_413_and_close(op_a, gateway):
    gw = gateway(cfg(max_request_body=1000))
    # exactly the limit is accepted
    r = httpx.post(gw.url + ECHO.decode(), content=b"x" * 1000, headers=KEY, timeout=10)
    assert r.status_code == 200 and len(r.json()["body"]) == 1000
    # one byte more: 413 without the operator
    c = Conn(gw)
    c.send(req(b"POST", ECHO, AUTH, body=b"y" * 1001))
    r = c.response()
    assert_server_error(r, 413, "body_too_large")
    assert r.h("connection") == "close"
    assert c.rest_until_close() == b""
    c.close()
    # a huge announced body is refused at once, before it is sent
    c = Conn(gw)
    c.send(b"POST " + ECHO + b" HTTP/1.1\r\nHost: gw\r\n" + AUTH + b"Content-Length: 500000000\r\n\r\n")
    r = c.response()
    assert_server_error(r, 413, "body_too_large")
    assert c.rest_until_close() == b""
    c.close()
    # httpx sending a 2 MB body meanwhile still reads the 413 (lingering close, no reset)
    r = httpx.post(gw.url + ECHO.decode(), content=b"z" * (2 * 1024 * 1024), headers=KEY, timeout=10)
    assert_server_error(r, 413, "body_too_large")
    assert op_a.count() == 1


def test_chunked_body_growing_past_limit_gets_413_and_close(op_a, gateway):
    gw = gateway(cfg(max_request_body=1000))
    c = Conn(gw)
    c.send(b"POST " + ECHO + b" HTTP/1.1\r\nHost: gw\r\n" + AUTH + b"Transfer-Encoding: chunked\r\n\r\n")
    for _ in range(3):
        c.send(b"12c\r\n" + b"c" * 300 + b"\r\n")  # 900 bytes so far: still under the limit
    c.send(b"12c\r\n" + b"c" * 300 + b"\r\n")  # 1200
    r = c.response()
    assert_server_error(r, 413, "body_too_large")
    assert r.h("connection") == "close"
    assert c.rest_until_close() == b""
    c.close()
    assert op_a.count() == 0
    assert httpx.get(gw.url + "/healthz", timeout=5).status_code == 200


def test_chunked_body_under_limit_reaches_operator_whole(op_a, gateway):
    gw = gateway(cfg(max_request_body=1000))
    parts = [b"hello ", b"chunked ", "دنیا".encode(), b"!" * 500]
    whole = b"".join(parts)
    c = Conn(gw)
    c.send(b"POST " + ECHO + b" HTTP/1.1\r\nHost: gw\r\n" + AUTH + b"Transfer-Encoding: chunked\r\n\r\n")
    for p in parts:  # separate writes: the body arrives in several reads
        c.send(b"%x;ext=1\r\n%s\r\n" % (len(p), p))
        time.sleep(0.02)
    c.send(b"0\r\n\r\n")
    r = c.response()
    assert r.status == 200 and r.json()["body"] == whole.decode()
    assert op_a.seen[-1][3] == whole
    # httpx with a generator body (chunked) too, on a fresh connection
    r = httpx.post(gw.url + ECHO.decode(), content=iter(parts), headers=KEY, timeout=10)
    assert r.status_code == 200 and r.json()["body"] == whole.decode()
    # and the raw connection is still usable
    c.send(req(b"GET", b"/healthz"))
    assert c.response().status == 200
    c.close()


def test_expect_100_continue(op_a, gateway):
    gw = gateway(cfg(max_request_body=1000))
    c = Conn(gw)
    body = b'{"amount": 12}'
    c.send(b"POST " + ECHO + b" HTTP/1.1\r\nHost: gw\r\n" + AUTH
           + b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
    r = c.response()  # before any body byte was sent
    assert r.status_line == "HTTP/1.1 100 Continue" and r.headers == [], r
    c.send(body)
    r = c.response()
    assert r.status == 200 and r.json()["body"] == body.decode()
    # the connection goes on (a second Expect request on it)
    c.send(b"POST " + ECHO + b" HTTP/1.1\r\nHost: gw\r\n" + AUTH + b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    assert c.response().status == 100
    c.send(b"ok")
    assert c.response().json()["body"] == "ok"
    c.close()
    # a body over the limit gets the final 413 instead of 100 Continue
    c = Conn(gw)
    c.send(b"POST " + ECHO + b" HTTP/1.1\r\nHost: gw\r\n" + AUTH + b"Expect: 100-continue\r\nContent-Length: 5000\r\n\r\n")
    assert_server_error(c.response(), 413, "body_too_large")
    assert c.rest_until_close() == b""
    c.close()
    assert op_a.count() == 2


def test_expect_100_continue_for_request_behind_a_running_one(op_a, gateway):
    """RFC 9110 §10.1.1: a server that gets ``Expect: 100-continue`` and none of the body must send
    100 (Continue) or a final status. Here the Expect request's head arrives while the previous
    request on the connection is still at the operator; once that one is answered, the waiting
    client must get its 100 Continue (it sends no body before)."""
    gw = gateway()
    op_a.delays = [0.5]
    c = Conn(gw, timeout=3.0)
    c.send(req(b"GET", FINES + b"1", AUTH)
           + b"POST " + ECHO + b" HTTP/1.1\r\nHost: gw\r\n" + AUTH + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n")
    r = c.response()
    assert r.status == 200 and r.json()["path"] == "/v1/services/fines/fines/1"
    try:
        r = c.response()
    except socket.timeout:
        pytest.fail("no 100 Continue (nor a final answer) within 3 s for an Expect: 100-continue request "
                    "whose head arrived while the previous request was running: the client waits forever")
    assert r.status == 100, r
    c.send(b"hello")
    r = c.response()
    assert r.status == 200 and r.json()["body"] == "hello"
    c.close()


# ------------------------------------------------------------------------------ malformed input

MALFORMED = [
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(64)),  # a TLS ClientHello
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",  # the HTTP/2 preface
    b"GET / HTTP/1.1\nHost: x\n\n",  # bare LF
    b"FOO /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /health\x00z HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /healthz HTTP/1.1 extra\r\nHost: x\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Fold: a\r\n b\r\n\r\n",  # obs-fold
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length : 0\r\n\r\n",
    # request smuggling shapes
    b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
    b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffffff\r\n",
]


def test_malformed_requests_get_400_bad_request_and_close(op_a, gateway):
    gw = gateway()
    for raw in MALFORMED:
        c = Conn(gw)
        c.send(raw)
        r = c.response()
        assert_server_error(r, 400, "bad_request")
        assert r.h("connection") == "close", raw
        assert c.rest_until_close() == b"", raw
        c.close()
    # garbage after a good request on a keep-alive connection: the good one is answered first
    c = Conn(gw)
    c.send(req(b"GET", FINES + b"1", AUTH) + b"\x00\x01garbage\r\n\r\n")
    r = c.response()
    assert r.status == 200 and r.h("x-zistboom-operator") == "a"
    assert_server_error(c.response(), 400, "bad_request")
    assert c.rest_until_close() == b""
    c.close()
    assert op_a.count() == 1
    assert httpx.get(gw.url + "/healthz", timeout=5).status_code == 200


ODD_BUT_PARSEABLE = [
    b"GET /\r\n\r\n",  # HTTP/0.9 shape
    b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET http://elsewhere.example/v1/services/fines/fines/1?x=1 HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Connection: close\r\n\r\n",
    b"GET /v1/services/fines/fines/%ff%fe%00 HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Connection: close\r\n\r\n",
    b"GET /v1/services/fines/fines/\xc3\xa9 HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Connection: close\r\n\r\n",
    b"GET /v1/services/fines/fines/1 HTTP/1.1\r\nHost: x\r\nX-Api-Key: \xff\xfe\r\nConnection: close\r\n\r\n",
    b"GET /v1/services/fines/fines/1 HTTP/1.1\r\nHost: x\r\n" + AUTH + b"X-Caller-Province: \xd8\xa7\r\nConnection: close\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: \xff\x01\r\nConnection: close\r\n\r\n",
    b"\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"POST /v1/services/fines/payments HTTP/1.1\r\nHost: x\r\n" + AUTH
    + b"Idempotency-Key: \xff\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
]

FUZZ_SEEDS = [
    req(b"POST", ECHO, AUTH, b"Connection: close", body=b"hello"),
    b"POST " + ECHO + b" HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    + chunked(b"hello"),
    req(b"GET", FINES + b"1?q=2", b"Authorization: Bearer key-app1-secret", b"X-Caller-Province: IR-01",
        b"Idempotency-Key: k", b"Connection: close"),
]
FUZZ_BITS = [b"\r\n", b" ", b":", b"%", b"\x00", b"\xff", b";", b"0", b"chunked", b"\r\n\r\n",
             b"Upgrade: h2c\r\nConnection: upgrade\r\n", b"Expect: 100-continue\r\n", b"HTTP/1.0"]


def _mutate(rng: random.Random, b: bytes) -> bytes:
    out = bytearray(b)
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(out))
        x = rng.random()
        if x < 0.3:
            out[i] = rng.randrange(256)
        elif x < 0.5:
            del out[i]
        elif x < 0.75:
            out[i:i] = rng.choice(FUZZ_BITS)
        else:
            out[i:i] = out[rng.randrange(len(out)):][:rng.randint(1, 30)]
    return bytes(out)


@pytest.mark.timeout(90)
def test_no_5xx_for_odd_or_mutated_requests(op_a, gateway):
    gw = gateway(cfg(header_timeout=0.5, keep_alive_timeout=0.3, max_request_body=1000, max_header_bytes=4096))
    for raw in ODD_BUT_PARSEABLE:
        c = Conn(gw)
        c.send(raw)
        r = c.response()
        assert r.status < 500, (raw, r)
        assert c.rest_until_close() == b"", raw
        c.close()
    # seeded mutations of valid requests: whatever comes back is never a 5xx (a body that never
    # completes is not answered at all: no body timeout is promised, so that client gives up)
    rng = random.Random(20260601)
    statuses: dict[bytes, int] = {}
    for _ in range(200):
        raw = _mutate(rng, rng.choice(FUZZ_SEEDS))
        c = Conn(gw, timeout=1.0)
        try:
            c.send(raw)
        except OSError:
            pass
        try:
            got = c.rest_until_close()
        except socket.timeout:
            got = c.buf
        c.close()
        for st in re.findall(rb"HTTP/1\.1 (\d{3}) ", got):
            statuses[st] = statuses.get(st, 0) + 1
            assert not st.startswith(b"5") or st == b"503" and b"no_route" in got, (raw, got[:400])
    assert statuses.get(b"400", 0) > 0 and statuses.get(b"200", 0) > 0, statuses  # the fuzz did reach both
    assert httpx.get(gw.url + "/healthz", timeout=5).status_code == 200


# ------------------------------------------------------------------------------ HEAD, pipelining


def test_head_has_no_body_and_connection_stays_usable(op_a, gateway):
    gw = gateway()
    c = Conn(gw)
    # pipelined in one write: a body byte leaking after any HEAD answer would corrupt the next status line
    c.send(req(b"HEAD", FINES + b"1", AUTH) + req(b"GET", FINES + b"2", AUTH) + req(b"HEAD", b"/healthz")
           + req(b"HEAD", b"/nowhere") + req(b"GET", b"/healthz"))
    r = c.response(head=True)
    assert r.status == 200 and r.h("x-zistboom-operator") == "a" and r.body == b""
    r = c.response()
    assert r.status == 200 and r.json()["path"] == "/v1/services/fines/fines/2"
    r = c.response(head=True)
    assert r.status == 200 and int(r.h("content-length")) > 0  # the length a GET would have
    r = c.response(head=True)
    assert r.status == 404 and r.h("x-zistboom-error") == "not_found"
    r = c.response()
    assert r.status == 200 and r.json()["status"] in ("ok", "degraded")
    assert c.buf == b""
    assert [s[0] for s in op_a.seen] == ["HEAD", "GET"]
    # one at a time too, then the connection is still usable
    c.send(req(b"HEAD", FINES + b"3", AUTH))
    assert c.response(head=True).status == 200
    c.send(req(b"GET", FINES + b"4", AUTH))
    r = c.response()
    assert r.status == 200 and r.json()["path"] == "/v1/services/fines/fines/4"
    c.close()


def test_fifty_pipelined_requests_answered_in_order(op_a, gateway):
    gw = gateway()
    batch = b""
    expect = []
    for i in range(50):
        rid = [b"X-Request-Id: rid-%d" % i] if i % 5 == 0 else []
        last = [b"Connection: close"] if i == 49 else []
        if i % 10 == 7:
            batch += req(b"GET", b"/nowhere/%d" % i, *rid, *last)
            expect.append(("404", i))
        elif i % 3 == 0:
            batch += req(b"POST", ECHO + b"?i=%d" % i, AUTH, *rid, *last, body=b"body-%d" % i)
            expect.append(("echo", i))
        else:
            batch += req(b"GET", FINES + b"%d" % i, AUTH, *rid, *last)
            expect.append(("get", i))
    c = Conn(gw)
    c.send(batch)  # one write
    rids = []
    for kind, i in expect:
        r = c.response()
        rid = r.h("x-request-id")
        assert rid, r
        if i % 5 == 0:
            assert rid == f"rid-{i}"
        rids.append(rid)
        if kind == "404":
            assert_server_error(r, 404, "not_found")
        elif kind == "echo":
            assert r.status == 200 and r.json() == {"operator": "a", "path": f"/v1/services/fines/echo?i={i}",
                                                    "body": f"body-{i}"}
        else:
            assert r.status == 200 and r.json()["path"] == f"/v1/services/fines/fines/{i}"
    assert r.h("connection") == "close"
    assert c.rest_until_close() == b""
    c.close()
    assert len(set(rids)) == 50
    # every proxied answer carries the request id the operator was given for that very request
    seen = {s[1]: {k.lower(): v for k, v in s[2].items()}["x-request-id"] for s in op_a.seen}
    for (kind, i), rid in zip(expect, rids):
        if kind == "echo":
            assert seen[f"/v1/services/fines/echo?i={i}"] == rid
        elif kind == "get":
            assert seen[f"/v1/services/fines/fines/{i}"] == rid


# ------------------------------------------------------------------------------ limits


def test_limit_concurrency_answers_503_overloaded(op_a, gateway):
    gw = gateway(cfg(limit_concurrency=2, try_timeout=5.0))
    # one client alone is served
    c = Conn(gw)
    c.send(req(b"GET", FINES + b"0", AUTH))
    assert c.response().status == 200
    c.close()
    wait_server_idle(gw)
    # one request running at the operator (1 connection + 1 running = the limit) ...
    op_a.delays = [1.5]
    busy = Conn(gw)
    busy.send(req(b"GET", FINES + b"1", AUTH))
    wait_for(lambda: op_a.count() == 2, what="the slow request to reach the operator")
    # ... so a second connection's request is over it
    c = Conn(gw)
    c.send(req(b"GET", b"/healthz"))
    r = c.response()
    assert_server_error(r, 503, "overloaded")
    assert r.h("retry-after") == "1" and r.h("connection") == "close"
    assert c.rest_until_close() == b""
    c.close()
    r = httpx.get(gw.url + "/v1/services/fines/fines/2", headers=KEY, timeout=5)
    assert_server_error(r, 503, "overloaded")
    # the running request is not disturbed
    r = busy.response()
    assert r.status == 200 and r.json()["path"] == "/v1/services/fines/fines/1"
    busy.close()
    wait_server_idle(gw)
    assert httpx.get(gw.url + "/healthz", timeout=5).status_code == 200
    assert op_a.count() == 2


def test_limit_concurrency_counts_as_documented(registry, gateway):
    """server.py: ``limit_concurrency`` is the number of "open connections + running requests
    *above which* new requests get 503". One client on one connection with nothing running is
    1 + 0, not above 1, so ``limit_concurrency=1`` must still serve it."""
    gw = gateway(cfg(limit_concurrency=1))
    r = httpx.get(gw.url + "/healthz", timeout=5)
    assert r.status_code == 200, f"limit_concurrency=1 refuses a lone request (1 connection, 0 running): {r.text}"


@pytest.mark.parametrize("shape", ["after_body_tail", "after_get_in_same_read"])
def test_head_limit_applies_to_every_pipelined_head(registry, gateway, shape):
    """``max_header_bytes`` must bound every request head, also one that arrives in the same read
    as the end of the previous request."""
    gw = gateway(cfg(max_header_bytes=2048))
    pad = 8000 if shape == "after_body_tail" else 3000  # 3000: over the limit, under twice the limit
    big = req(b"GET", b"/healthz", b"Connection: close", b"X-Pad: " + b"a" * pad)
    c = Conn(gw)
    if shape == "after_body_tail":
        c.send(b"POST /healthz HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n\r\nhel")
        time.sleep(0.2)  # the server has read the first part: the next read starts inside the body
        c.send(b"lo" + big)
    else:
        c.send(req(b"GET", b"/healthz") + big)
    assert c.response().status == 200
    r = c.response()
    assert r.status == 431, f"a {len(big)}-byte head was accepted with max_header_bytes=2048 ({shape}): {r!r}"
    assert_server_error(r, 431, "headers_too_large")
    c.close()


def test_chunked_trailers_are_not_merged_into_request_headers(op_a, gateway):
    """RFC 9110 §6.5.1: trailer fields must not be merged into the header section. A trailer must not
    change routing (X-Caller-Province), authenticate (X-Api-Key) or reach the operator as a header."""
    gw = gateway()
    head = b"POST " + ECHO + b" HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
    c = Conn(gw)
    c.send(head + AUTH + b"\r\n" + chunked(b"hello", trailer=b"X-Caller-Province: IR-02\r\nX-Smuggled: 1\r\n"))
    r = c.response()
    assert r.status == 200, f"a trailer field changed the request's routing: {r!r}"
    hdrs = {k.lower() for k in op_a.seen[-1][2]}
    assert "x-smuggled" not in hdrs
    c.close()
    c = Conn(gw)
    c.send(head + b"\r\n" + chunked(b"hello", trailer=AUTH))
    assert_server_error(c.response(), 401, "unauthorized")
    c.close()


def test_chunked_trailer_section_is_bounded(op_a, gateway):
    """The trailer section is part of a chunked body (RFC 9112 §7.1): a big one must not be taken in
    whole and passed on (neither ``max_request_body`` nor ``max_header_bytes`` lets it through)."""
    gw = gateway(cfg(max_request_body=1000, max_header_bytes=2048))
    c = Conn(gw)
    # 6000 bytes: over both limits, under the operator's own 8190-byte header limit (aiohttp)
    c.send(b"POST " + ECHO + b" HTTP/1.1\r\nHost: gw\r\n" + AUTH + b"Transfer-Encoding: chunked\r\n\r\n"
           + chunked(b"hello", trailer=b"X-Pad: " + b"p" * 6000 + b"\r\n"))
    r = c.response()
    assert r.h("x-zistboom-operator") is None, f"a 6000-byte trailer section was accepted and forwarded: {r!r}"
    assert r.status in (400, 413, 431), r
    assert_server_error(r, r.status, r.h("x-zistboom-error"))
    assert c.rest_until_close() == b""
    c.close()
    assert op_a.count() == 0


# ------------------------------------------------------------------------------ Upgrade / CONNECT


def test_upgrade_and_connect_answered_as_plain_http_then_closed(op_a, gateway):
    gw = gateway()
    ws = (b"Connection: Upgrade", b"Upgrade: websocket", b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
          b"Sec-WebSocket-Version: 13")
    h2c = (b"Connection: Upgrade, HTTP2-Settings", b"Upgrade: h2c", b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA")
    c = Conn(gw)
    # bytes after the upgrade point (a websocket frame, a pipelined request) are not answered
    c.send(req(b"GET", b"/healthz", *ws) + b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58" + req(b"GET", b"/healthz"))
    r = c.response()
    assert r.status == 200 and r.h("connection") == "close" and r.h("upgrade") is None
    assert c.rest_until_close() == b""
    c.close()
    c = Conn(gw)
    c.send(req(b"GET", FINES + b"9", AUTH, *h2c))
    r = c.response()
    assert r.status == 200 and r.h("x-zistboom-operator") == "a" and r.h("connection") == "close"
    assert r.json()["path"] == "/v1/services/fines/fines/9"
    assert c.rest_until_close() == b""
    c.close()
    hdrs = {k.lower() for k in op_a.seen[-1][2]}
    assert "upgrade" not in hdrs and "http2-settings" not in hdrs  # hop-by-hop: not forwarded
    c = Conn(gw)
    c.send(b"CONNECT elsewhere.example:443 HTTP/1.1\r\nHost: elsewhere.example:443\r\n\r\n")
    r = c.response()
    assert 400 <= r.status < 500 and r.h("connection") == "close"
    assert_server_error(r, r.status, r.h("x-zistboom-error"))
    assert c.rest_until_close() == b""
    c.close()
    assert op_a.count() == 1


def test_upgrade_request_with_body_keeps_its_body(op_a, gateway):
    """An ``Upgrade: h2c`` POST (curl --http2 on http:// sends these) answered as plain HTTP must
    not reach the operator with its body cut off."""
    gw = gateway()
    body = b'{"amount": 5, "plate": "12ab345"}'
    c = Conn(gw)
    c.send(req(b"POST", ECHO, AUTH, b"Connection: Upgrade, HTTP2-Settings", b"Upgrade: h2c",
               b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA", body=body))
    r = c.response()
    assert c.rest_until_close() == b""
    c.close()
    if op_a.count():
        assert op_a.seen[-1][3] == body, f"operator got body {op_a.seen[-1][3]!r} instead of {body!r}; client saw {r!r}"
        assert r.status == 200 and r.json()["body"] == body.decode()
    else:  # refusing it is acceptable too, in the gateway's format
        assert 400 <= r.status < 500
        assert_server_error(r, r.status, r.h("x-zistboom-error"))


# ------------------------------------------------------------------------------ clients going away


def test_clients_disconnecting_mid_request_do_not_break_the_server(op_a, gateway):
    gw = gateway()
    # half a body, then gone
    c = Conn(gw)
    c.send(b"POST " + ECHO + b" HTTP/1.1\r\nHost: gw\r\n" + AUTH + b"Content-Length: 500\r\n\r\n" + b"h" * 200)
    c.close()
    # half a chunked body, then gone
    c = Conn(gw)
    c.send(b"POST " + ECHO + b" HTTP/1.1\r\nHost: gw\r\n" + AUTH + b"Transfer-Encoding: chunked\r\n\r\n10\r\nabc")
    c.close()
    # half a head, then gone
    c = Conn(gw)
    c.send(b"GET /healthz HTTP/1.1\r\nHo")
    c.close()
    # a whole request, gone before the operator answers
    op_a.delays = [0.4]
    c = Conn(gw)
    c.send(req(b"GET", FINES + b"1", AUTH))
    wait_for(lambda: op_a.count() == 1, what="the request to reach the operator")
    c.close()
    # pipelined requests, gone at once (with a reset: SO_LINGER 0)
    op_a.delays = [0.2]
    c = Conn(gw)
    c.send(b"".join(req(b"GET", FINES + b"%d" % i, AUTH) for i in range(2, 6)))
    wait_for(lambda: op_a.count() >= 2, what="the pipelined request to reach the operator")
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
    # the server forgets them all (no request left running, no connection left open) ...
    wait_server_idle(gw)
    # ... and serves the next clients
    r = httpx.post(gw.url + ECHO.decode(), content=b"next", headers=KEY, timeout=5)
    assert r.status_code == 200 and r.json()["body"] == "next"
    c = Conn(gw)
    c.send(req(b"GET", FINES + b"9", AUTH) + req(b"GET", b"/healthz"))
    assert c.response().json()["path"] == "/v1/services/fines/fines/9"
    assert c.response().status == 200
    c.close()


# ------------------------------------------------------------------------------ graceful shutdown


@pytest.mark.timeout(30)
def test_graceful_shutdown_finishes_running_request_and_refuses_new_connections(op_a, gateway):
    gw = gateway(cfg(try_timeout=5.0))
    idle = Conn(gw)
    idle.send(req(b"GET", b"/healthz"))
    assert idle.response().status == 200  # an idle keep-alive connection
    op_a.delays = [1.5]
    busy = Conn(gw)
    busy.send(req(b"GET", FINES + b"42", AUTH))
    wait_for(lambda: op_a.count() == 1, what="the request to reach the operator")
    answer: list = []
    reader = threading.Thread(target=lambda: answer.append(busy.response()), daemon=True)
    reader.start()
    gw.server.should_exit = True
    # the idle connection is closed at once, the listener too, while the request is still running
    assert idle.rest_until_close() == b""
    idle.close()

    def refused() -> bool:
        try:
            socket.create_connection(("127.0.0.1", gw.port), timeout=1).close()
            return False
        except ConnectionRefusedError:
            return True

    wait_for(refused, what="new connections to be refused")
    assert not answer, "the operator's delay is 1.5 s: the request should still be running"
    reader.join(10)
    assert answer, "the running request got no answer"
    r = answer[0]
    assert r.status == 200 and r.h("connection") == "close"
    assert r.json() == {"operator": "a", "path": "/v1/services/fines/fines/42", "body": ""}
    assert busy.rest_until_close() == b""
    busy.close()
    gw.thread.join(10)
    assert not gw.thread.is_alive() and not gw.server.started and not gw.app.started
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", gw.port), timeout=1)


# ------------------------------------------------------------------------------ error format


def test_every_server_level_error_in_gateway_format(op_a, gateway):
    gw = gateway(cfg(max_header_bytes=1024, header_timeout=0.3, max_request_body=100, limit_concurrency=2,
                     try_timeout=5.0))
    seen = {}

    def one(raw: bytes, settle: bool = True) -> Resp:
        c = Conn(gw)
        c.send(raw)
        r = c.response()
        assert r.h("connection") == "close", r
        assert c.rest_until_close() == b""
        c.close()
        if settle:
            wait_server_idle(gw)  # the next request must not count this connection
        seen[r.h("x-zistboom-error")] = r
        return r

    assert_server_error(one(b"NOT HTTP\r\n\r\n"), 400, "bad_request")
    assert_server_error(one(req(b"GET", b"/healthz", b"X-Pad: " + b"p" * 2000)), 431, "headers_too_large")
    assert_server_error(one(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "), 408, "header_timeout")
    assert_server_error(one(req(b"POST", b"/healthz", body=b"b" * 101)), 413, "body_too_large")
    assert_server_error(one(b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                            + chunked(b"c" * 80, b"c" * 80)), 413, "body_too_large")
    # one request running at the operator: 1 connection + 1 request, so a new connection is over 2
    op_a.delays = [1.0]
    busy = Conn(gw)
    busy.send(req(b"GET", FINES + b"1", AUTH))
    wait_for(lambda: op_a.count() == 1, what="the slow request to reach the operator")
    assert_server_error(one(req(b"GET", b"/healthz"), settle=False), 503, "overloaded")
    assert busy.response().status == 200
    busy.close()
    assert set(seen) == {"bad_request", "headers_too_large", "header_timeout", "body_too_large", "overloaded"}
    # request ids are fresh per error
    assert len({r.h("x-request-id") for r in seen.values()}) == len(seen)


# ------------------------------------------------------------------------------ body timeout, half-close


def test_stalled_body_gets_408_body_timeout_and_close(op_a, gateway):
    """A body that stops arriving is not held for ever: 408 ``body_timeout``, then close; a body
    that keeps trickling within the timeout is served."""
    gw = gateway(cfg(body_timeout=0.4))
    c = Conn(gw)
    c.send(req(b"POST", ECHO, AUTH, b"Content-Length: 10") + b"hello")  # 5 of 10 bytes, then nothing
    r = c.response()
    assert_server_error(r, 408, "body_timeout")
    assert c.rest_until_close() == b""
    c.close()
    assert op_a.count() == 0

    c = Conn(gw)
    c.send(req(b"POST", ECHO, AUTH, b"Content-Length: 6"))
    for b in (b"ab", b"cd", b"ef"):  # each gap well inside the timeout
        time.sleep(0.15)
        c.send(b)
    r = c.response()
    assert r.status == 200 and r.json()["body"] == "abcdef"
    c.close()


def test_half_closed_client_still_gets_its_answer(op_a, gateway):
    """``shutdown(SHUT_WR)`` right after the request (as some HTTP/1.0 clients do) while the
    operator is still working: the answer is written, then the connection closed."""
    gw = gateway()
    op_a.delays = [0.3]
    c = Conn(gw)
    c.send(req(b"GET", FINES + b"half", AUTH, version=b"1.0"))
    c.sock.shutdown(socket.SHUT_WR)
    r = c.response()
    assert r.status == 200 and r.h("x-zistboom-operator") == "a"
    assert c.rest_until_close() == b""
    c.close()

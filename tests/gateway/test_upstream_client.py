"""The lean keep-alive upstream client against raw HTTP servers on 127.0.0.1 that misbehave on
purpose: chunked and close-delimited bodies, bytes dribbled one at a time, Connection: close,
peers closing idle connections, oversized bodies, silence, and a bounded pool."""

from __future__ import annotations

import asyncio

import pytest

from zistboom.gateway.upstream import (
    ConnectError,
    ResponseTooLarge,
    UpstreamClient,
    UpstreamReset,
    UpstreamTimeout,
)


class RawServer:
    """Answers each request (read up to the blank line) with ``handler(n, reader, writer)``."""

    def __init__(self, handler):
        self.handler = handler
        self.connections = 0
        self.requests = 0
        self.open = 0
        self.max_open = 0

    async def _conn(self, reader, writer):
        self.connections += 1
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                cl = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        cl = int(line.split(b":")[1])
                if cl:
                    await reader.readexactly(cl)
                self.requests += 1
                keep = await self.handler(self.requests, reader, writer)
                await writer.drain()
                if not keep:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.open -= 1
            writer.close()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def stop(self):
        self.server.close()


async def serve(handler):
    s = RawServer(handler)
    port = await s.start()
    return s, port


def ok(body=b"hello", extra=b""):
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n%s" % (len(body), extra, body)


async def test_keep_alive_reuses_one_connection():
    async def h(n, r, w):
        w.write(ok(b"n=%d" % n))
        return True

    s, port = await serve(h)
    c = UpstreamClient()
    for i in range(1, 6):
        resp = await c.request("127.0.0.1", port, "GET", "/x", [], b"", 2)
        assert resp.status == 200 and resp.body == b"n=%d" % i
    assert s.connections == 1
    c.close()
    await s.stop()


async def test_chunked_and_dribbled_and_close_delimited():
    async def h(n, r, w):
        if n == 1:
            w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
            return True
        if n == 2:
            for b in ok(b"dribble"):  # one byte at a time
                w.write(bytes([b]))
                await w.drain()
                await asyncio.sleep(0)
            return True
        w.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil-close")
        return False

    s, port = await serve(h)
    c = UpstreamClient()
    r1 = await c.request("127.0.0.1", port, "GET", "/", [], b"", 2)
    assert r1.body == b"hello world"
    r2 = await c.request("127.0.0.1", port, "GET", "/", [], b"", 2)
    assert r2.body == b"dribble"
    r3 = await c.request("127.0.0.1", port, "GET", "/", [], b"", 2)
    assert r3.body == b"until-close"
    assert s.connections == 1
    r4 = await c.request("127.0.0.1", port, "GET", "/", [], b"", 2)  # Connection: close → new connection
    assert r4.body == b"until-close" and s.connections == 2
    c.close()
    await s.stop()


async def test_peer_closes_idle_connection_then_new_one_is_used():
    async def h(n, r, w):
        w.write(ok())
        await w.drain()
        await asyncio.sleep(0.05)
        return False  # server closes right after answering, without saying Connection: close

    s, port = await serve(h)
    c = UpstreamClient()
    for _ in range(3):
        await c.request("127.0.0.1", port, "GET", "/", [], b"", 2)
        await asyncio.sleep(0.2)  # let the close arrive while the connection is idle
    assert s.connections == 3
    c.close()
    await s.stop()


async def test_errors_are_classified():
    async def h(n, r, w):
        if n == 1:
            w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n")
            return True
        if n == 2:
            await asyncio.sleep(2)  # silence
            return False
        if n == 3:
            w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")  # then drop
            return False
        w.write(b"garbage garbage\r\n\r\n")
        return False

    s, port = await serve(h)
    c = UpstreamClient(max_body=1000)
    with pytest.raises(ResponseTooLarge):
        await c.request("127.0.0.1", port, "GET", "/", [], b"", 2)
    with pytest.raises(UpstreamTimeout):
        await c.request("127.0.0.1", port, "GET", "/", [], b"", 0.3)
    with pytest.raises(UpstreamReset):
        await c.request("127.0.0.1", port, "GET", "/", [], b"", 2)
    with pytest.raises(UpstreamReset):
        await c.request("127.0.0.1", port, "GET", "/", [], b"", 2)
    await s.stop()
    with pytest.raises(ConnectError):
        await c.request("127.0.0.1", port, "GET", "/", [], b"", 2)
    c.close()


async def test_pool_max_connections_bounds_concurrency():
    async def h(n, r, w):
        await asyncio.sleep(0.05)
        w.write(ok())
        return True

    s, port = await serve(h)
    c = UpstreamClient(max_conns=2, max_idle=2)
    rs = await asyncio.gather(*(c.request("127.0.0.1", port, "POST", "/", [], b"x" * 10, 5) for _ in range(8)))
    assert all(r.status == 200 for r in rs)
    assert s.max_open <= 2 and s.requests == 8
    c.close()
    await s.stop()


async def test_interim_1xx_is_skipped_and_head_has_no_body():
    async def h(n, r, w):
        if n == 1:
            w.write(b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"final"))
            return True
        w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")  # answer to HEAD: no body follows
        return True

    s, port = await serve(h)
    c = UpstreamClient()
    r = await c.request("127.0.0.1", port, "POST", "/", [], b"abc", 2)
    assert r.status == 200 and r.body == b"final"
    r = await c.request("127.0.0.1", port, "HEAD", "/", [], b"", 2)
    assert r.status == 200 and r.body == b""
    c.close()
    await s.stop()

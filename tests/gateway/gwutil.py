"""Helpers for the gateway tests (importable as ``gwutil``: conftest.py puts this folder on sys.path)."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime, timedelta, timezone

from aiohttp import web

from tests.support import GatewayThread, LoopThread, free_port  # noqa: F401 - re-exported for the gateway tests
from zistboom.gateway.app import Gateway
from zistboom.registry import models as m
from zistboom.registry.db import make_engine, make_sessionmaker, session_scope
from zistboom.registry.snapshot import bump_version, hash_api_key

CONTRACT = {
    "openapi": "3.0.3",
    "info": {"title": "fines", "version": "1"},
    "paths": {
        "/fines/{plate}": {"get": {"operationId": "getFines"}},
        "/payments": {"post": {"operationId": "pay", "x-idempotent": False}},
        "/echo": {"get": {"operationId": "echo"}, "post": {"operationId": "echoPost", "x-idempotent": False}},
        "/slow": {"get": {"operationId": "slowGet"}, "post": {"operationId": "slowPost", "x-idempotent": False}},
    },
}

NOW = datetime.now(timezone.utc)


class Registry:
    """Small registry builder writing real rows (and bumping the version) in ``url``."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self.sm = make_sessionmaker(self.engine)
        self._nid = 10_000_000_000

    def write(self, fn) -> None:
        with session_scope(self.sm) as s:
            fn(s)
            bump_version(s)

    def base(self) -> None:
        """Provinces IR-01..IR-05 with borders 01-02, 02-03; service ``fines`` with a contract."""

        def fn(s):
            for i in range(1, 6):
                code = f"IR-{i:02d}"
                s.add(m.Province(code=code, sci_code=i, name_fa=f"استان {i}", name_en=f"Province {i}",
                                 capital_fa="مرکز", capital_en="Capital"))
            s.flush()
            s.add(m.ProvinceBorder(a="IR-01", b="IR-02"))
            s.add(m.ProvinceBorder(a="IR-02", b="IR-03"))
            s.add(m.Cluster(id="transport", name_fa="حمل‌ونقل", name_en="Transport"))
            s.flush()
            s.add(m.Service(id="fines", cluster_id="transport", name_fa="خلافی خودرو", name_en="Traffic fines",
                            agency_fa="پلیس", agency_en="Police", service_type="G2C", level="national",
                            current_contract_version="1"))
            s.add(m.Service(id="other", cluster_id="transport", name_fa="دیگر", name_en="Other",
                            agency_fa="پلیس", agency_en="Police", service_type="G2C", level="national",
                            current_contract_version="1"))
            s.flush()
            s.add(m.ServiceContract(service_id="fines", version="1", openapi=CONTRACT))
            s.add(m.ServiceContract(service_id="other", version="1", openapi=CONTRACT))

        self.write(fn)

    def operator(self, oid: str, home: str, url: str, *, status: str = "active", provinces=("IR-01",),
                 service: str = "fines", valid_from=None, valid_until=None) -> None:
        self._nid += 1
        nid = str(self._nid)

        def fn(s):
            s.add(m.Operator(id=oid, name_fa=f"اپراتور {oid}", name_en=f"Operator {oid}", national_id=nid,
                             home_province=home, endpoints=[url], health_url=url + "/health"))
            s.flush()
            lic = m.Licence(operator_id=oid, service_id=service, status=status,
                            valid_from=valid_from or NOW - timedelta(days=1),
                            valid_until=valid_until or NOW + timedelta(days=365))
            lic.province_links = [m.LicenceProvince(province_code=p) for p in provinces]
            s.add(lic)

        self.write(fn)

    def set_status(self, oid: str, status: str) -> None:
        def fn(s):
            for lic in s.query(m.Licence).filter_by(operator_id=oid):
                lic.status = status

        self.write(fn)

    def client(self, cid: str, key: str, province: str | None = "IR-01", services=("fines",)) -> None:
        def fn(s):
            c = m.ClientSystem(id=cid, name=cid, province=province)
            c.keys = [m.ApiKey(key_hash=hash_api_key(key), prefix=key[:8])]
            c.access = [m.ClientAccess(service_id=sv) for sv in services]
            s.add(c)

        self.write(fn)

    def close(self) -> None:
        self.engine.dispose()


class Operator:
    """A real aiohttp operator. ``mode``: ``ok`` | ``500`` | ``hang`` (never answers in time);
    ``health_ok`` drives its ``/health``. ``seen`` records (method, path, headers, body).
    ``delays``: seconds to wait before each of the next answers (popped one per request);
    ``fail_every``: answer 500 to every n-th request (0 = never)."""

    def __init__(self, lt: LoopThread, oid: str):
        self.lt = lt
        self.oid = oid
        self.mode = "ok"
        self.health_ok = True
        self.delays: list[float] = []
        self.fail_every = 0
        self.seen: list[tuple[str, str, dict, bytes]] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.runner: web.AppRunner | None = None

    async def _handle(self, req: web.Request) -> web.StreamResponse:
        body = await req.read()
        if req.path == "/health":
            return web.Response(status=200 if self.health_ok else 503, text="ok")
        self.seen.append((req.method, req.path_qs, dict(req.headers), body))
        if self.delays:
            await asyncio.sleep(self.delays.pop(0))
        if self.mode == "500" or (self.fail_every and len(self.seen) % self.fail_every == 0):
            return web.json_response({"operator": self.oid, "error": "boom"}, status=500)
        if self.mode == "hang" or req.path.endswith("/slow"):
            await asyncio.sleep(5)
        return web.json_response({"operator": self.oid, "path": req.path_qs, "body": body.decode()},
                                 headers={"X-Upstream-Hop": "keep", "Connection": "keep-alive, X-Secret-Hop",
                                          "X-Secret-Hop": "drop-me"})

    async def _start(self):
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def _stop(self):
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    def start(self) -> "Operator":
        self.lt.run(self._start())
        return self

    def stop(self) -> None:
        self.lt.run(self._stop())

    def count(self) -> int:
        return len(self.seen)


class GatewayServer(GatewayThread):
    """The gateway on its real server (:class:`zistboom.gateway.server.GatewayServer`) in its own
    thread (:class:`tests.support.GatewayThread`), plus :meth:`wait_version`."""

    def wait_version(self, version_at_least: int | None = None, timeout: float = 10) -> None:
        """Wait until the route table reflects the registry's current version."""
        from zistboom.registry.snapshot import current_version
        from sqlalchemy.orm import Session

        if version_at_least is None:
            eng = make_engine(self.app.db_url)
            with Session(eng) as s:
                version_at_least = current_version(s)
            eng.dispose()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            t = self.app.table
            if t is not None and t.version >= version_at_least:
                return
            time.sleep(0.05)
        raise AssertionError("route table did not refresh in time")


class ListSink:
    """A sink that keeps everything (exchange/probe lists) and records start/close."""

    def __init__(self):
        self.exchanges = []
        self.probes = []
        self.started = self.closed = False

    def start(self):
        self.started = True

    def close(self):
        self.closed = True

    def on_exchange(self, ex):
        self.exchanges.append(ex)

    def on_probe(self, p):
        self.probes.append(p)


class TcpRelay:
    """A TCP relay 127.0.0.1:port → target, that can be cut (listener and live connections)."""

    def __init__(self, lt: LoopThread, host: str, port: int):
        self.lt, self.host, self.tport = lt, host, port
        self.writers: list[asyncio.StreamWriter] = []
        self.server = lt.run(asyncio.start_server(self._conn, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]

    async def _pipe(self, r, w):
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        except Exception:
            pass
        finally:
            w.close()

    async def _conn(self, r, w):
        try:
            ur, uw = await asyncio.open_connection(self.host, self.tport)
        except OSError:
            w.close()
            return
        self.writers += [w, uw]
        await asyncio.gather(self._pipe(r, uw), self._pipe(ur, w))

    async def _cut(self):
        self.server.close()
        for w in self.writers:
            w.transport.abort()

    def cut(self):
        self.lt.run(self._cut())

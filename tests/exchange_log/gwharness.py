"""A real gateway for the exchange-log tests and bench: registry rows, an aiohttp operator on
127.0.0.1, the gateway on its own server (in a thread, or in a subprocess via ``python gwharness.py``).

Importable as ``gwharness`` from tests (pytest puts this folder on ``sys.path``) and from
bench/exchange_log.py.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, for tests.support (script mode too)
from tests.support import GatewayThread as _GatewayThread  # noqa: E402
from tests.support import free_port  # noqa: E402,F401 - re-exported for the log tests and bench

API_KEY = "key-log-client-secret"
CLIENT = "log-client"


def seed_registry(db_url: str, operator_url: str, operations: dict | None = None) -> None:
    """Province IR-01, service ``fines`` with a contract, operator ``op1`` at ``operator_url``,
    client ``log-client`` with key ``API_KEY``. ``operations``: the contract's methods on
    ``/fines/{plate}`` (default ``{"get": {"operationId": "getFines"}}``)."""
    from zistboom.registry import models as m
    from zistboom.registry.db import make_engine, make_sessionmaker, session_scope
    from zistboom.registry.snapshot import bump_version, hash_api_key

    contract = {"openapi": "3.0.3", "info": {"title": "fines", "version": "1"},
                "paths": {"/fines/{plate}": operations or {"get": {"operationId": "getFines"}}}}
    now = datetime.now(timezone.utc)
    eng = make_engine(db_url)
    with session_scope(make_sessionmaker(eng)) as s:
        s.add(m.Province(code="IR-01", sci_code=1, name_fa="استان ۱", name_en="Province 1",
                         capital_fa="مرکز", capital_en="Capital"))
        s.add(m.Cluster(id="transport", name_fa="حمل‌ونقل", name_en="Transport"))
        s.flush()
        s.add(m.Service(id="fines", cluster_id="transport", name_fa="خلافی خودرو", name_en="Traffic fines",
                        agency_fa="پلیس", agency_en="Police", service_type="G2C", level="national",
                        current_contract_version="1"))
        s.flush()
        s.add(m.ServiceContract(service_id="fines", version="1", openapi=contract))
        s.add(m.Operator(id="op1", name_fa="اپراتور ۱", name_en="Operator 1", national_id="10000000001",
                         home_province="IR-01", endpoints=[operator_url], health_url=operator_url + "/health"))
        s.flush()
        lic = m.Licence(operator_id="op1", service_id="fines", status="active", valid_from=now - timedelta(days=1),
                        valid_until=now + timedelta(days=365))
        lic.province_links = [m.LicenceProvince(province_code="IR-01")]
        s.add(lic)
        c = m.ClientSystem(id=CLIENT, name=CLIENT, province="IR-01")
        c.keys = [m.ApiKey(key_hash=hash_api_key(API_KEY), prefix=API_KEY[:8])]
        c.access = [m.ClientAccess(service_id="fines")]
        s.add(c)
        s.flush()
        bump_version(s)
    eng.dispose()


async def default_answer(req):
    """The operators' answer here: JSON naming the path."""
    from aiohttp import web

    await req.read()
    return web.json_response({"plate": req.path, "fines": 0})


class OperatorServer:
    """An aiohttp upstream answering JSON on every path, in its own thread and loop; ``handler``
    (an aiohttp request handler) replaces the default answer."""

    def __init__(self, handler=None):
        self.handler = handler
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner = None

    async def _start(self):
        from aiohttp import web

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handler or default_answer)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    def start(self) -> OperatorServer:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def gateway_config():
    from zistboom.gateway.config import GatewayConfig

    return GatewayConfig(client_rate=1e9, client_burst=1e9, health_interval=60.0)


def make_app(db_url: str, var_dir: Path | None, log_overrides: dict | None = None):
    """The gateway with the exchange-log sink (``var_dir`` None: logging off)."""
    from zistboom.exchange_log.sink import make_sink
    from zistboom.gateway.app import create_gateway

    sinks = []
    if var_dir is not None:
        sinks.append(make_sink(db_url, SimpleNamespace(var_dir=Path(var_dir)), **(log_overrides or {})))
    return create_gateway(db_url, sinks=sinks, config=gateway_config()), sinks


class GatewayThread(_GatewayThread):
    """The gateway on its real server in a thread of this process; ``start()`` also waits until it
    routes a request."""

    stop_timeout = 30.0

    def start(self) -> GatewayThread:
        super().start()
        wait_ready(self.url, lambda: self.thread.is_alive())
        return self


def wait_ready(url: str, alive=lambda: True, timeout: float = 20.0) -> None:
    """Wait until the gateway routes a request (route table loaded)."""
    import httpx

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not alive():
            raise RuntimeError("gateway died")
        try:
            r = httpx.get(f"{url}/v1/services/fines/fines/warmup", headers={"X-Api-Key": API_KEY}, timeout=2)
            if r.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError("gateway did not become ready")


async def load(url: str, seconds: float, concurrency: int = 16, stop: threading.Event | None = None,
               results: list | None = None) -> list[tuple[str, int, float]]:
    """Send GETs for ``seconds`` with ``concurrency`` workers (aiohttp, keep-alive); returns
    (request id, status, wall time the response was complete). Transport errors: status 0."""
    import aiohttp

    out = results if results is not None else []
    end = time.monotonic() + seconds
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base_url=url, connector=conn, headers={"X-Api-Key": API_KEY},
                                     timeout=aiohttp.ClientTimeout(total=10)) as client:
        async def worker(w: int):
            i = 0
            while time.monotonic() < end and not (stop and stop.is_set()):
                i += 1
                try:
                    async with client.get(f"/v1/services/fines/fines/P{w}-{i}?secret=1") as r:
                        await r.read()
                        out.append((r.headers.get("x-request-id", ""), r.status, time.time()))
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    out.append(("", 0, time.time()))

        await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return out


def _main() -> None:
    """Subprocess entry points:

    ``python gwharness.py gateway DB_URL VAR_DIR|- PORT`` runs the gateway (``-``: logging off);
    ``python gwharness.py operator PORT`` runs the upstream operator.
    """
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="what", required=True)
    g = sub.add_parser("gateway")
    g.add_argument("db_url")
    g.add_argument("var_dir")
    g.add_argument("port", type=int)
    o = sub.add_parser("operator")
    o.add_argument("port", type=int)
    args = ap.parse_args()
    if args.what == "operator":
        from aiohttp import web

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", default_answer)
        web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)
        return

    if args.var_dir == "null":  # sinks on but doing nothing: the gateway's own cost of having a sink
        from zistboom.gateway.app import create_gateway

        class NullSink:
            def on_exchange(self, ex):
                pass

            def on_probe(self, p):
                pass

        app = create_gateway(args.db_url, sinks=[NullSink()], config=gateway_config())
    else:
        app, _ = make_app(args.db_url, None if args.var_dir == "-" else Path(args.var_dir))
    from zistboom.gateway.server import GatewayServer

    GatewayServer(app, "127.0.0.1", args.port).run()  # uvloop, as `zistboom gateway` runs it


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    _main()

"""Real HTTP pieces for the monitoring end-to-end tests: operators (aiohttp) in a loop thread and
the gateway on its own server, all on 127.0.0.1 ephemeral ports."""

from __future__ import annotations

import threading
import time

from aiohttp import web

from tests.support import GatewayThread, LoopThread, free_port  # noqa: F401 - re-exported


class OperatorServer:
    """An operator: ``/health`` answers 200; other paths answer 200 JSON, or 500 for every
    ``fail_every``-th request when set. ``served`` counts non-health requests."""

    def __init__(self, lt: LoopThread, oid: str, port: int | None = None):
        self.lt, self.oid = lt, oid
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.fail_every = 0
        self.served = 0
        self.runner: web.AppRunner | None = None

    async def _handle(self, req: web.Request) -> web.Response:
        if req.path == "/health":
            return web.Response(text="ok")
        self.served += 1
        if self.fail_every and self.served % self.fail_every == 0:
            return web.json_response({"operator": self.oid, "error": "boom"}, status=500)
        return web.json_response({"operator": self.oid})

    async def _start(self):
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def _stop(self):
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    def start(self) -> OperatorServer:
        self.lt.run(self._start())
        return self

    def stop(self) -> None:
        self.lt.run(self._stop())


GatewayServer = GatewayThread  # the gateway on its real server in a thread (tests.support)


def wait_for(predicate, timeout: float, interval: float = 0.02):
    """Poll ``predicate`` until truthy; returns (value, seconds waited) or raises AssertionError."""
    t0 = time.monotonic()
    while True:
        v = predicate()
        if v:
            return v, time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)

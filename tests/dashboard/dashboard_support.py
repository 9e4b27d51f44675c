"""Dashboard test helpers: the dashboard router in a real FastAPI app under real uvicorn on an
ephemeral 127.0.0.1 port (background thread), on a seeded database.

``dash_app_factory(db_url, var_dir)`` builds the app the way the admin app mounts the dashboard
(router at ``/`` + ``StaticFiles`` at ``/static``); ``serve(app)`` runs any ASGI app under uvicorn
and yields its base URL.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import uvicorn
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from zistboom.admin.auth import TokenChecker
from zistboom.config import Settings
from zistboom.dashboard.app import make_router, static_dir
from zistboom.registry.db import make_engine, make_sessionmaker

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "dashboard"


def dash_app(db_url: str, var_dir: Path) -> tuple[FastAPI, TokenChecker]:
    engine = make_engine(db_url)
    sf = make_sessionmaker(engine)
    checker = TokenChecker(var_dir)
    app = FastAPI()
    app.include_router(make_router(sf, checker, Settings(var_dir=var_dir)))
    app.mount("/static", StaticFiles(directory=static_dir()), name="static")
    app.state.engine = engine
    return app, checker


@contextlib.contextmanager
def _serving(make_server, what: str):
    """Bind 127.0.0.1:<ephemeral>, run ``make_server(port)`` (uvicorn-shaped: ``run(sockets=)``,
    ``started``, ``should_exit``) in a thread; yields ``http://127.0.0.1:port``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = make_server(port)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def serve_gateway(app):
    """Run the gateway app on its own server (:class:`zistboom.gateway.server.GatewayServer`) on
    127.0.0.1:<ephemeral>; a context manager yielding ``http://127.0.0.1:port``."""
    from zistboom.gateway.server import GatewayServer

    return _serving(lambda port: GatewayServer(app, "127.0.0.1", port, loop="asyncio"), "gateway")


def serve(app, *, lifespan: str = "auto"):
    """Run ``app`` under uvicorn on 127.0.0.1:<ephemeral>; a context manager yielding
    ``http://127.0.0.1:port``."""
    return _serving(lambda port: uvicorn.Server(uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan=lifespan, loop="asyncio", http="h11")),
        "uvicorn")


@contextlib.contextmanager
def operator_servers(operator_ids):
    """Demo operators (``zistboom.demo.operator_server``, aiohttp) on ephemeral 127.0.0.1 ports in
    one background event loop; yields ``{operator_id: "http://127.0.0.1:port"}``."""
    import asyncio

    from aiohttp import web

    from zistboom.demo.operator_server import OperatorBehaviour, build_app

    loop = asyncio.new_event_loop()
    runners: list = []
    urls: dict[str, str] = {}

    async def start():
        for i, op in enumerate(operator_ids):
            runner = web.AppRunner(build_app(op, OperatorBehaviour(1.0, 0.0, seed=i)), access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]
            urls[op] = f"http://127.0.0.1:{port}"
            runners.append(runner)

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(20)
    try:
        yield urls
    finally:
        async def stop():
            for r in runners:
                await r.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(20)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def point_operators_at(db_url: str, urls: dict[str, str]) -> None:
    """Registry write for the test: the seeded operators' endpoints become the running servers."""
    from zistboom.registry import models as m
    from zistboom.registry.db import session_scope
    from zistboom.registry.snapshot import bump_version

    engine = make_engine(db_url)
    try:
        with session_scope(make_sessionmaker(engine)) as s:
            for op_id, url in urls.items():
                op = s.get(m.Operator, op_id)
                op.endpoints = [url]
                op.health_url = url + "/healthz"
            bump_version(s)
    finally:
        engine.dispose()


CHROMIUM = os.environ.get("ZISTBOOM_CHROMIUM", "/usr/bin/chromium")
CHROME_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
JALALI_RE = re.compile(r"[۰-۹]{4}/[۰-۹]{2}/[۰-۹]{2}")
PERSIAN_DIGIT_RE = re.compile(r"[۰-۹]")
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}


def chromium_path() -> str | None:
    """Debian chromium's path, or None."""
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    return shutil.which("chromium")


class Page:
    """A browser page with request recording and the checks every dashboard page must pass."""

    def __init__(self, browser, base: str):
        self.base = base
        self.ctx = browser.new_context(locale="fa-IR", viewport={"width": 1280, "height": 900})
        self.requests: list[str] = []
        self.blocked: list[str] = []
        self.ctx.on("request", lambda req: self.requests.append(req.url))
        # belt and braces: a request to any other host is aborted inside the browser (it never
        # leaves the machine) and remembered, and assert_local_only() then fails the test
        self.ctx.route("**/*", self._guard)
        self.page = self.ctx.new_page()
        self.page.set_default_timeout(15_000)

    def _guard(self, route):
        url = route.request.url
        if urlsplit(url).scheme in ("data", "about", "blob") or urlsplit(url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()

    def goto(self, path: str):
        resp = self.page.goto(self.base + path, wait_until="load")
        self.page.evaluate("document.fonts.ready.then(() => true)")
        return resp

    def login(self, token: str, next_path: str = "/"):
        self.goto("/login?next=" + next_path)
        self.page.fill("#token", token)
        self.page.click("form button[type=submit]")
        self.page.wait_for_load_state("load")

    def check_page(self, name: str, *, jalali: bool = True) -> str:
        p = self.page
        assert p.get_attribute("html", "dir") == "rtl", name
        assert p.get_attribute("html", "lang") == "fa", name
        text = p.inner_text("body")
        assert PERSIAN_DIGIT_RE.search(text), f"{name}: no Persian digits"
        assert not re.search(r"Internal Server Error|Traceback", text)
        if jalali:
            times = p.locator("time.jdate")
            assert times.count() > 0, f"{name}: no Jalali date"
            first = times.first
            assert JALALI_RE.search(first.inner_text()), f"{name}: Jalali date not in Persian digits"
            assert re.search(r"\d{4}-\d{2}-\d{2}", first.get_attribute("title") or ""), f"{name}: no Gregorian on hover"
        fam = p.evaluate("getComputedStyle(document.body).fontFamily")
        assert "Vazirmatn" in fam
        assert p.evaluate("document.fonts.check('16px Vazirmatn', 'سلام')"), f"{name}: Vazirmatn not loaded"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        p.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        return text

    def assert_local_only(self):
        bad = [u for u in self.requests
               if urlsplit(u).scheme not in ("data", "about", "blob") and urlsplit(u).hostname not in LOCAL_HOSTS]
        assert not bad and not self.blocked, f"requests outside 127.0.0.1: {bad or self.blocked}"
        assert self.requests, "no request was recorded"

    def close(self):
        self.ctx.close()



"""The admin API (FastAPI): ``/admin/v1/...`` over the registry and licensing.

Resources: provinces, clusters, services (+ contracts), operators, licences (+ actions, events),
clients (+ keys, access). OpenAPI at ``/admin/v1/openapi.json``, interactive docs at ``/admin/docs``.

Auth: ``Authorization: Bearer <token>`` (see :mod:`zistboom.admin.auth`); only the admin token is
accepted (reads and writes). A province token gets 403 everywhere under ``/admin/v1``: it is for
the dashboard's read-only views of its province. The public ``/status/v1`` routes need no token.
Every write bumps ``registry_state.version`` in its own transaction so gateways pick the change up.
Errors are JSON ``{"error": {...}}`` (:mod:`zistboom.admin.errors`).

Optional parts, mounted when their modules exist:

* ``zistboom.monitoring.api.make_router(session_factory, require_admin)`` — under ``/admin/v1``
  unless its routes already start with ``/admin``;
* ``zistboom.dashboard.app.make_router(session_factory, token_checker, settings)`` — at ``/``;
  static files from the module's ``static_dir()`` (or ``STATIC_DIR``) at its ``STATIC_PATH``
  (default ``/static``).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.staticfiles import StaticFiles

from zistboom.admin import routes_catalog, routes_clients, routes_licences, routes_operators
from zistboom.admin.auth import TokenChecker
from zistboom.admin.deps import authorize, get_session, require_admin
from zistboom.admin.errors import ApiError, install_error_handlers
from zistboom.config import get_settings
from zistboom.licensing import expire_due
from zistboom.registry.db import make_engine, make_sessionmaker, session_scope
from zistboom.registry.snapshot import current_version

log = logging.getLogger("zistboom.admin")
API_PREFIX = "/admin/v1"


def _optional_module(name: str) -> ModuleType | None:
    """Import ``name``; None only when that module (or its package) is missing. A missing module
    *imported by* it (e.g. a dependency) and any other error propagate."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (exc.name == name or name.startswith(exc.name + ".")):
            return None
        raise


def _mount_monitoring(app: FastAPI, session_factory: Any) -> bool:
    module = _optional_module("zistboom.monitoring.api")
    if module is None or not hasattr(module, "make_router"):
        return False
    router = module.make_router(session_factory, require_admin)
    paths = [getattr(r, "path", "") for r in router.routes]
    prefixed = any(p.startswith(("/admin/", "/status/")) for p in paths)
    app.include_router(router, prefix="" if prefixed else API_PREFIX)
    return True


def _mount_dashboard(app: FastAPI, session_factory: Any, checker: TokenChecker, settings: Any) -> bool:
    module = _optional_module("zistboom.dashboard.app")
    if module is None or not hasattr(module, "make_router"):
        return False
    router = module.make_router(session_factory, checker, settings)
    static_dir = getattr(module, "STATIC_DIR", None) or getattr(module, "static_dir", None) \
        or getattr(router, "static_dir", None)
    if callable(static_dir):
        static_dir = static_dir()
    if static_dir and Path(static_dir).is_dir():
        from fastapi.staticfiles import StaticFiles

        path = getattr(module, "STATIC_PATH", None) or getattr(router, "static_path", None) or "/static"
        app.mount(path, StaticFiles(directory=str(static_dir)), name="dashboard-static")
    app.include_router(router)
    return True


MAX_BODY_BYTES = 4_000_000  # OpenAPI contracts are capped at 2 MB; nothing else comes close


class BodySizeLimit:
    """ASGI middleware: a request body over ``limit`` bytes is refused with 413 (declared length)
    or stops being read (streamed/chunked body → the endpoint sees a body error, 400), so a huge
    upload cannot exhaust memory."""

    def __init__(self, app, limit: int = MAX_BODY_BYTES):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            from zistboom.admin.errors import error_response
            from zistboom.text.digits import to_persian_digits

            resp = error_response(
                413, "body_too_large",
                f"بدنهٔ درخواست بزرگ‌تر از {to_persian_digits(self.limit // 1_000_000)} مگابایت است.",
                f"Request body larger than {self.limit} bytes.")
            return await resp(scope, receive, send)
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message.get("type") == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise ValueError("request body too large")
            return message

        return await self.app(scope, limited_receive, send)


def _mount_offline_docs(app: FastAPI) -> None:
    """Swagger UI at ``/admin/docs`` with its JavaScript and CSS from the ``swagger-ui-bundle``
    package (FastAPI's default loads them from a public CDN, which a ministry network may not
    reach)."""
    import swagger_ui_bundle

    app.mount("/admin/docs-assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets")

    @app.get("/admin/docs", include_in_schema=False)
    def docs():
        return get_swagger_ui_html(
            openapi_url=f"{API_PREFIX}/openapi.json", title="zistboom admin API",
            swagger_js_url="/admin/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/admin/docs-assets/swagger-ui.css",
            swagger_favicon_url="/admin/docs-assets/favicon-32x32.png",
        )


def _expire_once(session_factory) -> list[int]:
    with session_scope(session_factory) as s:
        return expire_due(s)


async def _expire_licences(session_factory, interval: float) -> None:
    """Every ``interval`` seconds (first at start), mark licences whose validity has ended as
    ``expired``, audited as actor ``system`` (:func:`zistboom.licensing.expire_due`). The gateway
    already refuses a lapsed licence by its dates; this makes its status, the ``?status=active``
    filter, the dashboard's counts and the audit trail say so too. Several admin processes may
    run it at once: each transition is a compare-and-set, so a licence expires once."""
    while True:
        try:
            changed = await asyncio.to_thread(_expire_once, session_factory)
            if changed:
                log.info("licences expired: %s", ", ".join(map(str, changed)))
        except Exception:  # the database may be down for a while: try again next round
            log.exception("licence expiry round failed")
        await asyncio.sleep(interval)


def create_admin_app(db_url: str, *, var_dir: Path | None = None, licence_expiry_interval: float = 60.0) -> FastAPI:
    """Build the admin app for the database at ``db_url``.

    Args:
        db_url: SQLAlchemy URL of a migrated registry database.
        var_dir: where the admin token / province tokens live (default ``get_settings().var_dir``);
            the admin token is created there on first use.
        licence_expiry_interval: seconds between rounds that mark lapsed licences ``expired``
            while the app runs (see :func:`_expire_licences`); 0 turns it off.
    """
    settings = get_settings()
    var = Path(var_dir) if var_dir is not None else settings.var_dir
    # everything mounted here (the dashboard's cookie secret too) keeps its files in this var_dir:
    # two apps with their own var_dirs once shared one secret under ./var, so a session from one
    # was accepted by the other
    settings = settings.model_copy(update={"var_dir": var})
    engine = make_engine(db_url)
    session_factory = make_sessionmaker(engine)
    checker = TokenChecker(var)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        expiry = (asyncio.create_task(_expire_licences(session_factory, licence_expiry_interval))
                  if licence_expiry_interval > 0 else None)
        try:
            yield
        finally:
            if expiry is not None:
                expiry.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await expiry
            engine.dispose()

    app = FastAPI(
        title="zistboom admin API",
        description="مدیریت ثبت زیست‌بوم: استان‌ها، خوشه‌ها، خدمات و قراردادها، اپراتورها، مجوزها و سامانه‌های مصرف‌کننده.\n\n"
        "Registry administration: provinces, clusters, services and contracts, operators, licences, client systems. "
        "Send `Authorization: Bearer <token>`.",
        version="1",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,  # served below from the swagger-ui-bundle package: no CDN, works offline
        redoc_url=None,
        lifespan=lifespan,
    )
    _mount_offline_docs(app)
    app.add_middleware(BodySizeLimit)
    app.state.engine = engine
    app.state.session_factory = session_factory
    app.state.token_checker = checker
    app.state.settings = settings
    install_error_handlers(app)

    api = APIRouter(prefix=API_PREFIX, dependencies=[Depends(authorize)])
    for module in (routes_catalog, routes_operators, routes_licences, routes_clients):
        api.include_router(module.router)

    @api.get("/whoami", tags=["meta"])
    def whoami(request: Request) -> dict[str, Any]:
        """The role of the token sent."""
        role = request.state.role
        return {"role": role.kind, "province": role.province, "can_write": role.can_write}

    @api.get("/registry/version", tags=["meta"])
    def registry_version(session=Depends(get_session)) -> dict[str, int]:
        """The registry's change counter (``registry_state.version``)."""
        return {"version": current_version(session)}

    app.include_router(api)
    app.state.monitoring_mounted = _mount_monitoring(app, session_factory)
    app.state.dashboard_mounted = _mount_dashboard(app, session_factory, checker, settings)

    # Anything else under /admin/v1 still needs a token (401 before 404), so the API's shape is not
    # discoverable without one. Registered last so every real route matches first.
    tail = APIRouter(prefix=API_PREFIX, dependencies=[Depends(authorize)], include_in_schema=False)

    @tail.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
    def unknown_endpoint(rest: str) -> None:
        raise ApiError(404, "not_found", f"نشانی «{API_PREFIX}/{rest[:100]}» در این API وجود ندارد.",
                       f"No such endpoint: {API_PREFIX}/{rest[:100]}.")

    app.include_router(tail)
    return app


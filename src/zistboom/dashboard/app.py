"""The Persian, right-to-left operations dashboard (server-rendered Jinja2 pages, light JS).

Mounted by the admin app: ``app.include_router(make_router(session_factory, token_checker,
settings))`` and ``app.mount("/static", StaticFiles(directory=static_dir()))``.

Pages (GET): ``/`` overview, ``/provinces`` tile-grid map, ``/provinces/{code}``,
``/services/{id}``, ``/operators/{id}``, ``/licences`` (filters; actions), ``/incidents``,
``/incidents/{id}``, ``/ask`` (Persian front door), ``/login``, ``/logout``.
Changes (POST, admin only, CSRF-checked): ``/licences/{id}/{action}`` (grant, suspend, reinstate,
revoke, renew — each after a confirmation page with a reason; audited by
:mod:`zistboom.licensing`), ``/incidents/{id}/notes``.

Access: every page needs a login with the admin API's credentials (the admin token, or a
province token for a read-only view of that province). A person's mistakes (bad form input, an
expired session, a deleted object) get a Persian message and the form keeps what they typed.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import jdatetime
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape

from zistboom.licensing import service as licensing
from zistboom.dashboard import charts, data
from zistboom.dashboard.session import COOKIE_NAME, DashSession, SessionSigner, load_or_create_secret
from zistboom.dashboard.tilegrid import COLS, ROWS, TILES
from zistboom.registry import models as m
from zistboom.registry.db import utcnow
from zistboom.text.digits import format_number_fa, to_ascii_digits, to_persian_digits
from zistboom.text.jalali import TEHRAN, format_jalali

HERE = Path(__file__).resolve().parent
NO_DATA = charts.NO_DATA_FA

STATUS_FA = {"pending": "در انتظار", "active": "فعال", "suspended": "تعلیق‌شده", "revoked": "لغوشده",
             "expired": "منقضی", "rejected": "ردشده"}
ACTION_FA = {"apply": "درخواست", "review": "بررسی", "grant": "اعطا", "reject": "رد", "suspend": "تعلیق",
             "reinstate": "رفع تعلیق", "revoke": "لغو", "renew": "تمدید", "expire": "انقضا"}
# actions offered on the licences page (the grant/suspend/revoke/renew, plus reinstate)
UI_ACTIONS = ("grant", "suspend", "reinstate", "revoke", "renew")
INCIDENT_STATE_FA = {"investigating": "در حال بررسی", "identified": "علت شناسایی شد", "monitoring": "زیر نظر",
                     "resolved": "برطرف شد"}
INCIDENT_KIND_FA = {"no_operator": "بدون اپراتور", "burn_rate": "مصرف سریع بودجهٔ خطا", "manual": "دستی"}
LEVEL_FA = {"national": "ملی", "provincial": "استانی"}
EXPIRY_FA = {"": "همه", "this_month": "همین ماه (شمسی)", "30d": "۳۰ روز آینده", "expired": "گذشته"}
SESSION_PROBLEM_FA = {
    "expired": "نشست شما منقضی شده است؛ لطفاً دوباره وارد شوید.",
    "invalid": "نشست شما معتبر نیست؛ لطفاً دوباره وارد شوید.",
    "revoked": "توکنی که با آن وارد شده بودید دیگر معتبر نیست؛ با توکن معتبر دوباره وارد شوید.",
    "missing": "برای دیدن داشبورد وارد شوید.",
}
MIN_REASON = 5


def static_dir() -> Path:
    """Folder of the dashboard's static files (CSS, JS, the vendored Vazirmatn font)."""
    return HERE / "static"


# ----------------------------------------------------------------------------- template helpers

def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def jdate(value: datetime | None, with_time: bool = True) -> Markup:
    """``<time>`` with the Jalali date shown and the Gregorian (ISO 8601, UTC) date on hover."""
    if value is None:
        return Markup("—")
    value = _aware(value)
    iso = value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    greg = value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC" if with_time else "%Y-%m-%d")
    return Markup('<time class="jdate" datetime="{}" title="میلادی: {}">{}</time>').format(
        iso, greg, format_jalali(value, with_time=with_time))


def pct(value: float | None, decimals: int = 2) -> str:
    return NO_DATA if value is None else format_number_fa(value * 100, decimals) + "٪"


def num(value: float | int | None, decimals: int = 0) -> str:
    return NO_DATA if value is None else format_number_fa(value, decimals)


def fa(value: Any) -> str:
    return to_persian_digits(value)


def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(str(HERE / "templates")), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(jdate=jdate, pct=pct, num=num, fa=fa)
    env.policies["json.dumps_kwargs"] = {"sort_keys": False, "ensure_ascii": False, "default": str}
    env.globals.update(STATUS_FA=STATUS_FA, ACTION_FA=ACTION_FA, INCIDENT_STATE_FA=INCIDENT_STATE_FA,
                       INCIDENT_KIND_FA=INCIDENT_KIND_FA, LEVEL_FA=LEVEL_FA, EXPIRY_FA=EXPIRY_FA, NO_DATA=NO_DATA,
                       UI_ACTIONS=UI_ACTIONS)
    return env


def parse_date_fa(text: str) -> datetime:
    """A date typed by a person: Jalali ``1405/09/08`` (Persian or ASCII digits, ``/`` or ``-``),
    or Gregorian ISO ``2026-11-29``. Returns midnight Tehran time, aware.

    Raises:
        ValueError: with a Persian message for anything else.
    """
    t = to_ascii_digits((text or "").strip()).replace("-", "/")
    mt = re.fullmatch(r"([0-9]{4})/([0-9]{1,2})/([0-9]{1,2})", t)
    if not mt:
        raise ValueError("تاریخ را به شکل «۱۴۰۵/۰۹/۱۵» (شمسی) بنویسید.")
    y, mo, d = (int(g) for g in mt.groups())
    try:
        if y < 1700:
            g = jdatetime.date(y, mo, d).togregorian()
        else:
            g = datetime(y, mo, d).date()
    except ValueError:
        raise ValueError("این تاریخ در تقویم وجود ندارد.") from None
    return datetime(g.year, g.month, g.day, tzinfo=TEHRAN)


MAX_DB_ID = 2**63 - 1


def parse_id(raw: str | None) -> int | None:
    """A database id typed in a URL: ASCII (or Persian/Arabic-Indic) digits only, 1..2**63-1
    (SQLite INTEGER / PostgreSQL BIGINT). None for anything else (the caller answers 404) —
    ``str.isdigit`` alone also accepts '²' and other digits ``int`` refuses, and an
    unbounded ``int`` overflows the database driver."""
    t = to_ascii_digits(raw or "")
    if not re.fullmatch(r"[0-9]{1,19}", t, flags=re.ASCII):
        return None
    n = int(t)
    return n if 1 <= n <= MAX_DB_ID else None


def jalali_input(value: datetime) -> str:
    return format_jalali(value, with_time=False)


HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
SAFE_METHODS = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS"}


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def contract_header(contract: dict[str, Any] | None) -> dict[str, str]:
    """``openapi``, title and version of a stored contract, "" for whatever is missing."""
    doc = _obj(contract)
    info = _obj(doc.get("info"))
    return {"openapi": _text(doc.get("openapi")), "title": _text(info.get("x-title-fa") or info.get("title")),
            "version": _text(info.get("version"))}


def contract_operations(contract: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The operations of a stored OpenAPI document, flattened for the service page.

    Every optional OpenAPI field (summary, operationId, parameters, requestBody, responses) may be
    missing or of the wrong shape in an older stored contract; each becomes an empty value here so
    the template never reads an attribute that is not there.
    """
    out: list[dict[str, Any]] = []
    for path, item in _obj(_obj(contract).get("paths")).items():
        for method, op in _obj(item).items():
            if not isinstance(method, str) or method.lower() not in HTTP_METHODS:
                continue
            op = _obj(op)
            params = [{"name": _text(p.get("name")), "in": _text(p.get("in")), "required": p.get("required") is True,
                       "description": _text(p.get("description"))}
                      for p in (op.get("parameters") if isinstance(op.get("parameters"), list) else [])
                      if isinstance(p, dict)]
            body = _obj(op.get("requestBody"))
            responses = [(_text(code), _text(_obj(r).get("description"))) for code, r in _obj(op.get("responses")).items()]
            idem = op.get("x-idempotent")
            out.append({"method": method.upper(), "path": _text(path), "summary": _text(op.get("summary")),
                        "operation_id": _text(op.get("operationId")), "parameters": params,
                        "body_types": [_text(ct) for ct in _obj(body.get("content"))],
                        "body_required": body.get("required") is True, "has_body": bool(body),
                        "responses": responses,
                        "idempotent": idem if isinstance(idem, bool) else method.upper() in SAFE_METHODS})
    return out


def _safe_next(target: str | None, default: str) -> str:
    """Only same-site relative paths are followed after login (no open redirect)."""
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return default
    return target


# ----------------------------------------------------------------------------- the router

def make_router(session_factory, token_checker, settings=None, *, cookie_secure: bool = False) -> APIRouter:
    """Build the dashboard router.

    Args:
        session_factory: SQLAlchemy ``sessionmaker`` of the registry database.
        token_checker: :class:`zistboom.admin.auth.TokenChecker` (same credentials as the admin API).
        settings: :class:`zistboom.config.Settings` (its ``var_dir`` holds the cookie secret);
            default :func:`zistboom.config.get_settings`.
        cookie_secure: set the cookie's ``Secure`` flag (behind HTTPS).
    """
    if settings is None:
        from zistboom.config import get_settings  # noqa: PLC0415

        settings = get_settings()
    var_dir = Path(getattr(settings, "var_dir", "var"))
    signer = SessionSigner(load_or_create_secret(var_dir))
    env = _env()
    router = APIRouter()
    local_paths: dict[str, str] = {}

    # -- plumbing ---------------------------------------------------------------------------
    def base(request: Request) -> str:
        """URL prefix this router is served under (an include_router prefix and/or a mount's
        root_path), found by removing the matched route's own segments from the request path
        (no route here has a path parameter that spans several segments)."""
        route = request.scope.get("route")
        local = local_paths.get(getattr(route, "name", ""), "/")
        full = request.url.path
        if local == "/":
            return full.rstrip("/")
        parts = full.split("/")
        return "/".join(parts[: len(parts) - local.count("/")])

    def read_session(request: Request) -> tuple[DashSession | None, str | None]:
        sess, problem = signer.decode(request.cookies.get(COOKIE_NAME))
        if sess is not None and not token_checker.holds(sess.role, sess.province, sess.token_hash):
            return None, "revoked"  # the token it was opened with no longer gives this role
        return sess, problem

    def render(request: Request, name: str, ctx: dict[str, Any], status: int = 200,
               sess: DashSession | None = None) -> HTMLResponse:
        b = base(request)
        ctx = {"request": request, "sess": sess, "B": b, "static": f"{request.scope.get('root_path', '')}/static",
               "now": utcnow(), "nav_path": request.url.path[len(b):] or "/", **ctx}
        html = env.get_template(name).render(**ctx)
        return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})

    def to_login(request: Request, problem: str | None) -> Response:
        b = base(request)
        nxt = request.url.path + (("?" + request.url.query) if request.url.query else "")
        return RedirectResponse(f"{b}/login?" + urlencode({"next": nxt, "why": problem or "missing"}), status_code=303)

    def need_view(request: Request) -> DashSession | Response:
        sess, problem = read_session(request)
        if sess is None:
            return to_login(request, problem)
        return sess

    def forbidden(request: Request, sess: DashSession, msg: str) -> HTMLResponse:
        return render(request, "error.html", {"title": "دسترسی ندارید", "message": msg}, 403, sess)

    def not_found(request: Request, sess: DashSession | None, msg: str, back: str = "/") -> HTMLResponse:
        return render(request, "error.html", {"title": "پیدا نشد", "message": msg, "back": back}, 404, sess)

    def db():
        return session_factory()

    # -- login --------------------------------------------------------------------------------
    @router.get("/login", response_class=HTMLResponse, name="dash_login")
    async def login_page(request: Request, next: str = "", why: str = "") -> Response:
        return render(request, "login.html", {"next": next, "message": SESSION_PROBLEM_FA.get(why, "")})

    @router.post("/login", name="dash_login_post")
    async def login_post(request: Request) -> Response:
        form = await request.form()
        token = str(form.get("token", "")).strip()
        nxt = str(form.get("next", ""))
        role = token_checker.resolve(token) if token else None
        if role is None:
            msg = "توکن را وارد کنید." if not token else "توکن نادرست است. همان توکن مدیریتی (یا توکن استانی) را وارد کنید."
            return render(request, "login.html", {"next": nxt, "error": msg}, 401)
        sess = signer.new_session(role.kind, role.province, token_hash=token_checker.token_hash(token))
        b = base(request)
        resp = RedirectResponse(_safe_next(nxt, b + "/"), status_code=303)
        resp.set_cookie(COOKIE_NAME, signer.encode(sess), max_age=signer.ttl_s, httponly=True, samesite="strict",
                        secure=cookie_secure, path="/")
        return resp

    @router.get("/logout", name="dash_logout")
    async def logout(request: Request) -> Response:
        resp = RedirectResponse(base(request) + "/login", status_code=303)
        resp.delete_cookie(COOKIE_NAME, path="/")
        return resp

    # -- overview -----------------------------------------------------------------------------
    @router.get("/", response_class=HTMLResponse, name="dash_overview")
    async def overview(request: Request, province: str = "") -> Response:
        sess = need_view(request)
        if isinstance(sess, Response):
            return sess
        now = utcnow()
        province = sess.province or to_ascii_digits(province).upper()
        with db() as s:
            snap = data.snapshot(s)
            notice = ""
            if province and province not in snap.provinces:
                notice = f"استان «{province}» شناخته نیست؛ همهٔ استان‌ها نشان داده می‌شوند."
                province = ""
            clusters = s.query(m.Cluster).order_by(m.Cluster.id).all()
            minute = now.replace(second=0, microsecond=0)
            pf = province or None
            last5 = data.service_counts(s, minute - timedelta(minutes=5), minute, province=pf)
            last60 = data.service_counts(s, minute - timedelta(minutes=60), minute, province=pf)
            open_inc = data.open_incident_counts(s, pf)
            provinces = [province] if province else sorted(snap.provinces)
            rows = []
            for c in clusters:
                svcs = []
                for svc in sorted((x for x in snap.services.values() if x.cluster_id == c.id), key=lambda x: x.id):
                    covered = sum(1 for p in provinces if data.routable_operators(snap, svc.id, p, now))
                    ops = sorted({lic.operator_id for lic in snap.licences
                                  if svc.id in lic.service_ids and any(lic.routable(svc.id, p, now) for p in provinces)})
                    c5, c60 = last5.get(svc.id), last60.get(svc.id)
                    avail = c60.availability if c60 else None
                    n_inc = open_inc.get(svc.id, 0)
                    if covered < len(provinces):
                        state = "down" if covered == 0 else "partial"
                    elif avail is None:
                        state = "nodata"
                    elif avail < svc.slo_target or n_inc:
                        state = "degraded"
                    else:
                        state = "ok"
                    svcs.append({"svc": svc, "covered": covered, "n_provinces": len(provinces),
                                 "ops": [snap.operators[o] for o in ops if o in snap.operators],
                                 "rpm": (c5.total / 5) if c5 else None, "avail": avail,
                                 "latency": c60.latency_ms if c60 else None, "incidents": n_inc, "state": state})
                rows.append({"cluster": c, "services": svcs})
            # operators burning their error budget: last hour's error ratio / (1 - strictest SLA)
            by_op = data.service_counts(s, minute - timedelta(minutes=60), minute, by="operator", province=pf)
            burning = []
            for op_id, cnt in by_op.items():
                targets = [lic.sla_target for lic in snap.licences if lic.operator_id == op_id and lic.status == "active"]
                if not cnt.total or not targets:
                    continue
                target = max(targets)
                err = 1 - cnt.good / cnt.total
                burning.append({"op": snap.operators.get(op_id), "op_id": op_id, "total": cnt.total, "err": err,
                                "target": target, "burn": err / (1 - target) if target < 1 else None})
            burning.sort(key=lambda b: -(b["burn"] or 0))
            month_a, month_b = data.jalali_month_bounds(now)
            expiring = sum(1 for lic in snap.licences if lic.status in ("active", "suspended")
                           and month_a <= lic.valid_until < month_b and (not province or province in lic.provinces))
            return render(request, "overview.html", {
                "rows": rows, "has_requests": data.has_requests(s), "has_incidents": data.has_incidents(s),
                "total_open": sum(open_inc.values()), "n_services": len(snap.services), "n_operators": len(snap.operators),
                "n_active": sum(1 for lic in snap.licences if lic.status == "active"),
                "rpm_total": (sum(c.total for c in last5.values()) / 5) if last5 else None,
                "province": province, "provinces": sorted(snap.provinces.values(), key=lambda p: p.code),
                "pname": snap.provinces[province].name_fa if province else "", "notice": notice,
                "burning": burning[:8], "expiring": expiring,
                "month_label": format_jalali(month_a, with_time=False)[:7],
            }, sess=sess)

    # -- provinces ----------------------------------------------------------------------------
    @router.get("/provinces", response_class=HTMLResponse, name="dash_provinces")
    async def provinces(request: Request) -> Response:
        sess = need_view(request)
        if isinstance(sess, Response):
            return sess
        now = utcnow()
        with db() as s:
            snap = data.snapshot(s)
            minute = now.replace(second=0, microsecond=0)
            by_prov = data.service_counts(s, minute - timedelta(minutes=60), minute, by="province")
            coverage = data.coverage_by_province(snap, now)
            n_svc = len(snap.services)
            tiles = []
            size, gap = 92, 6
            for code, (col, row) in TILES.items():
                p = snap.provinces.get(code)
                c = by_prov.get(code)
                avail = c.availability if c else None
                if avail is None:
                    cls = "nodata"
                elif avail >= 0.999:
                    cls = "good"
                elif avail >= 0.99:
                    cls = "warn"
                else:
                    cls = "bad"
                tiles.append({"code": code, "name": p.name_fa if p else code, "x": col * (size + gap),
                              "y": row * (size + gap), "size": size, "avail": avail, "cls": cls,
                              "coverage": coverage.get(code, 0), "n_svc": n_svc,
                              "allowed": sess.province in (None, code)})
            return render(request, "provinces.html", {
                "tiles": tiles, "w": COLS * (size + gap), "h": ROWS * (size + gap),
                "has_requests": data.has_requests(s) and bool(by_prov),
            }, sess=sess)

    @router.get("/provinces/{code}", response_class=HTMLResponse, name="dash_province")
    async def province(request: Request, code: str) -> Response:
        sess = need_view(request)
        if isinstance(sess, Response):
            return sess
        code = to_ascii_digits(code).upper()
        if sess.province and sess.province != code:
            return forbidden(request, sess, "با توکن استانی فقط صفحهٔ استان خودتان را می‌بینید.")
        now = utcnow()
        with db() as s:
            p = s.get(m.Province, code)
            if p is None:
                return not_found(request, sess, f"استانی با کد «{fa(code)}» وجود ندارد.", "/provinces")
            snap = data.snapshot(s)
            based = s.query(m.Operator).filter(m.Operator.home_province == code).order_by(m.Operator.id).all()
            services = []
            for svc in sorted(snap.services.values(), key=lambda x: (x.cluster_id, x.id)):
                ops = data.routable_operators(snap, svc.id, code, now)
                services.append({"svc": svc, "ops": [snap.operators[o] for o in ops if o in snap.operators]})
            incs = data.incidents(s, data.IncidentFilter(province=code), limit=50)
            timeline: list[data.TimelineItem] = []
            evs = (s.query(m.LicenceEvent, m.Licence).join(m.Licence, m.LicenceEvent.licence_id == m.Licence.id)
                   .filter(m.Licence.province_links.any(m.LicenceProvince.province_code == code))
                   .order_by(m.LicenceEvent.at.desc(), m.LicenceEvent.id.desc()).limit(30).all())
            cluster_fa = {c.id: c.name_fa for c in s.query(m.Cluster)}
            for ev, lic in evs:
                op = snap.operators.get(lic.operator_id)
                svc_fa = snap.services[lic.service_id].name_fa if lic.service_id in snap.services else lic.service_id
                scope = svc_fa if lic.service_id else f"خوشهٔ {cluster_fa.get(lic.cluster_id, lic.cluster_id)}"
                text = (f"{ACTION_FA.get(ev.action, ev.action)} مجوز {fa(lic.id)} — "
                        f"{op.name_fa if op else lic.operator_id} ({scope})")
                timeline.append(data.TimelineItem(ev.at, "licence", text, f"/licences?operator={lic.operator_id}",
                                                  {"reason": ev.reason, "actor": ev.actor}))
            for inc in incs:
                timeline.append(data.TimelineItem(inc.opened_at, "incident", "آغاز رخداد: " + inc.title_fa,
                                                  f"/incidents/{inc.id}"))
                if inc.resolved_at:
                    timeline.append(data.TimelineItem(inc.resolved_at, "incident", "پایان رخداد: " + inc.title_fa,
                                                      f"/incidents/{inc.id}"))
            timeline.sort(key=lambda t: _aware(t.at), reverse=True)
            neighbours = [snap.provinces[n] for n in sorted(snap.provinces[code].neighbours)]
            return render(request, "province.html", {
                "p": p, "based": based, "services": services, "incidents": incs, "timeline": timeline[:30],
                "n_covered": sum(1 for r in services if r["ops"]), "n_services": len(services),
                "n_open": sum(1 for i in incs if i.state != "resolved"),
                "has_incidents": data.has_incidents(s), "neighbours": neighbours,
            }, sess=sess)

    # -- service ------------------------------------------------------------------------------
    @router.get("/services/{service_id}", response_class=HTMLResponse, name="dash_service")
    async def service(request: Request, service_id: str) -> Response:
        sess = need_view(request)
        if isinstance(sess, Response):
            return sess
        now = utcnow()
        with db() as s:
            svc = s.get(m.Service, service_id)
            if svc is None:
                return not_found(request, sess, f"خدمتی با شناسهٔ «{service_id}» وجود ندارد.", "/")
            snap = data.snapshot(s)
            contract = next((c.openapi for c in svc.contracts if c.version == svc.current_contract_version), None)
            contract = contract if isinstance(contract, dict) else None
            ops = contract_operations(contract)
            contract_head = contract_header(contract)
            prov_codes = [sess.province] if sess.province else sorted(snap.provinces)
            per_prov = [{"p": snap.provinces[c], "ops": [snap.operators[o] for o in data.routable_operators(snap, svc.id, c, now)]}
                        for c in prov_codes]
            minute = now.replace(second=0, microsecond=0)
            charts_out = []
            for label, window, bucket, bucket_fa in (("۲۴ ساعت گذشته", timedelta(hours=24), timedelta(hours=1), "بازه‌های ۱ ساعته"),
                                                     ("۳۰ روز گذشته", timedelta(days=30), timedelta(days=1), "بازه‌های ۱ روزه")):
                start = minute - window
                ser = data.series(s, start=start, end=minute, bucket=bucket, service_id=svc.id)
                avail = [(t, (c.availability * 100) if c else None) for t, c in ser]
                lat = [(t, c.latency_ms if c else None) for t, c in ser]
                key = "24h" if window <= timedelta(days=1) else "30d"
                charts_out.append(charts.line_chart(
                    avail, start=start, end=minute, title_fa="دسترس‌پذیری خدمت (درخواست‌های موفق ÷ کل)",
                    y_label_fa="درصد (٪)", window_fa=f"{label}، {bucket_fa}", y_max=100, decimals=2,
                    target=svc.slo_target * 100, target_label_fa=f"هدف SLO: {pct(svc.slo_target, 2)}",
                    chart_id=f"avail-{key}"))
                charts_out.append(charts.line_chart(
                    lat, start=start, end=minute, title_fa="میانگین تأخیر پاسخ", y_label_fa="میلی‌ثانیه",
                    window_fa=f"{label}، {bucket_fa}", y_min=0, decimals=0, chart_id=f"latency-{key}"))
            incs = data.incidents(s, data.IncidentFilter(service=svc.id, province=sess.province or ""), limit=20)
            lics = (s.query(m.Licence).filter((m.Licence.service_id == svc.id) | (m.Licence.cluster_id == svc.cluster_id))
                    .order_by(m.Licence.id).all())
            if sess.province:  # a province user sees the licences that cover their province, as on /licences
                lics = [lic for lic in lics if sess.province in lic.provinces]
            return render(request, "service.html", {
                "svc": svc, "contract": contract, "contract_head": contract_head, "ops": ops, "per_prov": per_prov, "charts": charts_out,
                "incidents": incs, "licences": lics, "operators": snap.operators,
                "has_incidents": data.has_incidents(s),
            }, sess=sess)

    # -- operator -----------------------------------------------------------------------------
    @router.get("/operators/{operator_id}", response_class=HTMLResponse, name="dash_operator")
    async def operator(request: Request, operator_id: str) -> Response:
        sess = need_view(request)
        if isinstance(sess, Response):
            return sess
        now = utcnow()
        with db() as s:
            op = s.get(m.Operator, operator_id)
            if op is None:
                return not_found(request, sess, f"اپراتوری با شناسهٔ «{operator_id}» وجود ندارد.", "/licences")
            snap = data.snapshot(s)
            home = s.get(m.Province, op.home_province)
            lics = (s.query(m.Licence).filter(m.Licence.operator_id == op.id).order_by(m.Licence.id).all())
            if sess.province:  # a province user sees the licences that cover their province, as on /licences
                lics = [lic for lic in lics if sess.province in lic.provinces]
            health = data.operator_health(s).get(op.id)
            cards = []
            for lic in lics:
                info = next((li for li in snap.licences if li.id == lic.id), None)
                sids = info.service_ids if info else frozenset()
                budget = data.operator_budget(s, op.id, lic.sla_target, now, sids) if sids else None
                allowed_min = (1 - lic.sla_target) * 30 * 24 * 60
                cards.append({"lic": lic, "budget": budget, "allowed_min": allowed_min, "n_services": len(sids)})
            minute = now.replace(second=0, microsecond=0)
            start = minute - timedelta(days=30)
            ser = data.series(s, start=start, end=minute, bucket=timedelta(days=1), operator_id=op.id)
            chart = charts.line_chart(
                [(t, (c.availability * 100) if c else None) for t, c in ser], start=start, end=minute,
                title_fa="دسترس‌پذیری اپراتور (تلاش‌های موفق ÷ کل تلاش‌های ارسالی)", y_label_fa="درصد (٪)",
                window_fa="۳۰ روز گذشته، بازه‌های ۱ روزه", y_max=100, decimals=2, chart_id="operator-avail-30d")
            incs = data.incidents(s, data.IncidentFilter(operator=op.id, province=sess.province or ""), limit=20)
            return render(request, "operator.html", {
                "op": op, "home": home, "cards": cards, "health": health, "chart": chart, "incidents": incs,
                "has_requests": data.has_requests(s), "has_incidents": data.has_incidents(s),
                "cluster_fa": {c.id: c.name_fa for c in s.query(m.Cluster)},
            }, sess=sess)

    # -- licences -----------------------------------------------------------------------------
    @router.get("/licences", response_class=HTMLResponse, name="dash_licences")
    async def licences_page(request: Request, status: str = "", expiry: str = "", province: str = "",
                            operator: str = "", done: str = "", action: str = "") -> Response:
        sess = need_view(request)
        if isinstance(sess, Response):
            return sess
        now = utcnow()
        errors = []
        if status and status not in STATUS_FA:
            errors.append(f"وضعیت «{status}» شناخته نیست؛ فیلتر وضعیت نادیده گرفته شد.")
            status = ""
        if expiry not in EXPIRY_FA:
            errors.append("فیلتر تاریخ انقضا نامعتبر بود و نادیده گرفته شد.")
            expiry = ""
        if sess.province:
            province = sess.province
        with db() as s:
            provinces = s.query(m.Province).order_by(m.Province.code).all()
            operators = s.query(m.Operator).order_by(m.Operator.id).all()
            if province and province not in {p.code for p in provinces}:
                errors.append(f"استان «{province}» شناخته نیست؛ فیلتر استان نادیده گرفته شد.")
                province = ""
            flt = data.LicenceFilter(status=status, expiry=expiry, province=province, operator=operator)
            rows = data.licences(s, flt, now)
            month_a, month_b = data.jalali_month_bounds(now)
            flash = ""
            if done and action in ACTION_FA:
                flash = f"اقدام «{ACTION_FA[action]}» روی مجوز {fa(done)} ثبت و در سابقهٔ ممیزی نوشته شد."
            return render(request, "licences.html", {
                "rows": rows, "flt": flt, "provinces": provinces, "operators": operators, "errors": errors,
                "flash": flash, "month_label": format_jalali(month_a, with_time=False)[:7],
                "pnames": {p.code: p.name_fa for p in provinces}, "now_dt": now,
                "allowed": {a: licensing.TRANSITIONS[a] for a in UI_ACTIONS},
                "cluster_fa": {c.id: c.name_fa for c in s.query(m.Cluster)},
            }, sess=sess)

    def _new_form(request: Request, sess: DashSession, form: dict[str, Any], error: str = "", status: int = 200) -> Response:
        with db() as s:
            ctx = {"form": form, "error": error,
                   "operators": s.query(m.Operator).order_by(m.Operator.id).all(),
                   "clusters": s.query(m.Cluster).order_by(m.Cluster.id).all(),
                   "services": s.query(m.Service).order_by(m.Service.cluster_id, m.Service.id).all(),
                   "provinces": s.query(m.Province).order_by(m.Province.code).all()}
            return render(request, "licence_new.html", ctx, status, sess)

    @router.get("/licences/new", response_class=HTMLResponse, name="dash_licence_new")
    async def licence_new(request: Request) -> Response:
        sess = need_view(request)
        if isinstance(sess, Response):
            return sess
        if not sess.can_write:
            return forbidden(request, sess, "توکن استانی فقط اجازهٔ دیدن دارد؛ برای ثبت مجوز با توکن مدیریتی وارد شوید.")
        now = utcnow()
        q = request.query_params
        form = {"operator": q.get("operator", ""), "scope": q.get("scope", ""), "provinces": q.getlist("provinces"),
                "valid_from": q.get("valid_from") or jalali_input(now),
                "valid_until": q.get("valid_until") or jalali_input(now + timedelta(days=365)),
                "sla": q.get("sla") or "۹۹٫۵", "reason": q.get("reason", "")}
        return _new_form(request, sess, form, "آنچه نوشته بودید نگه داشته شد؛ بررسی و دوباره ثبت کنید." if q.get("why") else "")

    @router.post("/licences/new", name="dash_licence_new_post")
    async def licence_new_post(request: Request) -> Response:
        raw = await request.form()
        form = {"operator": str(raw.get("operator", "")), "scope": str(raw.get("scope", "")),
                "provinces": [str(p) for p in raw.getlist("provinces")], "valid_from": str(raw.get("valid_from", "")).strip(),
                "valid_until": str(raw.get("valid_until", "")).strip(), "sla": str(raw.get("sla", "")).strip(),
                "reason": str(raw.get("reason", "")).strip()}
        b = base(request)
        sess, problem = read_session(request)
        if sess is None:
            q = [(k, v) for k, v in form.items() if k != "provinces"] + [("provinces", p) for p in form["provinces"]]
            back = f"{b}/licences/new?" + urlencode(q + [("why", problem or "missing")])
            return render(request, "login.html", {"next": back, "kept_note": True,
                                                  "message": SESSION_PROBLEM_FA.get(problem or "missing")}, 401)
        if not sess.can_write:
            return forbidden(request, sess, "توکن استانی فقط اجازهٔ دیدن دارد.")
        if str(raw.get("csrf", "")) != sess.csrf:
            return _new_form(request, sess, form, "این فرم کهنه یا نامعتبر است؛ آنچه نوشته بودید نگه داشته شد، دوباره ثبت کنید.", 400)
        problems = []
        if not form["operator"]:
            problems.append("اپراتور را انتخاب کنید.")
        kind, _, scope_id = form["scope"].partition(":")
        if kind not in ("service", "cluster") or not scope_id:
            problems.append("دامنهٔ مجوز (یک خدمت یا یک خوشه) را انتخاب کنید.")
        if not form["provinces"]:
            problems.append("دست‌کم یک استان را انتخاب کنید.")
        try:
            vf = parse_date_fa(form["valid_from"])
            vu = parse_date_fa(form["valid_until"])
        except ValueError as exc:
            problems.append("تاریخ اعتبار: " + str(exc))
            vf = vu = None
        try:
            sla_pct = float(to_ascii_digits(form["sla"]).replace("٫", ".").replace("٪", "").replace("%", "").strip())
            sla = sla_pct / 100
            if not 0 < sla < 1:
                raise ValueError
        except ValueError:
            problems.append("سطح توافق خدمت را به درصد بنویسید، مثلاً ۹۹٫۵.")
            sla = None
        if len(form["reason"]) < MIN_REASON:
            problems.append(f"دلیل را بنویسید (دست‌کم {fa(MIN_REASON)} نویسه)؛ در سابقهٔ ممیزی ثبت می‌شود.")
        if problems:
            return _new_form(request, sess, form, " ".join(problems), 422)
        with db() as s:
            try:
                lic = licensing.apply(
                    s, operator_id=form["operator"], service_id=scope_id if kind == "service" else None,
                    cluster_id=scope_id if kind == "cluster" else None, provinces=form["provinces"],
                    valid_from=vf, valid_until=vu, sla_target=sla, actor="dashboard:admin", reason=form["reason"])
                s.commit()
                new_id = lic.id
            except licensing.LicensingError as exc:
                s.rollback()
                return _new_form(request, sess, form, exc.message_fa, exc.http_status if exc.http_status != 404 else 422)
        return RedirectResponse(f"{b}/licences?" + urlencode({"done": new_id, "action": "apply"}), status_code=303)

    def _confirm_ctx(lic: m.Licence, action: str, reason: str, valid_until: str) -> dict[str, Any]:
        before = lic.status
        after = licensing.TRANSITIONS[action].get(before)
        return {"lic": lic, "action": action, "reason": reason, "valid_until": valid_until,
                "before": before, "after": after}

    @router.get("/licences/{licence_id}/{action}", response_class=HTMLResponse, name="dash_licence_confirm")
    async def licence_confirm(request: Request, licence_id: str, action: str, reason: str = "",
                              valid_until: str = "", why: str = "") -> Response:
        sess = need_view(request)
        if isinstance(sess, Response):
            return sess
        if not sess.can_write:
            return forbidden(request, sess, "توکن استانی فقط اجازهٔ دیدن دارد؛ برای تغییر مجوز با توکن مدیریتی وارد شوید.")
        if action not in UI_ACTIONS:
            return not_found(request, sess, f"اقدام «{action}» روی مجوز تعریف نشده است.", "/licences")
        lid = parse_id(licence_id)
        with db() as s:
            lic = s.get(m.Licence, lid) if lid is not None else None
            if lic is None:
                return not_found(request, sess, f"مجوز {fa(licence_id)} وجود ندارد (شاید حذف شده است).", "/licences")
            if action == "renew" and not valid_until:
                nxt = jdatetime.date.fromgregorian(date=lic.valid_until.astimezone(TEHRAN).date())
                valid_until = to_persian_digits(jdatetime.date(nxt.year + 1, nxt.month, min(nxt.day, 29)).strftime("%Y/%m/%d"))
            ctx = _confirm_ctx(lic, action, reason, valid_until)
            ctx["operator"] = lic.operator
            ctx["cluster_fa"] = {c.id: c.name_fa for c in s.query(m.Cluster)}
            ctx["message"] = "آنچه نوشته بودید نگه داشته شد؛ بررسی و دوباره تأیید کنید." if why else ""
            return render(request, "licence_confirm.html", ctx, sess=sess)

    @router.post("/licences/{licence_id}/{action}", name="dash_licence_action")
    async def licence_action(request: Request, licence_id: str, action: str) -> Response:
        form = await request.form()
        reason = str(form.get("reason", "")).strip()
        valid_until = str(form.get("valid_until", "")).strip()
        b = base(request)
        sess, problem = read_session(request)
        if sess is None:
            # keep what they typed: the login form carries the confirmation page's URL with the
            # reason and date as query parameters, and the page is filled in again after login.
            back = f"{b}/licences/{licence_id}/{action}?" + urlencode(
                {"reason": reason, "valid_until": valid_until, "why": problem or "missing"})
            return render(request, "login.html", {"next": back, "message": SESSION_PROBLEM_FA.get(problem or "missing"),
                                                  "kept_note": True}, 401)
        if not sess.can_write:
            return forbidden(request, sess, "توکن استانی فقط اجازهٔ دیدن دارد؛ برای تغییر مجوز با توکن مدیریتی وارد شوید.")
        if action not in UI_ACTIONS:
            return not_found(request, sess, f"اقدام «{action}» روی مجوز تعریف نشده است.", "/licences")
        lid = parse_id(licence_id)
        with db() as s:
            lic = s.get(m.Licence, lid) if lid is not None else None
            if lic is None:
                return not_found(request, sess, f"مجوز {fa(licence_id)} وجود ندارد (شاید در این فاصله حذف شده است).", "/licences")

            def again(msg: str, status: int) -> HTMLResponse:
                ctx = _confirm_ctx(lic, action, reason, valid_until)
                ctx.update(operator=lic.operator, error=msg, cluster_fa={c.id: c.name_fa for c in s.query(m.Cluster)})
                return render(request, "licence_confirm.html", ctx, status, sess)

            if str(form.get("csrf", "")) != sess.csrf:
                return again("این فرم کهنه یا نامعتبر است (نشانهٔ امنیتی فرم نمی‌خواند). آنچه نوشته بودید نگه داشته شد؛ دوباره تأیید کنید.", 400)
            if len(reason) < MIN_REASON:
                return again(f"دلیل این اقدام را بنویسید (دست‌کم {fa(MIN_REASON)} نویسه)؛ در سابقهٔ ممیزی ثبت می‌شود.", 422)
            until = None
            if action == "renew":
                try:
                    until = parse_date_fa(valid_until)
                except ValueError as exc:
                    return again(str(exc), 422)
            try:
                licensing.transition(s, lic.id, action, actor="dashboard:admin", reason=reason, valid_until=until)
                s.commit()
            except licensing.LicensingError as exc:
                s.rollback()
                s.expire_all()
                lic = s.get(m.Licence, lic.id)
                if lic is None:
                    return not_found(request, sess, exc.message_fa, "/licences")
                return again(exc.message_fa + " (" + STATUS_FA.get(lic.status, lic.status) + ")", exc.http_status)
        return RedirectResponse(f"{b}/licences?" + urlencode({"done": lic.id, "action": action}), status_code=303)

    # -- incidents ----------------------------------------------------------------------------
    @router.get("/incidents", response_class=HTMLResponse, name="dash_incidents")
    async def incidents_page(request: Request, state: str = "", province: str = "") -> Response:
        sess = need_view(request)
        if isinstance(sess, Response):
            return sess
        if sess.province:
            province = sess.province
        if state not in ("", "open", *INCIDENT_STATE_FA):
            state = ""
        with db() as s:
            rows = data.incidents(s, data.IncidentFilter(state=state, province=province))
            provinces = s.query(m.Province).order_by(m.Province.code).all()
            return render(request, "incidents.html", {
                "rows": rows, "state": state, "province": province, "provinces": provinces,
                "pnames": {p.code: p.name_fa for p in provinces}, "has_incidents": data.has_incidents(s),
            }, sess=sess)

    @router.get("/incidents/{incident_id}", response_class=HTMLResponse, name="dash_incident")
    async def incident_page(request: Request, incident_id: str, note: str = "", to_state: str = "") -> Response:
        sess = need_view(request)
        if isinstance(sess, Response):
            return sess
        # note/to_state come back after a re-login so the person's unsent note is not lost
        return _incident(request, sess, incident_id, {"note_text": note, "note_state": to_state})

    def _incident(request: Request, sess: DashSession, incident_id: str, extra: dict[str, Any], status: int = 200) -> Response:
        iid = parse_id(incident_id)
        with db() as s:
            inc = data.get_incident(s, iid) if iid is not None else None
            if inc is None or (sess.province and inc.province != sess.province):
                msg = (f"رخداد {fa(incident_id)} وجود ندارد." if data.has_incidents(s)
                       else "بخش پایش هنوز جدول رخدادها را ندارد؛ " + NO_DATA + ".")
                return not_found(request, sess, msg, "/incidents")
            svc = s.get(m.Service, inc.service_id) if inc.service_id else None
            op = s.get(m.Operator, inc.operator_id) if inc.operator_id else None
            prov = s.get(m.Province, inc.province) if inc.province else None
            return render(request, "incident.html", {"inc": inc, "svc": svc, "op": op, "prov": prov,
                                                     "note_text": "", "note_state": "", **extra}, status, sess)

    @router.post("/incidents/{incident_id}/notes", name="dash_incident_note")
    async def incident_note(request: Request, incident_id: str) -> Response:
        form = await request.form()
        text = str(form.get("text", "")).strip()
        to_state = str(form.get("to_state", "")).strip()
        b = base(request)
        sess, problem = read_session(request)
        if sess is None:
            back = f"{b}/incidents/{incident_id}?" + urlencode({"note": text, "to_state": to_state})
            return render(request, "login.html", {"next": back, "kept_note": True,
                                                  "message": SESSION_PROBLEM_FA.get(problem or "missing"),
                                                  }, 401)
        if not sess.can_write:
            return forbidden(request, sess, "توکن استانی فقط اجازهٔ دیدن دارد.")
        extra = {"note_text": text, "note_state": to_state}
        if str(form.get("csrf", "")) != sess.csrf:
            return _incident(request, sess, incident_id, {**extra, "error": "این فرم کهنه یا نامعتبر است؛ دوباره ثبت کنید."}, 400)
        if len(text) < 3:
            return _incident(request, sess, incident_id, {**extra, "error": "متن یادداشت را بنویسید (دست‌کم ۳ نویسه)."}, 422)
        if to_state and to_state not in INCIDENT_STATE_FA:
            return _incident(request, sess, incident_id, {**extra, "error": "وضعیت انتخاب‌شده معتبر نیست."}, 422)
        iid = parse_id(incident_id)
        with db() as s:
            if iid is None or data.get_incident(s, iid) is None:
                return not_found(request, sess, f"رخداد {fa(incident_id)} وجود ندارد (شاید حذف شده است). متن شما: «{text}»", "/incidents")
            try:
                data.add_incident_note(s, iid, author="dashboard:admin", text_fa=text, to_state=to_state or None)
                s.commit()
            except data.NoteError as exc:
                s.rollback()
                return _incident(request, sess, incident_id, {**extra, "error": exc.message_fa}, exc.http_status)
        return RedirectResponse(f"{b}/incidents/{iid}#notes", status_code=303)

    # -- ask ----------------------------------------------------------------------------------
    @router.get("/ask", response_class=HTMLResponse, name="dash_ask")
    async def ask(request: Request, q: str = "", province: str = "") -> Response:
        sess = need_view(request)
        if isinstance(sess, Response):
            return sess
        import asyncio  # noqa: PLC0415

        now = utcnow()
        province = sess.province or province
        result: dict[str, Any] | None = None
        error = ""
        with db() as s:
            snap = data.snapshot(s)
            provinces = sorted(snap.provinces.values(), key=lambda p: p.code)
            if province and province not in snap.provinces:
                error = "استان انتخاب‌شده شناخته نیست."
                province = ""
        if q.strip() and not error:
            from zistboom.nlp.frontdoor import BadQuestion, get_front_door  # noqa: PLC0415 - loads numpy models

            try:
                # The first call loads (or, in a fresh var/, trains) the model: keep it off the event loop.
                result = await asyncio.to_thread(lambda: get_front_door().ask(q))
            except BadQuestion as exc:
                error = exc.message_fa
            except Exception:  # noqa: BLE001 - shown to the person, logged by the server
                import logging  # noqa: PLC0415

                logging.getLogger("zistboom.dashboard").exception("front door failed")
                error = "درگاه پرسش فارسی اکنون پاسخ نمی‌دهد؛ کمی بعد دوباره بپرسید."
        svc_info = None
        ops: list[Any] = []
        if result is not None:
            sid = result["service"]
            svc_info = snap.services.get(sid) if sid else None
            if svc_info:
                codes = [province] if province else []
                ops = [snap.operators[o] for c in codes for o in data.routable_operators(snap, svc_info.id, c, now)]
        return render(request, "ask.html", {"q": q, "province": province, "provinces": provinces, "result": result,
                                            "svc": svc_info, "ops": ops, "error": error,
                                            "cluster_names": {}}, sess=sess)

    for r in router.routes:
        local_paths[r.name] = r.path
    return router


__all__ = ["make_router", "static_dir", "parse_date_fa", "jdate", "escape"]

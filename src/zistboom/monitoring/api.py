"""Monitoring HTTP API (FastAPI router), mounted by the admin app.

Admin (``Depends(require_admin)``):

* ``GET  /admin/v1/availability?service=&operator=&province=&window=1h|24h|30d`` (default 24h)
* ``GET  /admin/v1/slo?service=&operator=`` — error budget (30 d) and burn rates, alerts, licence SLAs
* ``GET  /admin/v1/incidents?state=&service=&province=&limit=`` — newest first
* ``GET  /admin/v1/incidents/{id}`` — with notes
* ``POST /admin/v1/incidents/{id}/notes`` ``{"text_fa", "text_en"?, "author"?}`` → 201 (the stored
  author is the authenticated role, ``admin``; ``author`` is only a display name after it)
* ``POST /admin/v1/incidents/{id}/state`` ``{"state", "note_fa"?, "note_en"?, "author"?}``

Public, read-only (no auth) — what a citizen-facing status page shows:

* ``GET /status/v1/clusters`` and ``/status/v1/clusters/{cluster_id}``
* ``GET /status/v1/provinces`` and ``/status/v1/provinces/{code}``

Errors: ``{"error": {"code", "message_fa", "message_en"}}`` with 404 (unknown id), 409 (state move
not allowed), 422 (bad window, bad field, malformed JSON).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from zistboom.monitoring import incidents as inc_mod
from zistboom.monitoring.availability import AVAILABILITY_WINDOWS, WindowError, parse_window
from zistboom.monitoring.models import INCIDENT_STATES, Incident
from zistboom.monitoring.reports import availability_report, slo_report
from zistboom.monitoring.settings import MonitorSettings
from zistboom.monitoring.status import StatusBuilder
from zistboom.registry import models as m
from zistboom.registry.db import utcnow
from zistboom.registry.snapshot import RegistrySnapshot, current_version, load_snapshot


def _err(status: int, code: str, fa: str, en: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message_fa": fa, "message_en": en}}, status_code=status)


class _Bad(Exception):
    def __init__(self, resp: JSONResponse):
        self.resp = resp


def make_router(session_factory: sessionmaker[Session], require_admin: Callable[..., Any], *,
                settings: MonitorSettings | None = None, clock: Callable[[], datetime] = utcnow) -> APIRouter:
    """The monitoring router (paths above). ``clock`` is injectable for tests."""
    settings = settings or MonitorSettings.from_any(None)
    router = APIRouter()
    admin = [Depends(require_admin)]
    cache: dict[str, RegistrySnapshot] = {}

    def snapshot(session: Session) -> RegistrySnapshot:
        v = current_version(session)
        snap = cache.get("snap")
        if snap is None or snap.version != v:
            snap = cache["snap"] = load_snapshot(session)
        return snap

    def check_ids(snap: RegistrySnapshot, service: str | None, operator: str | None, province: str | None) -> None:
        if service and service not in snap.services:
            raise _Bad(_err(404, "unknown_service", f"خدمت «{service}» پیدا نشد.", f"Service {service!r} not found."))
        if operator and operator not in snap.operators:
            raise _Bad(_err(404, "unknown_operator", f"اپراتور «{operator}» پیدا نشد.", f"Operator {operator!r} not found."))
        if province and province not in snap.provinces:
            raise _Bad(_err(404, "unknown_province", f"استان «{province}» پیدا نشد.", f"Province {province!r} not found."))

    def incident_id(raw: str) -> int:
        # ASCII digits only: str.isdigit() also accepts '²', which int() refuses (a 500)
        if not re.fullmatch(r"[0-9]{1,12}", raw, flags=re.ASCII) or int(raw) == 0:
            raise _Bad(_err(404, "not_found", f"رخداد «{raw}» پیدا نشد.", f"Incident {raw!r} not found."))
        return int(raw)

    async def json_body(request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except Exception:
            raise _Bad(_err(422, "invalid_json", "بدنهٔ درخواست JSON معتبر نیست.", "The request body is not valid JSON."))
        if not isinstance(body, dict):
            raise _Bad(_err(422, "invalid_json", "بدنهٔ درخواست باید یک شیء JSON باشد.", "The body must be a JSON object."))
        for k, v in body.items():
            if v is not None and not isinstance(v, str):
                raise _Bad(_err(422, "invalid_field", f"فیلد «{k}» باید متن باشد.", f"Field {k!r} must be a string."))
        return body

    def author_of(request: Request, body: dict[str, Any]) -> str:
        """The note's author is the authenticated role (``admin``), never free text: an optional
        ``author`` display name is kept after it (``admin: کشیک``) so a note cannot pass itself off
        as written by ``monitoring`` or anyone else."""
        role = getattr(request.state, "role", None)
        who = str(getattr(role, "kind", None) or "admin")
        if getattr(role, "province", None):
            who += f"@{role.province}"
        name = " ".join(str(body.get("author") or "").split())
        return (f"{who}: {name}" if name else who)[:100]

    def guarded(fn):
        async def wrapper(*args, **kwargs):
            try:
                return await fn(*args, **kwargs)
            except _Bad as bad:
                return bad.resp
            except inc_mod.IncidentError as exc:
                return _err(exc.http_status, exc.code, exc.message_fa, exc.message_en)
        wrapper.__name__ = fn.__name__
        wrapper.__doc__ = fn.__doc__
        import inspect
        wrapper.__signature__ = inspect.signature(fn)  # type: ignore[attr-defined]
        return wrapper

    # ------------------------------------------------------------------ admin

    @router.get("/admin/v1/availability", dependencies=admin, tags=["monitoring"])
    @guarded
    async def availability(service: str | None = None, operator: str | None = None, province: str | None = None,
                           window: str = "24h"):
        """Availability by time and by requests per (service, operator, province) with roll-ups
        per service, cluster and province. ``window``: 1h, 24h or 30d."""
        try:
            window, _ = parse_window(window, AVAILABILITY_WINDOWS)
        except WindowError:
            raise _Bad(_err(422, "invalid_window", "بازهٔ زمانی باید یکی از 1h، 24h یا 30d باشد.",
                            f"window must be one of {', '.join(AVAILABILITY_WINDOWS)}."))

        def work():
            with session_factory() as s:
                snap = snapshot(s)
                check_ids(snap, service, operator, province)
                return availability_report(s, snap, clock(), window, service=service, operator=operator, province=province)
        return await _thread(work)

    @router.get("/admin/v1/slo", dependencies=admin, tags=["monitoring"])
    @guarded
    async def slo(service: str | None = None, operator: str | None = None):
        """SLO targets, error budget remaining (30 d), burn rates (5m–3d), firing alerts, licence SLAs."""
        def work():
            with session_factory() as s:
                snap = snapshot(s)
                check_ids(snap, service, operator, None)
                return slo_report(s, snap, clock(), settings, service=service, operator=operator)
        return await _thread(work)

    @router.get("/admin/v1/incidents", dependencies=admin, tags=["monitoring"])
    @guarded
    async def list_incidents(state: str | None = None, service: str | None = None, province: str | None = None,
                             limit: str = "100"):
        """Incidents, newest first. ``state``: one of the lifecycle states or ``open``."""
        if state is not None and state not in (*INCIDENT_STATES, "open"):
            raise _Bad(_err(422, "invalid_state", f"وضعیت «{state}» تعریف نشده است.",
                            f"state must be one of {', '.join(INCIDENT_STATES)} or open."))
        if not re.fullmatch(r"[0-9]{1,4}", limit, flags=re.ASCII) or not 1 <= int(limit) <= 1000:  # not isdigit: '²
            raise _Bad(_err(422, "invalid_limit", "limit باید عددی بین ۱ و ۱۰۰۰ باشد.", "limit must be 1..1000."))

        def work():
            with session_factory() as s:
                q = select(Incident).options(selectinload(Incident.notes)).order_by(Incident.id.desc()).limit(int(limit))
                if state == "open":
                    q = q.where(Incident.state != "resolved")
                elif state:
                    q = q.where(Incident.state == state)
                if service:
                    q = q.where(Incident.service_id == service)
                if province:
                    q = q.where(Incident.province == province)
                return {"items": [inc_mod.incident_dict(i, notes=False) for i in s.scalars(q)]}
        return await _thread(work)

    @router.get("/admin/v1/incidents/{incident}", dependencies=admin, tags=["monitoring"])
    @guarded
    async def get_incident(incident: str):
        """One incident with its notes (times in ISO 8601 and Jalali)."""
        iid = incident_id(incident)

        def work():
            with session_factory() as s:
                return inc_mod.incident_dict(inc_mod.get_incident(s, iid))
        return await _thread(work)

    @router.post("/admin/v1/incidents/{incident}/notes", dependencies=admin, tags=["monitoring"], status_code=201)
    @guarded
    async def add_note(incident: str, request: Request):
        """Add a note (``text_fa`` required, Persian)."""
        iid = incident_id(incident)
        body = await json_body(request)
        who = author_of(request, body)

        def work():
            with session_factory() as s:
                inc_mod.add_note(s, iid, text_fa=body.get("text_fa") or "", text_en=body.get("text_en") or "", author=who)
                s.commit()
                return inc_mod.incident_dict(inc_mod.get_incident(s, iid))
        return JSONResponse(await _thread(work), status_code=201)

    @router.post("/admin/v1/incidents/{incident}/state", dependencies=admin, tags=["monitoring"])
    @guarded
    async def set_state(incident: str, request: Request):
        """Move the incident along investigating → identified → monitoring → resolved."""
        iid = incident_id(incident)
        body = await json_body(request)
        if not body.get("state"):
            raise _Bad(_err(422, "missing_state", "فیلد «state» لازم است.", "Field 'state' is required."))
        who = author_of(request, body)

        def work():
            with session_factory() as s:
                inc_mod.change_state(s, iid, body["state"], author=who, note_fa=body.get("note_fa") or "",
                                     note_en=body.get("note_en") or "")
                s.commit()
                return inc_mod.incident_dict(inc_mod.get_incident(s, iid))
        return await _thread(work)

    # ------------------------------------------------------------------ public status

    def builder(s: Session) -> StatusBuilder:
        return StatusBuilder(s, snapshot(s), clock(), settings)

    def cluster_names(s: Session) -> dict[str, tuple[str, str]]:
        return {c.id: (c.name_fa, c.name_en) for c in s.scalars(select(m.Cluster))}

    @router.get("/status/v1/clusters", tags=["status"])
    @guarded
    async def status_clusters():
        """Public: every cluster's status."""
        def work():
            with session_factory() as s:
                return builder(s).clusters_index(cluster_names(s))
        return await _thread(work)

    @router.get("/status/v1/clusters/{cluster_id}", tags=["status"])
    @guarded
    async def status_cluster(cluster_id: str):
        """Public: one cluster's services, their status, availability and incidents."""
        def work():
            with session_factory() as s:
                doc = builder(s).cluster(cluster_id)
                if doc is not None:
                    fa, en = cluster_names(s).get(cluster_id, (cluster_id, cluster_id))
                    doc.update(name_fa=fa, name_en=en)
                return doc
        doc = await _thread(work)
        if doc is None:
            return _err(404, "unknown_cluster", f"خوشهٔ «{cluster_id}» پیدا نشد.", f"Cluster {cluster_id!r} not found.")
        return doc

    @router.get("/status/v1/provinces", tags=["status"])
    @guarded
    async def status_provinces():
        """Public: every province's status."""
        def work():
            with session_factory() as s:
                return builder(s).provinces_index()
        return await _thread(work)

    @router.get("/status/v1/provinces/{code}", tags=["status"])
    @guarded
    async def status_province(code: str):
        """Public: the services licensed in one province, their status and incidents."""
        def work():
            with session_factory() as s:
                return builder(s).province(code)
        doc = await _thread(work)
        if doc is None:
            return _err(404, "unknown_province", f"استان «{code}» پیدا نشد.", f"Province {code!r} not found.")
        return doc

    return router


async def _thread(fn):
    """Run blocking database work off the event loop."""
    import anyio

    return await anyio.to_thread.run_sync(fn)

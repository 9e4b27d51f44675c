"""Read models for the dashboard pages: registry facts plus monitoring figures when they exist.

Monitoring figures come from the tables of :mod:`zistboom.monitoring.models` (per-minute request
buckets, probe seconds, incidents). When those tables are absent (no migration yet) or empty, the
functions return ``None``/empty results and the pages say «داده‌ای هنوز ثبت نشده است»; nothing
here ever makes up a number.

Definitions (the same as the monitoring part's):

* availability over a window = ``good / total`` of the service-level request buckets
  (``operator_id == ""``: what callers saw after failover); per operator, the operator's own
  attempt buckets.
* requests per minute = requests in the last 5 full minutes / 5.
* error budget over 30 days (Google SRE book, ch. 4 "Service Level Objectives"): allowed bad
  requests = ``(1 - target) * total``; consumed fraction = ``bad / allowed``.
* burn rate over the last hour = ``(bad / total) / (1 - target)`` (SRE workbook, "Alerting on SLOs").
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import jdatetime
import sqlalchemy as sa
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from zistboom.registry import models as m
from zistboom.registry.snapshot import RegistrySnapshot, load_snapshot
from zistboom.text.jalali import TEHRAN

MONITOR_TABLES = ("monitor_request_minutes", "incidents", "incident_notes", "monitor_operator_health")
_table_cache: dict[int, tuple[float, frozenset[str]]] = {}


def _mon():
    """The monitoring models module, or None if it cannot be imported."""
    try:
        from zistboom.monitoring import models as mm  # noqa: PLC0415 - optional part
    except Exception:  # pragma: no cover - depends on another part's progress
        return None
    return mm


def monitor_tables(session: Session) -> frozenset[str]:
    """Which monitoring tables exist in this database (cached for 30 s per engine)."""
    bind = session.get_bind()
    key = id(bind)
    hit = _table_cache.get(key)
    if hit and time.monotonic() - hit[0] < 30:
        return hit[1]
    insp = sa.inspect(bind)
    found = frozenset(t for t in MONITOR_TABLES if insp.has_table(t))
    _table_cache[key] = (time.monotonic(), found)
    return found


def has_requests(session: Session) -> bool:
    return _mon() is not None and "monitor_request_minutes" in monitor_tables(session)


def has_incidents(session: Session) -> bool:
    return _mon() is not None and "incidents" in monitor_tables(session)


# ----------------------------------------------------------------------------- registry facts

def snapshot(session: Session) -> RegistrySnapshot:
    return load_snapshot(session)


def routable_operators(snap: RegistrySnapshot, service_id: str, province: str, now: datetime) -> list[str]:
    """Operator ids the gateway may route ``service_id`` to for callers in ``province`` at ``now``."""
    return sorted({lic.operator_id for lic in snap.licences if lic.routable(service_id, province, now)})


def coverage_by_province(snap: RegistrySnapshot, now: datetime) -> dict[str, int]:
    """Number of services with at least one routable operator, per province."""
    out: dict[str, int] = {}
    for code in snap.provinces:
        out[code] = sum(1 for sid in snap.services if any(lic.routable(sid, code, now) for lic in snap.licences))
    return out


def jalali_month_bounds(now: datetime) -> tuple[datetime, datetime]:
    """Start and end (aware, Tehran time) of the Jalali month that contains ``now``."""
    local = now.astimezone(TEHRAN)
    jd = jdatetime.date.fromgregorian(date=local.date())
    first = jdatetime.date(jd.year, jd.month, 1)
    nxt = jdatetime.date(jd.year + (jd.month == 12), jd.month % 12 + 1, 1)
    start = datetime.combine(first.togregorian(), datetime.min.time(), tzinfo=TEHRAN)
    end = datetime.combine(nxt.togregorian(), datetime.min.time(), tzinfo=TEHRAN)
    return start, end


@dataclass
class LicenceFilter:
    status: str = ""
    expiry: str = ""  # "" | this_month | 30d | expired
    province: str = ""
    operator: str = ""


def licences(session: Session, flt: LicenceFilter, now: datetime) -> list[m.Licence]:
    """Licences matching the filter, soonest expiry first (operator and provinces loaded)."""
    q = select(m.Licence).options(selectinload(m.Licence.province_links), selectinload(m.Licence.operator))
    if flt.status:
        q = q.where(m.Licence.status == flt.status)
    if flt.operator:
        q = q.where(m.Licence.operator_id == flt.operator)
    if flt.province:
        q = q.where(m.Licence.province_links.any(m.LicenceProvince.province_code == flt.province))
    if flt.expiry == "this_month":
        a, b = jalali_month_bounds(now)
        q = q.where(m.Licence.valid_until >= a, m.Licence.valid_until < b)
    elif flt.expiry == "30d":
        q = q.where(m.Licence.valid_until >= now, m.Licence.valid_until < now + timedelta(days=30))
    elif flt.expiry == "expired":
        q = q.where(m.Licence.valid_until < now)
    return list(session.scalars(q.order_by(m.Licence.valid_until, m.Licence.id)))


# ----------------------------------------------------------------------------- monitoring figures

@dataclass
class Counts:
    total: int = 0
    good: int = 0
    latency_ms_sum: float = 0.0

    @property
    def availability(self) -> float | None:
        return self.good / self.total if self.total else None

    @property
    def latency_ms(self) -> float | None:
        return self.latency_ms_sum / self.total if self.total else None


def service_counts(session: Session, since: datetime, until: datetime, *, by: str = "service",
                   service_id: str | None = None, operator_id: str = "", province: str | None = None) -> dict[str, Counts]:
    """Request counts in ``[since, until)`` grouped by ``service``, ``province`` or ``operator``.

    ``operator_id=""`` selects the service-level (client-facing) buckets; ``by="operator"`` uses
    the per-operator buckets instead. Empty dict when monitoring has no table.
    """
    if not has_requests(session):
        return {}
    mm = _mon()
    rm = mm.RequestMinute
    col = {"service": rm.service_id, "province": rm.province, "operator": rm.operator_id}[by]
    q = select(col, func.sum(rm.total), func.sum(rm.good), func.sum(rm.latency_ms_sum)).where(
        rm.minute >= since, rm.minute < until
    )
    if by == "operator":
        q = q.where(rm.operator_id != "")
    else:
        q = q.where(rm.operator_id == operator_id)
    if service_id is not None:
        q = q.where(rm.service_id == service_id)
    if province is not None:
        q = q.where(rm.province == province)
    q = q.group_by(col)
    return {k: Counts(int(t or 0), int(g or 0), float(lat or 0.0)) for k, t, g, lat in session.execute(q)}


def series(session: Session, *, start: datetime, end: datetime, bucket: timedelta, service_id: str | None = None,
           operator_id: str = "") -> list[tuple[datetime, Counts | None]]:
    """Per-bucket counts over ``[start, end)`` (``None`` for buckets without any request)."""
    n = int((end - start) / bucket)
    if not has_requests(session):
        return [(start + bucket * i, None) for i in range(n)]
    rm = _mon().RequestMinute
    q = select(rm.minute, func.sum(rm.total), func.sum(rm.good), func.sum(rm.latency_ms_sum)).where(
        rm.minute >= start, rm.minute < end, rm.operator_id == operator_id
    )
    if service_id is not None:
        q = q.where(rm.service_id == service_id)
    q = q.group_by(rm.minute)
    buckets: dict[int, Counts] = defaultdict(Counts)
    for minute, t, g, lat in session.execute(q):
        i = int((minute - start) / bucket)
        if 0 <= i < n:
            c = buckets[i]
            c.total += int(t or 0)
            c.good += int(g or 0)
            c.latency_ms_sum += float(lat or 0.0)
    return [(start + bucket * i, buckets.get(i) if buckets.get(i) and buckets[i].total else None) for i in range(n)]


@dataclass
class ErrorBudget:
    target: float
    total: int
    bad: int
    window_days: int = 30
    burn_rate_1h: float | None = None

    @property
    def allowed_bad(self) -> float:
        return (1 - self.target) * self.total

    @property
    def consumed(self) -> float | None:
        """Fraction of the budget used (may exceed 1)."""
        return self.bad / self.allowed_bad if self.allowed_bad > 0 else None

    @property
    def availability(self) -> float | None:
        return (self.total - self.bad) / self.total if self.total else None


def operator_budget(session: Session, operator_id: str, target: float, now: datetime,
                    service_ids: frozenset[str] | None = None) -> ErrorBudget | None:
    """30-day error budget of one operator (its own attempts), optionally limited to some services."""
    if not has_requests(session):
        return None
    rm = _mon().RequestMinute

    def counts(since: datetime) -> tuple[int, int]:
        q = select(func.sum(rm.total), func.sum(rm.good)).where(
            rm.operator_id == operator_id, rm.minute >= since, rm.minute < now
        )
        if service_ids is not None:
            q = q.where(rm.service_id.in_(sorted(service_ids)))
        t, g = session.execute(q).one()
        return int(t or 0), int(g or 0)

    total, good = counts(now - timedelta(days=30))
    if total == 0:
        return None
    t1, g1 = counts(now - timedelta(hours=1))
    burn = ((t1 - g1) / t1) / (1 - target) if t1 and target < 1 else None
    return ErrorBudget(target=target, total=total, bad=total - good, burn_rate_1h=burn)


def operator_health(session: Session) -> dict[str, Any]:
    """Latest health-check verdict per operator id (empty without the monitoring table)."""
    if _mon() is None or "monitor_operator_health" not in monitor_tables(session):
        return {}
    mm = _mon()
    return {h.operator_id: h for h in session.scalars(select(mm.OperatorHealth))}


@dataclass
class IncidentFilter:
    state: str = ""  # "" | open | resolved | one of the states
    province: str = ""
    service: str = ""
    operator: str = ""


def incidents(session: Session, flt: IncidentFilter | None = None, limit: int = 200) -> list[Any]:
    """Incidents, newest first; empty when monitoring has no incident table."""
    if not has_incidents(session):
        return []
    flt = flt or IncidentFilter()
    inc = _mon().Incident
    q = select(inc)
    if flt.state == "open":
        q = q.where(inc.state != "resolved")
    elif flt.state:
        q = q.where(inc.state == flt.state)
    if flt.province:
        q = q.where(inc.province == flt.province)
    if flt.service:
        q = q.where(inc.service_id == flt.service)
    if flt.operator:
        q = q.where(inc.operator_id == flt.operator)
    return list(session.scalars(q.order_by(inc.opened_at.desc(), inc.id.desc()).limit(limit)))


def open_incident_counts(session: Session, province: str | None = None) -> dict[str, int]:
    """Open incidents per service id (those of ``province`` or of no province, when given)."""
    if not has_incidents(session):
        return {}
    inc = _mon().Incident
    q = select(inc.service_id, func.count()).where(inc.state != "resolved")
    if province:
        q = q.where((inc.province == province) | (inc.province.is_(None)))
    rows = session.execute(q.group_by(inc.service_id))
    return {sid or "": int(n) for sid, n in rows}


def get_incident(session: Session, incident_id: int) -> Any | None:
    if not has_incidents(session):
        return None
    mm = _mon()
    return session.scalar(select(mm.Incident).options(selectinload(mm.Incident.notes)).where(mm.Incident.id == incident_id))


class NoteError(ValueError):
    """A note that cannot be added; ``message_fa`` is shown to the person, ``http_status`` used."""

    def __init__(self, message_fa: str, http_status: int = 422):
        super().__init__(message_fa)
        self.message_fa = message_fa
        self.http_status = http_status


def add_incident_note(session: Session, incident_id: int, *, author: str, text_fa: str, to_state: str | None) -> None:
    """Add a note to an incident, with a state change when ``to_state`` differs from the current one.

    Uses :mod:`zistboom.monitoring.incidents` (``add_note`` / ``change_state``, which enforce the
    allowed state moves) when that module exists; otherwise writes the rows itself.

    Raises:
        NoteError: unknown incident (404), bad state or move (422/409), bad text (422).
    """
    mm = _mon()
    try:
        from zistboom.monitoring import incidents as mon_inc  # noqa: PLC0415
    except Exception:  # pragma: no cover - depends on another part's progress
        mon_inc = None
    if mon_inc is not None and hasattr(mon_inc, "add_note") and hasattr(mon_inc, "change_state"):
        try:
            inc = mon_inc.get_incident(session, incident_id)
            if to_state and to_state != inc.state:
                mon_inc.change_state(session, incident_id, to_state, author=author, note_fa=text_fa)
            else:
                mon_inc.add_note(session, incident_id, text_fa=text_fa, author=author)
        except Exception as exc:  # IncidentError carries message_fa / http_status
            if hasattr(exc, "message_fa"):
                raise NoteError(exc.message_fa, getattr(exc, "http_status", 422)) from exc
            raise
        return
    inc = session.get(mm.Incident, incident_id)
    if inc is None:
        raise NoteError(f"رخداد {incident_id} پیدا نشد.", 404)
    if to_state and to_state not in mm.INCIDENT_STATES:
        raise NoteError("وضعیت انتخاب‌شده معتبر نیست.")
    from zistboom.registry.db import utcnow  # noqa: PLC0415

    now = utcnow()
    changed = bool(to_state) and to_state != inc.state
    session.add(mm.IncidentNote(incident_id=inc.id, at=now, author=author, text_fa=text_fa,
                                from_state=inc.state if changed else None, to_state=to_state if changed else None))
    if changed:
        inc.state = to_state
        inc.resolved_at = now if to_state == "resolved" else None
    inc.updated_at = now
    session.flush()


@dataclass
class TimelineItem:
    at: datetime
    kind: str  # licence | incident
    text_fa: str
    href: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

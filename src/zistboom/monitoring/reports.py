"""Read-side computations shared by the evaluator, the admin API, the status page and the CLI:
availability per (service, operator, province) with roll-ups, SLO/burn-rate reports, licence SLA
measurement and the live coverage of every (service, province).

Formulas and their sources are in :mod:`zistboom.monitoring.availability`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from zistboom.monitoring.availability import (
    ALERT_RULES,
    BURN_WINDOWS,
    SLO_PERIOD,
    WINDOWS,
    Requests,
    Uptime,
    alerts_firing,
    best_of,
    budget_remaining,
    burn_rate,
    floor_minute,
    probe_minutes,
    probe_totals,
    request_counts,
    window_start,
)
from zistboom.monitoring.models import OperatorHealth
from zistboom.monitoring.settings import MonitorSettings
from zistboom.registry import models as m
from zistboom.registry.snapshot import LicenceInfo, RegistrySnapshot
from zistboom.text import jalali_iso_pair

MONITOR_ACTOR = "monitoring"
COVERING_STATUSES = ("active", "suspended")


# --------------------------------------------------------------------------- live health


@dataclass(frozen=True, slots=True)
class Health:
    """An operator's health verdict: ``state`` is ``up``, ``down`` or ``unknown`` (no fresh probe)."""

    state: str
    last_probe_at: datetime | None


def operator_health(session: Session, now: datetime, settings: MonitorSettings,
                    live: dict[str, Any] | None = None) -> dict[str, Health]:
    """Health of every operator probed: the fresher of the database row and the live sink view.

    A verdict older than ``max_gap + probe_timeout`` is ``unknown``.
    """
    stale = timedelta(seconds=settings.max_gap + settings.probe_timeout)
    best: dict[str, tuple[bool, datetime]] = {}
    for row in session.scalars(select(OperatorHealth)):
        best[row.operator_id] = (row.healthy, row.last_probe_at)
    for op_id, view in (live or {}).items():
        cur = best.get(op_id)
        if cur is None or view.last_probe_at >= cur[1]:
            best[op_id] = (view.healthy, view.last_probe_at)
    out = {}
    for op_id, (healthy, at) in best.items():
        fresh = at is not None and now - at <= stale and at <= now + stale
        out[op_id] = Health(("up" if healthy else "down") if fresh else "unknown", at)
    return out


def coverage(snap: RegistrySnapshot, now: datetime) -> dict[tuple[str, str], list[LicenceInfo]]:
    """``{(service, province): [licences]}`` for licences that are active or suspended and within
    their validity at ``now`` (the pairs the state expects to be served)."""
    pairs: dict[tuple[str, str], list[LicenceInfo]] = defaultdict(list)
    for lic in snap.licences:
        if lic.status in COVERING_STATUSES and lic.valid_from <= now < lic.valid_until:
            for s in lic.service_ids:
                for p in lic.provinces:
                    pairs[(s, p)].append(lic)
    return pairs


def pair_state(lics: list[LicenceInfo], service: str, province: str, now: datetime,
               health: dict[str, Health]) -> tuple[str, list[str], list[str]]:
    """State of one (service, province): ``operational`` (≥1 routable operator up), ``outage``
    (none up and either none routable or some routable one known down) or ``unknown`` (routable
    operators exist but none has a fresh verdict). Returns (state, routable ops, healthy ops)."""
    routable = sorted({lic.operator_id for lic in lics if lic.routable(service, province, now)})
    healthy = [o for o in routable if health.get(o, Health("unknown", None)).state == "up"]
    if healthy:
        return "operational", routable, healthy
    if not routable or any(health.get(o, Health("unknown", None)).state == "down" for o in routable):
        return "outage", routable, healthy
    return "unknown", routable, healthy


# --------------------------------------------------------------------------- availability


def _pair_time(pair_ops: dict[tuple[str, str], set[str]], totals: dict[str, Uptime],
               minutes: dict[str, dict]) -> dict[tuple[str, str], Uptime]:
    out = {}
    for pair, ops in pair_ops.items():
        if len(ops) == 1:
            out[pair] = totals.get(next(iter(ops)), Uptime())
        else:
            out[pair] = best_of(minutes.get(o, {}) for o in ops)
    return out


def availability_report(session: Session, snap: RegistrySnapshot, now: datetime, window: str, *,
                        service: str | None = None, operator: str | None = None,
                        province: str | None = None) -> dict[str, Any]:
    """Availability by time and by requests over ``window`` (``1h``/``24h``/``30d``…).

    Returns ``{"window", "from", "to", "items": [per (service, operator, province)], "services",
    "clusters", "provinces"}`` (roll-ups; see :mod:`~zistboom.monitoring.availability`).
    """
    seconds = WINDOWS[window]
    start, end = window_start(now, seconds), now
    svc_f = [service] if service else None
    op_f = [operator] if operator else None
    prov_f = [province] if province else None
    cov = coverage(snap, now)
    req = request_counts(session, start, end, services=svc_f, operators=op_f, provinces=prov_f)
    keys = set(req)
    for (s, p), lics in cov.items():
        if (service and s != service) or (province and p != province):
            continue
        for lic in lics:
            if not operator or lic.operator_id == operator:
                keys.add((s, lic.operator_id, p))
    ops = {k[1] for k in keys}
    totals = probe_totals(session, start, end, ops)
    items = []
    for s, o, p in sorted(keys):
        items.append({
            "service_id": s, "operator_id": o, "province": p or None,
            "time": totals.get(o, Uptime()).as_dict(seconds),
            "requests": req.get((s, o, p), Requests()).as_dict(),
        })
    # roll-ups: service-level requests; time from the best licensed operator per minute
    svc_req = request_counts(session, start, end, operator_level=False, services=svc_f, provinces=prov_f,
                             group=("service_id", "province"))
    pair_ops: dict[tuple[str, str], set[str]] = defaultdict(set)
    for s, o, p in keys:
        if p:
            pair_ops[(s, p)].add(o)
    multi = {o for ops_ in pair_ops.values() if len(ops_) > 1 for o in ops_}
    minutes = probe_minutes(session, start, end, multi)
    pair_time = _pair_time(pair_ops, totals, minutes)

    def roll(keyfn) -> dict[str, dict]:
        acc_r: dict[str, Requests] = defaultdict(Requests)
        acc_t: dict[str, Uptime] = defaultdict(Uptime)
        for (s, p), r in svc_req.items():
            k = keyfn(s, p)
            if k is not None:
                acc_r[k].add(r.good, r.total, r.latency_ms_sum)
        for (s, p), u in pair_time.items():
            k = keyfn(s, p)
            if k is not None:
                acc_t[k].add(u.up_s, u.down_s)
        return {k: {"time": acc_t.get(k, Uptime()).as_dict(), "requests": acc_r.get(k, Requests()).as_dict()}
                for k in sorted(set(acc_r) | set(acc_t))}

    def cluster_of(s: str, p: str) -> str | None:
        info = snap.services.get(s)
        return info.cluster_id if info else None

    return {
        "window": window, "from": jalali_iso_pair(start), "to": jalali_iso_pair(end), "window_s": seconds,
        "items": items,
        "services": roll(lambda s, p: s),
        "clusters": roll(cluster_of),
        "provinces": roll(lambda s, p: p or None),
    }


# --------------------------------------------------------------------------- SLO / burn rates


def _sli_block(window_data: dict[str, Requests | Uptime | None], slo: float, min_requests: int = 0) -> dict[str, Any]:
    burns: dict[str, float | None] = {}
    for w in BURN_WINDOWS:
        d = window_data.get(w)
        er = None
        if d is not None:
            if isinstance(d, Requests) and d.total < max(1, min_requests):
                er = None
            else:
                er = d.error_ratio
        burns[w] = burn_rate(er, slo)
    period = window_data.get(SLO_PERIOD)
    firing = alerts_firing(burns)
    out: dict[str, Any] = {
        "availability_30d": period.availability if period is not None else None,
        "budget_remaining": budget_remaining(period.error_ratio if period is not None else None, slo),
        "burn_rates": burns,
        "alerts": [{"severity": r.severity, "long_window": r.long_window, "short_window": r.short_window,
                    "burn_rate_threshold": r.burn_rate} for r in firing],
    }
    if isinstance(period, Uptime):
        out["budget_seconds_total"] = (1 - slo) * period.known_s
        out["budget_seconds_remaining"] = (1 - slo) * period.known_s - period.down_s
    return out


def slo_report(session: Session, snap: RegistrySnapshot, now: datetime, settings: MonitorSettings, *,
               service: str | None = None, operator: str | None = None) -> dict[str, Any]:
    """Error budget (30 d) and burn rates (5m…3d) per service (by requests) and per (service,
    operator) (by requests and by time), with the alerts of :data:`ALERT_RULES` that fire."""
    svc_f = [service] if service else None
    op_f = [operator] if operator else None
    req_op: dict[str, dict] = {}
    req_svc: dict[str, dict] = {}
    time_op: dict[str, dict] = {}
    for w in (*BURN_WINDOWS, SLO_PERIOD):
        start = window_start(now, WINDOWS[w])
        req_op[w] = request_counts(session, start, now, services=svc_f, operators=op_f, group=("service_id", "operator_id"))
        req_svc[w] = request_counts(session, start, now, operator_level=False, services=svc_f, group=("service_id",))
        time_op[w] = probe_totals(session, start, now, op_f)
    pairs: set[tuple[str, str]] = set()
    for lic in snap.licences:
        if lic.status in COVERING_STATUSES:
            for s in lic.service_ids:
                if (not service or s == service) and (not operator or lic.operator_id == operator):
                    pairs.add((s, lic.operator_id))
    pairs |= set(req_op[SLO_PERIOD]) | set(req_op["3d"])
    services_out = []
    svc_ids = sorted({s for s, _ in pairs} | {k[0] for k in req_svc[SLO_PERIOD]} | ({service} if service else set()))
    for s in svc_ids:
        info = snap.services.get(s)
        slo = info.slo_target if info else 0.999
        services_out.append({
            "service_id": s, "slo_target": slo,
            "requests": _sli_block({w: req_svc[w].get((s,)) for w in req_svc}, slo, settings.burn_min_requests),
        })
    ops_out = []
    for s, o in sorted(pairs):
        info = snap.services.get(s)
        slo = info.slo_target if info else 0.999
        rq = _sli_block({w: req_op[w].get((s, o)) for w in req_op}, slo, settings.burn_min_requests)
        tm = _sli_block({w: time_op[w].get(o) for w in time_op}, slo)
        severity = "page" if any(a["severity"] == "page" for a in rq["alerts"] + tm["alerts"]) else (
            "ticket" if rq["alerts"] or tm["alerts"] else None)
        ops_out.append({"service_id": s, "operator_id": o, "slo_target": slo, "requests": rq, "time": tm,
                        "alert": severity})
    licences_out = []
    activated = last_activations(session)
    for lic in snap.licences:
        if lic.status not in COVERING_STATUSES or (operator and lic.operator_id != operator) or (
                service and service not in lic.service_ids):
            continue
        licences_out.append(licence_sla(session, lic, now, settings, activated.get(lic.id)))
    return {
        "now": jalali_iso_pair(now),
        "rules": [{"severity": r.severity, "long_window": r.long_window, "short_window": r.short_window,
                   "burn_rate": r.burn_rate, "budget_consumed": r.budget_consumed} for r in ALERT_RULES],
        "services": services_out, "operators": ops_out, "licences": licences_out,
    }


# --------------------------------------------------------------------------- licence SLA


def last_activations(session: Session) -> dict[int, datetime]:
    """``{licence_id: time it last became active}``: its grant, a reinstatement, or a renewal of an
    expired licence (an audited event into ``active`` from another status)."""
    ev = m.LicenceEvent
    q = select(ev.licence_id, func.max(ev.at)).where(
        ev.to_status == "active", ev.from_status.is_not(None), ev.from_status != "active").group_by(ev.licence_id)
    return {lid: at for lid, at in session.execute(q)}


def licence_sla(session: Session, lic: LicenceInfo, now: datetime, settings: MonitorSettings,
                active_since: datetime | None = None) -> dict[str, Any]:
    """Measure a licence's operator against its contracted SLA.

    Window: the last ``settings.sla_window`` seconds, starting no earlier than the first whole
    minute after the licence last became active (``active_since``, :func:`last_activations`): a
    new or reinstated licence starts afresh. (Only reinstatements counted before, so a licence
    granted today to an operator that was down 10 days ago under an older licence was suspended
    at its first evaluation for that old downtime.)
    By requests: the operator's attempts for the licence's services and provinces. By time: the
    operator's observed up/down seconds. ``breached`` is true when either measure, with enough
    evidence (``sanction_min_requests`` requests / ``sanction_min_known_s`` observed seconds), is
    below ``sla_target``.
    """
    start = window_start(now, settings.sla_window)
    if active_since is not None:
        after = floor_minute(active_since)
        if after < active_since:
            after += timedelta(minutes=1)
        start = max(start, after)
    req = request_counts(session, start, now, services=lic.service_ids, operators=[lic.operator_id],
                         provinces=lic.provinces, group=())
    r = req.get((), Requests())
    t = probe_totals(session, start, now, [lic.operator_id]).get(lic.operator_id, Uptime())
    reasons = []
    if t.known_s >= settings.sanction_min_known_s and t.availability is not None and t.availability < lic.sla_target:
        reasons.append("time")
    if r.total >= settings.sanction_min_requests and r.availability is not None and r.availability < lic.sla_target:
        reasons.append("requests")
    return {
        "licence_id": lic.id, "operator_id": lic.operator_id, "status": lic.status, "sla_target": lic.sla_target,
        "window_from": jalali_iso_pair(start), "window_to": jalali_iso_pair(now),
        "time": t.as_dict(), "requests": r.as_dict(), "breached": bool(reasons), "breached_by": reasons,
        "services": sorted(lic.service_ids), "provinces": sorted(lic.provinces),
    }

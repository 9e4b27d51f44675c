"""The evaluator: turns measurements into decisions.

Every run (``probe_interval``, or at once when an operator's health verdict flips):

1. **Coverage incidents** — for every (service, province) covered by an active or suspended licence:
   if no routable operator is up, open a ``no_operator`` incident (one per pair); when one is up
   again, resolve it. Pairs whose routable operators are all *unknown* (no fresh probe) are left
   alone: a blind monitor does not page.

Every ``slo_interval`` (``slo=True``):

2. **Burn-rate incidents** — per (service, operator), the multi-window multi-burn-rate rules of the
   SRE workbook (ch. 5, table 5-8) by requests and by time; a *page* opens a ``burn_rate`` incident,
   which is resolved when no page rule fires any more.
3. **Sanctions** — a licence whose operator breaches its contracted SLA over the SLA window
   (:func:`~zistboom.monitoring.reports.licence_sla`) is suspended through
   :func:`zistboom.licensing.transition` (audited, with the measurements as evidence). Routing
   stops using it at the gateway's next registry refresh.
4. **Reinstatement** — a licence suspended by the monitor is reinstated (audited) after
   ``recovery_period`` if its operator met the SLA by time over that period (at least half of
   it observed) and is up now. Officers can reinstate earlier through the licensing API.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from zistboom.licensing import LicensingError, transition
from zistboom.monitoring import incidents as inc_mod
from zistboom.monitoring.availability import window_start, probe_totals
from zistboom.monitoring.models import Incident
from zistboom.monitoring.reports import (
    MONITOR_ACTOR,
    coverage,
    last_activations,
    licence_sla,
    operator_health,
    pair_state,
    slo_report,
)
from zistboom.monitoring.settings import MonitorSettings
from zistboom.registry import models as m
from zistboom.registry.db import utcnow
from zistboom.registry.snapshot import RegistrySnapshot, current_version, load_snapshot
from zistboom.text import format_jalali, to_persian_digits

log = logging.getLogger("zistboom.monitoring")


@dataclass(slots=True)
class EvaluationReport:
    """What one evaluator run did (incident ids, licence ids)."""

    now: datetime
    opened: list[int] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)
    suspended: list[int] = field(default_factory=list)
    reinstated: list[int] = field(default_factory=list)
    pages: list[tuple[str, str]] = field(default_factory=list)


def _pct(x: float | None) -> str:
    return "—" if x is None else to_persian_digits(f"{x * 100:.3f}").replace(".", "٫") + "٪"


class Evaluator:
    """Runs the checks above against the database behind ``session_factory``."""

    def __init__(self, session_factory: sessionmaker[Session], settings: MonitorSettings | None = None):
        self.session_factory = session_factory
        self.settings = settings or MonitorSettings()
        self._snap: RegistrySnapshot | None = None

    def snapshot(self, session: Session) -> RegistrySnapshot:
        """The registry snapshot, reloaded only when ``registry_state.version`` changed."""
        v = current_version(session)
        if self._snap is None or self._snap.version != v:
            self._snap = load_snapshot(session)
        return self._snap

    def evaluate(self, now: datetime | None = None, *, live: dict[str, Any] | None = None,
                 slo: bool = True) -> EvaluationReport:
        """One run. ``now`` is injectable (aware UTC); ``live`` is the sink's live health view."""
        now = now or utcnow()
        rep = EvaluationReport(now)
        s = self.settings
        with self.session_factory() as session:
            snap = self.snapshot(session)
            if s.incidents:
                self._coverage_incidents(session, snap, now, live, rep)
                session.commit()
            if slo:
                if s.sanctions:
                    self._sanctions(session, snap, now, rep)
                    session.commit()
                    if s.recovery_period > 0:
                        self._reinstatements(session, snap, now, live, rep)
                        session.commit()
                    if rep.suspended or rep.reinstated:
                        snap = self.snapshot(session)
                        if s.incidents:
                            self._coverage_incidents(session, snap, now, live, rep)
                            session.commit()
                if s.incidents:
                    self._burn_incidents(session, snap, now, rep)
                    session.commit()
        return rep

    # ------------------------------------------------------------------ checks

    def _coverage_incidents(self, session: Session, snap: RegistrySnapshot, now: datetime,
                            live: dict[str, Any] | None, rep: EvaluationReport) -> None:
        health = operator_health(session, now, self.settings, live)
        cov = coverage(snap, now)
        open_auto = {i.key: i for i in session.scalars(
            select(Incident).where(Incident.kind == "no_operator", Incident.state != "resolved"))}
        seen = set()
        for (svc, prov), lics in cov.items():
            key = f"no_operator:{svc}:{prov}"
            seen.add(key)
            state, routable, healthy = pair_state(lics, svc, prov, now, health)
            existing = open_auto.get(key)
            if state == "outage" and existing is None:
                sinfo, pinfo = snap.services.get(svc), snap.provinces.get(prov)
                s_fa, s_en = (sinfo.name_fa, sinfo.name_en) if sinfo else (svc, svc)
                p_fa, p_en = (pinfo.name_fa, pinfo.name_en) if pinfo else (prov, prov)
                suspended = sorted({lic.operator_id for lic in lics if lic.status == "suspended"})
                why_fa = ("همهٔ اپراتورهای دارای مجوز از دسترس خارج‌اند" if routable
                          else "مجوز همهٔ اپراتورها تعلیق شده است")
                inc = inc_mod.open_incident(
                    session, kind="no_operator", key=key, service_id=svc, province=prov, severity="page",
                    title_fa=f"خدمت «{s_fa}» در استان {p_fa} اپراتور سالمِ دارای مجوز ندارد",
                    title_en=f"{s_en}: no healthy licensed operator in {p_en}",
                    note_fa=f"رخداد خودکار: {why_fa}. زمان تشخیص: {format_jalali(now)}",
                    note_en=f"Automatic: {'all licensed operators are down' if routable else 'every licence is suspended'}.",
                    evidence={"routable": routable, "suspended": suspended,
                              "health": {o: health[o].state for o in routable if o in health}},
                    now=now,
                )
                rep.opened.append(inc.id)
            elif state == "operational" and existing is not None:
                inc_mod.resolve(session, existing, now=now,
                                note_fa=f"ارائهٔ خدمت بازیابی شد؛ اپراتور سالم: {', '.join(healthy)}. زمان: {format_jalali(now)}",
                                note_en=f"Recovered; healthy operator(s): {', '.join(healthy)}.")
                rep.resolved.append(existing.id)
        for key, existing in open_auto.items():
            if key not in seen and existing.auto:  # the pair is no longer licensed at all
                inc_mod.resolve(session, existing, now=now, note_fa="این خدمت دیگر در این استان مجوز فعالی ندارد؛ رخداد بسته شد.",
                                note_en="No covering licence any more; closed.")
                rep.resolved.append(existing.id)

    def _burn_incidents(self, session: Session, snap: RegistrySnapshot, now: datetime, rep: EvaluationReport) -> None:
        report = slo_report(session, snap, now, self.settings)
        open_auto = {i.key: i for i in session.scalars(
            select(Incident).where(Incident.kind == "burn_rate", Incident.state != "resolved"))}
        paging = set()
        for row in report["operators"]:
            if row["alert"] != "page":
                continue
            svc, op = row["service_id"], row["operator_id"]
            key = f"burn_rate:{svc}:{op}"
            paging.add(key)
            rep.pages.append((svc, op))
            if key in open_auto:
                continue
            sinfo, oinfo = snap.services.get(svc), snap.operators.get(op)
            burns = {"requests": row["requests"]["burn_rates"], "time": row["time"]["burn_rates"]}
            b1h = max((b for b in (burns["requests"].get("1h"), burns["time"].get("1h")) if b is not None), default=None)
            inc = inc_mod.open_incident(
                session, kind="burn_rate", key=key, service_id=svc, operator_id=op, severity="page",
                title_fa=f"اپراتور «{oinfo.name_fa if oinfo else op}» بودجهٔ خطای خدمت «{sinfo.name_fa if sinfo else svc}» را با سرعت زیاد مصرف می‌کند",
                title_en=f"{oinfo.name_en if oinfo else op} is burning the error budget of {sinfo.name_en if sinfo else svc}",
                note_fa=(f"رخداد خودکار: نرخ مصرف بودجهٔ خطا در یک ساعت "
                         f"{to_persian_digits(f'{b1h:.1f}') if b1h is not None else '—'} برابر است "
                         f"(هدف سطح خدمت {_pct(row['slo_target'])}). زمان تشخیص: {format_jalali(now)}"),
                note_en=f"Automatic: burn rate alert (page); 1 h burn rate {b1h}.",
                evidence={"slo_target": row["slo_target"], "burn_rates": burns,
                          "alerts": {"requests": row["requests"]["alerts"], "time": row["time"]["alerts"]}},
                now=now,
            )
            rep.opened.append(inc.id)
        for key, existing in open_auto.items():
            if key not in paging and existing.auto:
                inc_mod.resolve(session, existing, now=now,
                                note_fa=f"نرخ مصرف بودجهٔ خطا به زیر آستانهٔ هشدار برگشت. زمان: {format_jalali(now)}",
                                note_en="Burn rate back under the paging thresholds.")
                rep.resolved.append(existing.id)

    def _sanctions(self, session: Session, snap: RegistrySnapshot, now: datetime, rep: EvaluationReport) -> None:
        activated = last_activations(session)
        for lic in snap.licences:
            if lic.status != "active" or not (lic.valid_from <= now < lic.valid_until):
                continue
            sla = licence_sla(session, lic, now, self.settings, activated.get(lic.id))
            if not sla["breached"]:
                continue
            measured = {k: sla[k]["availability"] for k in sla["breached_by"]}
            worst = min(v for v in measured.values() if v is not None)
            reason = (f"نقض سطح توافق خدمت: دسترس‌پذیری اندازه‌گیری‌شده {_pct(worst)} کمتر از سطح "
                      f"قراردادی {_pct(lic.sla_target)} است (SLA breach: measured {worst:.5f} < {lic.sla_target}).")
            evidence = {"source": "zistboom.monitoring", "kind": "sla_breach", **sla}
            try:
                transition(session, lic.id, "suspend", actor=MONITOR_ACTOR, reason=reason, evidence=evidence)
                session.flush()
                rep.suspended.append(lic.id)
                log.warning("licence %s suspended for SLA breach (%s)", lic.id, measured)
            except LicensingError as exc:  # changed meanwhile (e.g. an officer acted); nothing was written
                log.info("suspension of licence %s skipped: %s", lic.id, exc)

    def _reinstatements(self, session: Session, snap: RegistrySnapshot, now: datetime,
                        live: dict[str, Any] | None, rep: EvaluationReport) -> None:
        period = self.settings.recovery_period
        health = operator_health(session, now, self.settings, live)
        for lic in snap.licences:
            if lic.status != "suspended" or not (lic.valid_from <= now < lic.valid_until):
                continue
            last = session.scalars(select(m.LicenceEvent).where(m.LicenceEvent.licence_id == lic.id)
                                   .order_by(m.LicenceEvent.id.desc()).limit(1)).first()
            if last is None or last.action != "suspend" or last.actor != MONITOR_ACTOR:
                continue  # suspended by an officer: only an officer reinstates
            if now - last.at < timedelta(seconds=period):
                continue
            t = probe_totals(session, window_start(now, period), now, [lic.operator_id]).get(lic.operator_id)
            if t is None or t.known_s < period / 2 or t.availability is None or t.availability < lic.sla_target:
                continue
            if health.get(lic.operator_id) is not None and health[lic.operator_id].state == "down":
                continue
            try:
                transition(session, lic.id, "reinstate", actor=MONITOR_ACTOR,
                           reason=(f"بازگشت خودکار پس از دورهٔ بازیابی: دسترس‌پذیری {_pct(t.availability)} "
                                   f"(Automatic reinstatement after the recovery period)."),
                           evidence={"source": "zistboom.monitoring", "kind": "recovered",
                                     "recovery_period_s": period, "time": t.as_dict(period)})
                session.flush()
                rep.reinstated.append(lic.id)
            except LicensingError as exc:  # nothing was written
                log.info("reinstatement of licence %s skipped: %s", lic.id, exc)

"""Evaluator: burn-rate incidents, coverage incidents, SLA sanctions (audited) and reinstatement."""

from __future__ import annotations

from datetime import timedelta

import pytest
from mon_helpers import at
from sqlalchemy import select

from zistboom.gateway.events import Attempt, Exchange, ProbeResult
from zistboom.licensing import transition
from zistboom.monitoring.evaluator import Evaluator
from zistboom.monitoring.models import Incident
from zistboom.monitoring.settings import MonitorSettings
from zistboom.monitoring.sink import MonitoringSink
from zistboom.registry import models as m
from zistboom.registry.db import session_scope, utcnow
from zistboom.registry.snapshot import load_snapshot

S = MonitorSettings(probe_interval=10.0, probe_timeout=2.0, sanction_min_known_s=600, sanction_min_requests=100,
                    recovery_period=120.0)


def probes(sink, op, seconds, down=lambda t: False, base=None):
    for t in seconds:
        when = (base + timedelta(seconds=t)) if base is not None else at(t)
        sink.on_probe(ProbeResult(op, when, not down(t), 3.0))


def open_incidents(factory):
    with factory() as s:
        return s.scalars(select(Incident).where(Incident.state != "resolved").order_by(Incident.id)).all()


def test_burn_rate_page_opens_then_resolves(factory, world):
    settings = MonitorSettings(**{**{f: getattr(S, f) for f in S.__slots__}, "sanctions": False})
    sink = MonitoringSink(factory, settings)
    ev = Evaluator(factory, settings)
    # op-b: 2 % of its requests fail for 20 minutes, then all succeed
    for minute in range(60):
        for i in range(50):
            bad = minute < 20 and i == 0  # 1 of 50 = 2 %
            t = at(minute * 60 + i)
            sink.on_exchange(Exchange(f"{minute}-{i}", t, "c1", "vaccination", "getCard", "op-b", "IR-23", "GET",
                                      "/cards/1", 500 if bad else 200, 5.0,
                                      [Attempt("op-b", "http_5xx" if bad else "ok", 500 if bad else 200, 5.0)]))
    sink.flush(now=at(3600))
    rep = ev.evaluate(at(1200))  # 1h: 20 bad / 1000 = 2 % → burn 20; 5m: 2 % → 20: page
    assert ("vaccination", "op-b") in rep.pages
    [inc] = open_incidents(factory)
    assert (inc.kind, inc.service_id, inc.operator_id, inc.state) == ("burn_rate", "vaccination", "op-b", "investigating")
    assert inc.evidence["burn_rates"]["requests"]["1h"] == pytest.approx(20.0)
    assert "بودجهٔ خطا" in inc.title_fa
    assert ev.evaluate(at(1260)).opened == []  # still paging: no duplicate
    # at 40 min the 1h/5m rule has reset (1h: 20/2000 → burn 10) but 6h/30m still pages:
    # 30m window = minutes 10–39 → 10 bad of 1500 → burn 6.67 > 6
    rep = ev.evaluate(at(2400))
    assert rep.pages == [("vaccination", "op-b")] and rep.resolved == []
    with factory() as s:
        from zistboom.monitoring.reports import slo_report
        row = next(r for r in slo_report(s, load_snapshot(s), at(2400), settings)["operators"] if r["operator_id"] == "op-b")
        assert row["requests"]["burn_rates"]["1h"] == pytest.approx(10.0)
        assert row["requests"]["burn_rates"]["30m"] == pytest.approx((10 / 1500) / 0.001)
    # at 60 min: 30m window clean → no page rule fires (only the ticket: 3d & 6h burn 6.67 > 3) → resolved
    rep = ev.evaluate(at(3600))
    assert rep.pages == [] and rep.resolved == [inc.id]
    assert open_incidents(factory) == []


def test_sla_breach_suspends_licence_audited_and_routing_moves(factory, world):
    sink = MonitoringSink(factory, S)
    ev = Evaluator(factory, S)
    # op-b is down 90 s of the hour: 0.975 < SLA 0.995; op-a is always up
    probes(sink, "op-b", range(0, 3601, 10), down=lambda t: 1000 <= t <= 1080)
    probes(sink, "op-a", range(0, 3601, 10))
    sink.flush(now=at(3600))
    with factory() as s:
        before = load_snapshot(s)
    lic_b = next(lic for lic in before.licences if lic.id == world["b"])
    assert lic_b.routable("vaccination", "IR-23", at(3600))

    rep = ev.evaluate(at(3600))
    assert rep.suspended == [world["b"]]
    with factory() as s:
        snap = load_snapshot(s)
        routable = sorted(lic.operator_id for lic in snap.licences if lic.routable("vaccination", "IR-23", at(3600)))
        assert routable == ["op-a"]  # the next request can only go to op-a
        assert snap.version > before.version  # gateways reload their route table
        ev_row = s.scalars(select(m.LicenceEvent).where(m.LicenceEvent.licence_id == world["b"])
                           .order_by(m.LicenceEvent.id.desc())).first()
        assert (ev_row.action, ev_row.from_status, ev_row.to_status, ev_row.actor) == ("suspend", "active", "suspended", "monitoring")
        assert ev_row.evidence["breached_by"] == ["time"]
        assert ev_row.evidence["time"]["down_s"] == pytest.approx(90.0)
        assert ev_row.evidence["time"]["availability"] == pytest.approx(0.975)
        assert ev_row.evidence["sla_target"] == 0.995
        assert "نقض سطح توافق خدمت" in ev_row.reason
    # op-a is fine, op-c has too little evidence (never probed): untouched
    assert ev.evaluate(at(3600)).suspended == []


def test_auto_reinstatement_after_recovery_period(factory, world):
    sink = MonitoringSink(factory, S)
    ev = Evaluator(factory, S)
    with session_scope(factory) as s:
        transition(s, world["b"], "suspend", actor="monitoring", reason="test", evidence={"x": 1})
    suspended_at = utcnow()
    # after the suspension op-b passes every probe for 130 s (injected times after the event)
    probes(sink, "op-b", range(0, 131, 10), base=suspended_at)
    sink.flush(now=suspended_at + timedelta(seconds=130))
    assert ev.evaluate(suspended_at + timedelta(seconds=60)).reinstated == []  # recovery period not over
    rep = ev.evaluate(suspended_at + timedelta(seconds=130))
    assert rep.reinstated == [world["b"]]
    with factory() as s:
        lic = s.get(m.Licence, world["b"])
        assert lic.status == "active"
        assert [(e.action, e.actor) for e in lic.events][-2:] == [("suspend", "monitoring"), ("reinstate", "monitoring")]


def test_officer_suspension_is_not_auto_reinstated(factory, world):
    sink = MonitoringSink(factory, S)
    ev = Evaluator(factory, S)
    with session_scope(factory) as s:
        transition(s, world["b"], "suspend", actor="officer-7", reason="documents missing")
    t = utcnow()
    probes(sink, "op-b", range(0, 301, 10), base=t)
    sink.flush(now=t + timedelta(seconds=300))
    assert ev.evaluate(t + timedelta(seconds=300)).reinstated == []


def test_coverage_incident_from_live_health(factory, world):
    ev = Evaluator(factory, S)
    sink = MonitoringSink(factory, S)
    sink.on_probe(ProbeResult("op-c", at(0), True, 1.0))
    sink.on_probe(ProbeResult("op-c", at(10), False, 1.0, None, "connect_error"))
    rep = ev.evaluate(at(11), live=sink.health(), slo=False)
    [inc] = open_incidents(factory)
    assert rep.opened == [inc.id]
    assert (inc.kind, inc.service_id, inc.province) == ("no_operator", "birth-cert", "IR-07")
    assert "فارس" in inc.title_fa and "Fars" in inc.title_en
    # vaccination operators were never probed: unknown, so no incident for them
    sink.on_probe(ProbeResult("op-c", at(20), True, 1.0))
    rep = ev.evaluate(at(21), live=sink.health(), slo=False)
    assert rep.resolved == [inc.id] and open_incidents(factory) == []
    # a stale verdict (monitor stopped) is unknown: no new incident even though the last probe failed
    sink.on_probe(ProbeResult("op-c", at(30), False, 1.0))
    assert ev.evaluate(at(30 + 10 * 3 + 2 + 60), live=sink.health(), slo=False).opened == []


def test_licence_is_not_sanctioned_for_downtime_before_it_became_active(factory, world):
    """op-b was down for the first half hour; its licence was granted at minute 40. The SLA window
    started only at reinstatements, so the licence was suspended at its first evaluation for
    downtime from before it existed."""
    sink = MonitoringSink(factory, S)
    ev = Evaluator(factory, S)
    probes(sink, "op-b", range(0, 3601, 10), down=lambda t: t < 1800)
    sink.flush(now=at(3600))
    with session_scope(factory) as s:
        grant = s.scalars(select(m.LicenceEvent).where(m.LicenceEvent.licence_id == world["b"],
                                                       m.LicenceEvent.action == "grant")).one()
        grant.at = at(2400)
    assert ev.evaluate(at(3600)).suspended == []
    with factory() as s:
        assert s.get(m.Licence, world["b"]).status == "active"
        from zistboom.monitoring.reports import slo_report
        row = next(r for r in slo_report(s, load_snapshot(s), at(3600), S)["licences"] if r["licence_id"] == world["b"])
        assert row["window_from"]["iso"] == "2026-03-01T08:40:00Z"  # at(2400), the grant (minute-aligned)
        assert row["time"]["down_s"] == 0

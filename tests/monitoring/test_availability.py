"""Scripted failure patterns → availability, error budget and burn rates equal hand-computed values.

Signals go through the real sink (on_probe / on_exchange with injected timestamps) into the real
database; the reports read them back."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from mon_helpers import at
from zistboom.gateway.events import Attempt, Exchange, ProbeResult
from zistboom.monitoring.availability import WindowError, parse_window, probe_totals
from zistboom.monitoring.models import MonitorHeartbeat, ProbeMinute
from zistboom.monitoring.reports import availability_report, slo_report
from zistboom.monitoring.settings import MonitorSettings
from zistboom.monitoring.sink import MonitoringSink, make_sink
from zistboom.registry.snapshot import load_snapshot

SETTINGS = MonitorSettings(probe_interval=10.0, probe_timeout=2.0, burn_min_requests=10)


def probe_pattern(sink, operator, seconds, down=lambda t: False):
    for t in seconds:
        sink.on_probe(ProbeResult(operator, at(t), not down(t), 5.0, 200 if not down(t) else None,
                                  None if not down(t) else "connect_error"))


def exchanges_2pct(sink, minutes=60, per_minute=100, bad_per_minute=2):
    """vaccination via op-a for IR-23: per minute ``per_minute`` requests, ``bad_per_minute`` failing 502."""
    n = 0
    for minute in range(minutes):
        for i in range(per_minute):
            bad = i < bad_per_minute
            t = at(minute * 60 + i * 0.5)
            sink.on_exchange(Exchange(
                request_id=f"r{n}", time=t, client_id="c1", service_id="vaccination", operation="get",
                operator_id="op-a", caller_province="IR-23", method="GET", path="/cards/1",
                status=502 if bad else 200, latency_ms=12.0,
                attempts=[Attempt("op-a", "http_5xx" if bad else "ok", 502 if bad else 200, 12.0)],
            ))
            n += 1


def item(report, s, o, p):
    return next(i for i in report["items"] if (i["service_id"], i["operator_id"], i["province"]) == (s, o, p))


def test_down_90s_of_1h_by_time(factory, world):
    sink = MonitoringSink(factory, SETTINGS, clock=lambda: at(3600))
    # probes every 10 s at t = 0 … 3600; those at 1000 … 1080 fail → down from 1000 to 1090 = 90 s
    probe_pattern(sink, "op-c", range(0, 3601, 10), down=lambda t: 1000 <= t <= 1080)
    sink.flush(now=at(3600))
    with factory() as s:
        snap = load_snapshot(s)
        rep = availability_report(s, snap, at(3600), "1h")
        row = item(rep, "birth-cert", "op-c", "IR-07")
        assert row["time"]["down_s"] == pytest.approx(90.0)
        assert row["time"]["known_s"] == pytest.approx(3600.0)
        assert row["time"]["availability"] == pytest.approx(1 - 90 / 3600)  # 0.975
        assert row["time"]["coverage"] == pytest.approx(1.0)
        assert row["requests"]["total"] == 0 and row["requests"]["availability"] is None
        # roll-ups: one operator → the same figure for the service, the cluster and the province
        assert rep["services"]["birth-cert"]["time"]["availability"] == pytest.approx(0.975)
        assert rep["clusters"]["health"]["time"]["availability"] == pytest.approx(0.975)
        assert rep["provinces"]["IR-07"]["time"]["availability"] == pytest.approx(0.975)
        # the 90 s straddle minutes 16 (1000–1020: 20 s), 17 (1020–1080: 60 s) and 18 (1080–1090: 10 s)
        rows = {r.minute: r.down_s for r in s.scalars(select(ProbeMinute).where(ProbeMinute.down_s > 0))}
        assert rows == {at(960): pytest.approx(20.0), at(1020): pytest.approx(60.0), at(1080): pytest.approx(10.0)}

        # SLO 99.9 %: burn = error_ratio / 0.001; at t = 3600 the outage is 42 min old
        slo = slo_report(s, snap, at(3600), SETTINGS, service="birth-cert")
        op = next(r for r in slo["operators"] if r["operator_id"] == "op-c")
        tm = op["time"]
        assert tm["burn_rates"]["1h"] == pytest.approx(0.025 / 0.001)  # 25
        assert tm["burn_rates"]["6h"] == pytest.approx(25.0)
        assert tm["burn_rates"]["3d"] == pytest.approx(25.0)
        assert tm["burn_rates"]["5m"] == pytest.approx(0.0)
        assert tm["burn_rates"]["30m"] == pytest.approx(0.0)
        assert tm["budget_remaining"] == pytest.approx(1 - 25.0)  # overspent 24×
        assert tm["budget_seconds_total"] == pytest.approx(0.001 * 3600)
        assert tm["budget_seconds_remaining"] == pytest.approx(3.6 - 90)
        # page rules need the short window too: only the ticket (3d & 6h > 3) fires
        assert [a["severity"] for a in tm["alerts"]] == ["ticket"]
        assert op["alert"] == "ticket"

        # at t = 1200 (20 min, outage 2 min ago): 1h window holds 1200 s known, 90 s down
        slo = slo_report(s, snap, at(1200), SETTINGS, service="birth-cert")
        tm = next(r for r in slo["operators"] if r["operator_id"] == "op-c")["time"]
        assert tm["burn_rates"]["1h"] == pytest.approx((90 / 1200) / 0.001)  # 75
        assert tm["burn_rates"]["5m"] == pytest.approx((90 / 300) / 0.001)  # 300 (window 900–1200)
        assert tm["burn_rates"]["30m"] == pytest.approx((90 / 1200) / 0.001)
        assert {(a["long_window"], a["short_window"]) for a in tm["alerts"]} == {("1h", "5m"), ("6h", "30m"), ("3d", "6h")}


def test_two_percent_failing_requests(factory, world):
    sink = MonitoringSink(factory, SETTINGS, clock=lambda: at(3600))
    exchanges_2pct(sink)
    sink.flush(now=at(3600))
    with factory() as s:
        snap = load_snapshot(s)
        rep = availability_report(s, snap, at(3600), "1h", service="vaccination")
        row = item(rep, "vaccination", "op-a", "IR-23")
        assert (row["requests"]["good"], row["requests"]["total"]) == (5880, 6000)
        assert row["requests"]["availability"] == pytest.approx(0.98)
        assert row["requests"]["mean_latency_ms"] == pytest.approx(12.0)
        # op-a's other province and op-b have no requests (licensed pairs are listed anyway)
        assert item(rep, "vaccination", "op-a", "IR-10")["requests"]["total"] == 0
        assert item(rep, "vaccination", "op-b", "IR-23")["requests"]["total"] == 0
        assert rep["services"]["vaccination"]["requests"]["availability"] == pytest.approx(0.98)
        assert rep["provinces"]["IR-23"]["requests"]["total"] == 6000

        slo = slo_report(s, snap, at(3600), SETTINGS, service="vaccination")
        svc = slo["services"][0]["requests"]
        assert svc["burn_rates"]["1h"] == pytest.approx(0.02 / 0.001)  # 20
        assert svc["burn_rates"]["5m"] == pytest.approx(20.0)
        assert svc["budget_remaining"] == pytest.approx(1 - 20.0)
        op = next(r for r in slo["operators"] if r["operator_id"] == "op-a")
        assert op["requests"]["burn_rates"]["1h"] == pytest.approx(20.0)
        # 20 > 14.4 (1h & 5m), > 6 (6h & 30m), > 3 (3d & 6h): every rule fires
        assert len(op["requests"]["alerts"]) == 3 and op["alert"] == "page"
        # op-b had no requests: no burn rate, no alert
        opb = next(r for r in slo["operators"] if r["operator_id"] == "op-b")
        assert opb["requests"]["burn_rates"]["1h"] is None and opb["alert"] is None


def test_failover_counts_against_the_operator_not_the_service(factory, world):
    sink = MonitoringSink(factory, SETTINGS)
    for i in range(10):
        atts = [Attempt("op-b", "connect_error", None, 1.0), Attempt("op-a", "ok", 200, 9.0)] if i < 4 else [
            Attempt("op-a", "ok", 200, 9.0)]
        sink.on_exchange(Exchange(f"r{i}", at(i), "c1", "vaccination", "get", "op-a", "IR-23", "GET", "/", 200, 10.0, atts))
    # a request refused by the gateway itself (auth) is not a valid event for the SLI
    sink.on_exchange(Exchange("x", at(20), "c1", "vaccination", None, None, "IR-23", "GET", "/", 401, 1.0, [],
                              gateway_error="unauthorized"))
    # a request with no route is the service failing the citizen
    sink.on_exchange(Exchange("y", at(21), "c1", "vaccination", None, None, "IR-23", "GET", "/", 503, 1.0, [],
                              gateway_error="no_route"))
    sink.flush(now=at(60))
    with factory() as s:
        rep = availability_report(s, load_snapshot(s), at(60), "1h", service="vaccination")
        assert item(rep, "vaccination", "op-b", "IR-23")["requests"] | {} == {
            "availability": 0.0, "good": 0, "total": 4, "bad": 4, "mean_latency_ms": 1.0}
        assert item(rep, "vaccination", "op-a", "IR-23")["requests"]["availability"] == 1.0
        svc = rep["services"]["vaccination"]["requests"]
        assert (svc["good"], svc["total"]) == (10, 11)


@pytest.mark.parametrize("restart", [False, True], ids=["probes-stop", "monitor-restarts"])
def test_monitor_outage_is_unknown_not_downtime(factory, world, restart):
    """Probes every 10 s for 30 min (the last one, at 1790 s, fails), then nothing for 10 min (the
    monitor is down), then 20 more minutes of passing probes. Hand computation: the failing probe
    holds for one interval (10 s), the rest of the gap is unknown → known 1800 + 1200 = 3000 s,
    down 10 s, availability 2990/3000, coverage 3000/3600."""
    sink = MonitoringSink(factory, SETTINGS)
    probe_pattern(sink, "op-c", range(0, 1800, 10), down=lambda t: t == 1790)
    sink.flush(now=at(1900))
    if restart:
        sink = MonitoringSink(factory, SETTINGS)
    probe_pattern(sink, "op-c", range(2400, 3601, 10))
    sink.flush(now=at(3600))
    with factory() as s:
        rep = availability_report(s, load_snapshot(s), at(3600), "1h")
        tm = item(rep, "birth-cert", "op-c", "IR-07")["time"]
        assert tm["known_s"] == pytest.approx(3000.0)
        assert tm["down_s"] == pytest.approx(10.0)
        assert tm["availability"] == pytest.approx(2990 / 3000)
        assert tm["coverage"] == pytest.approx(3000 / 3600)
        assert s.scalars(select(MonitorHeartbeat)).first() is not None


def test_out_of_order_and_bad_events_never_raise(factory, world):
    sink = MonitoringSink(factory, SETTINGS)
    sink.on_probe(ProbeResult("op-c", at(100), True, 1.0))
    sink.on_probe(ProbeResult("op-c", at(50), False, 1.0))  # late: ignored for time
    sink.on_probe(ProbeResult("op-c", at(110), True, 1.0))
    sink.on_probe(None)  # type: ignore[arg-type]
    sink.on_exchange(object())  # type: ignore[arg-type]
    assert sink.dropped == 2
    sink.flush(now=at(110))
    with factory() as s:
        rows = s.scalars(select(ProbeMinute)).all()
        assert sum(r.up_s for r in rows) == pytest.approx(10.0) and sum(r.down_s for r in rows) == 0


def test_parse_window():
    assert parse_window("24h") == ("24h", 86400)
    with pytest.raises(WindowError):
        parse_window("2h")


@pytest.mark.parametrize("probe_interval_s, known_s", [(20.0, 120.0), (None, 30.0)])
def test_make_sink_takes_the_gateways_probe_interval(db_url, factory, world, probe_interval_s, known_s):
    """A gateway probing every 20 s: told so (``probe_interval_s=20``), the sink takes the 20 s gaps
    as continuous observation (6 × 20 s = 120 s known). Left at the default 5 s (max gap 15 s) each
    20 s gap would hold for one 5 s interval only (6 × 5 s = 30 s known, the rest unknown)."""
    from zistboom.config import Settings

    sink = make_sink(db_url, Settings(), evaluate=False, probe_interval_s=probe_interval_s)
    try:
        assert sink.settings.probe_interval == (probe_interval_s or MonitorSettings().probe_interval)
        for t in range(0, 121, 20):
            sink.on_probe(ProbeResult("op-c", at(t), True, 1.0))
        sink.flush(now=at(120))
    finally:
        sink._engine.dispose()
    with factory() as s:
        u = probe_totals(s, at(0), at(3600), ["op-c"])["op-c"]
        assert u.known_s == pytest.approx(known_s) and u.down_s == 0


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf")])
def test_make_sink_rejects_a_bad_probe_interval(db_url, bad):
    with pytest.raises(ValueError, match="probe_interval"):
        make_sink(db_url, None, evaluate=False, probe_interval_s=bad)


def test_probe_after_a_clock_step_back_is_not_ignored(factory, world):
    """A probe stamped an hour ahead (the clock jumped forward, then NTP stepped it back) made the
    sink ignore every later probe as out of order: 20 minutes of failures counted no down time and
    left the operator healthy."""
    from datetime import timedelta

    from zistboom.registry.db import utcnow

    sink = MonitoringSink(factory, SETTINGS)
    base = (utcnow() - timedelta(minutes=30)).replace(second=0, microsecond=0)  # minute-aligned, as the store is
    for t in range(0, 601, 10):
        sink.on_probe(ProbeResult("op-c", base + timedelta(seconds=t), True, 1.0))
    sink.on_probe(ProbeResult("op-c", utcnow() + timedelta(hours=1), True, 1.0))  # the stray future stamp
    for t in range(610, 1801, 10):
        sink.on_probe(ProbeResult("op-c", base + timedelta(seconds=t), False, 1.0))
    assert sink.health()["op-c"].healthy is False and sink.clock_steps == 1
    sink.flush(now=base + timedelta(seconds=1800))
    with factory() as s:
        t = probe_totals(s, base, base + timedelta(seconds=1800), ["op-c"])["op-c"]
        assert t.down_s == pytest.approx(1190.0) and t.up_s == pytest.approx(610.0)  # down from 610 to 1800

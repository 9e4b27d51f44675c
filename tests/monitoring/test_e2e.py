"""End to end on 127.0.0.1: real operators (aiohttp), the real gateway under uvicorn with the
monitoring sink, real database.

* Killing the only operator of a service in a province opens an incident within one probe
  interval; restarting it resolves the incident (through the gateway's health checks, and again
  with the standalone prober).
* An operator that breaches its licence SLA is suspended (audited) and the next request is routed
  to the other licensed operator."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from mon_e2e import GatewayServer, LoopThread, OperatorServer, wait_for
from mon_helpers import CLIENT_KEY, seed_world
from sqlalchemy import select

from zistboom.monitoring.models import Incident, OperatorHealth
from zistboom.monitoring.prober import Prober
from zistboom.monitoring.settings import MonitorSettings
from zistboom.monitoring.sink import make_sink
from zistboom.registry import models as m
from zistboom.registry.snapshot import current_version

import zistboom.gateway.app as gateway_app  # noqa: E402
from zistboom.gateway.config import GatewayConfig  # noqa: E402

PROBE = 1.0  # probe interval (s)


@pytest.fixture
def ops():
    lt = LoopThread()
    made = {oid: OperatorServer(lt, oid) for oid in ("op-a", "op-b", "op-c")}
    yield made
    for o in made.values():
        try:
            o.stop()
        except Exception:
            pass
    lt.stop()


def _incident(factory, state_open=True):
    with factory() as s:
        q = select(Incident).where(Incident.kind == "no_operator", Incident.service_id == "birth-cert",
                                   Incident.province == "IR-07")
        rows = s.scalars(q.order_by(Incident.id)).all()
    return [i for i in rows if (i.state != "resolved") == state_open]


def _healthy(factory, oid):
    with factory() as s:
        row = s.get(OperatorHealth, oid)
        return row is not None and row.healthy


def _health_row(factory, oid):
    with factory() as s:
        row = s.get(OperatorHealth, oid)
        s.expunge_all()
        return row


def _kill_and_restart(factory, ops, measured: dict):
    """Kill op-c (the only operator of birth-cert in IR-07), then restart it. Asserts on what the
    product recorded, not on the test's own clock: the incident opens at the evaluation that follows
    the probe which turned op-c unhealthy (before the next probe: ``opened_at`` within one probe
    interval of that probe's ``last_change_at``), and resolves likewise after the first probe that
    finds it healthy again."""
    wait_for(lambda: _healthy(factory, "op-c"), timeout=10)
    assert _incident(factory) == []
    ops["op-c"].stop()
    (inc,), _ = wait_for(lambda: _incident(factory), timeout=10)
    assert inc.state == "investigating" and inc.auto
    down = _health_row(factory, "op-c")
    assert down is not None and not down.healthy
    measured["open_s"] = (inc.opened_at - down.last_change_at).total_seconds()
    assert 0 <= measured["open_s"] < PROBE, measured
    ops["op-c"].start()  # same port
    (done,), _ = wait_for(lambda: _incident(factory, state_open=False), timeout=10)
    assert _incident(factory) == []
    up = _health_row(factory, "op-c")
    assert up is not None and up.healthy
    measured["resolve_s"] = (done.resolved_at - up.last_change_at).total_seconds()
    assert 0 <= measured["resolve_s"] < PROBE, measured


def test_kill_only_operator_opens_incident_via_gateway_probes(db_url, factory, ops, capsys):
    for o in ops.values():
        o.start()
    seed_world(factory, urls={k: v.url for k, v in ops.items()})
    settings = MonitorSettings(probe_interval=PROBE, probe_timeout=0.5, flush_interval=0.2, slo_interval=60)
    sink = make_sink(db_url, settings)
    cfg = GatewayConfig(refresh_interval=0.2, health_interval=PROBE, health_timeout=0.5, try_timeout=1.0)
    gw = GatewayServer(gateway_app.create_gateway(db_url, sinks=[sink], config=cfg)).start()
    try:
        measured: dict = {}
        _kill_and_restart(factory, ops, measured)
        with capsys.disabled():
            print(f"\n[gateway probes] incident opened {measured['open_s']:.2f} s after the failing probe, "
                  f"resolved {measured['resolve_s']:.2f} s after the passing one (probe interval {PROBE} s)")
    finally:
        gw.stop()


def test_kill_only_operator_opens_incident_via_own_prober(db_url, factory, ops, capsys):
    for o in ops.values():
        o.start()
    seed_world(factory, urls={k: v.url for k, v in ops.items()})
    settings = MonitorSettings(probe_interval=PROBE, probe_timeout=0.5, flush_interval=0.2, slo_interval=60,
                               role="standalone")
    sink = make_sink(db_url, settings)
    sink.start()
    lt = LoopThread()
    prober = Prober(sink.evaluator.session_factory, sink.on_probe, settings, instance_id=sink.instance_id)
    fut = asyncio.run_coroutine_threadsafe(prober.run(), lt.loop)
    try:
        measured: dict = {}
        _kill_and_restart(factory, ops, measured)
        with capsys.disabled():
            print(f"\n[own prober] incident opened {measured['open_s']:.2f} s after the failing probe, "
                  f"resolved {measured['resolve_s']:.2f} s after the passing one (probe interval {PROBE} s)")
        assert prober.rounds >= 2 and prober.skipped_rounds == 0
    finally:
        lt.loop.call_soon_threadsafe(prober.stop)
        fut.result(10)
        lt.stop()
        sink.close()


def test_sla_breach_suspends_and_next_request_goes_elsewhere(db_url, factory, ops, capsys):
    for o in ops.values():
        o.start()
    ops["op-b"].fail_every = 10  # op-b answers 500 to every 10th request: 90 % < SLA 99.5 %
    # op-b is based in the caller's province (routing tier 0) and op-a in the neighbouring IR-10
    # (tier 1), so every request tries op-b first and fails over to op-a. With both in one tier the
    # gateway's P2C-on-EWMA choice decides, and with sequential requests an operator whose EWMA
    # happens to be higher is never picked again (seen: op-b served 1 of 1 400 requests), which
    # made this test depend on latency noise rather than on the monitoring under test.
    ids = seed_world(factory, urls={k: v.url for k, v in ops.items()}, homes={"op-a": "IR-10"})
    settings = MonitorSettings(probe_interval=PROBE, probe_timeout=0.5, flush_interval=0.2, slo_interval=0.3,
                               sanction_min_requests=20)
    sink = make_sink(db_url, settings)
    cfg = GatewayConfig(refresh_interval=0.2, health_interval=PROBE, health_timeout=0.5, try_timeout=1.0)
    app = gateway_app.create_gateway(db_url, sinks=[sink], config=cfg)
    gw = GatewayServer(app).start()
    try:
        headers = {"X-Api-Key": CLIENT_KEY, "X-Caller-Province": "IR-23"}
        with httpx.Client(base_url=gw.url, headers=headers, timeout=5) as http:
            wait_for(lambda: app.table is not None, timeout=10)

            def suspended():
                with factory() as s:
                    return s.get(m.Licence, ids["b"]).status == "suspended"

            # 1. traffic until op-b has answered 30 requests (3 of them 500s: 90 % < 99.5 % with
            #    more than sanction_min_requests of evidence), bounded
            sent = 0
            while ops["op-b"].served < 30 and not suspended():
                r = http.get("/v1/services/vaccination/cards/42")
                # usually 200 (the gateway fails an op-b 500 over to op-a); a 5xx passed through when
                # the gateway's retry budget/outlier state says so is fine here — not under test
                assert r.status_code in (200, 500, 502, 503)
                sent += 1
                assert sent < 500, f"op-b got too little traffic: served {ops['op-b'].served} of {sent}"
            # 2. the monitor flushes the buckets and its evaluator suspends op-b's licence (bounded wait;
            #    no more traffic is needed, so the outcome does not depend on the machine's speed)
            wait_for(suspended, timeout=30, interval=0.05)
            served_b = ops["op-b"].served
            assert served_b >= 20
            with factory() as s:
                version = current_version(s)
            wait_for(lambda: app.table.version >= version, timeout=10)
            answered = [http.get("/v1/services/vaccination/cards/42").headers.get("x-zistboom-operator")
                        for _ in range(20)]
        assert answered == ["op-a"] * 20
        assert ops["op-b"].served == served_b  # not a single request reached op-b after the suspension
        with factory() as s:
            ev = s.scalars(select(m.LicenceEvent).where(m.LicenceEvent.licence_id == ids["b"])
                           .order_by(m.LicenceEvent.id)).all()
            assert [e.action for e in ev] == ["apply", "grant", "suspend"]
            assert ev[-1].actor == "monitoring" and ev[-1].evidence["breached_by"] == ["requests"]
            req = ev[-1].evidence["requests"]
            assert req["total"] >= 20 and req["availability"] < 0.995
            assert s.get(m.Licence, ids["a"]).status == "active"
        with capsys.disabled():
            print(f"\n[sanction] op-b suspended after {sent} client requests; evidence: "
                  f"{req['good']}/{req['total']} good = {req['availability']:.4f} < 0.995")
    finally:
        gw.stop()


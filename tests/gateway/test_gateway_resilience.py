"""Gateway resilience: failover rules, idempotency, outlier ejection, operator loss under load,
route-table refresh and survival of a lost database."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import aiohttp
import httpx
from gwutil import GatewayServer, LoopThread, TcpRelay

from zistboom.gateway.app import create_gateway
from zistboom.gateway.config import GatewayConfig

KEY = {"X-Api-Key": "key-app1-secret"}


def cfg(**kw) -> GatewayConfig:
    base = dict(refresh_interval=0.2, health_interval=60, try_timeout=0.5, outlier_consecutive_failures=3,
                outlier_base_ejection=1.0)
    base.update(kw)
    return GatewayConfig(**base)


def two_operators(registry, operators):
    """Operator ``a`` in the caller's province (always tried first), ``b`` in a bordering one."""
    a, b = operators("a"), operators("b")
    registry.operator("a", "IR-01", a.url)
    registry.operator("b", "IR-02", b.url)
    return a, b


def test_get_fails_over_after_timeout_but_post_is_not_resent(registry, operators, gateway):
    a, b = two_operators(registry, operators)
    a.mode = "hang"
    gw = gateway(cfg(outlier_consecutive_failures=100))
    r = httpx.get(gw.url + "/v1/services/fines/fines/1", headers=KEY, timeout=10)
    assert r.status_code == 200 and r.headers["x-zistboom-operator"] == "b"
    assert a.count() == 1 and b.count() == 1
    # POST, not idempotent, timed out at a: never sent to b
    r = httpx.post(gw.url + "/v1/services/fines/payments", content=b"{}", headers=KEY, timeout=10)
    assert r.status_code == 504 and r.headers["x-zistboom-error"] == "upstream_timeout"
    assert a.count() == 2 and b.count() == 1
    # POST with an Idempotency-Key may fail over
    r = httpx.post(gw.url + "/v1/services/fines/payments", content=b"{}",
                   headers={**KEY, "Idempotency-Key": "k-1"}, timeout=10)
    assert r.status_code == 200 and r.headers["x-zistboom-operator"] == "b"
    assert a.count() == 3 and b.count() == 2
    assert {k.lower(): v for k, v in b.seen[-1][2].items()}["idempotency-key"] == "k-1"


def test_5xx_failover_only_when_idempotent(registry, operators, gateway):
    a, b = two_operators(registry, operators)
    a.mode = "500"
    gw = gateway(cfg(outlier_consecutive_failures=100))
    r = httpx.get(gw.url + "/v1/services/fines/fines/1", headers=KEY)
    assert r.status_code == 200 and r.headers["x-zistboom-operator"] == "b"
    r = httpx.post(gw.url + "/v1/services/fines/payments", content=b"{}", headers=KEY)
    # the operator's own 5xx is passed through, marked with the operator, not as a gateway error
    assert r.status_code == 500 and r.headers["x-zistboom-operator"] == "a"
    assert "x-zistboom-error" not in r.headers
    assert b.count() == 1
    m = httpx.get(gw.url + "/metrics").text
    assert 'zistboom_gateway_failovers_total{service="fines"} 1.0' in m
    assert 'zistboom_gateway_retries_total{service="fines"} 1.0' in m
    assert 'zistboom_gateway_upstream_attempts_total{operator="a",outcome="http_5xx"} 2.0' in m
    assert 'zistboom_gateway_request_duration_seconds_count{operator="b",province="IR-01",service="fines"} 1.0' in m


def test_post_fails_over_on_connect_error(registry, operators, gateway):
    """A refused connection means no byte was sent: safe to try elsewhere even for a POST."""
    a, b = two_operators(registry, operators)
    a.stop()
    gw = gateway(cfg(outlier_consecutive_failures=100))
    r = httpx.post(gw.url + "/v1/services/fines/payments", content=b"{}", headers=KEY)
    assert r.status_code == 200 and r.headers["x-zistboom-operator"] == "b"


def test_all_operators_down_is_a_gateway_error(registry, operators, gateway):
    a, b = two_operators(registry, operators)
    a.stop()
    b.stop()
    gw = gateway(cfg())
    r = httpx.get(gw.url + "/v1/services/fines/fines/1", headers=KEY)
    assert r.status_code == 502 and r.headers["x-zistboom-error"] == "upstream_unavailable"
    assert r.json()["error"]["request_id"] == r.headers["x-request-id"]


def test_operator_killed_under_concurrent_get_load(registry, operators, gateway):
    a, b = two_operators(registry, operators)
    c = operators("c")
    registry.operator("c", "IR-01", c.url)
    gw = gateway(cfg(try_timeout=2.0))
    results: list[int] = []

    async def load(stop_at: float):
        async with aiohttp.ClientSession() as s:
            async def worker():
                while time.monotonic() < stop_at:
                    async with s.get(gw.url + "/v1/services/fines/fines/1", headers=KEY) as r:
                        await r.read()
                        results.append(r.status)

            await asyncio.gather(*(worker() for _ in range(16)))

    lt = LoopThread()
    try:
        fut = asyncio.run_coroutine_threadsafe(load(time.monotonic() + 2.5), lt.loop)
        time.sleep(0.8)
        before = len(results)
        a.stop()  # kill an operator mid-load (listener and open keep-alive connections)
        fut.result(30)
    finally:
        lt.stop()
    assert before > 0 and len(results) > before
    bad = [s for s in results if s != 200]
    assert bad == [], f"{len(bad)} failed of {len(results)}"
    assert c.count() > 0
    m = httpx.get(gw.url + "/metrics").text
    line = next(x for x in m.splitlines() if x.startswith('zistboom_gateway_ejections_total{operator="a"}'))
    assert float(line.split()[-1]) >= 1


def test_outlier_ejection_and_half_open_readmission(registry, operators, gateway):
    a, b = two_operators(registry, operators)
    gw = gateway(cfg(outlier_consecutive_failures=3, outlier_base_ejection=1.0))
    url = gw.url + "/v1/services/fines/fines/1"
    a.mode = "500"
    for _ in range(3):  # three failures at a (each failed over to b)
        assert httpx.get(url, headers=KEY).headers["x-zistboom-operator"] == "b"
    assert a.count() == 3
    st = gw.app.balancer.state("a")
    assert st.ejected
    for _ in range(5):  # ejected: a is skipped although it is the preferred (own-province) operator
        httpx.get(url, headers=KEY)
    assert a.count() == 3
    time.sleep(1.1)
    # half-open: one trial; it fails → ejected again, for twice as long
    httpx.get(url, headers=KEY)
    assert a.count() == 4 and st.ejected and st.ejections == 2
    time.sleep(0.3)
    httpx.get(url, headers=KEY)
    assert a.count() == 4  # still ejected (2 s this time)
    a.mode = "ok"
    time.sleep(max(0.0, st.ejected_until - time.monotonic()) + 0.05)
    r = httpx.get(url, headers=KEY)  # trial passes → re-admitted
    assert r.headers["x-zistboom-operator"] == "a" and not st.ejected
    assert httpx.get(url, headers=KEY).headers["x-zistboom-operator"] == "a"


def test_active_health_checks_steer_traffic(registry, operators, gateway):
    a, b = two_operators(registry, operators)
    gw = gateway(cfg(health_interval=0.1, health_unhealthy_threshold=2))
    a.health_ok = False
    deadline = time.monotonic() + 5
    while gw.app.balancer.state("a").probe_ok and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not gw.app.balancer.state("a").probe_ok
    assert httpx.get(gw.url + "/v1/services/fines/fines/1", headers=KEY).headers["x-zistboom-operator"] == "b"
    a.health_ok = True
    deadline = time.monotonic() + 5
    while not gw.app.balancer.state("a").probe_ok and time.monotonic() < deadline:
        time.sleep(0.05)
    assert httpx.get(gw.url + "/v1/services/fines/fines/1", headers=KEY).headers["x-zistboom-operator"] == "a"


def test_refresh_after_licence_suspended(registry, operators, gateway):
    a, b = two_operators(registry, operators)
    gw = gateway(cfg())
    url = gw.url + "/v1/services/fines/fines/1"
    assert httpx.get(url, headers=KEY).headers["x-zistboom-operator"] == "a"
    registry.set_status("a", "suspended")
    gw.wait_version()
    n = a.count()
    for _ in range(5):
        assert httpx.get(url, headers=KEY).headers["x-zistboom-operator"] == "b"
    assert a.count() == n
    registry.set_status("a", "active")
    gw.wait_version()
    assert httpx.get(url, headers=KEY).headers["x-zistboom-operator"] == "a"


def test_keeps_serving_when_sqlite_file_removed(operators, sqlite_db_url):
    from gwutil import Registry

    registry = Registry(sqlite_db_url)
    registry.base()
    registry.client("app1", "key-app1-secret")
    two_operators(registry, operators)
    registry.close()
    gw = GatewayServer(create_gateway(sqlite_db_url, config=cfg())).start()
    try:
        path = Path(sqlite_db_url[len("sqlite:///"):])
        for p in (path, Path(str(path) + "-wal"), Path(str(path) + "-shm")):
            if p.exists():
                os.remove(p)
        deadline = time.monotonic() + 5
        while gw.app.last_refresh_error is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gw.app.last_refresh_error  # the poller noticed
        assert not path.exists()  # and did not create an empty database in its place
        for _ in range(5):
            assert httpx.get(gw.url + "/v1/services/fines/fines/1", headers=KEY).status_code == 200
        h = httpx.get(gw.url + "/healthz").json()
        assert h["route_table"]["version"] >= 1 and h["refresh_error"]
    finally:
        gw.stop()


def test_keeps_serving_when_postgres_unreachable(operators, pg_db_url):
    from gwutil import Registry
    from sqlalchemy.engine import make_url

    registry = Registry(pg_db_url)
    registry.base()
    registry.client("app1", "key-app1-secret")
    a, b = two_operators(registry, operators)
    registry.close()
    u = make_url(pg_db_url)
    lt = LoopThread()
    relay = TcpRelay(lt, u.host or "127.0.0.1", u.port or 5432)
    relayed = u.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)
    gw = GatewayServer(create_gateway(relayed, config=cfg())).start()
    try:
        assert httpx.get(gw.url + "/v1/services/fines/fines/1", headers=KEY).status_code == 200
        relay.cut()
        deadline = time.monotonic() + 10
        while gw.app.last_refresh_error is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gw.app.last_refresh_error
        version = gw.app.table.version
        for _ in range(5):  # the request path never touches the database: served from the table
            assert httpx.get(gw.url + "/v1/services/fines/fines/1", headers=KEY, timeout=5).status_code == 200
        assert gw.app.last_refresh_error and gw.app.table.version == version  # still cut, same table
    finally:
        gw.stop()
        lt.stop()


def test_starts_without_database_and_loads_when_it_appears(tmp_path, operators):
    from gwutil import Registry

    from zistboom.registry.db import Base, make_engine

    url = f"sqlite:///{tmp_path / 'later.db'}"
    gw = GatewayServer(create_gateway(url, config=cfg())).start()
    try:
        r = httpx.get(gw.url + "/v1/services/fines/fines/1", headers=KEY)
        assert r.status_code == 503 and r.headers["x-zistboom-error"] == "route_table_unavailable"
        assert httpx.get(gw.url + "/healthz").status_code == 503
        assert not (tmp_path / "later.db").exists()
        engine = make_engine(url)
        Base.metadata.create_all(engine)
        engine.dispose()
        reg = Registry(url)
        reg.base()
        reg.client("app1", "key-app1-secret")
        a = operators("a")
        reg.operator("a", "IR-01", a.url)
        gw.wait_version()
        r = httpx.get(gw.url + "/v1/services/fines/fines/1", headers=KEY)
        assert r.status_code == 200 and r.headers["x-zistboom-operator"] == "a"
        reg.close()
    finally:
        gw.stop()

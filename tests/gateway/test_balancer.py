"""Load balancing within a tier: Peak EWMA with aging never starves an operator whose estimate is
stale (one slow first answer), yet still prefers a truly faster operator; retries of a 5xx."""

from __future__ import annotations

import random
from types import SimpleNamespace

import httpx

from zistboom.gateway.config import GatewayConfig
from zistboom.gateway.routing import Balancer, Candidate, RetryBudget

KEY = {"X-Api-Key": "key-app1-secret"}


def _pool(*ids: str) -> list[Candidate]:
    return [Candidate(operator=SimpleNamespace(id=i), tier=0, endpoints=(("127.0.0.1", 1, ""),)) for i in ids]


def _simulate(latency: dict[str, float], first: dict[str, float], n: int, seed: int = 7) -> dict[str, int]:
    """Sequential traffic through Balancer.choose/success with fixed latencies (ms); ``first`` gives
    the latency of each operator's first answer."""
    b = Balancer(GatewayConfig())
    b._rand = random.Random(seed)
    cands = _pool(*latency)
    counts = dict.fromkeys(latency, 0)
    for _ in range(n):
        cand, st = b.choose(cands, set())
        oid = cand.operator.id
        lat = first.pop(oid, None) or latency[oid]
        b.success(oid, lat)
        counts[oid] += 1
    return counts


def test_stale_estimate_recovers_deterministically():
    # b's first answer took 9 ms (a cold connection), a answers in 0.3 ms; both really answer in 0.3 ms
    counts = _simulate({"a": 0.3, "b": 0.3}, {"b": 9.0}, 400)
    assert counts["a"] >= 100 and counts["b"] >= 100, counts


def test_truly_slower_operator_gets_little_traffic():
    counts = _simulate({"a": 1.0, "b": 10.0}, {}, 2000)
    assert counts["b"] >= 5, counts  # still re-sampled now and then (its estimate could be stale)
    assert counts["b"] <= 0.1 * 2000, counts  # but the faster one gets the bulk of sequential traffic


def test_unsampled_operator_is_neither_flooded_nor_starved():
    b = Balancer(GatewayConfig())
    a_st, n_st = b.state("a"), b.state("new")
    b.observe(a_st, 2.0)
    a_st.inflight = 3
    # the new operator is assumed to cost what a costs per request: fewer in flight wins
    assert b._p2c(a_st, n_st, 0.0) is n_st
    n_st.inflight = 4
    assert b._p2c(a_st, n_st, 0.0) is a_st


def test_retry_budget_allows_minimum_retries_without_traffic():
    budget = RetryBudget(0.2, 10.0, 10.0)
    assert all(budget.try_withdraw() for _ in range(100))  # 10/s × 10 s reserve
    assert not budget.try_withdraw()


def test_no_starvation_after_one_slow_first_answer(registry, operators, gateway):
    """Two operators in one tier; b's first answer is slow (50 ms); then sequential traffic. Before
    aging, b was never picked again (its estimate only changes when it answers)."""
    a, b = operators("a"), operators("b")
    registry.operator("a", "IR-01", a.url)
    registry.operator("b", "IR-01", b.url)
    b.delays = [0.05]
    gw = gateway()
    url = gw.url + "/v1/services/fines/fines/1"
    with httpx.Client(headers=KEY, timeout=10) as c:
        for _ in range(10):  # both start unsampled, so b gets one of the first two requests
            assert c.get(url).status_code == 200
            if b.count():
                break
        assert b.count() == 1 and not b.delays
        na, nb = a.count(), b.count()
        for _ in range(400):
            assert c.get(url).status_code == 200
    got_a, got_b = a.count() - na, b.count() - nb
    assert got_a + got_b == 400
    # Starvation gave b 1 of 1,400. A fair share is not guaranteed request by request: Peak EWMA takes
    # any latency spike at once and aging needs ~50 lost comparisons to undo a 3x spike, so on loopback
    # the split comes in runs (quiet runs gave b 144-198 of 400; 99 once in a CI run, 2026-11-30). 10 % each is far above
    # starvation and below that noise.
    assert got_a >= 40 and got_b >= 40, (got_a, got_b)


def test_5xx_fails_over_within_a_tier_with_sequential_traffic(registry, operators, gateway):
    """b answers 500 to every 10th request, a is healthy, same tier: no 5xx reaches the client."""
    a, b = operators("a"), operators("b")
    registry.operator("a", "IR-01", a.url)
    registry.operator("b", "IR-01", b.url)
    b.fail_every = 10
    gw = gateway(GatewayConfig(refresh_interval=0.2, health_interval=0.2, health_timeout=0.5, try_timeout=1.0))
    url = gw.url + "/v1/services/fines/fines/1"
    statuses = []
    with httpx.Client(headers=KEY, timeout=10) as c:
        for _ in range(300):
            r = c.get(url)
            statuses.append((r.status_code, r.headers.get("x-zistboom-operator")))
    assert b.count() >= 50  # b took its share, so it answered 500 several times
    assert all(s == 200 for s, _ in statuses), [x for x in statuses if x[0] != 200]
    m = httpx.get(gw.url + "/metrics").text
    line = next(x for x in m.splitlines() if x.startswith('zistboom_gateway_failovers_total{service="fines"}'))
    assert float(line.split()[-1]) >= 5


def test_5xx_after_a_timeout_goes_back_to_the_first_operator(registry, operators, gateway):
    """a times out once (slow answer), b answers 500: with an attempt left, an idempotent GET goes
    back to a (its failure was a timeout, not an answer) instead of passing b's 500 on."""
    a, b = operators("a"), operators("b")
    registry.operator("a", "IR-01", a.url)  # own province: tier 0, tried first
    registry.operator("b", "IR-02", b.url)
    a.delays = [2.0]
    b.mode = "500"
    gw = gateway(GatewayConfig(refresh_interval=0.2, health_interval=60, try_timeout=0.5,
                               outlier_consecutive_failures=100))
    r = httpx.get(gw.url + "/v1/services/fines/fines/1", headers=KEY, timeout=10)
    assert r.status_code == 200 and r.headers["x-zistboom-operator"] == "a"
    assert a.count() == 2 and b.count() == 1

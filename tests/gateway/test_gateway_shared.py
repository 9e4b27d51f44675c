"""Idempotency-Key replay and shared rate limits: in one replica (in-process store) and across two
real gateway replicas sharing one real Redis and one registry database; Redis unreachable or cut
mid-traffic never fails a request."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from gwutil import LoopThread, TcpRelay, free_port

from zistboom.gateway.config import GatewayConfig

KEY = {"X-Api-Key": "key-app1-secret"}
PAY = "/v1/services/fines/payments"


def cfg(**kw) -> GatewayConfig:
    base = dict(refresh_interval=0.2, health_interval=60, try_timeout=1.0, outlier_consecutive_failures=100)
    base.update(kw)
    return GatewayConfig(**base)


def post(gw, body: bytes, key: str | None, path: str = PAY, headers=KEY, timeout=10):
    h = dict(headers)
    if key is not None:
        h["Idempotency-Key"] = key
    return httpx.post(gw.url + path, content=body, headers=h, timeout=timeout)


def assert_error(r, status, code):
    assert r.status_code == status, r.text
    assert r.headers["x-zistboom-error"] == code
    err = r.json()["error"]
    assert err["code"] == code and err["message_fa"] and err["message_en"]


def metric(gw, prefix: str) -> float:
    text = httpx.get(gw.url + "/metrics").text
    return sum(float(x.split()[-1]) for x in text.splitlines() if x.startswith(prefix))


def _in_flight_duplicate(first_gw, second_gw, op, key: str):
    """Send a slow POST to ``first_gw``; while the operator holds it, repeat it at ``second_gw``."""
    result = {}
    t = threading.Thread(target=lambda: result.update(r=post(first_gw, b'{"n":1}', key, path="/v1/services/fines/slow")))
    n = op.count()
    t.start()
    deadline = time.monotonic() + 10
    while op.count() == n and time.monotonic() < deadline:
        time.sleep(0.01)
    assert op.count() == n + 1
    dup = post(second_gw, b'{"n":1}', key, path="/v1/services/fines/slow")
    t.join(15)
    return result["r"], dup


def check_replay(gw1, gw2, op):
    """The first POST reaches the operator; repeats to either replica are answered from the store."""
    r1 = post(gw1, b'{"amount":100}', "pay-1")
    assert r1.status_code == 200 and "idempotent-replayed" not in r1.headers
    assert op.count() == 1
    r2 = post(gw2, b'{"amount":100}', "pay-1")
    assert r2.status_code == 200 and r2.headers["idempotent-replayed"] == "true"
    assert r2.content == r1.content and r2.headers["x-zistboom-operator"] == r1.headers["x-zistboom-operator"]
    assert r2.headers["x-request-id"] != r1.headers["x-request-id"]
    assert op.count() == 1  # never reached the operator again
    # same key, different request → 422; the operator is not contacted
    assert_error(post(gw2, b'{"amount":999}', "pay-1"), 422, "idempotency_key_reused")
    assert_error(post(gw1, b'{"amount":100}', "pay-1", path="/v1/services/fines/echo"), 422, "idempotency_key_reused")
    assert op.count() == 1
    # another client system may use the same key for its own request
    r = post(gw2, b'{"amount":100}', "pay-1", headers={"X-Api-Key": "key-app2-secret"})
    assert r.status_code == 200 and "idempotent-replayed" not in r.headers
    assert op.count() == 2


def test_idempotency_in_one_replica_without_redis(registry, operators, gateway):
    a = operators("a")
    registry.operator("a", "IR-01", a.url)
    registry.client("app2", "key-app2-secret")
    gw = gateway(cfg())
    check_replay(gw, gw, a)
    # quoted sf-string form is the same key
    assert post(gw, b'{"amount":100}', '"pay-1"').headers.get("idempotent-replayed") == "true"
    # in flight → 409 (with Retry-After); the first one times out (no answer): the key is released
    first, dup = _in_flight_duplicate(gw, gw, a, "slow-1")
    assert_error(dup, 409, "idempotency_in_flight")
    assert dup.headers["retry-after"]
    assert first.status_code == 504
    n = a.count()
    assert post(gw, b'{"n":1}', "slow-1", path="/v1/services/fines/slow").status_code == 504
    assert a.count() == n + 1  # released, so the retry with the same key reached the operator
    # a 5xx answer is not kept either: the client's retry with the same key goes through
    a.mode = "500"
    assert post(gw, b'{"amount":5}', "pay-5").status_code == 500
    a.mode = "ok"
    r = post(gw, b'{"amount":5}', "pay-5")
    assert r.status_code == 200 and "idempotent-replayed" not in r.headers
    # idempotent operations are not stored: the key is only passed on
    n = a.count()
    for _ in range(2):
        assert httpx.get(gw.url + "/v1/services/fines/fines/1", headers={**KEY, "Idempotency-Key": "g"}).status_code == 200
    assert a.count() == n + 2
    assert metric(gw, 'zistboom_gateway_idempotency_total{result="replayed"}') == 2


def test_idempotency_replay_across_replicas_with_redis(registry, operators, gateway, redis_url, redis_prefix):
    a = operators("a")
    registry.operator("a", "IR-01", a.url)
    registry.client("app2", "key-app2-secret")
    gw1 = gateway(cfg(redis_url=redis_url, redis_prefix=redis_prefix))
    gw2 = gateway(cfg(redis_url=redis_url, redis_prefix=redis_prefix))
    check_replay(gw1, gw2, a)
    first, dup = _in_flight_duplicate(gw1, gw2, a, "slow-2")
    assert_error(dup, 409, "idempotency_in_flight")
    assert first.status_code == 504
    assert metric(gw1, "zistboom_gateway_redis_errors_total") == 0
    assert metric(gw2, "zistboom_gateway_redis_errors_total") == 0
    import redis

    c = redis.Redis.from_url(redis_url)
    keys = list(c.scan_iter(match=redis_prefix + "idem:*"))
    c.close()
    assert keys and all(k.decode().startswith(redis_prefix) for k in keys)


def test_rate_limit_shared_across_replicas(registry, operators, gateway, redis_url, redis_prefix):
    a = operators("a")
    registry.operator("a", "IR-01", a.url)
    # 6 requests of burst, refilled at 1 per 100 s: the test never sees a refill
    c = cfg(redis_url=redis_url, redis_prefix=redis_prefix, client_rate=0.01, client_burst=6)
    gw1, gw2 = gateway(c), gateway(c)
    statuses = []
    for i in range(12):
        gw = (gw1, gw2)[i % 2]
        r = httpx.get(gw.url + "/v1/services/fines/fines/1", headers=KEY)
        statuses.append(r.status_code)
        if r.status_code == 429:
            assert r.headers["x-zistboom-error"] == "rate_limited" and int(r.headers["retry-after"]) >= 1
    assert statuses == [200] * 6 + [429] * 6, statuses  # per replica it would have been 12 × 200
    assert a.count() == 6
    assert metric(gw1, "zistboom_gateway_redis_fallbacks_total") == 0


def test_redis_unreachable_requests_still_served(registry, operators, gateway):
    a = operators("a")
    registry.operator("a", "IR-01", a.url)
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    gw = gateway(cfg(redis_url=dead, client_rate=0.01, client_burst=3, redis_retry_interval=0.2))
    statuses = [httpx.get(gw.url + "/v1/services/fines/fines/1", headers=KEY).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]  # the local bucket took over


def test_redis_unreachable_idempotency_falls_back_to_memory(registry, operators, gateway):
    a = operators("a")
    registry.operator("a", "IR-01", a.url)
    dead = f"redis://127.0.0.1:{free_port()}/0"
    gw = gateway(cfg(redis_url=dead))
    r1 = post(gw, b'{"x":1}', "k-dead")
    r2 = post(gw, b'{"x":1}', "k-dead")
    assert r1.status_code == 200 and r2.headers.get("idempotent-replayed") == "true"
    assert a.count() == 1
    assert metric(gw, "zistboom_gateway_redis_errors_total") >= 1
    assert metric(gw, 'zistboom_gateway_redis_fallbacks_total{feature="idempotency"}') >= 1
    assert metric(gw, 'zistboom_gateway_redis_fallbacks_total{feature="rate_limit"}') >= 1
    assert metric(gw, "zistboom_gateway_redis_up") == 0


def test_redis_cut_mid_traffic(registry, operators, gateway, redis_url, redis_prefix):
    """Redis reached through a relay that is cut (listener and live connections) mid-traffic."""
    from urllib.parse import urlsplit

    a = operators("a")
    registry.operator("a", "IR-01", a.url)
    u = urlsplit(redis_url)
    lt = LoopThread()
    try:
        relay = TcpRelay(lt, u.hostname or "127.0.0.1", u.port or 6379)
        via = f"redis://127.0.0.1:{relay.port}{u.path or '/0'}"
        gw = gateway(cfg(redis_url=via, redis_prefix=redis_prefix, redis_timeout=0.2))
        for _ in range(5):
            assert httpx.get(gw.url + "/v1/services/fines/fines/1", headers=KEY).status_code == 200
        assert post(gw, b'{"x":1}', "cut-1").status_code == 200
        assert metric(gw, "zistboom_gateway_redis_errors_total") == 0
        relay.cut()
        statuses = [httpx.get(gw.url + "/v1/services/fines/fines/1", headers=KEY, timeout=10).status_code
                    for _ in range(20)]
        assert statuses == [200] * 20
        assert post(gw, b'{"x":2}', "cut-2").status_code == 200
        assert metric(gw, "zistboom_gateway_redis_errors_total") >= 1
        assert metric(gw, 'zistboom_gateway_redis_fallbacks_total{feature="rate_limit"}') >= 1
    finally:
        lt.stop()


@pytest.mark.parametrize("value", [b"", "é".encode(), b"x" * 256, b"a\tb"])
def test_bad_idempotency_keys(registry, operators, gateway, value):
    a = operators("a")
    registry.operator("a", "IR-01", a.url)
    gw = gateway(cfg())
    with httpx.Client() as c:
        r = c.post(gw.url + PAY, content=b"{}", headers=[(b"x-api-key", b"key-app1-secret"), (b"idempotency-key", value)])
    assert_error(r, 400, "bad_idempotency_key")
    assert a.count() == 0

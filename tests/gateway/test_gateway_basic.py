"""Gateway: authentication, access, routing by licence and province, header hygiene, sinks."""

from __future__ import annotations

from datetime import timedelta

import httpx

from gwutil import NOW, ListSink

KEY = {"X-Api-Key": "key-app1-secret"}


def get(gw, path, headers=None, **kw):
    return httpx.get(gw.url + path, headers=headers, timeout=10, **kw)


def assert_gateway_error(r, status, code):
    assert r.status_code == status, r.text
    assert r.headers["x-zistboom-error"] == code
    err = r.json()["error"]
    assert err["code"] == code and err["message_fa"] and err["message_en"] and err["request_id"]
    assert "x-zistboom-operator" not in r.headers


def test_auth_access_unknown(registry, operators, gateway):
    a = operators("a")
    registry.operator("a", "IR-01", a.url)
    registry.client("app2", "key-app2", services=())  # no access rights at all
    gw = gateway()
    assert_gateway_error(get(gw, "/v1/services/fines/fines/12"), 401, "unauthorized")
    assert_gateway_error(get(gw, "/v1/services/fines/fines/12", {"X-Api-Key": "wrong"}), 401, "unauthorized")
    assert_gateway_error(get(gw, "/v1/services/fines/fines/12", {"Authorization": "Bearer nope"}), 401, "unauthorized")
    assert_gateway_error(get(gw, "/v1/services/fines/fines/12", {"X-Api-Key": "key-app2"}), 403, "forbidden")
    assert_gateway_error(get(gw, "/v1/services/other/fines/12", KEY), 403, "forbidden")
    assert_gateway_error(get(gw, "/v1/services/nope/x", KEY), 404, "unknown_service")
    assert_gateway_error(get(gw, "/v1/services/fines/not/in/contract", KEY), 404, "unknown_operation")
    assert_gateway_error(get(gw, "/v1/services/fines/fines/12", {**KEY, "X-Caller-Province": "IR-99"}), 400,
                         "unknown_province")
    # two X-Caller-Province values (e.g. one added by a proxy): refused, not the last one silently
    two = httpx.Headers([("X-Api-Key", KEY["X-Api-Key"]), ("X-Caller-Province", "IR-01"), ("X-Caller-Province", "IR-03")])
    assert_gateway_error(httpx.get(gw.url + "/v1/services/fines/fines/12", headers=two), 400, "ambiguous_province")
    same = httpx.Headers([("X-Api-Key", KEY["X-Api-Key"]), ("X-Caller-Province", "IR-01"), ("X-Caller-Province", "ir-01")])
    assert httpx.get(gw.url + "/v1/services/fines/fines/12", headers=same).status_code == 200
    assert_gateway_error(get(gw, "/nowhere"), 404, "not_found")
    # dot segments, plain or percent-encoded, never reach an operator
    for raw in ("/v1/services/fines/fines/%2e%2e", "/v1/services/fines/fines/a%2F..%2F..%2Fother"):
        with httpx.Client() as c:
            req = c.build_request("GET", gw.url + "/", headers=KEY)
            req.url = req.url.copy_with(raw_path=raw.encode())
            assert_gateway_error(c.send(req), 400, "bad_path")
    assert a.count() == 1  # only the request with the same province twice
    r = get(gw, "/v1/services/fines/fines/12?x=1", {"Authorization": "Bearer key-app1-secret"})
    assert r.status_code == 200
    assert r.headers["x-zistboom-operator"] == "a"
    assert r.json()["path"] == "/v1/services/fines/fines/12?x=1"
    assert a.count() == 2


def test_revoked_suspended_expired_never_routed(registry, operators, gateway):
    good = operators("good")
    bad = [operators(n) for n in ("revoked", "suspended", "expired", "pending", "future")]
    registry.operator("good", "IR-03", good.url)  # national tier, the only routable one
    registry.operator("revoked", "IR-01", bad[0].url, status="revoked")
    registry.operator("suspended", "IR-01", bad[1].url, status="suspended")
    registry.operator("expired", "IR-01", bad[2].url, valid_from=NOW - timedelta(days=30),
                      valid_until=NOW - timedelta(days=1))
    registry.operator("pending", "IR-01", bad[3].url, status="pending")
    registry.operator("future", "IR-01", bad[4].url, valid_from=NOW + timedelta(days=1),
                      valid_until=NOW + timedelta(days=30))
    gw = gateway()
    for _ in range(30):
        r = get(gw, "/v1/services/fines/fines/1", KEY)
        assert r.status_code == 200 and r.headers["x-zistboom-operator"] == "good"
    assert all(op.count() == 0 for op in bad)


def test_no_route_when_no_licence_covers_province(registry, operators, gateway):
    a = operators("a")
    registry.operator("a", "IR-01", a.url, provinces=("IR-01",))
    gw = gateway()
    assert_gateway_error(get(gw, "/v1/services/fines/fines/1", {**KEY, "X-Caller-Province": "IR-04"}), 503, "no_route")
    assert a.count() == 0


def test_province_tiers(registry, operators, gateway):
    own, border, far = operators("own"), operators("border"), operators("far")
    provs = ("IR-01", "IR-02", "IR-03", "IR-04")
    registry.operator("far", "IR-05", far.url, provinces=provs)
    registry.operator("border", "IR-02", border.url, provinces=provs)
    registry.operator("own", "IR-01", own.url, provinces=provs)
    gw = gateway()
    for _ in range(10):
        assert get(gw, "/v1/services/fines/fines/1", KEY).headers["x-zistboom-operator"] == "own"
    # caller from IR-03: border (IR-02 borders IR-03) comes before own(IR-01) and far(IR-05)
    for _ in range(10):
        r = get(gw, "/v1/services/fines/fines/1", {**KEY, "X-Caller-Province": "IR-03"})
        assert r.headers["x-zistboom-operator"] == "border"
    # own province operator down → bordering province next, then national
    own.stop()
    assert get(gw, "/v1/services/fines/fines/1", KEY).headers["x-zistboom-operator"] == "border"
    border.stop()
    assert get(gw, "/v1/services/fines/fines/1", KEY).headers["x-zistboom-operator"] == "far"
    # IR-04 caller: nobody is based in IR-04 or a neighbour → national tier only; both far & own count
    assert get(gw, "/v1/services/fines/fines/1", {**KEY, "X-Caller-Province": "IR-04"}).status_code == 200


def test_hop_by_hop_and_forwarding_headers(registry, operators, gateway):
    a = operators("a")
    registry.operator("a", "IR-01", a.url)
    gw = gateway()
    r = get(gw, "/v1/services/fines/echo", {
        **KEY, "Connection": "keep-alive, X-Private", "X-Private": "secret", "Keep-Alive": "timeout=5",
        "TE": "trailers", "Proxy-Authorization": "Basic x", "Upgrade": "h2c", "X-Keep": "yes",
        "X-Request-Id": "req-123", "X-Forwarded-For": "10.0.0.9",
    })
    assert r.status_code == 200
    method, path, headers, _ = a.seen[-1]
    low = {k.lower(): v for k, v in headers.items()}
    for h in ("x-private", "keep-alive", "te", "proxy-authorization", "upgrade", "x-api-key", "authorization"):
        assert h not in low, h
    assert low["x-keep"] == "yes"
    assert low["x-request-id"] == "req-123"
    assert low["x-forwarded-for"] == "127.0.0.1"  # the client's own XFF is dropped (trust_forwarded_for=False)
    assert low["x-zistboom-client"] == "app1"
    assert low["x-zistboom-caller-province"] == "IR-01"
    # response side: the operator named X-Secret-Hop in Connection
    assert "x-secret-hop" not in r.headers
    assert r.headers["x-upstream-hop"] == "keep"
    assert r.headers["x-request-id"] == "req-123"
    # request id generated when absent
    get(gw, "/v1/services/fines/echo", KEY)
    rid = {k.lower(): v for k, v in a.seen[-1][2].items()}["x-request-id"]
    assert len(rid) == 32


def test_sinks_get_exchanges_and_probes(registry, operators, gateway):
    from zistboom.gateway.config import GatewayConfig

    a = operators("a")
    registry.operator("a", "IR-01", a.url)
    sink = ListSink()
    gw = gateway(GatewayConfig(refresh_interval=0.2, health_interval=0.2, try_timeout=1.0), sinks=[sink])
    assert sink.started
    r = httpx.post(gw.url + "/v1/services/fines/echo", content=b"hello", headers={**KEY, "Content-Type": "text/plain"})
    assert r.status_code == 200
    get(gw, "/v1/services/fines/fines/1")  # 401
    import time

    deadline = time.monotonic() + 5
    # the exchange is handed to sinks just after the answer is written, so the client can be faster
    while (not sink.probes or len(sink.exchanges) < 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    ex = sink.exchanges[0]
    assert ex.client_id == "app1" and ex.service_id == "fines" and ex.operator_id == "a"
    assert ex.operation == "echoPost" and ex.caller_province == "IR-01" and ex.status == 200
    assert ex.path == "/echo" and ex.method == "POST" and [len(d) for d in ex.digests()] == [64, 64]
    assert ex.attempts[0].outcome == "ok" and ex.time.tzinfo is not None
    assert ex.request_body is None  # keep_bodies is off
    ex2 = sink.exchanges[1]
    assert ex2.gateway_error == "unauthorized" and ex2.status == 401 and ex2.operator_id is None
    assert sink.probes and sink.probes[0].operator_id == "a" and sink.probes[0].ok
    m = get(gw, "/metrics").text
    assert 'zistboom_gateway_requests_total{code="2xx",operator="a",province="IR-01",service="fines"} 1.0' in m
    assert "zistboom_gateway_health_probes_total" in m
    h = get(gw, "/healthz").json()
    assert h["status"] == "ok" and h["route_table"]["version"] >= 1
    gw.stop()
    assert sink.closed


def test_rate_limit(registry, operators, gateway):
    from zistboom.gateway.config import GatewayConfig

    a = operators("a")
    registry.operator("a", "IR-01", a.url)
    gw = gateway(GatewayConfig(refresh_interval=0.2, health_interval=60, client_rate=1.0, client_burst=3))
    codes = [get(gw, "/v1/services/fines/fines/1", KEY).status_code for _ in range(6)]
    assert codes[:3] == [200, 200, 200] and 429 in codes[3:]
    r = get(gw, "/v1/services/fines/fines/1", KEY)
    assert_gateway_error(r, 429, "rate_limited")
    assert int(r.headers["retry-after"]) >= 1


def test_ask_endpoint_validation(registry, gateway):
    gw = gateway()
    r = httpx.post(gw.url + "/v1/ask", content=b"{not json")
    assert r.status_code in (400, 503)
    assert r.headers["x-zistboom-error"] in ("bad_json", "ask_unavailable")
    r = httpx.get(gw.url + "/v1/ask")
    assert_gateway_error(r, 405, "method_not_allowed")

"""``GET /metrics`` parses with prometheus_client's own text parser, and its counters equal the
traffic the test sent (per service, answering operator, caller province and status class)."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

KEY = {"X-Api-Key": "key-app1-secret"}


def _samples(gw) -> dict[tuple[str, tuple], float]:
    text = httpx.get(gw.url + "/metrics", timeout=10).text
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_parse_and_match_the_traffic_sent(registry, operators, gateway):
    a, b = operators("a"), operators("b")
    registry.operator("a", "IR-01", a.url)                          # own province: preferred
    registry.operator("b", "IR-02", b.url, provinces=("IR-01",))    # bordering province: fallback
    registry.client("app3", "key-app3", services=())                # no access rights
    gw = gateway()
    for i in range(7):
        assert httpx.get(f"{gw.url}/v1/services/fines/fines/{i}", headers=KEY, timeout=10).status_code == 200
    for _ in range(3):
        assert httpx.get(gw.url + "/v1/services/fines/fines/1", headers={"X-Api-Key": "key-app3"},
                         timeout=10).status_code == 403
    assert httpx.get(gw.url + "/v1/services/fines/fines/1", timeout=10).status_code == 401
    a.stop()  # connect errors from now on: GETs fail over to b
    for i in range(4):
        r = httpx.get(f"{gw.url}/v1/services/fines/fines/{i}", headers=KEY, timeout=10)
        assert r.status_code == 200 and r.headers["x-zistboom-operator"] == "b"

    s = _samples(gw)
    ok_a = _value(s, "zistboom_gateway_requests_total", service="fines", operator="a", province="IR-01", code="2xx")
    ok_b = _value(s, "zistboom_gateway_requests_total", service="fines", operator="b", province="IR-01", code="2xx")
    assert ok_a == 7
    assert ok_b == 4
    total = sum(v for (name, _), v in s.items() if name == "zistboom_gateway_requests_total")
    assert total == 7 + 3 + 1 + 4
    hist_count = sum(v for (name, labels), v in s.items()
                     if name == "zistboom_gateway_request_duration_seconds_count" and ("service", "fines") in labels)
    assert hist_count >= 11  # every forwarded request was timed
    failovers = sum(v for (name, _), v in s.items() if name == "zistboom_gateway_failovers_total")
    assert failovers >= 1  # the first request after the kill (a's connection errors) moved to b
    attempts_a_fail = sum(v for (name, labels), v in s.items()
                          if name == "zistboom_gateway_upstream_attempts_total" and ("operator", "a") in labels
                          and ("outcome", "ok") not in labels)
    assert attempts_a_fail >= 1

"""``GET /v1/receipts/{request_id}`` on the gateway: a client gets the signed receipt of its own
exchange, which verifies offline; another client's request id is 404; no key is 401."""

from __future__ import annotations

import time
from types import SimpleNamespace

import httpx

from zistboom.exchange_log.receipt import verify_receipt
from zistboom.exchange_log.sink import make_sink

KEY = {"X-Api-Key": "key-app1-secret"}


def test_receipt_of_own_exchange_only(registry, operators, gateway, gw_db_url, tmp_path):
    a = operators("a")
    registry.operator("a", "IR-01", a.url)
    registry.client("app2", "key-app2", services=("fines",))
    sink = make_sink(gw_db_url, SimpleNamespace(var_dir=tmp_path / "var"), mode="thread")
    gw = gateway(sinks=[sink])
    r = httpx.get(gw.url + "/v1/services/fines/fines/12", headers={**KEY, "X-Request-Id": "req-own-1"}, timeout=10)
    assert r.status_code == 200
    deadline = time.monotonic() + 20
    while True:  # the receipt exists once a signed tree head covers the record (409 until then)
        rr = httpx.get(gw.url + "/v1/receipts/req-own-1", headers=KEY, timeout=10)
        if rr.status_code != 409 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert rr.status_code == 200, rr.text
    receipt = rr.json()
    checked = verify_receipt(receipt)
    assert checked  # signature, inclusion proof and record all check out
    assert "req-own-1" in rr.text and "app1" in rr.text
    other = httpx.get(gw.url + "/v1/receipts/req-own-1", headers={"X-Api-Key": "key-app2"}, timeout=10)
    assert other.status_code == 404
    assert httpx.get(gw.url + "/v1/receipts/req-own-1", timeout=10).status_code == 401
    assert httpx.get(gw.url + "/v1/receipts/no-such-id", headers=KEY, timeout=10).status_code == 404

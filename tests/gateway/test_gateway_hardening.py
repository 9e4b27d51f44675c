"""Security hardening of the gateway, against the real gateway on its own server on real sockets:
request-head size limit (431) and head timeout (slowloris), linear operation matching (no ReDoS),
the caller's province in the Idempotency-Key fingerprint, duplicate Idempotency-Key headers,
receipts errors in the gateway's format, and X-Forwarded-For hygiene."""

from __future__ import annotations

import json
import logging
import socket
import threading

import httpx
import pytest

from zistboom.gateway.config import GatewayConfig
from zistboom.gateway.routing import compile_template
from zistboom.registry import models as m

KEY = {"X-Api-Key": "key-app1-secret"}
PAY = "/v1/services/fines/payments"


def cfg(**kw) -> GatewayConfig:
    base = dict(refresh_interval=0.2, health_interval=60, try_timeout=2.0)
    base.update(kw)
    return GatewayConfig(**base)


def assert_gateway_error(r, status, code):
    assert r.status_code == status, r.text
    assert r.headers["x-zistboom-error"] == code
    err = r.json()["error"]
    assert err["code"] == code and err["message_fa"] and err["message_en"] and err["request_id"]
    assert err["request_id"] == r.headers["x-request-id"]


def _connect(gw, timeout=5.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=timeout)
    s.settimeout(timeout)
    return s


def _read_all(s: socket.socket) -> bytes:
    """Everything until the gateway closes (socket.timeout if it never does)."""
    out = b""
    while True:
        try:
            b = s.recv(65536)
        except ConnectionResetError:
            return out
        if not b:
            return out
        out += b


def _parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return status, headers, body


# ------------------------------------------------------------------------------ request heads

def test_huge_header_gets_431_and_healthz_stays_up(registry, gateway):
    gw = gateway()
    s = _connect(gw)
    big = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1024 * 1024) + b"\r\n\r\n"
    sender = threading.Thread(target=lambda: _send_quietly(s, big), daemon=True)
    sender.start()
    raw = _read_all(s)  # socket timeout 5 s: the old server would wait for / answer the whole head
    s.close()
    status, headers, body = _parse(raw)
    assert status == 431, raw[:200]
    assert headers["x-zistboom-error"] == "headers_too_large"
    err = json.loads(body)["error"]
    assert err["code"] == "headers_too_large" and err["message_fa"] and err["request_id"] == headers["x-request-id"]
    r = httpx.get(gw.url + "/healthz", timeout=5)
    assert r.status_code == 200
    # a head just under the default 64 KiB limit still works, and so does a 1 MB *body*
    r = httpx.get(gw.url + "/healthz", headers={"X-Pad": "b" * 60_000}, timeout=5)
    assert r.status_code == 200
    r = httpx.get(gw.url + "/healthz", headers={"X-Pad": "b" * 70_000}, timeout=5)
    assert r.status_code == 431
    sender.join(5)


def _send_quietly(s: socket.socket, data: bytes) -> None:
    try:
        s.sendall(data)
    except OSError:
        pass


def test_small_header_limit_and_body_not_counted(registry, operators, gateway):
    a = operators("a")
    registry.operator("a", "IR-01", a.url)
    gw = gateway(cfg(max_header_bytes=2048))
    r = httpx.get(gw.url + "/healthz", headers={"X-Pad": "x" * 3000}, timeout=5)
    assert r.status_code == 431 and r.headers["x-zistboom-error"] == "headers_too_large"
    # head and a 1 MB body sent in one go: the body is not part of the head
    body = b"z" * (1024 * 1024)
    r = httpx.post(gw.url + "/v1/services/fines/echo", content=body, headers=KEY, timeout=10)
    assert r.status_code == 200 and len(r.json()["body"]) == len(body)
    # two pipelined requests in one write: both answered, in order
    s = _connect(gw)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    raw = _read_all(s)
    s.close()
    assert raw.count(b"HTTP/1.1 200") == 1 and raw.count(b"HTTP/1.1 404") == 1


def test_partial_head_closed_after_header_timeout(registry, gateway):
    gw = gateway(cfg(header_timeout=0.5))
    # slowloris: a head dribbled one byte at a time never completes
    s = _connect(gw)
    stop = threading.Event()

    def dribble():
        for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 1000:
            if stop.wait(0.05):
                return
            try:
                s.send(bytes([b]))
            except OSError:
                return

    t = threading.Thread(target=dribble, daemon=True)
    t.start()
    raw = _read_all(s)  # socket timeout 5 s: without a head timeout the connection stays open
    stop.set()
    t.join(5)
    s.close()
    status, headers, _ = _parse(raw)
    assert status == 408 and headers["x-zistboom-error"] == "header_timeout"
    # a connection that never sends anything is closed too (no answer)
    s = _connect(gw)
    assert _read_all(s) == b""
    s.close()
    # a keep-alive connection whose next head stays partial is closed after its first answer
    s = _connect(gw)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHo")
    raw = _read_all(s)
    s.close()
    assert raw.startswith(b"HTTP/1.1 200") and b"HTTP/1.1 408" in raw
    # complete requests are unaffected
    assert httpx.get(gw.url + "/healthz", timeout=5).status_code == 200


# ------------------------------------------------------------------------------ operation matching

ATTACK = "/r/" + "".join("{%s}" % c for c in "abcdefghijkl") + "!"


def test_template_matcher_semantics():
    t = compile_template("/fines/{plate}")
    assert t.match("/fines/12") and t.match("/fines/" + "9" * 1000)
    assert not t.match("/fines/") and not t.match("/fines/1/2") and not t.match("/fines") and not t.match("/x/1")
    t = compile_template("/r/v{n}.json")
    assert t.match("/r/v1.json") and not t.match("/r/v.json") and not t.match("/r/x1.json")
    t = compile_template("/payments")
    assert t.match("/payments") and not t.match("/payments/") and not t.match("/paymentsX")
    t = compile_template("/a/{x}/b/{y}")
    assert t.match("/a/1/b/2") and not t.match("/a/1/c/2")
    with pytest.raises(ValueError):
        compile_template(ATTACK)
    with pytest.raises(ValueError):
        compile_template("/r/{a}-{b}")


def test_redos_template_skipped_and_long_segments_fast(registry, operators, gateway, caplog):
    contract = {"openapi": "3.0.3", "info": {"title": "redos", "version": "1"},
                "paths": {ATTACK: {"get": {"operationId": "attack"}},
                          "/items/{id}": {"get": {"operationId": "item"}},
                          "/files/v{n}.json": {"get": {"operationId": "file"}}}}

    def fn(s):
        s.add(m.Service(id="redos", cluster_id="transport", name_fa="آزمون", name_en="Test", agency_fa="آزمون",
                        agency_en="Test", service_type="G2C", level="national", current_contract_version="1"))
        s.flush()
        s.add(m.ServiceContract(service_id="redos", version="1", openapi=contract))

    registry.write(fn)
    registry.client("app3", "key-app3", services=("redos",))
    a = operators("a")
    registry.operator("a", "IR-01", a.url, service="redos")
    caplog.set_level(logging.WARNING, logger="zistboom.gateway")
    gw = gateway()
    k = {"X-Api-Key": "key-app3"}
    # old regex matcher: [^/]+ x12 backtracks exponentially on this segment (the loop hangs)
    r = httpx.get(gw.url + "/v1/services/redos/r/" + "a" * 40, headers=k, timeout=10)
    assert_gateway_error(r, 404, "unknown_operation")
    r = httpx.get(gw.url + "/v1/services/redos/r/" + "a" * 40 + "!", headers=k, timeout=10)
    assert_gateway_error(r, 404, "unknown_operation")
    r = httpx.get(gw.url + "/v1/services/redos/items/" + "b" * 1000, headers=k, timeout=10)
    assert r.status_code == 200 and r.headers["x-zistboom-operator"] == "a"
    r = httpx.get(gw.url + "/v1/services/redos/files/v" + "7" * 1000 + ".json", headers=k, timeout=10)
    assert r.status_code == 200
    assert any("skipped" in rec.getMessage() and "{a}{b}" in rec.getMessage() for rec in caplog.records)


# ------------------------------------------------------------------------------ idempotency

def test_idempotency_fingerprint_includes_province_and_duplicate_keys(registry, operators, gateway):
    a = operators("a")
    registry.operator("a", "IR-01", a.url, provinces=("IR-01", "IR-02"))
    gw = gateway()
    post = lambda h: httpx.post(gw.url + PAY, content=b'{"amount":1}', headers={**KEY, **h}, timeout=10)  # noqa: E731
    r1 = post({"Idempotency-Key": "k-prov"})  # app1's own province: IR-01
    assert r1.status_code == 200
    assert post({"Idempotency-Key": "k-prov", "X-Caller-Province": "IR-01"}).headers.get("idempotent-replayed") == "true"
    assert_gateway_error(post({"Idempotency-Key": "k-prov", "X-Caller-Province": "IR-02"}), 422,
                         "idempotency_key_reused")
    n = a.count()
    r = httpx.post(gw.url + PAY, content=b"{}", headers=[(b"x-api-key", b"key-app1-secret"),
                                                          (b"idempotency-key", b"k-1"), (b"idempotency-key", b"k-2")],
                   timeout=10)
    assert_gateway_error(r, 400, "bad_idempotency_key")
    assert a.count() == n


# ------------------------------------------------------------------------------ receipts errors

def test_receipt_errors_in_gateway_format(registry, gateway, gw_db_url, tmp_path):
    from types import SimpleNamespace

    from zistboom.exchange_log.sink import make_sink

    sink = make_sink(gw_db_url, SimpleNamespace(var_dir=tmp_path / "var"), mode="thread")
    gw = gateway(sinks=[sink])
    r = httpx.get(gw.url + "/v1/receipts/no-such-id", headers={**KEY, "X-Request-Id": "rid-receipt-1"}, timeout=10)
    assert r.status_code == 404
    assert r.headers["x-zistboom-error"] == r.json()["error"]["code"]
    assert r.json()["error"]["request_id"] == "rid-receipt-1" == r.headers["x-request-id"]
    r = httpx.get(gw.url + "/v1/receipts/" + "x" * 300, headers=KEY, timeout=10)
    assert 400 <= r.status_code < 500 and r.headers["x-zistboom-error"] == r.json()["error"]["code"]
    assert r.json()["error"]["request_id"] == r.headers["x-request-id"]


# ------------------------------------------------------------------------------ X-Forwarded-For

def test_x_forwarded_for_dropped_unless_trusted(registry, operators, gateway):
    a = operators("a")
    registry.operator("a", "IR-01", a.url)
    spoof = {**KEY, "X-Forwarded-For": "203.0.113.9"}
    gw = gateway()
    assert httpx.get(gw.url + "/v1/services/fines/fines/1", headers=spoof, timeout=10).status_code == 200
    assert a.seen[-1][2]["X-Forwarded-For"] == "127.0.0.1"
    gw2 = gateway(cfg(trust_forwarded_for=True))
    assert httpx.get(gw2.url + "/v1/services/fines/fines/1", headers=spoof, timeout=10).status_code == 200
    assert a.seen[-1][2]["X-Forwarded-For"] == "203.0.113.9, 127.0.0.1"

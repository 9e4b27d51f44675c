"""End to end: the digests in a stored record are the ones either party computes from the messages
it sent or received (module docstring of ``zistboom.exchange_log.digest``), now that the gateway
ships the digest input and the writer process hashes it."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest
from gwharness import API_KEY, GatewayThread, OperatorServer, make_app, seed_registry

from zistboom.exchange_log.digest import request_digest, response_digest
from zistboom.exchange_log.record import DEFER_BODY_MAX
from zistboom.exchange_log.store import ExchangeLogStore


@pytest.fixture
def gateway(log_db_url, settings):
    op = OperatorServer().start()
    seed_registry(log_db_url, op.url)
    app, sinks = make_app(log_db_url, settings.var_dir, {"flush_interval_ms": 10})
    assert sinks[0].stats()["mode"] == "process"
    gw = GatewayThread(app).start()
    yield gw, sinks[0]
    gw.stop()
    op.stop()


@pytest.mark.parametrize("body", [b'{"plate": "12\xd8\xa8345"}', b"x" * (DEFER_BODY_MAX + 1)],
                         ids=["small body, hashed by the writer", "large body, hashed by the gateway"])
def test_stored_digests_match_what_client_and_operator_saw(gateway, log_db_url, body):
    gw, sink = gateway
    rid = "digest-e2e-" + str(len(body))
    headers = {"X-Api-Key": API_KEY, "Content-Type": "application/json", "X-Request-Id": rid,
               "Idempotency-Key": "k-" + rid, "X-Unsigned": "not in the digest"}
    # the seeded contract has one operation, GET /fines/{plate}; a GET may carry a body (RFC 9110 §9.3.1)
    r = httpx.request("GET", f"{gw.url}/v1/services/fines/fines/P-1", content=body, headers=headers)
    assert r.status_code == 200, r.text
    store = ExchangeLogStore(log_db_url)
    try:
        row, deadline = None, time.monotonic() + 10
        while row is None and time.monotonic() < deadline:  # emitted just after the response was sent
            assert sink.flush(30)
            row = store.find(rid)
        rec = orjson.loads(row["record"])
    finally:
        store.engine.dispose()
    # the client's side: what it sent (signed headers only, values stripped)
    assert rec["request_digest"] == request_digest(
        "GET", "/fines/P-1", [(b"content-type", b"application/json"), (b"x-request-id", rid.encode()),
                               (b"idempotency-key", ("k-" + rid).encode())], body)
    # ... and what it received
    assert rec["response_digest"] == response_digest(r.status_code, list(r.headers.raw), r.content)

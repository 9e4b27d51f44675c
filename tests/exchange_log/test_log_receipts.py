"""Receipts: made from the store, checked offline in a fresh process with no database, any single
changed byte rejected (hypothesis), served over real HTTP only to the client that made the exchange."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from logutil import fill_log, head_sizes

from zistboom.exchange_log import merkle
from zistboom.exchange_log.api import ReceiptASGI
from zistboom.exchange_log.keys import SignedTreeHead, key_path, load_or_create_signer, load_public_from_key_file
from zistboom.exchange_log.receipt import ReceiptError, dumps_receipt, verify_receipt_bytes
from zistboom.exchange_log.store import ExchangeLogStore, ReceiptPending

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable


@pytest.fixture
def log(log_db_url, settings):
    sink, exs = fill_log(log_db_url, settings.var_dir, 1500, clients=["tax-client", "health-client"],
                         sth_every_records=500, batch_max=250)
    store = ExchangeLogStore(log_db_url, public_key=load_public_from_key_file(key_path(settings.var_dir)))
    yield store, exs
    store.engine.dispose()


def test_receipt_roundtrip_and_consistency(log):
    store, exs = log
    for i in (0, 1, 255, 256, 511, 777, 1499):
        r = store.receipt(exs[i].request_id)
        assert r["leaf_index"] == i
        assert r["record"]["request_id"] == exs[i].request_id
        assert r["record"]["path"] == exs[i].path and "?" not in r["record"]["path"]
        rec = verify_receipt_bytes(dumps_receipt(r), store.public_key)
        assert rec["client_id"] == exs[i].client_id
    assert store.receipt("no-such-request") is None
    # Consistency between every pair of stored tree heads.
    heads = [store.sth_at(s) for s in head_sizes(store)]
    assert len(heads) >= 3 and heads[-1].tree_size == 1500
    for a in heads:
        for b in heads:
            if a.tree_size <= b.tree_size:
                merkle.verify_consistency(a.tree_size, b.tree_size, a.root_hash, b.root_hash,
                                          store.consistency_proof(a.tree_size, b.tree_size))


def test_receipt_saved_with_a_line_end_still_verifies_but_other_edits_do_not(log):
    store, exs = log
    data = dumps_receipt(store.receipt(exs[3].request_id))
    for ending in (b"\n", b"\r\n"):  # `zistboom log receipt ID > r.json` adds a newline
        assert verify_receipt_bytes(data + ending, store.public_key)["request_id"] == exs[3].request_id
    for bad in (data + b"\n\n", b" " + data, data + b" "):
        with pytest.raises(ReceiptError):
            verify_receipt_bytes(bad, store.public_key)


def test_receipt_pinned_key_mismatch(log, tmp_path):
    store, exs = log
    data = dumps_receipt(store.receipt(exs[3].request_id))
    other = load_or_create_signer(tmp_path / "other.key").public_key
    with pytest.raises(ReceiptError, match="pinned"):
        verify_receipt_bytes(data, other)


def test_receipt_for_client_only_own(log):
    store, exs = log
    ex = exs[10]
    assert store.receipt_for_client(ex.request_id, ex.client_id) is not None
    other = "health-client" if ex.client_id == "tax-client" else "tax-client"
    assert store.receipt_for_client(ex.request_id, other) is None
    assert store.receipt_for_client("unknown", ex.client_id) is None


def test_receipt_pending_before_tree_head(log_db_url, settings):
    sink, exs = fill_log(log_db_url, settings.var_dir, 10, close=False, sth_every_records=10**6,
                         sth_every_seconds=3600)
    try:
        with pytest.raises(ReceiptPending):
            sink.store.receipt_for_client(exs[0].request_id, exs[0].client_id)
    finally:
        sink.close()
    assert sink.store.receipt_for_client(exs[0].request_id, exs[0].client_id) is not None


def test_receipt_verifies_offline_in_fresh_process(log, tmp_path, settings):
    store, exs = log
    rfile = tmp_path / "receipt.json"
    pub = tmp_path / "log.pub"
    env = {**os.environ, "ZISTBOOM_VAR_DIR": str(settings.var_dir), "PYTHONPATH": str(REPO / "src")}
    # Made with the real CLI from the store…
    env_db = {**env, "ZISTBOOM_DATABASE_URL": store.engine.url.render_as_string(hide_password=False)}
    r = subprocess.run([PY, "-m", "zistboom", "log", "receipt", exs[42].request_id, "-o", str(rfile)],
                       env=env_db, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([PY, "-m", "zistboom", "log", "public-key", "-o", str(pub)], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    # …then the database is gone: the receipt still verifies, and the verifier never loads a DB layer.
    store.engine.dispose()
    url = store.engine.url.render_as_string(hide_password=False)
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).unlink()
    env_nodb = {**env, "ZISTBOOM_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"}
    code = ("import sys; from zistboom.exchange_log.receipt import main; rc = main(sys.argv[1:]); "
            "assert 'sqlalchemy' not in sys.modules, 'verifier imported sqlalchemy'; sys.exit(rc)")
    r = subprocess.run([PY, "-c", code, str(rfile), "--public-key", str(pub)], env=env_nodb, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert exs[42].request_id in r.stdout
    r = subprocess.run([PY, "-m", "zistboom", "log", "verify-receipt", str(rfile), "--public-key", str(pub)],
                       env=env_nodb, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    bad = bytearray(rfile.read_bytes())
    i = bad.index(b'"status":') + 9
    bad[i] = ord("5") if bad[i] != ord("5") else ord("4")
    rfile.write_bytes(bytes(bad))
    r = subprocess.run([PY, "-m", "zistboom", "log", "verify-receipt", str(rfile)], env=env_nodb,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "INVALID" in r.stderr


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_single_byte_change_of_a_receipt_fails(log, data):
    store, exs = log
    i = data.draw(st.sampled_from([0, 7, 600, 1499]), label="record")
    receipt = dumps_receipt(store.receipt(exs[i].request_id))
    verify_receipt_bytes(receipt, store.public_key)
    pos = data.draw(st.integers(0, len(receipt) - 1), label="pos")
    new = data.draw(st.integers(0, 255).filter(lambda b: b != receipt[pos]), label="byte")
    bad = receipt[:pos] + bytes([new]) + receipt[pos + 1:]
    with pytest.raises(ReceiptError):
        verify_receipt_bytes(bad)  # even without a pinned key


def test_sth_json_roundtrip(log):
    store, _ = log
    sth = store.latest_sth()
    again = SignedTreeHead.from_json(orjson.loads(orjson.dumps(sth.to_json())))
    assert again == sth
    again.verify(store.public_key)


# ------------------------------------------------------------------------------ HTTP API

class _Server:
    def __init__(self, app):
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, lifespan="off",
                                                    log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        end = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < end
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(5)


def test_http_receipt_endpoint(log):
    store, exs = log
    inner = ReceiptASGI(store)

    async def app(scope, receive, send):  # stands in for the gateway's authentication
        if scope["type"] == "http":
            key = dict(scope["headers"]).get(b"x-client")
            scope = {**scope, "state": {"client_id": key.decode() if key else None}}
        await inner(scope, receive, send)

    ex = exs[99]
    other = "health-client" if ex.client_id == "tax-client" else "tax-client"
    with _Server(app) as base:
        r = httpx.get(f"{base}/v1/receipts/{ex.request_id}", headers={"x-client": ex.client_id})
        assert r.status_code == 200
        verify_receipt_bytes(r.content, store.public_key)
        r2 = httpx.get(f"{base}/v1/receipts/{ex.request_id}", headers={"x-client": other})
        r3 = httpx.get(f"{base}/v1/receipts/not-a-real-id", headers={"x-client": other})
        assert r2.status_code == r3.status_code == 404
        assert r2.json() == r3.json()
        assert r2.json()["error"]["code"] == "receipt_not_found" and "شناسهٔ" in r2.json()["error"]["message_fa"]
        assert httpx.get(f"{base}/v1/receipts/{ex.request_id}").status_code == 401
        assert httpx.get(f"{base}/v1/receipts/bad%20id", headers={"x-client": other}).status_code == 400
        assert httpx.get(f"{base}/v1/receipts/{'x' * 129}", headers={"x-client": other}).status_code == 400


def test_same_request_id_from_two_clients(log_db_url, settings):
    """Clients may supply X-Request-ID; two clients using one id each get only their own receipt."""
    from types import SimpleNamespace

    from logutil import make_exchange

    from zistboom.exchange_log.sink import make_sink

    sink = make_sink(log_db_url, SimpleNamespace(var_dir=settings.var_dir), flush_interval_ms=5)
    sink.start()
    a, b = make_exchange(1, "client-a"), make_exchange(2, "client-b")
    a.request_id = b.request_id = "shared-id-1"
    sink.on_exchange(a)
    sink.on_exchange(b)
    assert sink.flush(60)
    sink.close()
    ra = sink.store.receipt_for_client("shared-id-1", "client-a")
    rb = sink.store.receipt_for_client("shared-id-1", "client-b")
    assert ra["record"]["client_id"] == "client-a" and rb["record"]["client_id"] == "client-b"
    assert sink.store.receipt_for_client("shared-id-1", "client-c") is None
    assert sink.store.receipt_for_client("shared-id-1", "") is None

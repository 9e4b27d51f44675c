"""The store fails for real during load (another process holds the database's write lock: SQLite
``BEGIN EXCLUSIVE`` / PostgreSQL ``LOCK TABLE … ACCESS EXCLUSIVE``). Every request through the real
gateway still succeeds, records spill to the local file, and after the lock is released they drain:
the log is complete and verifies. Also: a full spill file gives a signed gap record, never silence."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from types import SimpleNamespace

import pytest
from gwharness import GatewayThread, OperatorServer, load, make_app, seed_registry
from logutil import fill_log

from zistboom.exchange_log.keys import key_path, load_public_from_key_file
from zistboom.exchange_log.sink import make_sink
from zistboom.exchange_log.store import ExchangeLogStore
from zistboom.registry.db import make_engine


class StoreLock:
    """Hold the store's write lock from another connection (a real outage of the store)."""

    def __init__(self, db_url: str):
        self.db_url = db_url
        self.conn = None
        self.eng = None

    def __enter__(self):
        if self.db_url.startswith("sqlite:///"):
            self.conn = sqlite3.connect(self.db_url.removeprefix("sqlite:///"), isolation_level=None,
                                        check_same_thread=False)
            self.conn.execute("BEGIN EXCLUSIVE")
        else:
            from sqlalchemy import text

            self.eng = make_engine(self.db_url)
            self.conn = self.eng.connect()
            self.conn.execute(text("LOCK TABLE exchange_log_records IN ACCESS EXCLUSIVE MODE"))
        return self

    def __exit__(self, *exc):
        if self.eng is None:
            self.conn.execute("ROLLBACK")
            self.conn.close()
        else:
            self.conn.rollback()
            self.conn.close()
            self.eng.dispose()


@pytest.fixture
def gateway(log_db_url, settings):
    op = OperatorServer().start()
    seed_registry(log_db_url, op.url)
    app, sinks = make_app(log_db_url, settings.var_dir,
                          {"store_timeout_s": 0.3, "retry_interval_s": 0.3, "flush_interval_ms": 10})
    gw = GatewayThread(app).start()
    yield gw, sinks[0]
    gw.stop()
    op.stop()


def run_load(url, seconds, concurrency=8):
    return asyncio.run(load(url, seconds, concurrency))


def test_store_outage_under_load(gateway, log_db_url, settings):
    gw, sink = gateway
    before = run_load(gw.url, 0.7)
    assert sink.flush(10)
    stored_before = sink.stats()["records_stored"]
    with StoreLock(log_db_url):
        during = run_load(gw.url, 2.5)
        st = sink.stats()
        assert st["records_spilled"] > 0 and st["spilling"] and not st["store_ok"]
        assert st["store_failures"] >= 1
        # Spilled records are on disk, fsynced, while the store is still down.
        assert st["spill_bytes"] > 0 and sink.stats()["records_stored"] == stored_before
    after = run_load(gw.url, 0.7)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (sink.stats()["spilling"] or not sink.stats()["store_ok"]):
        time.sleep(0.05)
    st = sink.stats()
    assert not st["spilling"] and st["store_ok"] and st["records_drained"] >= len(during) // 2
    gw.stop()  # graceful: the sink writes out its queue and signs a final tree head
    results = before + during + after
    assert len(during) > 200
    assert all(status == 200 for _, status, _ in results), {s for _, s, _ in results}
    ids = {rid for rid, _, _ in results}
    assert len(ids) == len(results)
    store = ExchangeLogStore(log_db_url, public_key=load_public_from_key_file(key_path(settings.var_dir)))
    rep = store.verify(strict=True)
    assert rep.ok, rep.problems[:5]
    from sqlalchemy import text

    with store.engine.connect() as c:
        logged = {r[0] for r in c.execute(text("SELECT request_id FROM exchange_log_records WHERE kind='exchange'"))}
    assert ids <= logged  # complete: every answered request is in the log
    assert len(logged - ids) <= 2  # only the warm-up requests of the harness
    assert st["records_dropped"] == 0 and st["duplicates_skipped"] == 0
    ex_id = next(iter(ids))
    from zistboom.exchange_log.receipt import dumps_receipt, verify_receipt_bytes

    rec = verify_receipt_bytes(dumps_receipt(store.receipt_for_client(ex_id, "log-client")), store.public_key)
    assert rec["path"].startswith("/fines/") and "secret" not in rec["path"]
    store.engine.dispose()


def test_store_down_at_start_then_recovers(log_db_url, settings):
    """The writer starts while the store is locked: it spills from the first record."""
    with StoreLock(log_db_url):
        sink, exs = fill_log(log_db_url, settings.var_dir, 300, close=False, store_timeout_s=0.2,
                             retry_interval_s=0.2)
        assert sink.stats()["spilling"] and sink.stats()["records_spilled"] == 300
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and sink.stats()["spilling"]:
        time.sleep(0.05)
    sink.close()
    rep = sink.store.verify(strict=True)
    assert rep.ok and rep.records == 300


def test_spill_survives_restart_and_skips_duplicates(log_db_url, settings):
    """Records spilled by one writer are drained by the next one (the process died meanwhile)."""
    with StoreLock(log_db_url):
        sink, exs = fill_log(log_db_url, settings.var_dir, 200, close=False, store_timeout_s=0.2,
                             retry_interval_s=60, mode="thread")
        assert sink.stats()["spill_pending_records"] == 200
        sink._stop.set()  # stop the writer without draining (as if the process had died)
        sink._wake.set()
        sink._thread.join(10)
    # Simulate a crash after a drain committed but before the spill offset moved: pre-store 50.
    from zistboom.exchange_log.spill import SpillFile
    from zistboom.exchange_log.record import encode_exchange

    sink2 = make_sink(log_db_url, SimpleNamespace(var_dir=settings.var_dir), flush_interval_ms=5, mode="thread")
    sink2.start()
    assert sink2.wait_ready()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and sink2.stats()["spilling"]:
        time.sleep(0.05)
    sink2.close()
    st = sink2.stats()
    assert st["records_drained"] == 200
    rep = sink2.store.verify(strict=True)
    assert rep.ok and rep.records == 200
    # Replaying the same spill file again (offset lost) must not duplicate anything.
    spill = SpillFile(settings.var_dir / "exchange-log" / "spill.bin", 1 << 30)
    spill.append([encode_exchange(e) for e in exs[:50]])
    spill.close()
    sink3 = make_sink(log_db_url, SimpleNamespace(var_dir=settings.var_dir), flush_interval_ms=5, mode="thread")
    sink3.start()
    sink3.wait_ready()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and sink3.stats()["spilling"]:
        time.sleep(0.05)
    sink3.close()
    assert sink3.stats()["duplicates_skipped"] == 50
    assert sink3.store.verify(strict=True).records == 200


def test_spill_full_writes_signed_gap(log_db_url, settings):
    with StoreLock(log_db_url):
        sink, exs = fill_log(log_db_url, settings.var_dir, 400, close=False, store_timeout_s=0.2,
                             retry_interval_s=0.2, spill_max_bytes=60_000)
        st = sink.stats()
        assert st["spill_full"] and st["records_dropped"] > 0 and st["admits_traffic"]
        dropped = st["records_dropped"]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (sink.stats()["spilling"] or sink.stats()["gap_pending"]):
        time.sleep(0.05)
    sink.close()
    rep = sink.store.verify(strict=True)
    assert rep.ok
    from sqlalchemy import text
    import orjson

    with sink.store.engine.connect() as c:
        gaps = [orjson.loads(r[0]) for r in c.execute(text("SELECT record FROM exchange_log_records WHERE kind='gap'"))]
        n = c.execute(text("SELECT COUNT(*) FROM exchange_log_records WHERE kind='exchange'")).scalar()
    assert sum(g["dropped"] for g in gaps) == dropped
    assert gaps[0]["reasons"] == {"spill_full": dropped}
    assert n + dropped == 400


def test_fail_closed_policy(log_db_url, settings):
    with StoreLock(log_db_url):
        sink, _ = fill_log(log_db_url, settings.var_dir, 300, close=False, store_timeout_s=0.2,
                           retry_interval_s=0.2, spill_max_bytes=30_000, on_spill_full="fail_closed")
        assert not sink.admits_traffic() and not sink.stats()["admits_traffic"]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not sink.admits_traffic():
        time.sleep(0.05)
    assert sink.admits_traffic()
    sink.close()
    assert sink.store.verify(strict=True).ok


def test_queue_full_never_blocks_and_is_visible(log_db_url, settings):
    """A burst far above the queue bound: on_exchange stays fast, drops are counted and signed."""
    from logutil import make_exchange

    sink = make_sink(log_db_url, SimpleNamespace(var_dir=settings.var_dir), queue_max=500, flush_interval_ms=50)
    sink.start()
    sink.wait_ready()
    exs = [make_exchange(i) for i in range(5000)]
    worst = 0.0
    for ex in exs:
        t = time.perf_counter()
        sink.on_exchange(ex)
        worst = max(worst, time.perf_counter() - t)
    assert sink.flush(20)
    sink.close()
    st = sink.stats()
    assert st["records_dropped"] > 0
    assert worst < 0.05  # generous: a blocking call would take the store's time, not microseconds
    rep = sink.store.verify(strict=True)
    assert rep.ok
    assert rep.records == 5000 - st["records_dropped"] + st["gap_records"]

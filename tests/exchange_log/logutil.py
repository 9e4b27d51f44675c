"""Helpers shared by the exchange-log tests (importable as ``logutil``)."""

from __future__ import annotations

import random
import time
import uuid
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from sqlalchemy import text

from zistboom.gateway.events import Attempt, Exchange

from zistboom.exchange_log.sink import make_sink
from zistboom.registry.db import make_engine


_T0 = datetime(2026, 3, 20, 12, 0, tzinfo=timezone.utc)


def make_exchange(i: int, client: str | None = None, *, body: bool = False) -> Exchange:
    rnd = random.Random(i)
    ops = ["op-a", "op-b", "op-c"]
    attempts = [Attempt(rnd.choice(ops), "ok", 200, rnd.random() * 50)]
    if i % 7 == 0:
        attempts.insert(0, Attempt("op-x", "timeout", None, 1000.0))
    return Exchange(
        request_id=f"req-{i}-{uuid.uuid4().hex[:8]}",
        time=_T0 + timedelta(microseconds=i * 1237),
        client_id=client or f"client-{i % 5}",
        service_id="tax.income",
        operation="getAssessment",
        operator_id=attempts[-1].operator_id,
        caller_province="IR-23",
        method="GET",
        path=f"/v1/tax/assessments/{i}",
        status=200,
        latency_ms=rnd.random() * 80,
        attempts=attempts,
        request_digest=f"{i:064x}",
        response_digest=f"{i * 3:064x}",
        request_body=b'{"q": 1}' if body else None,
        response_body=("پاسخ " + str(i)).encode() if body else None,
    )


def fill_log(db_url: str, var_dir, n: int, *, clients=None, close=True, start_index=0, **cfg):
    """Write ``n`` exchanges through a real sink; returns (sink, exchanges)."""
    cfg.setdefault("flush_interval_ms", 5)
    sink = make_sink(db_url, SimpleNamespace(var_dir=var_dir), **cfg)
    sink.start()
    assert sink.wait_ready()
    exs = [make_exchange(i, (clients[i % len(clients)] if clients else None))
           for i in range(start_index, start_index + n)]
    for i, ex in enumerate(exs):
        sink.on_exchange(ex)
        if i % 500 == 499:
            time.sleep(0.002)
    assert sink.flush(30)
    if close:
        sink.close()
    return sink, exs


def sql(db_url: str, *statements: tuple[str, dict] | str) -> list:
    """Run raw SQL on the store (the tamperer's tool); returns the rows of the last statement."""
    eng = make_engine(db_url)
    out = []
    try:
        with eng.begin() as c:
            for st in statements:
                q, params = (st, {}) if isinstance(st, str) else st
                res = c.execute(text(q), params)
                out = res.all() if res.returns_rows else []
    finally:
        eng.dispose()
    return out


def head_sizes(store) -> list[int]:
    """Sizes of the stored signed tree heads, ascending (batching decides them; tests must not guess)."""
    return [int(r[0]) for r in sql(store.engine.url.render_as_string(hide_password=False),
                                   "SELECT tree_size FROM exchange_log_tree_heads ORDER BY tree_size")]


def first_head_after(store, seq: int) -> int:
    return min(s for s in head_sizes(store) if s > seq)

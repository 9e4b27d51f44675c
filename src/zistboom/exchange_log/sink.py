"""The exchange-log sink the gateway feeds: a bounded in-memory queue and one writer thread that
appends records to the store in batches, builds the Merkle tree and signs tree heads.

:func:`make_sink` gives, by default, the process variant
(:class:`zistboom.exchange_log.writer_proc.ProcessExchangeLogSink`): the same writer running in a
child process, fed through a pipe, so its CPU never holds the gateway's GIL.

Never blocks traffic:

* ``on_exchange`` only appends the :class:`~zistboom.gateway.events.Exchange` to a bounded
  ``deque`` (about a microsecond, no lock, no I/O, never raises). When the queue is full the
  exchange is counted as dropped and a signed *gap* record is written later.
* The writer thread takes up to ``batch_max`` exchanges every ``flush_interval_ms``, encodes them
  (canonical bytes, leaf hash) and inserts them in one transaction together with new cached
  interior nodes and, every ``sth_every_records`` records or ``sth_every_seconds`` seconds
  (whichever first), a signed tree head.
* If the store fails (any database error, including a busy/locked SQLite file or a closed
  PostgreSQL port after ``store_timeout_s``) or is slow (queue above ``high_water`` of its size),
  batches go to the append-only spill file (fsync per batch). While the spill file holds records
  every new batch goes there too (order is kept) and the writer retries the store every
  ``retry_interval_s``, draining the spill file in order when it is back.
* If the spill file is full (``spill_max_bytes``): ``on_spill_full="gap"`` (default) keeps serving,
  counts the lost records and writes a signed gap record as soon as it can;
  ``"fail_closed"`` does the same but :meth:`ExchangeLogSink.admits_traffic` turns False so the
  gateway can refuse requests (X-Road's behaviour) until there is room again.

Durability window: a record is in the store or the fsynced spill file at most
``flush_interval_ms`` + the time of one batch write after ``on_exchange`` returned, as long as the
writer keeps up (default settings: documented as 250 ms; see docs/exchange-log.md for the measured
figure). Only one writer may append to a store at a time.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import orjson
from sqlalchemy import text

from zistboom.exchange_log import merkle
from zistboom.exchange_log.keys import LogSigner, key_path, load_or_create_signer
from zistboom.exchange_log.models import NODE_MIN_LEVEL, LogKey
from zistboom.exchange_log.record import (DEFER_BODY_MAX, Encoded, encode_gap, encode_queued, from_us, queued_request_id,
                                          queued_time_us)
from zistboom.exchange_log.spill import SpillFile
from zistboom.exchange_log.store import ExchangeLogStore
from zistboom.gateway.events import Exchange, ProbeResult
from zistboom.registry.db import make_engine

log = logging.getLogger(__name__)

DURABILITY_WINDOW_MS = 250


@dataclass
class ExchangeLogConfig:
    """Tuning of the sink; every figure is a default that can be overridden in ``make_sink``.

    Units: counts, milliseconds (``_ms``), seconds (``_s``), bytes (``_bytes``).
    ``ship_interval_ms`` is how often the gateway side of the process mode ships its queue to the
    writer process (fewer, larger shipments cost the gateway less CPU per record).
    """

    var_dir: Path = Path("var")
    queue_max: int = 50_000
    batch_max: int = 2_000
    flush_interval_ms: float = 20.0
    sth_every_records: int = 1_000
    sth_every_seconds: float = 1.0
    spill_max_bytes: int = 256 * 1024 * 1024
    on_spill_full: str = "gap"
    retry_interval_s: float = 1.0
    store_timeout_s: float = 2.0
    high_water: float = 0.5
    ship_interval_ms: float = 50.0
    key_file: Path | None = None
    spill_file: Path | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.on_spill_full not in ("gap", "fail_closed"):
            raise ValueError("on_spill_full must be 'gap' or 'fail_closed'")
        self.var_dir = Path(self.var_dir)
        if self.key_file is None:
            self.key_file = key_path(self.var_dir)
        if self.spill_file is None:
            self.spill_file = self.var_dir / "exchange-log" / "spill.bin"


class ExchangeLogSink:
    """Gateway sink writing the signed, hash-chained exchange log (see module docstring)."""

    def __init__(self, db_url: str, config: ExchangeLogConfig):
        self.db_url = db_url
        self.cfg = config
        self._q: deque[Exchange] = deque()
        self._qmax = config.queue_max
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._gap_lock = threading.Lock()
        self._gap_n = 0
        self._gap_first: datetime | None = None
        self._gap_last: datetime | None = None
        self._gap_reasons: Counter = Counter()
        self._signer: LogSigner | None = None
        self._spill: SpillFile | None = None
        self._engine = None
        self._store_ok = False  # the last write to the store succeeded
        self._state_ok = False  # the in-memory tree matches the store (reloaded after any failure)
        self._next_retry = 0.0
        self._frontier = merkle.Frontier()
        self._last_sth_size = 0
        self._last_sth_mono = time.monotonic()
        self._spill_full = False
        self._started = False
        self._ready = threading.Event()
        self.counters = Counter()
        self.last_error: str | None = None
        self.writer_cpu_s = 0.0
        self.store = ExchangeLogStore(db_url, sth_every_seconds=config.sth_every_seconds)

    # -- gateway side (event loop): must be microseconds, never raise --------------------------

    def on_exchange(self, exchange: Exchange) -> None:
        """Queue one finished exchange; drops it (counted, later a signed gap record) when full."""
        try:
            q = self._q
            if len(q) < self._qmax:
                d_in = exchange.digest_input
                if d_in is not None and len(d_in[3]) + len(d_in[6]) > DEFER_BODY_MAX:
                    exchange.digests()  # do not keep large bodies alive in the queue
                q.append(exchange)
                if len(q) >= self.cfg.batch_max and not self._wake.is_set():
                    self._wake.set()
            else:
                self._note_dropped(1, "queue_full", exchange.time)
        except Exception:  # pragma: no cover - defensive: the gateway must never see an error
            pass

    def on_packed(self, packed: list[tuple | bytes]) -> None:
        """Queue exchanges already in :func:`~zistboom.exchange_log.record.pack_exchange` form, as
        tuples, as their ``marshal`` bytes or in native form (any form of
        :func:`~zistboom.exchange_log.record.encode_queued`; the writer process queues the bytes it receives and
        unmarshals each just before encoding it: ~20 GC-tracked containers per record waiting in
        the queue made the cyclic GC the largest single cost of the writer process); those over
        the queue's room are dropped and counted."""
        q = self._q
        room = self._qmax - len(q)
        if room >= len(packed):
            q.extend(packed)
            return
        if room > 0:
            q.extend(packed[:room])
        rest = packed[max(room, 0):]
        self._note_dropped(len(rest), "queue_full", from_us(queued_time_us(rest[0])), from_us(queued_time_us(rest[-1])))

    def on_probe(self, probe: ProbeResult) -> None:
        """Health checks are not logged here (monitoring keeps them)."""

    def admits_traffic(self) -> bool:
        """False only with ``on_spill_full='fail_closed'`` while the spill file is full and the
        store is unreachable; the gateway should then answer 503."""
        return not (self.cfg.on_spill_full == "fail_closed" and self._spill_full)

    def _note_dropped(self, n: int, reason: str, when: datetime | None, last: datetime | None = None) -> None:
        when = when or datetime.now(timezone.utc)
        with self._gap_lock:
            if self._gap_n == 0:
                self._gap_first = when
            self._gap_n += n
            self._gap_last = last or when
            self._gap_reasons[reason] += n
        self.counters["dropped"] += n

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Load (or make) the signing key, open the spill file and start the writer thread.
        Idempotent. Does not wait for the store: a store that is down at start just means spilling.
        """
        if self._started:
            return
        self._started = True
        self._signer = load_or_create_signer(self.cfg.key_file)
        url = self.db_url
        if url.startswith("sqlite"):
            ca = {"check_same_thread": False, "timeout": self.cfg.store_timeout_s}
        else:
            from sqlalchemy.engine import make_url

            # Keep options already in the URL (e.g. -csearch_path=...) and add a statement timeout.
            opts = make_url(url).query.get("options", "")
            opts = " ".join(opts) if isinstance(opts, tuple) else opts
            ca = {"connect_timeout": max(1, int(self.cfg.store_timeout_s)),
                  "options": f"{opts} -c statement_timeout={int(self.cfg.store_timeout_s * 1000)}".strip()}
        self._engine = make_engine(url, connect_args=ca)
        self._thread = threading.Thread(target=self._run, name="exchange-log-writer", daemon=True)
        self._thread.start()

    def wait_ready(self, timeout: float = 10.0) -> bool:
        """Block until the writer has tried the store once (tests and tools)."""
        return self._ready.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Write out the queue, drain the spill file if the store is up, sign a final tree head
        and stop the writer. Blocks up to ``timeout`` seconds (call from a thread in async code,
        or use :meth:`aclose`)."""
        if not self._started:
            return
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.store.engine.dispose()

    async def aclose(self) -> None:
        import asyncio

        await asyncio.to_thread(self.close)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until the queue is empty and the writer is idle (tests/tools). True on success."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not self._q and self.counters["busy"] == 0:
                self._wake.set()
                time.sleep(self.cfg.flush_interval_ms / 1000 * 2)
                if not self._q and self.counters["busy"] == 0:
                    return True
            self._wake.set()
            time.sleep(0.005)
        return False

    def stats(self) -> dict:
        """Monitoring figures: queue depth, spill state, store state, counters (all plain JSON)."""
        sp = self._spill
        c = self.counters
        return {
            "queue_depth": len(self._q),
            "queue_max": self._qmax,
            "store_ok": self._store_ok,
            "spilling": bool(sp and sp.pending),
            "spill_bytes": sp.size if sp else 0,
            "spill_max_bytes": self.cfg.spill_max_bytes,
            "spill_pending_records": sp.pending_records if sp else 0,
            "spill_full": self._spill_full,
            "admits_traffic": self.admits_traffic(),
            "records_stored": c["stored"],
            "records_spilled": c["spilled"],
            "records_drained": c["drained"],
            "records_dropped": c["dropped"],
            "duplicates_skipped": c["duplicates"],
            "gap_records": c["gaps"],
            "gap_pending": self._gap_n,
            "store_failures": c["store_failures"],
            "batches": c["batches"],
            "tree_size": self._frontier.size,
            "signed_tree_size": self._last_sth_size,
            "tree_heads_signed": c["sths"],
            "seconds_since_tree_head": round(time.monotonic() - self._last_sth_mono, 3),
            "last_error": self.last_error,
            "writer_alive": bool(self._thread and self._thread.is_alive()),
            "writer_cpu_s": round(self.writer_cpu_s, 3),
            "durability_window_ms": DURABILITY_WINDOW_MS,
            "mode": "thread",  # the process writer's parent reports "process"
        }

    # -- writer thread ---------------------------------------------------------------------------

    def _lock_writer(self) -> None:
        """One writer per var_dir: an exclusive ``flock`` on ``exchange-log/writer.lock``, held for
        the writer's life (released by the kernel if the process dies). A new writer started while
        an old one is still draining (e.g. right after a gateway restart) waits here; the gateway
        keeps queueing meanwhile."""
        import fcntl

        path = Path(self.cfg.spill_file).with_name("writer.lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)

    def _run(self) -> None:
        cfg = self.cfg
        interval = cfg.flush_interval_ms / 1000.0
        self._lock_writer()
        self._spill = SpillFile(cfg.spill_file, cfg.spill_max_bytes)
        self._store_ok = self._try_store()
        self._ready.set()
        while True:
            stopping = self._stop.is_set()
            try:
                self.counters["busy"] = 1
                self._step()
                if self._spill.pending and (self._store_ok or time.monotonic() >= self._next_retry):
                    if len(self._q) < cfg.batch_max or stopping:
                        self._drain_some()
                self._maybe_timed_sth()
            except Exception as e:  # the writer must survive anything; log and go on
                self.last_error = f"{type(e).__name__}: {e}"
                log.exception("exchange-log writer step failed")
                time.sleep(interval)
            finally:
                self.counters["busy"] = 0
            if stopping and not self._q:
                if self._spill.pending and self._store_ok:
                    continue  # keep draining while the store answers
                self._final_sth()
                break
            self.writer_cpu_s = time.thread_time()
            if len(self._q) < cfg.batch_max and not stopping:
                self._wake.wait(interval)
                self._wake.clear()
        self._spill.close()
        self._engine.dispose()
        os.close(self._lock_fd)  # releases the writer lock

    def _take(self) -> list[Exchange]:
        q = self._q
        n = min(len(q), self.cfg.batch_max)
        pop = q.popleft
        return [pop() for _ in range(n)]

    def _step(self) -> None:
        batch = self._take()
        items: list[Encoded] = []
        if self._gap_n and (self._store_ok or not self._spill_full):
            with self._gap_lock:
                n, first, last, reasons = self._gap_n, self._gap_first, self._gap_last, dict(self._gap_reasons)
                self._gap_n = 0
                self._gap_reasons.clear()
            items.append(encode_gap(n, first, last, reasons, datetime.now(timezone.utc)))
            self.counters["gaps"] += 1
        for ex in batch:
            try:
                items.append(encode_queued(ex))
            except Exception as e:  # malformed exchange: count it so the loss is visible
                rid = queued_request_id(ex)
                self.last_error = f"bad exchange {rid}: {e}"
                self._note_dropped(1, "unencodable", None)
        if not items:
            return
        backlog = len(self._q) > self.cfg.high_water * self._qmax
        if self._spill.pending or not (self._store_ok and self._state_ok) or backlog:
            self._to_spill(items)
            return
        try:
            self._append_db(items, source="stored")
        except Exception as e:
            self._store_failed(e)
            self._to_spill(items)

    def _to_spill(self, items: list[Encoded]) -> None:
        written = self._spill.append(items)
        self.counters["spilled"] += written
        if written < len(items):
            lost = items[written:]
            self._spill_full = True
            # Gap records are re-queued in the pending gap rather than lost.
            real = [it for it in lost if it.kind != "gap"]
            for it in lost:
                if it.kind == "gap":
                    rec = orjson.loads(it.record)
                    self._note_dropped(rec["dropped"], "spill_full", None)
                    self.counters["dropped"] -= rec["dropped"]
                    self.counters["gaps"] -= 1
            if real:
                self._note_dropped(len(real), "spill_full", None)
        else:
            self._spill_full = False

    def _store_failed(self, e: Exception) -> None:
        self._store_ok = False
        self._state_ok = False  # a failed commit may or may not have landed: reload before writing
        self.counters["store_failures"] += 1
        self.last_error = f"store: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
        self._next_retry = time.monotonic() + self.cfg.retry_interval_s
        log.warning("exchange-log store failed, spilling: %s", self.last_error)

    def _try_store(self) -> bool:
        """(Re)load the tree state from the store; True when the store answers reads (writes may
        still fail: ``_store_ok`` only turns True after a successful write)."""
        try:
            self._load_state()
            self._state_ok = True
            return True
        except Exception as e:
            self._store_failed(e)
            return False

    def _load_state(self) -> None:
        signer = self._signer
        with self._engine.begin() as c:
            size = c.execute(text("SELECT COALESCE(MAX(seq) + 1, 0) FROM exchange_log_records")).scalar_one()
            row = c.execute(text("SELECT tree_size, frontier FROM exchange_log_tree_heads "
                                 "ORDER BY tree_size DESC LIMIT 1")).first()
            if row is not None and row[0] <= size:
                f = merkle.Frontier.from_bytes(int(row[0]), bytes(row[1]))
                self._last_sth_size = int(row[0])
            else:
                f = merkle.Frontier()
                self._last_sth_size = int(row[0]) if row is not None else 0
            for (h,) in c.execute(text("SELECT leaf_hash FROM exchange_log_records WHERE seq >= :s ORDER BY seq"),
                                  {"s": f.size}):
                f.append(bytes(h))
            have = c.execute(text("SELECT 1 FROM exchange_log_keys WHERE key_id = :k"), {"k": signer.key_id}).first()
            if have is None:
                c.execute(LogKey.__table__.insert().values(key_id=signer.key_id, public_key=signer.public_raw,
                                                           created_at=datetime.now(timezone.utc)))
        self._frontier = f

    def _append_db(self, items: list[Encoded], source: str) -> None:
        f = self._frontier.copy()
        base = f.size
        rows = []
        nodes = []
        append = f.append
        for i, it in enumerate(items):
            made = append(it.leaf_hash, NODE_MIN_LEVEL)
            rows.append((base + i, it.request_id, it.client_id, it.time_us, it.kind, it.record, it.leaf_hash,
                         it.request_body, it.response_body))
            if made:
                nodes.extend(made)
        ph = "?" if self._engine.dialect.paramstyle == "qmark" else "%s"
        sth = None
        now = time.monotonic()
        if f.size - self._last_sth_size >= self.cfg.sth_every_records or (
                now - self._last_sth_mono >= self.cfg.sth_every_seconds):
            sth = self._signer.sign(f.size, int(time.time() * 1000), f.root())
        with self._engine.begin() as c:
            c.exec_driver_sql(
                "INSERT INTO exchange_log_records (seq, request_id, client_id, time_us, kind, record, leaf_hash, "
                f"request_body, response_body) VALUES ({', '.join([ph] * 9)})", rows)
            if nodes:
                c.exec_driver_sql(f"INSERT INTO exchange_log_nodes (level, idx, hash) VALUES ({ph}, {ph}, {ph})", nodes)
            if sth is not None:
                self._insert_sth(c, sth, f, ph)
        self._frontier = f
        self._store_ok = True
        self.counters[source] += len(items)
        self.counters["batches"] += 1
        if sth is not None:
            self._sth_done(sth)

    def _insert_sth(self, c, sth, f: merkle.Frontier, ph: str) -> None:
        c.exec_driver_sql(
            "INSERT INTO exchange_log_tree_heads (tree_size, timestamp_ms, root_hash, signature, key_id, frontier) "
            f"VALUES ({', '.join([ph] * 6)})",
            (sth.tree_size, sth.timestamp_ms, sth.root_hash, sth.signature, sth.key_id, f.to_bytes()))

    def _sth_done(self, sth) -> None:
        self._last_sth_size = sth.tree_size
        self._last_sth_mono = time.monotonic()
        self.counters["sths"] += 1

    def _sign_now(self) -> None:
        f = self._frontier
        sth = self._signer.sign(f.size, int(time.time() * 1000), f.root())
        ph = "?" if self._engine.dialect.paramstyle == "qmark" else "%s"
        with self._engine.begin() as c:
            self._insert_sth(c, sth, f, ph)
        self._store_ok = True
        self._sth_done(sth)

    def _maybe_timed_sth(self) -> None:
        if (self._store_ok and self._state_ok and self._frontier.size > self._last_sth_size
                and time.monotonic() - self._last_sth_mono >= self.cfg.sth_every_seconds):
            try:
                self._sign_now()
            except Exception as e:
                self._store_failed(e)

    def _final_sth(self) -> None:
        if self._store_ok and self._state_ok and self._frontier.size > self._last_sth_size:
            try:
                self._sign_now()
            except Exception as e:
                self._store_failed(e)

    def _drain_some(self) -> None:
        """Move one chunk of the spill file into the store (in order, skipping records the store
        already has — possible after a crash or an unknown commit outcome)."""
        if not self._state_ok:
            if not self._try_store():
                return
        frames, new_offset = self._spill.read(self.cfg.batch_max)
        if not frames:
            return
        items = []
        for rec, rq, rs in frames:
            obj = orjson.loads(rec)
            from zistboom.exchange_log.record import iso_to_us  # local: drain is rare

            items.append(Encoded(rec, merkle.leaf_hash(rec), obj["request_id"], obj.get("client_id"),
                                 iso_to_us(obj["time"]), obj["kind"], rq, rs))
        try:
            items = self._skip_stored(items)
            if items:
                self._append_db(items, source="drained")
        except Exception as e:
            self._store_failed(e)
            return
        self._spill.consume(new_offset, len(frames))
        if not self._spill.pending:
            self._spill_full = False

    def _skip_stored(self, items: list[Encoded]) -> list[Encoded]:
        from sqlalchemy import bindparam

        q = text("SELECT request_id, leaf_hash FROM exchange_log_records WHERE request_id IN :ids").bindparams(
            bindparam("ids", expanding=True))
        have = set()
        ids = [it.request_id for it in items]
        with self._engine.connect() as c:
            for i in range(0, len(ids), 500):
                have.update((r, bytes(h)) for r, h in c.execute(q, {"ids": ids[i : i + 500]}))
        if not have:
            return items
        out = [it for it in items if (it.request_id, it.leaf_hash) not in have]
        self.counters["duplicates"] += len(items) - len(out)
        return out


def make_sink(db_url: str, settings=None, *, mode: str = "process", **overrides):
    """The gateway's exchange-log sink for the store at ``db_url``; key and spill file live under
    ``settings.var_dir/exchange-log/``. ``overrides`` set :class:`ExchangeLogConfig` fields.

    ``mode="process"`` (default): the writer runs in a child process
    (:mod:`zistboom.exchange_log.writer_proc`) so encoding, hashing, SQL and signing never hold the
    gateway's GIL; the gateway side only queues and ships compact tuples. ``mode="thread"``: the
    writer is a thread of this process (:class:`ExchangeLogSink`). Both have the same interface:
    ``on_exchange``, ``on_probe``, ``start``, ``close``, ``flush``, ``stats``, ``admits_traffic``,
    ``store``. Call ``start()`` before traffic (``on_exchange`` before that only queues) and
    ``close()`` at shutdown.
    """
    if settings is None:
        from zistboom.config import get_settings

        settings = get_settings()
    cfg = ExchangeLogConfig(var_dir=Path(settings.var_dir), **overrides)
    if mode == "thread":
        return ExchangeLogSink(db_url, cfg)
    if mode == "process":
        from zistboom.exchange_log.writer_proc import ProcessExchangeLogSink

        return ProcessExchangeLogSink(db_url, cfg)
    raise ValueError("mode must be 'process' or 'thread'")

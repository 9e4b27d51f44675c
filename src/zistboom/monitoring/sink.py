"""The monitoring sink: receives the gateway's exchanges and probe results, aggregates them in memory
into per-minute buckets and writes them to the database from a background thread.

``on_exchange`` / ``on_probe`` run on the gateway's event loop: they do dictionary updates under a
lock held for microseconds, never I/O, and never raise (a bad event is counted in ``dropped``).

Probe time accounting (sample-and-hold): a probe's verdict (up/down) holds from its ``time`` until
the next probe of that operator, if the next one comes within ``max_gap`` (= ``max_gap_factor *
probe_interval``); after a longer gap the verdict holds for one ``probe_interval`` only and the rest
of the gap is unknown. So an operator down between probes at t and t+90 s (probe interval 10 s)
gets exactly 90 s of downtime, and a monitor that stops for 10 minutes leaves 10 minutes of
*unknown*, not downtime. The monitor also writes a heartbeat row per minute it is alive.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, update
from sqlalchemy.orm import Session, sessionmaker

from zistboom.gateway.events import Exchange, ProbeResult
from zistboom.monitoring.availability import floor_minute
from zistboom.monitoring.models import (
    MonitorHeartbeat,
    MonitorInstance,
    OperatorHealth,
    ProbeMinute,
    RequestMinute,
)
from zistboom.monitoring.settings import MonitorSettings
from zistboom.registry.db import make_engine, make_sessionmaker, utcnow

log = logging.getLogger("zistboom.monitoring")
_MINUTE = timedelta(minutes=1)


@dataclass(slots=True)
class _OpState:
    last_time: datetime | None = None
    last_ok: bool = True
    closed: bool = True
    healthy: bool | None = None
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    last_change_at: datetime | None = None
    last_status: int | None = None
    last_error: str | None = None
    latency_ms: float = 0.0
    dirty: bool = False


@dataclass(frozen=True, slots=True)
class HealthView:
    """Live health verdict of one operator as the sink sees it."""

    healthy: bool
    last_probe_at: datetime


def upsert_add(session: Session, table, rows: list[dict], keys: list[str], add: list[str]) -> None:
    """``INSERT … ON CONFLICT (keys) DO UPDATE SET c = c + excluded.c`` for SQLite and PostgreSQL;
    a read-then-write fallback for other dialects."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        stmt = insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=keys, set_={c: table.c[c] + getattr(stmt.excluded, c) for c in add}
        )
        session.execute(stmt, rows)
        return
    for row in rows:  # pragma: no cover - other databases
        cond = [table.c[k] == row[k] for k in keys]
        res = session.execute(update(table).where(*cond).values({c: table.c[c] + row[c] for c in add}))
        if res.rowcount == 0:
            session.execute(table.insert().values(**row))


class MonitoringSink:
    """An :class:`~zistboom.gateway.events.ExchangeSink` that measures availability.

    Args:
        session_factory: SQLAlchemy sessionmaker for the product database.
        settings: :class:`MonitorSettings`.
        clock: returns aware UTC now (injectable for tests).
        evaluator: optional :class:`~zistboom.monitoring.evaluator.Evaluator` run by the background
            thread every ``probe_interval`` (incidents) / ``slo_interval`` (burn rates, sanctions)
            and at once when an operator's health verdict changes.
    """

    def __init__(self, session_factory: sessionmaker[Session], settings: MonitorSettings | None = None,
                 *, clock: Callable[[], datetime] = utcnow, evaluator: Any = None,
                 engine: Engine | None = None, instance_id: str | None = None):
        self.session_factory = session_factory
        self.settings = settings or MonitorSettings()
        self.clock = clock
        self.evaluator = evaluator
        self.instance_id = instance_id or f"{socket.gethostname()[:30]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.dropped = 0
        self.clock_steps = 0  # probes that restarted an operator's timeline after the clock stepped back
        self.flush_errors = 0
        self.last_flush_at: datetime | None = None
        self._engine = engine
        self._lock = threading.Lock()
        self._req: dict[tuple, list] = {}
        self._probe: dict[tuple, list] = {}
        self._beats: dict[datetime, int] = {}
        self._ops: dict[str, _OpState] = {}
        self._last_probe_at: datetime | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_incident_eval = 0.0
        self._last_slo_eval = 0.0
        self._registered = False

    # ------------------------------------------------------------------ event-loop side (O(1))

    def on_exchange(self, ex: Exchange) -> None:
        """Count one finished client request (service level) and its attempts (operator level)."""
        try:
            if not ex.service_id:
                return
            minute = floor_minute(ex.time)
            prov = ex.caller_province or ""
            svc = ex.service_id
            with self._lock:
                if len(self._req) > self.settings.max_pending_keys:
                    self.dropped += 1
                    return
                if not (ex.gateway_error and ex.status < 500):
                    self._count(self._req, (minute, svc, "", prov), ex.status < 500, ex.latency_ms)
                if ex.attempts:
                    for a in ex.attempts:
                        self._count(self._req, (minute, svc, a.operator_id, prov), a.outcome == "ok", a.latency_ms)
                elif ex.operator_id:
                    self._count(self._req, (minute, svc, ex.operator_id, prov), ex.status < 500, ex.latency_ms)
        except Exception:  # never raise into the gateway
            self.dropped += 1

    @staticmethod
    def _count(d: dict, key: tuple, good: bool, latency: float) -> None:
        c = d.get(key)
        if c is None:
            d[key] = [1, 1 if good else 0, float(latency or 0.0)]
        else:
            c[0] += 1
            c[1] += 1 if good else 0
            c[2] += float(latency or 0.0)

    def on_probe(self, p: ProbeResult) -> None:
        """Account the time since this operator's previous probe and update its health verdict."""
        try:
            s = self.settings
            with self._lock:
                st = self._ops.get(p.operator_id)
                if st is None:
                    st = self._ops[p.operator_id] = _OpState()
                if st.last_time is not None and p.time <= st.last_time:
                    if st.last_time <= utcnow() + timedelta(seconds=s.max_gap):
                        return  # out of order: the interval is already accounted
                    # The previous probe is stamped ahead of the wall clock: the clock was stepped
                    # back (NTP correcting a jump forward). Start this operator's timeline again
                    # from this probe; ignoring every probe until the wall clock caught up with
                    # the bad stamp hid a whole outage (no down time, no verdict change).
                    st.closed = True
                    self.clock_steps += 1
                if st.last_time is not None and not st.closed:
                    gap = (p.time - st.last_time).total_seconds()
                    span = gap if gap <= s.max_gap else s.probe_interval
                    self._attribute(p.operator_id, st.last_time, span, st.last_ok)
                pk = (floor_minute(p.time), p.operator_id)
                c = self._probe.get(pk)
                if c is None:
                    c = self._probe[pk] = [0.0, 0.0, 0, 0]
                c[2] += 1
                c[3] += 0 if p.ok else 1
                st.last_time, st.last_ok, st.closed = p.time, bool(p.ok), False
                st.last_status, st.last_error, st.latency_ms = p.status, (p.error or None), float(p.latency_ms or 0)
                if p.ok:
                    st.consecutive_successes += 1
                    st.consecutive_failures = 0
                else:
                    st.consecutive_failures += 1
                    st.consecutive_successes = 0
                before = st.healthy
                if p.ok:
                    if before is None or st.consecutive_successes >= s.healthy_threshold:
                        st.healthy = True
                elif before is None or st.consecutive_failures >= s.unhealthy_threshold:
                    st.healthy = False
                changed = st.healthy != before
                if changed:
                    st.last_change_at = p.time
                st.dirty = True
                self._last_probe_at = p.time
            if changed:
                self._wake.set()  # evaluate incidents now, not at the next tick
        except Exception:
            self.dropped += 1

    def _attribute(self, operator_id: str, start: datetime, span: float, up: bool) -> None:
        """Add ``span`` seconds from ``start`` as up or down, split at minute boundaries."""
        t = start
        remaining = span
        idx = 0 if up else 1
        while remaining > 1e-9:
            minute = floor_minute(t)
            chunk = min(remaining, (minute + _MINUTE - t).total_seconds())
            c = self._probe.get((minute, operator_id))
            if c is None:
                c = self._probe[(minute, operator_id)] = [0.0, 0.0, 0, 0]
            c[idx] += chunk
            remaining -= chunk
            t = minute + _MINUTE

    # ------------------------------------------------------------------ live state

    def health(self) -> dict[str, HealthView]:
        """Live verdicts: ``{operator_id: HealthView}`` for operators probed at least once."""
        with self._lock:
            return {k: HealthView(bool(v.healthy), v.last_time) for k, v in self._ops.items()
                    if v.last_time is not None and v.healthy is not None}

    # ------------------------------------------------------------------ flushing (background thread)

    def flush(self, now: datetime | None = None) -> None:
        """Write pending buckets, live health and a heartbeat to the database.

        ``now`` (default: the clock) closes the open interval of operators whose last probe is
        older than ``max_gap`` (they get one ``probe_interval`` of their last verdict). On a
        database error the pending data is kept in memory and retried at the next flush.
        """
        now = now or self.clock()
        s = self.settings
        with self._lock:
            for op_id, st in self._ops.items():
                if st.last_time is not None and not st.closed and (now - st.last_time).total_seconds() > s.max_gap:
                    self._attribute(op_id, st.last_time, s.probe_interval, st.last_ok)
                    st.closed = True
            req, self._req = self._req, {}
            probe, self._probe = self._probe, {}
            self._beats[floor_minute(now)] = self._beats.get(floor_minute(now), 0) + 1
            beats, self._beats = self._beats, {}
            health = [(k, v.healthy, v.consecutive_failures, v.last_time, v.last_change_at or v.last_time,
                       v.last_status, v.last_error, v.latency_ms) for k, v in self._ops.items()
                      if v.dirty and v.healthy is not None]
            for k, _h, *_ in health:
                self._ops[k].dirty = False
            last_probe_at = self._last_probe_at
        try:
            with self.session_factory() as session:
                upsert_add(session, RequestMinute.__table__, [
                    {"minute": k[0], "service_id": k[1], "operator_id": k[2], "province": k[3],
                     "total": v[0], "good": v[1], "latency_ms_sum": v[2]} for k, v in req.items()
                ], ["minute", "service_id", "operator_id", "province"], ["total", "good", "latency_ms_sum"])
                upsert_add(session, ProbeMinute.__table__, [
                    {"minute": k[0], "operator_id": k[1], "up_s": v[0], "down_s": v[1], "probes": v[2], "failures": v[3]}
                    for k, v in probe.items()
                ], ["minute", "operator_id"], ["up_s", "down_s", "probes", "failures"])
                upsert_add(session, MonitorHeartbeat.__table__, [
                    {"minute": k, "instance_id": self.instance_id, "beats": v} for k, v in beats.items()
                ], ["minute", "instance_id"], ["beats"])
                for op_id, healthy, fails, last, changed, status, err, lat in health:
                    row = session.get(OperatorHealth, op_id)
                    if row is None:
                        row = OperatorHealth(operator_id=op_id)
                        session.add(row)
                    elif row.last_probe_at is not None and row.last_probe_at > last:
                        continue  # another monitor wrote a newer verdict
                    row.healthy, row.consecutive_failures, row.last_probe_at = healthy, fails, last
                    row.last_change_at = changed
                    row.last_status, row.last_error, row.latency_ms = status, (err or None) and err[:200], lat
                inst = session.get(MonitorInstance, self.instance_id)
                if inst is None:
                    inst = MonitorInstance(id=self.instance_id, role=self.settings.role, started_at=now)
                    session.add(inst)
                inst.last_seen = now
                if last_probe_at is not None:
                    inst.last_probe_at = last_probe_at
                session.commit()
            self.last_flush_at = now
        except Exception as exc:
            self.flush_errors += 1
            log.warning("monitoring flush failed (%s); keeping %d buckets in memory", exc, len(req) + len(probe))
            with self._lock:
                for k, v in req.items():
                    c = self._req.setdefault(k, [0, 0, 0.0])
                    c[0] += v[0]; c[1] += v[1]; c[2] += v[2]  # noqa: E702
                for k, v in probe.items():
                    c = self._probe.setdefault(k, [0.0, 0.0, 0, 0])
                    for i in range(4):
                        c[i] += v[i]
                for k, v in beats.items():
                    self._beats[k] = self._beats.get(k, 0) + v
                for k, *_ in health:
                    if k in self._ops:
                        self._ops[k].dirty = True

    def run_evaluator(self, now: datetime | None = None, *, slo: bool = True,
                      live: dict[str, HealthView] | None = None) -> Any:
        """Run the evaluator once (incident checks; burn rates and sanctions if ``slo``) on the
        verdicts ``live`` (default: :meth:`health` now)."""
        if self.evaluator is None:
            return None
        return self.evaluator.evaluate(now or self.clock(), live=self.health() if live is None else live, slo=slo)

    def _loop(self) -> None:
        import time as _time

        s = self.settings
        while not self._stop.is_set():
            woke = self._wake.wait(timeout=min(s.flush_interval, s.probe_interval))
            self._wake.clear()
            try:
                # The verdicts are read before the flush, so an evaluation never acts on a verdict the
                # store does not have yet: a probe arriving between the flush and the evaluation let
                # an incident be resolved while monitor_operator_health still said "unhealthy"
                # (seen on PostgreSQL, where the flush takes longer).
                live = self.health() if self.evaluator is not None else None
                self.flush()
                if self.evaluator is not None:
                    mono = _time.monotonic()
                    due_slo = mono - self._last_slo_eval >= s.slo_interval
                    if woke or due_slo or mono - self._last_incident_eval >= s.probe_interval:
                        self._last_incident_eval = mono
                        if due_slo:
                            self._last_slo_eval = mono
                        self.run_evaluator(slo=due_slo, live=live)
            except Exception:  # keep the thread alive whatever happens
                log.exception("monitoring background cycle failed")

    def start(self) -> None:
        """Start the background flush/evaluate thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="zistboom-monitoring", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the thread and write what is pending (one last flush)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        try:
            self.flush()
        finally:
            if self._engine is not None:
                self._engine.dispose()


def make_sink(db_url: str, settings: Any = None, *, clock: Callable[[], datetime] = utcnow,
              evaluate: bool = True, probe_interval_s: float | None = None) -> MonitoringSink:
    """Build a :class:`MonitoringSink` on its own engine for ``db_url``.

    ``settings`` may be a :class:`MonitorSettings`, a dict, the gateway's config (its
    ``health_interval``/``health_timeout`` become the probe interval/timeout), the product
    :class:`~zistboom.config.Settings` (no probe fields: defaults / ``ZISTBOOM_MONITOR_*`` apply) or
    None. ``probe_interval_s`` (seconds, > 0), when given, is the period at which the gateway that
    feeds this sink actually probes operators (``GatewayConfig.health_interval``); it overrides
    every other source, because the sample-and-hold accounting (``max_gap``), the staleness of
    health verdicts and the incident-check period are all derived from it. With ``evaluate`` the
    sink also runs an :class:`~zistboom.monitoring.evaluator.Evaluator` (incidents, burn-rate
    alerts, sanctions). Call ``start()`` to begin flushing and ``close()`` at shutdown.

    Raises:
        ValueError: a non-positive or non-finite ``probe_interval_s`` (or bad settings).
    """
    from zistboom.monitoring.evaluator import Evaluator

    overrides: dict[str, Any] = {}
    if probe_interval_s is not None:
        overrides["probe_interval"] = float(probe_interval_s)
    ms = MonitorSettings.from_any(settings, **overrides)
    engine = make_engine(db_url)
    factory = make_sessionmaker(engine)
    sink = MonitoringSink(factory, ms, clock=clock, engine=engine)
    if evaluate:
        sink.evaluator = Evaluator(factory, ms)
    return sink


__all__ = ["MonitoringSink", "make_sink", "upsert_add", "HealthView"]

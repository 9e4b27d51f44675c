"""The exchange-log writer in a child process.

Why: digests, encoding, hashing, SQL and signing cost ~13 µs of CPU per record (docs/exchange-log.md);
in a thread of the gateway part of that holds the GIL the gateway's event loop needs. Here the
gateway side only turns each finished exchange into bytes (``on_exchange``, ~1.5 µs, appended to a
bounded deque): the native form (:data:`~zistboom.exchange_log.record.pack_native`), or else the
marshalled :func:`~zistboom.exchange_log.record.pack_exchange` tuple, digests deferred in both.
A feeder thread ships lists of those bytes over a pipe to ``python -m
zistboom.exchange_log.writer_proc``. The child computes the request and response digests from the
shipped input and runs the normal :class:`~zistboom.exchange_log.sink.ExchangeLogSink` writer
(queue, batches, spill file, gap records, signing) on the bytes as they are
(:func:`~zistboom.exchange_log.record.encode_queued`), without rebuilding ``Exchange`` objects.

Protocol: parent → child on stdin, frames ``u32 length || marshal(message)``:
``("y", [exchange bytes (native form or marshalled tuple), ...])``,
``("d", n, reason, first_us, last_us)`` (records the parent dropped),
``("f", token)`` (flush request), ``("c",)`` (close). Child → parent on stdout, JSON lines:
``{"stats": {...}}`` every 100 ms, ``{"flushed": token}``, ``{"closed": true, "stats": {...}}``.

Crash behaviour: if the gateway is killed, the child still reads every frame already in the pipe,
then sees end-of-file, writes everything, signs a final tree head and exits — so a ``kill -9`` of the
gateway loses only what was still in the gateway's deque (at most one feeder interval). If the
child dies, the parent counts the records it could not ship as dropped (a signed gap record is
written by the next child) and starts a new child after one second.
"""

from __future__ import annotations

import io
import json
import logging
import marshal
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from zistboom.exchange_log.digest import digests_of
from zistboom.exchange_log.record import from_us, pack_exchange, queued_time_us, to_us
from zistboom.exchange_log.record import pack_native as _pack_native
from zistboom.gateway.events import Exchange, ProbeResult

# Kept light on purpose: the child must be reading its pipe within a few milliseconds of starting
# (heavy imports — SQLAlchemy, cryptography — happen after its reader thread runs; record.py needs
# only orjson and the standard library).

log = logging.getLogger(__name__)

_LEN = struct.Struct("<I")
# The writer process stops reading its pipe while this many bytes of frames wait (e.g. while it
# answers a flush against a slow store), so the gateway's bounded queue, not this process, absorbs
# a backlog.
_HELD_MAX = 64 << 20


class ProcessExchangeLogSink:
    """Gateway-side half of the process writer (see module docstring). Same interface as
    :class:`~zistboom.exchange_log.sink.ExchangeLogSink`."""

    def __init__(self, db_url: str, config):
        self.db_url = db_url
        self.cfg = config
        self._q: deque[Exchange] = deque()
        self._qmax = config.queue_max
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._proc: subprocess.Popen | None = None
        self._feeder: threading.Thread | None = None
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._drop = [0, None, None, Counter()]  # n, first_us, last_us, reasons
        self._child_stats: dict = {}
        self._flushed: dict[int, threading.Event] = {}
        self._token = 0
        self._started = False
        self._closed = threading.Event()
        self._inflight = 0  # 1 while the feeder holds a popped batch it has not written yet
        self.counters = Counter()
        self.feeder_cpu_s = 0.0
        from zistboom.exchange_log.store import ExchangeLogStore

        self.store = ExchangeLogStore(db_url, sth_every_seconds=config.sth_every_seconds)

    # -- gateway side --------------------------------------------------------------------------

    def on_exchange(self, exchange: Exchange) -> None:
        """Queue one finished exchange as bytes: its native form (≈1.5 µs), else its marshalled
        packed tuple (≈2.6-3.6 µs); drops it, counted, when the queue is full or it cannot be packed.

        Why bytes and not the ``Exchange``: queued objects live ~50 ms (one ship interval), and
        ~20 container objects per exchange (the event, its attempts, the header lists of its
        digest input) kept the cyclic GC busy: measured under wrk (2026-11-30) the gateway's
        event-loop thread spent ~4 µs more per request with the collector on than off. A bytes
        object is not tracked by the GC. Packing here, right after the response, also finds the
        data in cache; a feeder thread that packed and marshalled cost 4.4-4.8 µs per record."""
        try:
            q = self._q
            if len(q) < self._qmax:
                data = _pack_native(exchange) if _pack_native is not None else None
                q.append(data if data is not None else _marshal_packed(pack_exchange(exchange, defer_digests=True)))
                if len(q) == 2000:
                    self._wake.set()  # a burst: ship now rather than at the next interval
            else:
                self._note_dropped(1, "queue_full", exchange.time)
        except Exception:  # never break the gateway; the loss is counted and signed as a gap
            try:
                self._note_dropped(1, "unencodable", None)
            except Exception:  # pragma: no cover
                pass

    def on_probe(self, probe: ProbeResult) -> None:
        """Health checks are not logged here (monitoring keeps them)."""

    def admits_traffic(self) -> bool:
        return bool(self._child_stats.get("admits_traffic", True))

    def _restore_drop(self, n: int, reason: str, first_us: int, last_us: int) -> None:
        """Put back drop counts whose ``("d", ...)`` frame could not be sent (the child died), so
        the next writer signs them as a gap; not counted again in the stats."""
        with self._lock:
            d = self._drop
            d[1] = first_us if d[0] == 0 or d[1] is None else min(d[1], first_us)
            d[2] = last_us if d[2] is None else max(d[2], last_us)
            d[0] += n
            d[3][reason] += n

    def _note_dropped(self, n: int, reason: str, when: datetime | None) -> None:
        us = to_us(when or datetime.now(timezone.utc))
        with self._lock:
            d = self._drop
            if d[0] == 0:
                d[1] = us
            d[0] += n
            d[2] = us
            d[3][reason] += n
        self.counters["dropped_in_gateway"] += n

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer process and the feeder thread. Idempotent; does not wait for the store."""
        if self._started:
            return
        self._started = True
        self._spawn()
        self._feeder = threading.Thread(target=self._feed, name="exchange-log-feeder", daemon=True)
        self._feeder.start()

    def _spawn(self) -> None:
        cfg = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self.cfg).items()}
        src = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": src + (os.pathsep + os.environ["PYTHONPATH"]
                                                  if os.environ.get("PYTHONPATH") else "")}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "zistboom.exchange_log.writer_proc", self.db_url, json.dumps(cfg)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, bufsize=0)
        _widen_pipe(self._proc.stdin.fileno())
        self.counters["writer_processes"] += 1
        threading.Thread(target=self._read_child, args=(self._proc,), name="exchange-log-stats",
                         daemon=True).start()

    def _read_child(self, proc: subprocess.Popen) -> None:
        # Buffered: the pipe is unbuffered (``bufsize=0``, for the frame writes), and iterating an
        # unbuffered file reads its lines one byte per ``read`` call. With ~1.5 KB of stats ten times
        # a second that was ~15k syscalls/s, each taking the GIL from the event loop: py-spy found
        # this thread in 7 % of the gateway's samples under load (2026-11-30).
        for line in io.BufferedReader(proc.stdout, 1 << 16):
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "stats" in msg:
                self._child_stats = msg["stats"]
            if "flushed" in msg:
                ev = self._flushed.get(msg["flushed"])
                if ev is not None:
                    ev.set()

    def _send(self, msg) -> bool:
        """Write one frame; False when the child is gone."""
        data = marshal.dumps(msg)
        try:
            view = memoryview(_LEN.pack(len(data)) + data)
            with self._send_lock:  # the feeder and flush() both write frames
                write = self._proc.stdin.write
                while view:  # an unbuffered pipe write may be partial (a signal, a frame > the pipe)
                    view = view[write(view):]
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    def _child_lost(self, n_lost: int, first) -> None:
        if n_lost:
            self._note_dropped(n_lost, "writer_died", first)
        self.counters["writer_restarts"] += 1
        log.error("exchange-log writer process died (exit %s); restarting", self._proc.poll())
        time.sleep(1.0)
        try:
            self._spawn()
        except OSError:
            log.exception("cannot restart the exchange-log writer")

    def _feed(self) -> None:
        interval = self.cfg.ship_interval_ms / 1000.0
        q = self._q
        while True:
            stopping = self._stop.is_set()
            with self._lock:
                d = self._drop
                pending = (d[0], d[1], d[2], dict(d[3])) if d[0] else None
                if pending:
                    self._drop = [0, None, None, Counter()]
            if pending:
                for reason, n in pending[3].items():
                    if not self._send(("d", n, reason, pending[1], pending[2])):
                        self._restore_drop(n, reason, pending[1], pending[2])  # for the next writer
                        self._child_lost(0, None)
            while q:
                self._inflight = 1  # before popping: flush() waits for a popped, unsent batch too
                try:
                    n = min(len(q), 1000)
                    batch = [q.popleft() for _ in range(n)]
                    if not self._send(("y", batch)):  # a list of bytes: marshal copies, nothing to walk
                        self._child_lost(len(batch), from_us(queued_time_us(batch[0])))
                    self.counters["shipped"] += len(batch)
                finally:
                    self._inflight = 0
            self.feeder_cpu_s = time.thread_time()
            if stopping:
                break
            self._wake.wait(interval)
            self._wake.clear()
        self._send(("c",))
        try:
            self._proc.stdin.close()
        except OSError:
            pass

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is stored (or spilled). True on success."""
        end = time.monotonic() + timeout
        while (self._q or self._inflight) and time.monotonic() < end:
            self._wake.set()
            time.sleep(0.005)
        self._token += 1
        ev = threading.Event()
        self._flushed[self._token] = ev
        if not self._send(("f", self._token)):
            return False
        got = ev.wait(max(0.0, end - time.monotonic()))
        self._flushed.pop(self._token, None)
        return got

    def close(self, timeout: float = 30.0) -> None:
        """Ship the queue, let the writer store it and sign a final tree head, then stop it."""
        if not self._started or self._closed.is_set():
            return
        self._stop.set()
        self._wake.set()
        if self._feeder is not None:
            self._feeder.join(timeout)
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error("exchange-log writer did not stop in %.0f s; killing it (its spill file is kept)", timeout)
            self._proc.kill()
        time.sleep(0.05)  # let the stats reader take the final line
        self._closed.set()
        self.store.engine.dispose()

    async def aclose(self) -> None:
        import asyncio

        await asyncio.to_thread(self.close)

    def wait_ready(self, timeout: float = 10.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self._child_stats.get("ready"):
                return True
            time.sleep(0.01)
        return False

    def stats(self) -> dict:
        """The writer's figures (see ``ExchangeLogSink.stats``) plus this side's queue."""
        st = dict(self._child_stats)
        st["writer_queue_depth"] = st.get("queue_depth", 0)
        st["queue_depth"] = len(self._q) + st.get("queue_depth", 0)
        st["gateway_queue_depth"] = len(self._q)
        st["gateway_queue_max"] = self._qmax
        st["records_dropped"] = st.get("records_dropped", 0) + self._drop[0]
        st["records_dropped_in_gateway"] = self.counters["dropped_in_gateway"]
        st["records_shipped"] = self.counters["shipped"]
        st["writer_restarts"] = self.counters["writer_restarts"]
        st["feeder_cpu_s"] = round(self.feeder_cpu_s, 4)
        st["writer_pid"] = self._proc.pid if self._proc else None
        st["writer_alive"] = bool(self._proc and self._proc.poll() is None)
        st["admits_traffic"] = self.admits_traffic()
        st["mode"] = "process"
        return st


def _widen_pipe(fd: int, size: int = 1 << 20) -> None:
    """Grow a pipe's kernel buffer (Linux ``F_SETPIPE_SZ``; default 64 KiB) so one shipped batch
    (~200-300 kB at 1,000 records) goes in one write instead of several, each waking the reader.
    Best effort: capped by /proc/sys/fs/pipe-max-size for unprivileged users; other systems keep
    their default."""
    try:
        import fcntl  # noqa: PLC0415

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), size)
    except (ImportError, OSError, ValueError):
        pass


def _hashed(t: tuple) -> tuple:
    """A packed exchange with its digests computed here instead of in the child."""
    if t[13] is not None:
        return t
    return t[:13] + digests_of(t[17]) + t[15:17] + (None,)


def _marshal_packed(t: tuple) -> bytes:
    """``marshal`` bytes of a packed exchange; when marshal refuses its digest input (a header or
    body of a type other than bytes/str/list/tuple), the digests are computed here instead."""
    try:
        return marshal.dumps(t)
    except ValueError:
        return marshal.dumps(_hashed(t))


# ---------------------------------------------------------------------------------------------
# child side


def _child(db_url: str, cfg_json: str) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal Ctrl-C: finish via end-of-input instead
    # 1. Start draining the pipe at once, before the heavy imports, so the gateway's side never waits
    #    for this process to start; frames wait here (bounded: beyond it the pipe pushes back).
    frames: deque[bytes] = deque()
    arrived = threading.Event()
    eof = threading.Event()
    inp = sys.stdin.buffer

    held, held_lock = [0], threading.Lock()  # bytes of frames read but not yet taken

    def reader():
        while True:
            head = inp.read(4)
            if len(head) < 4:
                break
            (n,) = _LEN.unpack(head)
            data = inp.read(n)
            if len(data) < n:
                break  # torn last frame: the gateway died while writing it
            with held_lock:
                held[0] += n
            frames.append(data)
            arrived.set()
            while len(frames) > 500 or held[0] > _HELD_MAX:  # beyond it the pipe pushes back
                time.sleep(0.005)
        eof.set()
        arrived.set()

    threading.Thread(target=reader, name="exchange-log-pipe", daemon=True).start()

    # 2. The normal writer (thread mode) inside this process.
    from zistboom.exchange_log.sink import ExchangeLogConfig, ExchangeLogSink

    cfg = json.loads(cfg_json)
    for k in ("var_dir", "key_file", "spill_file"):
        if cfg.get(k) is not None:
            cfg[k] = Path(cfg[k])
    sink = ExchangeLogSink(db_url, ExchangeLogConfig(**cfg))
    out = sys.stdout
    out_lock = threading.Lock()

    def emit(msg: dict) -> None:
        with out_lock:
            try:
                out.write(json.dumps(msg) + "\n")
                out.flush()
            except (BrokenPipeError, OSError, ValueError):
                pass

    sink.start()
    done = threading.Event()

    def stats_loop():
        while not done.wait(0.1):
            emit({"stats": {**sink.stats(), "ready": sink._ready.is_set()}})

    threading.Thread(target=stats_loop, daemon=True).start()
    while True:
        if not frames:
            if eof.is_set():
                break
            arrived.wait(0.05)
            arrived.clear()
            continue
        frame = frames.popleft()
        with held_lock:
            held[0] -= len(frame)
        msg = marshal.loads(frame)
        kind = msg[0]
        if kind == "y":  # one marshalled packed exchange per element, queued as bytes (see on_packed)
            sink.on_packed(msg[1])
            if len(sink._q) >= sink.cfg.batch_max:
                sink._wake.set()
        elif kind == "d":
            _, n_dropped, reason, first_us, last_us = msg
            sink._note_dropped(n_dropped, reason, from_us(first_us), from_us(last_us))
        elif kind == "f":
            sink.wait_ready(60)
            sink.flush(60)
            emit({"stats": {**sink.stats(), "ready": True}})  # fresh figures before the answer
            emit({"flushed": msg[1]})
        elif kind == "c":
            break
    sink.close(60)
    done.set()
    emit({"closed": True, "stats": {**sink.stats(), "ready": True}})
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s exchange-log-writer: %(message)s")
    sys.exit(_child(sys.argv[1], sys.argv[2]))

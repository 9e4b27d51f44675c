"""The gateway (data plane): a raw ASGI app that routes every client call to a licensed, healthy
operator, preferring the caller's province.

Endpoints:

* ``{METHOD} /v1/services/{service_id}/{path}`` — the proxied call. Client key in ``X-Api-Key``
  or ``Authorization: Bearer <key>``; optional ``X-Caller-Province`` (ISO 3166-2 code, default:
  the client system's own province). Checks, in order: key (401 ``unauthorized``), service
  known (404 ``unknown_service``), access right (403 ``forbidden``, deny by default), operation
  in the contract (404 ``unknown_operation``; dot segments 400 ``bad_path``), province (400
  ``unknown_province`` / ``province_required``), rate limit (429 ``rate_limited``), licensed
  operator (503 ``no_route``), upstream (502 ``upstream_unavailable`` / 504 ``upstream_timeout``).
  The upstream request target is the endpoint's path prefix + the *unchanged* client path
  (``/v1/services/{service_id}/{path}?query``), like a plain reverse proxy. Extra request headers
  to the operator: ``X-Request-Id``, ``X-Forwarded-For``, ``X-Zistboom-Client``,
  ``X-Zistboom-Caller-Province``; the client's key headers are never forwarded.
  ``X-Forwarded-For`` is the TCP peer address only: a client-supplied one is dropped (it could be
  forged), unless ``GatewayConfig.trust_forwarded_for`` is set (the gateway sits behind a trusted
  proxy), then it is kept and the peer address appended (the usual proxy practice, cf. RFC 7239).
  Request heads are limited in size (431) and time (see :mod:`zistboom.gateway.server`).
* ``POST /v1/ask`` — Persian front door (rate-limited per remote IP).
* ``GET /v1/receipts/{request_id}`` — the exchange-log receipt of the caller's own exchange
  (errors in the gateway's format below, codes from :mod:`zistboom.exchange_log.api`).
* ``GET /healthz`` — the gateway's own health and route-table version/age.
* ``GET /metrics`` — Prometheus text format.

Every answer the gateway gives itself carries ``X-Zistboom-Error: <code>`` and a JSON body
``{"error": {"code", "message_fa", "message_en", "request_id"}}``; an operator's answer carries
``X-Zistboom-Operator: <operator id>`` instead.

Retries and failover: a failed try (connect error, timeout, reset, 5xx) is retried at a
*different* licensed operator only if the operation is idempotent (contract ``x-idempotent``) or
the request has an ``Idempotency-Key``. Otherwise the request is sent at most once, with one
exception: a connect error (TCP connection refused or not established in time) means no byte of
the request left the gateway, so even a non-idempotent request may go to another operator.
A reset on a reused keep-alive connection is *not* treated as safe (the peer may have read the
request before closing). Retries are bounded by ``max_attempts`` and a Finagle-style retry budget. When every licensed
operator has been tried, one answered 5xx and another failed without answering (timeout, reset,
connect error), a retriable request goes back once to the latter instead of passing the 5xx on
(seen: a GET that timed out at a healthy operator during warm-up, then met the other operator's
500, handed that 500 to the client although an attempt was left).

Idempotency keys: a non-idempotent request with an ``Idempotency-Key`` is recorded per client
system and key (Redis when ``redis_url`` is set, else in memory; see
:mod:`zistboom.gateway.shared_state`): a repeat is answered from the record with
``Idempotent-Replayed: true`` and never reaches an operator; a repeat while the first is in flight
gets 409 ``idempotency_in_flight``, the same key on a different request 422
``idempotency_key_reused`` (the fingerprint covers method, target, body and the caller's
province after defaulting), a malformed key or two ``Idempotency-Key`` headers 400
``bad_idempotency_key`` (on an idempotent operation the key is not needed, so it is neither used
nor checked). Two ``X-Caller-Province`` headers with different values get 400
``ambiguous_province`` rather than one of them silently. Per-client rate limits are
shared by all replicas through the same Redis (GCRA), with the local token bucket as fallback.

The route table lives in memory; a thread polls ``registry_state.version`` every
``refresh_interval`` and reloads on change. If the database is unreachable the last good table
keeps serving. The request path never touches the database.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import itertools
import logging
import os
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass
from datetime import datetime, timezone
from typing import Any

import orjson

from zistboom.gateway.config import GatewayConfig
from zistboom.gateway.events import Attempt, Exchange, ExchangeSink, ProbeResult
from zistboom.gateway.metrics import GatewayMetrics
from zistboom.gateway.routing import Balancer, RateLimiter, RetryBudget, RouteTable
from zistboom.gateway.shared_state import (IdempotencyStore, RedisLink, SharedRateLimiter, StoredResponse,
                                           fingerprint)
from zistboom.gateway.upstream import ConnectError, ResponseTooLarge, UpstreamClient, UpstreamError, split_endpoint

log = logging.getLogger("zistboom.gateway")

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"proxy-authenticate", b"proxy-authorization",
    b"te", b"trailer", b"trailers", b"transfer-encoding", b"upgrade",
})
# request headers the gateway never passes on (key material, or set by the gateway itself)
_DROP_REQUEST = HOP_BY_HOP | {b"host", b"content-length", b"expect", b"x-api-key", b"authorization", b"x-forwarded-for",
                              b"x-request-id", b"x-zistboom-client", b"x-zistboom-caller-province"}
_DROP_RESPONSE = HOP_BY_HOP | {b"content-length", b"x-zistboom-operator", b"x-zistboom-error", b"date", b"server"}

ERRORS: dict[str, tuple[int, str, str]] = {
    "unauthorized": (401, "کلید API فرستاده نشده یا نامعتبر است.", "Missing or invalid API key."),
    "forbidden": (403, "این سامانه اجازهٔ دسترسی به این خدمت را ندارد.", "This client system has no access right to this service."),
    "unknown_service": (404, "خدمتی با این شناسه ثبت نشده است.", "No service is registered with this id."),
    "unknown_operation": (404, "این عملیات در قرارداد خدمت تعریف نشده است.", "This operation is not in the service contract."),
    "not_found": (404, "نشانی درخواستی پیدا نشد.", "No such endpoint on the gateway."),
    "method_not_allowed": (405, "این روش HTTP برای این نشانی پذیرفته نیست.", "HTTP method not allowed here."),
    "unknown_province": (400, "کد استان ناشناخته است.", "Unknown province code in X-Caller-Province."),
    "ambiguous_province": (400, "سرآیند X-Caller-Province چند بار با مقدارهای گوناگون آمده است؛ یک استان بفرستید.",
                           "X-Caller-Province was sent more than once with different values; send one province."),
    "province_required": (400, "استان درخواست‌کننده مشخص نیست؛ سرآیند X-Caller-Province را بفرستید.",
                          "The caller's province is unknown; send the X-Caller-Province header."),
    "bad_path": (400, "نشانی درخواست بخش «.» یا «..» دارد که پذیرفته نیست.",
                 "Dot segments (. or ..) are not allowed in the request path."),
    "bad_json": (400, "بدنهٔ درخواست JSON معتبر نیست.", "The request body is not valid JSON."),
    "bad_question": (400, "پرسش نامعتبر است.", "The question is not valid."),
    "body_too_large": (413, "حجم درخواست بیش از حد مجاز است.", "The request body is too large."),
    "rate_limited": (429, "تعداد درخواست‌ها از حد مجاز بیشتر است؛ کمی بعد دوباره تلاش کنید.",
                     "Too many requests; retry later."),
    "no_route": (503, "هیچ اپراتور دارای پروانهٔ فعالی برای این خدمت در استان شما نیست.",
                 "No operator holds an active licence for this service in the caller's province."),
    "route_table_unavailable": (503, "جدول مسیریابی هنوز بارگذاری نشده است.", "The route table is not loaded yet."),
    "ask_unavailable": (503, "سامانهٔ پرسش و پاسخ در دسترس نیست.", "The question service is not available."),
    "receipts_unavailable": (503, "دفتر ثبت تبادل‌ها روی این دروازه روشن نیست.",
                             "The exchange log is not enabled on this gateway."),
    "upstream_unavailable": (502, "اپراتورهای این خدمت در دسترس نیستند.", "No operator of this service could be reached."),
    "upstream_timeout": (504, "اپراتور در زمان مقرر پاسخ نداد.", "The operator did not answer in time."),
    "response_too_large": (502, "پاسخ اپراتور بیش از حد مجاز بزرگ است.", "The operator's response is too large."),
    "internal": (500, "خطای درونی دروازه.", "Internal gateway error."),
    "bad_idempotency_key": (400, "سرآیند Idempotency-Key نامعتبر است (حداکثر ۲۵۵ نویسهٔ چاپی ASCII).",
                            "Invalid Idempotency-Key header (at most 255 printable ASCII characters)."),
    "idempotency_in_flight": (409, "درخواستی با همین کلید Idempotency-Key هنوز در حال پردازش است؛ کمی بعد دوباره بفرستید.",
                              "A request with this Idempotency-Key is still being processed; retry later."),
    "idempotency_key_reused": (422, "این کلید Idempotency-Key پیش‌تر برای درخواست دیگری به کار رفته است.",
                               "This Idempotency-Key was already used for a different request."),
    "idempotent_response_unavailable": (409, "این درخواست پیش‌تر انجام شده است، اما پاسخ آن برای بازپخش بیش از حد بزرگ بود.",
                                        "This request was already processed, but its response was too large to keep for replay."),
}

_JSON_CT = (b"content-type", b"application/json; charset=utf-8")
# Connection values that name no other header (nothing more to drop): skip splitting them
_PLAIN_CONNECTION = frozenset({b"keep-alive", b"Keep-Alive", b"close", b"Close"})
_PREFIX = "/v1/services/"


_RID_PREFIX = os.urandom(8).hex()
_rid_counter = itertools.count(int.from_bytes(os.urandom(4), "big"))


def _new_request_id() -> str:
    """32 hex digits: a random per-process prefix and a counter (unique, and cheaper than
    ``os.urandom`` per request)."""
    return f"{_RID_PREFIX}{next(_rid_counter) & 0xFFFFFFFFFFFFFFFF:016x}"


def _sane_request_id(v: bytes) -> str | None:
    if 0 < len(v) <= 128 and all(33 <= c < 127 for c in v):
        return v.decode("ascii")
    return None


class Gateway:
    """The ASGI application. Build with :func:`create_gateway`."""

    def __init__(self, db_url: str, sinks: Sequence[ExchangeSink] = (), config: GatewayConfig | None = None):
        self.db_url = db_url
        self.sinks = list(sinks)
        self.config = cfg = config or GatewayConfig()
        self.metrics = GatewayMetrics()
        self.table: RouteTable | None = None
        self.last_refresh_error: str | None = None
        self.balancer = Balancer(cfg, on_eject=self._on_eject)
        self.budget = RetryBudget(cfg.retry_budget_percent, cfg.retry_budget_min_per_s, cfg.retry_budget_ttl)
        self.client_limiter = RateLimiter(cfg.client_rate, cfg.client_burst)
        self.redis: RedisLink | None = None
        self.shared_limiter: SharedRateLimiter | None = None
        # lock TTL: longer than any request can take (every attempt timing out), plus slack
        self._idem_lock_ttl = cfg.max_attempts * (cfg.try_timeout + cfg.connect_timeout) + 10.0
        self.idempotency = self._make_idempotency_store(None)
        self.ask_limiter = RateLimiter(cfg.ask_rate, cfg.ask_burst)
        self.client = UpstreamClient(max_idle=cfg.pool_max_idle, max_conns=cfg.pool_max_connections,
                                     idle_timeout=cfg.pool_idle_timeout, connect_timeout=cfg.connect_timeout,
                                     max_body=cfg.max_response_body)
        self.health_client = UpstreamClient(max_idle=1, max_conns=4, idle_timeout=cfg.pool_idle_timeout,
                                            connect_timeout=cfg.health_timeout, max_body=1024 * 1024)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._engine = None
        self._health_tasks: dict[str, asyncio.Task] = {}
        self._inflight = 0
        self._front_door = None
        self.started = False

    def _make_idempotency_store(self, link: RedisLink | None) -> IdempotencyStore:
        cfg = self.config
        return IdempotencyStore(link, cfg.redis_prefix, ttl=cfg.idempotency_ttl, lock_ttl=self._idem_lock_ttl,
                                max_body=cfg.idempotency_max_body, max_entries=cfg.idempotency_memory_entries,
                                max_bytes=cfg.idempotency_memory_bytes, metrics=self.metrics)

    # ------------------------------------------------------------------ route table refresh
    def _make_engine(self):
        from sqlalchemy.pool import NullPool

        from zistboom.registry.db import make_engine

        url = self.db_url
        if url.startswith("sqlite:///") and "?" not in url and ":memory:" not in url:
            # open read-write *without creating*: a removed database file must read as "unreachable",
            # not silently become a new empty database
            path = url[len("sqlite:///"):]
            url = f"sqlite:///file:{path}?mode=rw&uri=true"
        if url.startswith("sqlite"):
            return make_engine(url, poolclass=NullPool, connect_args={"check_same_thread": False, "timeout": 2})
        return make_engine(url, pool_size=1, max_overflow=0)

    def _poll_once(self) -> RouteTable | None:
        """Blocking (run in a thread): a fresh RouteTable if the registry changed, else None.
        Raises on database errors."""
        from sqlalchemy.orm import Session

        from zistboom.registry.snapshot import current_version, load_snapshot

        if self._engine is None:
            self._engine = self._make_engine()
        try:
            with Session(self._engine) as session:
                if self.table is not None and current_version(session) == self.table.version:
                    return None
                return RouteTable(load_snapshot(session))
        except Exception:
            engine, self._engine = self._engine, None
            try:
                engine.dispose()
            except Exception:  # pragma: no cover
                pass
            raise

    def _refresh_thread(self) -> None:
        while not self._stop.wait(self.config.refresh_interval):
            try:
                table = self._poll_once()
            except Exception as exc:  # database unreachable: keep the last good table
                self.last_refresh_error = f"{type(exc).__name__}: {exc}"[:500]
                self.metrics.refresh_errors.inc()
                continue
            self.last_refresh_error = None
            loop = self.loop
            if loop is None or loop.is_closed():
                return
            try:
                if table is None:
                    loop.call_soon_threadsafe(self._confirm)
                else:
                    loop.call_soon_threadsafe(self._install, table)
            except RuntimeError:  # loop closed during shutdown
                return

    def _confirm(self) -> None:
        if self.table is not None:
            self.table.checked_at = time.monotonic()

    def _install(self, table: RouteTable) -> None:
        self.table = table
        self.metrics.route_version.set(table.version)
        self._reconcile_health_tasks()

    def reload_now(self) -> None:
        """Blocking: poll the registry once and install a changed table (tests/admin helpers)."""
        table = self._poll_once()
        if table is not None and self.loop is not None:
            self.loop.call_soon_threadsafe(self._install, table)

    # ------------------------------------------------------------------ health checks
    def _reconcile_health_tasks(self) -> None:
        if self.table is None or self.loop is None or self._stop.is_set():
            return
        ops = self.table.snapshot.operators
        for oid in list(self._health_tasks):
            if oid not in ops or not ops[oid].health_url:
                self._health_tasks.pop(oid).cancel()
        for oid, op in ops.items():
            if op.health_url and oid not in self._health_tasks:
                self._health_tasks[oid] = self.loop.create_task(self._health_loop(oid))

    async def _health_loop(self, operator_id: str) -> None:
        cfg = self.config
        await asyncio.sleep(random.uniform(0, min(cfg.health_interval, 1.0)))
        while True:
            table = self.table
            op = table.snapshot.operators.get(operator_id) if table else None
            if op is None or not op.health_url:
                self._health_tasks.pop(operator_id, None)
                return
            await self.probe(operator_id, op.health_url)
            await asyncio.sleep(cfg.health_interval * random.uniform(0.9, 1.1))

    async def probe(self, operator_id: str, url: str) -> ProbeResult:
        """One active health check: ``GET url``; 2xx within ``health_timeout`` passes."""
        when = datetime.now(timezone.utc)
        t0 = time.perf_counter()
        status = error = None
        try:
            host, port, path = split_endpoint(url)
            resp = await self.health_client.request(host, port, "GET", path or "/", [(b"user-agent", b"zistboom-health")],
                                                    b"", self.config.health_timeout)
            status = resp.status
            ok = 200 <= status < 300
            if not ok:
                error = f"http_{status}"
        except UpstreamError as exc:
            ok, error = False, exc.outcome
        except ValueError as exc:
            ok, error = False, str(exc)
        latency = (time.perf_counter() - t0) * 1000.0
        self.balancer.probe(operator_id, ok)
        m = self.metrics
        m.probes.labels(operator_id, "ok" if ok else "fail").inc()
        m.probe_latency.labels(operator_id).observe(latency / 1000.0)
        m.operator_healthy.labels(operator_id).set(1 if self.balancer.state(operator_id).probe_ok else 0)
        result = ProbeResult(operator_id, when, ok, round(latency, 3), status, error)
        for s in self.sinks:
            try:
                s.on_probe(result)
            except Exception:  # a sink must never break the gateway
                log.exception("sink on_probe failed")
        return result

    def _on_eject(self, operator_id: str, seconds: float) -> None:
        if seconds > 0:
            self.metrics.ejections.labels(operator_id).inc()
            self.metrics.ejected.labels(operator_id).set(1)
            log.warning("operator %s ejected for %.1fs", operator_id, seconds)
        else:
            self.metrics.ejected.labels(operator_id).set(0)
            log.info("operator %s re-admitted", operator_id)

    # ------------------------------------------------------------------ lifespan
    async def startup(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop.clear()
        cfg = self.config
        if cfg.redis_url and self.redis is None:
            # created on the serving loop (redis.asyncio connections belong to one loop); no I/O yet
            self.redis = RedisLink(cfg.redis_url, timeout=cfg.redis_timeout, retry_interval=cfg.redis_retry_interval,
                                   max_connections=cfg.redis_max_connections, metrics=self.metrics)
            self.metrics.redis_up.set(1)
            self.shared_limiter = SharedRateLimiter(self.redis, cfg.redis_prefix + "rl:", cfg.client_rate,
                                                    cfg.client_burst, self.client_limiter, metrics=self.metrics)
            self.idempotency = self._make_idempotency_store(self.redis)
        try:
            table = await asyncio.to_thread(self._poll_once)
            if table is not None:
                self._install(table)
        except Exception as exc:
            self.last_refresh_error = f"{type(exc).__name__}: {exc}"[:500]
            log.error("registry unreachable at start; retrying every %.1fs: %s", self.config.refresh_interval, exc)
        self._thread = threading.Thread(target=self._refresh_thread, name="zistboom-gateway-refresh", daemon=True)
        self._thread.start()
        for s in self.sinks:
            start = getattr(s, "start", None)
            if start is not None:
                r = start()
                if asyncio.iscoroutine(r):
                    await r
        if self.config.gc_freeze:
            # move everything allocated at start (SQLAlchemy, the route table...) out of the cyclic
            # GC's generations so collections during traffic only scan per-request garbage
            gc.collect()
            gc.freeze()
        self.started = True

    async def shutdown(self) -> None:
        self._stop.set()
        for t in self._health_tasks.values():
            t.cancel()
        self._health_tasks.clear()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5.0)
        self.client.close()
        self.health_client.close()
        for s in self.sinks:
            # prefer an async close; a blocking close() (flushing to disk/DB) runs in a thread so the
            # loop stays responsive while it drains
            aclose = getattr(s, "aclose", None)
            close = getattr(s, "close", None)
            try:
                if aclose is not None:
                    await aclose()
                elif close is not None:
                    r = await asyncio.to_thread(close)
                    if asyncio.iscoroutine(r):
                        await r
            except Exception:
                log.exception("sink close failed")
        if self._engine is not None:
            self._engine.dispose()
        if self.redis is not None:
            await self.redis.aclose()
            self.redis = self.shared_limiter = None
            self.idempotency = self._make_idempotency_store(None)
        self.started = False

    # ------------------------------------------------------------------ ASGI
    async def __call__(self, scope, receive, send) -> None:
        typ = scope["type"]
        if typ == "http":
            path = scope["path"]
            try:
                if path.startswith(_PREFIX):
                    await self._proxy(scope, receive, send)
                elif path == "/v1/ask":
                    await self._ask(scope, receive, send)
                elif path.startswith("/v1/receipts/"):
                    await self._receipt(scope, send)
                elif path == "/healthz":
                    await self._healthz(scope, send)
                elif path == "/metrics":
                    await self._metrics(scope, send)
                else:
                    await self._error(send, "not_found", _request_id(scope))
            except Exception:  # a bug must still give the client the gateway's JSON error, not a bare 500
                log.exception("unhandled error on %s %s", scope.get("method"), path)
                try:
                    await self._error(send, "internal", _request_id(scope))
                except Exception:  # the response had already started: nothing more to say
                    pass
        elif typ == "lifespan":
            await self._lifespan(receive, send)
        # websockets are not proxied: returning without accepting closes them (403)

    async def _lifespan(self, receive, send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                try:
                    await self.shutdown()
                finally:
                    await send({"type": "lifespan.shutdown.complete"})
                return

    async def _error(self, send, code: str, request_id: str, *, status: int | None = None,
                     message_fa: str | None = None, message_en: str | None = None,
                     extra: Sequence[tuple[bytes, bytes]] = ()) -> bytes:
        st, fa, en = ERRORS.get(code, ERRORS["internal"])
        body = orjson.dumps({"error": {"code": code, "message_fa": message_fa or fa, "message_en": message_en or en,
                                       "request_id": request_id}})
        self.metrics.gateway_errors.labels(code if code in ERRORS else "other").inc()
        headers = [_JSON_CT, (b"content-length", str(len(body)).encode()), (b"x-zistboom-error", code.encode()),
                   (b"x-request-id", request_id.encode())]
        headers.extend(extra)
        await send({"type": "http.response.start", "status": status or st, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return body

    async def _read_body(self, receive, first: dict | None = None) -> bytes | None:
        """Whole request body, or None if it is over the limit or the client went away."""
        chunks: list[bytes] = []
        size = 0
        limit = self.config.max_request_body
        while True:
            msg, first = (first, None) if first is not None else (await receive(), None)
            if msg["type"] == "http.disconnect":
                return None
            b = msg.get("body", b"")
            if b:
                size += len(b)
                if size > limit:
                    return None
                chunks.append(b)
            if not msg.get("more_body"):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _proxy(self, scope, receive, send) -> None:  # noqa: C901 - the hot path, kept in one piece
        t_start = time.perf_counter()
        sinks = self.sinks
        arrival = datetime.now(timezone.utc) if sinks else None
        method = scope["method"]
        rest = scope["path"][len(_PREFIX):]
        service_id, _, sub = rest.partition("/")
        rel_path = "/" + sub
        api_key = request_id = province_h = None
        province_conflict = False  # two X-Caller-Province values: which one a proxy meant is unknowable
        conn_tokens: set[bytes] | None = None
        has_idem = False
        idem_key: bytes | None = None
        xff = None
        for n, v in scope["headers"]:
            if n == b"x-api-key":
                api_key = v
            elif n == b"authorization":
                if api_key is None and v[:7].lower() == b"bearer ":
                    api_key = v[7:].strip()
            elif n == b"x-request-id":
                request_id = _sane_request_id(v)
            elif n == b"x-caller-province":
                p = v.decode("latin-1").strip().upper()
                province_conflict = province_conflict or (province_h is not None and p != province_h)
                province_h = p
            elif n == b"idempotency-key":
                # two Idempotency-Key headers: ambiguous, answered 400 bad_idempotency_key below
                idem_key = b"" if has_idem else v
                has_idem = True
            elif n == b"connection":
                conn_tokens = conn_tokens or set()
                conn_tokens.update(t.strip().lower() for t in v.split(b","))
            elif n == b"x-forwarded-for":
                xff = v if xff is None else xff + b", " + v
        if request_id is None:
            request_id = _new_request_id()

        ex = Exchange(request_id, arrival, None, None, None, None, None, method, rel_path, 0, 0.0) if sinks else None

        ex_service = "_unknown"
        ex_province = "_unknown"
        table = self.table
        if table is None:
            return await self._fail(send, request_id, ex, ex_service, ex_province, method, rel_path, t_start, "route_table_unavailable")
        snap = table.snapshot
        client_id = table.client_for_key(api_key) if api_key else None
        if client_id is None:
            return await self._fail(send, request_id, ex, ex_service, ex_province, method, rel_path, t_start, "unauthorized", extra=((b"www-authenticate", b'Bearer realm="zistboom"'),))
        client = snap.clients[client_id]
        if ex is not None:
            ex.client_id = client_id
        svc = snap.services.get(service_id)
        if svc is None:
            return await self._fail(send, request_id, ex, ex_service, ex_province, method, rel_path, t_start, "unknown_service")
        ex_service = service_id
        if ex is not None:
            ex.service_id = service_id
        if service_id not in client.allowed_services:
            return await self._fail(send, request_id, ex, ex_service, ex_province, method, rel_path, t_start, "forbidden")
        if "/." in rel_path and any(seg in (".", "..") for seg in rel_path.split("/")):
            # dot segments (also %2e%2e / %2f-encoded) could climb out of the service's prefix at the operator
            return await self._fail(send, request_id, ex, ex_service, ex_province, method, rel_path, t_start, "bad_path")
        op = table.match_operation(service_id, method, rel_path)
        if op is None:
            return await self._fail(send, request_id, ex, ex_service, ex_province, method, rel_path, t_start, "unknown_operation")
        if ex is not None:
            ex.operation = op.operation_id
        if province_conflict:
            return await self._fail(send, request_id, ex, ex_service, ex_province, method, rel_path, t_start, "ambiguous_province")
        province = province_h or client.province
        if not province:
            return await self._fail(send, request_id, ex, ex_service, ex_province, method, rel_path, t_start, "province_required")
        if province not in snap.provinces:
            return await self._fail(send, request_id, ex, ex_service, ex_province, method, rel_path, t_start, "unknown_province")
        ex_province = province
        if ex is not None:
            ex.caller_province = province
        limiter = self.shared_limiter
        wait = self.client_limiter.take(client_id) if limiter is None else await limiter.take(client_id)
        if wait:
            return await self._fail(send, request_id, ex, ex_service, ex_province, method, rel_path, t_start, "rate_limited", extra=((b"retry-after", str(max(1, int(wait + 0.999))).encode()),))
        msg = await receive()
        if msg["type"] == "http.request" and not msg.get("more_body"):
            body = msg.get("body", b"")  # the whole body came in one message (the common case)
            if len(body) > self.config.max_request_body:
                body = None
        else:
            body = await self._read_body(receive, msg)
        if body is None:
            return await self._fail(send, request_id, ex, ex_service, ex_province, method, rel_path, t_start, "body_too_large")

        # -- build the upstream request -------------------------------------------------------
        drop = _DROP_REQUEST if conn_tokens is None else _DROP_REQUEST | conn_tokens
        fwd = [(n, v) for n, v in scope["headers"] if n not in drop]
        rid_b = request_id.encode()
        client_addr = scope.get("client")
        peer = (client_addr[0] if client_addr else "unknown").encode()
        # a client's own X-Forwarded-For is kept only behind a trusted proxy (config), else spoofable
        fwd.append((b"x-forwarded-for", xff + b", " + peer if xff and self.config.trust_forwarded_for else peer))
        fwd.append((b"x-request-id", rid_b))
        fwd.append((b"x-zistboom-client", client_id.encode()))
        fwd.append((b"x-zistboom-caller-province", province.encode()))
        raw_path = scope.get("raw_path") or scope["path"].encode()
        qs = scope.get("query_string")
        target_tail = raw_path.decode("latin-1") + ("?" + qs.decode("latin-1") if qs else "")

        cands = table.candidates(service_id, province)
        if not cands:
            return await self._fail(send, request_id, ex, ex_service, ex_province, method, rel_path, t_start, "no_route")
        if idem_key is None or op.idempotent:
            return await self._forward(send, request_id, ex, ex_province, method, rel_path, t_start, svc, service_id,
                                       province, op.idempotent or has_idem, cands, fwd, body, target_tail, rid_b)
        # -- non-idempotent request with an Idempotency-Key: answer repeats from the store -----
        key = _idempotency_key(idem_key)
        if key is None:
            return await self._fail(send, request_id, ex, ex_service, ex_province, method, rel_path, t_start,
                                    "bad_idempotency_key")
        fp = fingerprint(method, target_tail, body, province)
        kind, data = await self.idempotency.begin(client_id, key, fp)
        idem_metric = self.metrics.idempotency
        if kind == "replay":
            idem_metric.labels("replayed").inc()
            return await self._replay(send, request_id, ex, service_id, province, data, t_start, method, rel_path)
        if kind != "proceed":
            idem_metric.labels(kind).inc()
            code = "idempotency_in_flight" if kind == "in_flight" else "idempotency_key_reused"
            extra = ((b"retry-after", b"1"),) if kind == "in_flight" else ()
            return await self._fail(send, request_id, ex, ex_service, ex_province, method, rel_path, t_start, code,
                                    extra=extra)
        claim = data
        try:
            await self._forward(send, request_id, ex, ex_province, method, rel_path, t_start, svc, service_id,
                                province, True, cands, fwd, body, target_tail, rid_b, claim=claim, fp=fp)
        finally:
            if not claim.done:
                idem_metric.labels("released").inc()
                await self.idempotency.release(claim)

    async def _replay(self, send, request_id: str, ex: Exchange | None, service_id: str, province: str,
                      stored: StoredResponse, t_start: float, method: str, rel_path: str) -> None:
        """Answer a repeated Idempotency-Key request from the store (no operator is contacted)."""
        if stored.body is None:
            return await self._fail(send, request_id, ex, service_id, province, method, rel_path, t_start,
                                    "idempotent_response_unavailable",
                                    message_en=f"{ERRORS['idempotent_response_unavailable'][2]} Original status "
                                               f"{stored.status}, body SHA-256 {stored.digest}.")
        out = list(stored.headers)
        out.append((b"content-length", str(len(stored.body)).encode()))
        out.append((b"x-request-id", request_id.encode()))
        out.append((b"idempotent-replayed", b"true"))
        await send({"type": "http.response.start", "status": stored.status, "headers": out})
        await send({"type": "http.response.body", "body": stored.body})
        self._finish_metrics(service_id, "_gateway", province, "idempotent_replay", t_start)
        if ex is not None:
            # the gateway answered (from the store): a gateway "error" code with a < 500 status is
            # left out of operators' availability by monitoring, and the exchange log keeps it
            ex.status, ex.gateway_error = stored.status, "idempotent_replay"
            ex.latency_ms = (time.perf_counter() - t_start) * 1000.0
            ex.digest_input = (method, rel_path, [(b"x-request-id", request_id.encode())], b"", stored.status, out,
                               stored.body)
            self._emit(ex)

    async def _forward(self, send, request_id: str, ex: Exchange | None, ex_province: str, method: str,
                       rel_path: str, t_start: float, svc, service_id: str, province: str, may_retry: bool,
                       cands, fwd, body: bytes, target_tail: str, rid_b: bytes, claim=None, fp: str = "") -> None:
        """Send the request to operators (retries, failover) and answer the client."""
        ex_service = service_id
        cfg = self.config
        balancer = self.balancer
        metrics = self.metrics
        self.budget.deposit()
        tried: set[str] = set()
        no_answer: set[str] = set()  # tried operators whose try failed without an HTTP answer
        attempts: list[Attempt] = []
        resp = None
        last_5xx = None
        last_exc: UpstreamError | None = None
        first_op = None
        self._inflight += 1
        try:
            for i in range(cfg.max_attempts):
                picked = balancer.choose(cands, tried)
                if picked is None and may_retry and no_answer and last_5xx is not None:
                    # every operator was tried and one answered 5xx: go back (once) to one whose
                    # failure was a timeout/reset/connect error rather than pass that 5xx on
                    picked = balancer.choose(cands, tried - no_answer)
                    no_answer.clear()
                if picked is None:
                    break
                cand, st = picked
                if i:
                    if not self.budget.try_withdraw():
                        metrics.retry_budget_exhausted.inc()
                        break
                    metrics.retries.labels(service_id).inc()
                oid = cand.operator.id
                tried.add(oid)
                if first_op is None:
                    first_op = oid
                eps = cand.endpoints
                host, port, prefix = eps[st.rr % len(eps)] if len(eps) > 1 else eps[0]
                st.rr += 1
                st.inflight += 1
                t0 = time.perf_counter()
                exc = None
                r = None
                try:
                    r = await self.client.request(host, port, method, prefix + target_tail, fwd, body, cfg.try_timeout)
                except UpstreamError as e:
                    exc = e
                finally:
                    st.inflight -= 1
                lat = (time.perf_counter() - t0) * 1000.0
                if r is not None and r.status < 500:
                    balancer.success(oid, lat)
                    attempts.append(Attempt(oid, "ok", r.status, lat))
                    metrics.hot.attempt(oid, "ok")
                    resp = r
                    break
                if r is not None:
                    outcome = "http_5xx"
                    last_5xx = r
                    last_exc = None
                else:
                    outcome = exc.outcome
                    last_exc = exc
                    no_answer.add(oid)
                balancer.failure(oid, lat)
                attempts.append(Attempt(oid, outcome, r.status if r is not None else None, lat))
                metrics.hot.attempt(oid, outcome)
                if isinstance(exc, ResponseTooLarge):
                    break
                if not (may_retry or isinstance(exc, ConnectError)):
                    break  # may have reached the operator: never send a non-idempotent request twice
        finally:
            self._inflight -= 1
        if ex is not None:
            ex.attempts = attempts
        if resp is None and last_exc is None and last_5xx is not None:
            resp = last_5xx
        if resp is None:
            if claim is not None:
                self.metrics.idempotency.labels("released").inc()
                await self.idempotency.release(claim)  # no answer: the client may retry with the same key
            if isinstance(last_exc, ResponseTooLarge):
                code = "response_too_large"
            elif last_exc is not None and last_exc.outcome == "timeout":
                code = "upstream_timeout"
            else:
                code = "upstream_unavailable" if attempts or not tried else "no_route"
            return await self._fail(send, request_id, ex, ex_service, ex_province, method, rel_path, t_start, code)
        answered = attempts[-1].operator_id
        if answered != first_op:
            metrics.failovers.labels(service_id).inc()

        # -- answer the client ----------------------------------------------------------------
        out = []
        has_rid = False
        r_tokens = None
        for n, v in resp.headers:
            ln = n.lower()
            if ln in _DROP_RESPONSE:
                if ln == b"connection" and v not in _PLAIN_CONNECTION:
                    r_tokens = r_tokens or set()
                    r_tokens.update(t.strip().lower() for t in v.split(b","))
                continue
            if ln == b"x-request-id":
                has_rid = True
            out.append((ln, v))
        if r_tokens:  # headers the operator named in Connection are hop-by-hop too
            out = [(n, v) for n, v in out if n not in r_tokens]
        rbody = resp.body if method != "HEAD" else b""
        if method != "HEAD":
            out.append((b"content-length", str(len(rbody)).encode()))
        out.append((b"x-zistboom-operator", answered.encode()))
        if claim is not None:
            # stored before the client sees the answer, so a repeat can never overtake the record
            if self.idempotency.storable(resp.status):
                kept = [(n, v) for n, v in out if n not in (b"content-length", b"x-request-id")]
                await self.idempotency.complete(claim, fp, StoredResponse(resp.status, kept, rbody,
                                                                          hashlib.sha256(rbody).hexdigest(), len(rbody)))
                self.metrics.idempotency.labels("stored").inc()
            else:
                self.metrics.idempotency.labels("released").inc()
                await self.idempotency.release(claim)
        if not has_rid:
            out.append((b"x-request-id", rid_b))
        await send({"type": "http.response.start", "status": resp.status, "headers": out})
        await send({"type": "http.response.body", "body": rbody})
        self._finish_metrics(service_id, answered, province, _status_class(resp.status), t_start)
        if ex is not None:
            ex.operator_id = answered
            ex.status = resp.status
            ex.latency_ms = (time.perf_counter() - t_start) * 1000.0
            ex.digest_input = (method, rel_path, fwd, body, resp.status, out, rbody)  # hashed off the event loop
            if svc.keep_bodies:
                ex.request_body = body
                ex.response_body = rbody
            self._emit(ex)

    async def _fail(self, send, request_id: str, ex: Exchange | None, service: str, province: str, method: str,
                    rel_path: str, t_start: float, code: str, **kw) -> None:
        """Answer a proxied request with a gateway error; metrics and the exchange record."""
        body = await self._error(send, code, request_id, **kw)
        self._finish_metrics(service, "_gateway", province, code, t_start)
        if ex is not None:
            st = kw.get("status") or ERRORS[code][0]
            ex.status, ex.gateway_error = st, code
            ex.latency_ms = (time.perf_counter() - t_start) * 1000.0
            rid = [(b"x-request-id", request_id.encode())]
            sent = body if method != "HEAD" else b""  # the server sends no body to HEAD
            ex.digest_input = (method, rel_path, rid, b"", st, [_JSON_CT] + rid, sent)
            self._emit(ex)

    def _finish_metrics(self, service: str, operator: str, province: str, code: str, t_start: float) -> None:
        self.metrics.hot.request(service, operator, province, code, time.perf_counter() - t_start)

    def _emit(self, ex: Exchange) -> None:
        for s in self.sinks:
            try:
                s.on_exchange(ex)
            except Exception:  # a sink must never break the gateway
                log.exception("sink on_exchange failed")

    # ------------------------------------------------------------------ other endpoints
    async def _healthz(self, scope, send) -> None:
        table = self.table
        now = time.monotonic()
        if table is None:
            payload = {"status": "unavailable", "route_table": None, "refresh_error": self.last_refresh_error}
            status = 503
        else:
            age = now - table.checked_at
            stale = age > max(5.0, 5 * self.config.refresh_interval)
            payload = {
                "status": "degraded" if stale else "ok",
                "route_table": {"version": table.version, "age_s": round(age, 3),
                                "loaded_age_s": round(now - table.loaded_at, 3), "stale": stale,
                                "services": len(table.snapshot.services),
                                "operators": len(table.snapshot.operators)},
                "refresh_error": self.last_refresh_error,
                "ejected_operators": sorted(s.id for s in self.balancer.states.values() if s.ejected),
            }
            status = 200
        body = orjson.dumps(payload)
        await send({"type": "http.response.start", "status": status,
                    "headers": [_JSON_CT, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def _metrics(self, scope, send) -> None:
        table = self.table
        if table is not None:
            self.metrics.route_age.set(time.monotonic() - table.checked_at)
        self.metrics.inflight.set(self._inflight)
        body, ctype = self.metrics.render()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", ctype.encode()), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def operators_for(self, service_id: str | None, province: str | None) -> list[dict[str, Any]]:
        """Licensed operators that would serve ``province`` for ``service_id``, in tier order:
        ``[{"id", "name_fa", "name_en", "home_province", "tier", "healthy"}]``. ``healthy`` is this
        gateway's current view: the last active health check passed and the operator is not
        ejected by outlier detection."""
        table = self.table
        if table is None or not service_id or not province:
            return []
        states = self.balancer.states
        out = []
        for c in table.candidates(service_id, province):
            st = states.get(c.operator.id)
            out.append({"id": c.operator.id, "name_fa": c.operator.name_fa, "name_en": c.operator.name_en,
                        "home_province": c.operator.home_province, "tier": c.tier,
                        "healthy": st is None or (st.probe_ok and not st.ejected)})
        return out

    async def _receipt(self, scope, send) -> None:
        """``GET /v1/receipts/{request_id}``: the exchange-log receipt of the caller's own exchange
        (record, inclusion proof, signed tree head, public key); another client's id → 404.
        Statuses and bodies come from :func:`zistboom.exchange_log.api.receipt_response`."""
        request_id = _request_id(scope)
        if scope["method"] != "GET":
            return await self._error(send, "method_not_allowed", request_id, extra=((b"allow", b"GET"),))
        api_key = None
        for n, v in scope["headers"]:
            if n == b"x-api-key":
                api_key = v
            elif n == b"authorization" and api_key is None and v[:7].lower() == b"bearer ":
                api_key = v[7:].strip()
        table = self.table
        client_id = table.client_for_key(api_key) if (api_key and table is not None) else None
        if client_id is None:
            return await self._error(send, "unauthorized", request_id,
                                     extra=((b"www-authenticate", b'Bearer realm="zistboom"'),))
        store = next((s.store for s in self.sinks if getattr(s, "store", None) is not None), None)
        if store is None:
            return await self._error(send, "receipts_unavailable", request_id)
        from zistboom.exchange_log.api import receipt_response

        status, headers, body = await receipt_response(store, scope["path"][len("/v1/receipts/"):], client_id)
        headers = list(headers)
        if status != 200:
            # the gateway's error format: X-Zistboom-Error and request_id in the body
            code = "internal"
            try:
                doc = orjson.loads(body)
                err = doc["error"]
                code = str(err["code"])
                err["request_id"] = request_id
                body = orjson.dumps(doc)
            except (orjson.JSONDecodeError, KeyError, TypeError):
                pass
            self.metrics.gateway_errors.labels(code if code in ERRORS else "other").inc()
            headers.append((b"x-zistboom-error", code.encode("ascii", "replace")))
        await send({"type": "http.response.start", "status": status,
                    "headers": [*headers, (b"content-length", str(len(body)).encode()),
                                (b"x-request-id", request_id.encode())]})
        await send({"type": "http.response.body", "body": body})

    async def _ask(self, scope, receive, send) -> None:
        request_id = _request_id(scope)
        if scope["method"] != "POST":
            return await self._error(send, "method_not_allowed", request_id, extra=((b"allow", b"POST"),))
        client_addr = scope.get("client")
        wait = self.ask_limiter.take(client_addr[0] if client_addr else "unknown")
        if wait:
            return await self._error(send, "rate_limited", request_id,
                                     extra=((b"retry-after", str(max(1, int(wait + 0.999))).encode()),))
        body = await self._read_body(receive)
        if body is None:
            return await self._error(send, "body_too_large", request_id)
        try:
            data = orjson.loads(body)
            text = data["text"] if isinstance(data, dict) else None
        except (orjson.JSONDecodeError, KeyError):
            text = None
        if not isinstance(text, str):
            return await self._error(send, "bad_json", request_id,
                                     message_fa='بدنهٔ درخواست باید JSON به شکل {"text": "..."} باشد.',
                                     message_en='The body must be JSON of the form {"text": "..."}.')
        province = None
        for n, v in scope["headers"]:
            if n == b"x-caller-province":
                p = v.decode("latin-1").strip().upper()
                if province is not None and p != province:
                    return await self._error(send, "ambiguous_province", request_id)
                province = p
        table = self.table
        if province and table is not None and province not in table.snapshot.provinces:
            return await self._error(send, "unknown_province", request_id)
        try:
            from zistboom.nlp.frontdoor import BadQuestion, get_front_door
        except ImportError:
            return await self._error(send, "ask_unavailable", request_id)
        try:
            # get_front_door() loads the model on first use: keep that off the event loop too
            result = await asyncio.to_thread(lambda: get_front_door().ask(text))
        except BadQuestion as exc:
            return await self._error(send, exc.code, request_id, status=400,
                                     message_fa=exc.message_fa, message_en=exc.message_en)
        except Exception:
            log.exception("front door failed")
            return await self._error(send, "ask_unavailable", request_id)
        service_id = result["service"]
        result["operators"] = self.operators_for(service_id, province)
        result.setdefault("caller_province", province)
        out = orjson.dumps(result, default=_json_default)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [_JSON_CT, (b"content-length", str(len(out)).encode()),
                                (b"x-request-id", request_id.encode())]})
        await send({"type": "http.response.body", "body": out})


def _idempotency_key(v: bytes) -> str | None:
    """The Idempotency-Key value: an sf-string (``"..."``, as in the IETF draft) or a bare token;
    1–255 printable ASCII characters. None if invalid."""
    v = v.strip()
    if len(v) >= 2 and v[:1] == b'"' and v[-1:] == b'"':
        v = v[1:-1]
    if 0 < len(v) <= 255 and all(32 <= c < 127 for c in v):
        return v.decode("ascii")
    return None


_STATUS_CLASSES = {i: f"{i}xx" for i in range(1, 10)}


def _status_class(status: int) -> str:
    return _STATUS_CLASSES.get(status // 100) or f"{status // 100}xx"


def _request_id(scope) -> str:
    for n, v in scope["headers"]:
        if n == b"x-request-id":
            rid = _sane_request_id(v)
            if rid:
                return rid
    return _new_request_id()


def _json_default(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return str(obj)


def create_gateway(db_url: str, *, sinks: Sequence[ExchangeSink] = (), config: GatewayConfig | None = None) -> Gateway:
    """The gateway ASGI app for the registry at ``db_url``.

    Lifespan startup loads the route table (in a thread), starts the refresh thread, the active
    health checks and the sinks (``start()`` if they have it); shutdown stops them and calls
    ``close()`` on sinks. Serve it with :class:`zistboom.gateway.server.GatewayServer` (which calls
    ``startup()`` / ``shutdown()``); any ASGI server with ``lifespan="on"`` works too.
    """
    return Gateway(db_url, sinks, config)

"""State shared by gateway replicas through Redis, with in-process fallbacks.

Several gateway replicas run side by side (no single point of failure); what must be the same on
all of them lives in Redis (``GatewayConfig.redis_url``, env ``ZISTBOOM_REDIS_URL``):

* :class:`IdempotencyStore` — answers of completed non-idempotent requests that carried an
  ``Idempotency-Key``, after the IETF HTTPAPI draft "The Idempotency-Key HTTP Header Field"
  (draft-ietf-httpapi-idempotency-key-header): the key is scoped to the client system; a repeat
  with the same key and the same request fingerprint is answered from the store (the gateway adds
  ``Idempotent-Replayed: true``) and never reaches an operator; a repeat while the first request
  is still in flight gets **409**; the same key with a different request fingerprint gets **422**.
* :class:`SharedRateLimiter` — per-client rate limits enforced across replicas with GCRA, the
  Generic Cell Rate Algorithm (ATM Forum Traffic Management 4.0 / ITU-T I.371; as used for HTTP
  by redis-cell and described in Brandur Leach, "Rate limiting, cells, and GCRA", 2015). GCRA
  keeps one number per client (the theoretical arrival time, TAT) and is equivalent to a token
  bucket of ``burst`` tokens refilled at ``rate``/s. It runs as one Lua script (atomic in Redis)
  using Redis' own clock (``TIME``), so replicas' clocks never matter.

Redis is never a single point of failure either: every call has short socket timeouts and goes
through :class:`RedisLink`, a small circuit breaker. On an error (refused, timeout, reset, script
error) the call falls back to the replica's own state — the local token bucket, the in-process
idempotency store — the error is logged (once per outage) and counted in
``zistboom_gateway_redis_errors_total{op}`` / ``zistboom_gateway_redis_fallbacks_total{feature}``,
and Redis is not tried again for ``redis_retry_interval`` seconds, so an outage costs one timeout,
not one per request. Without ``redis_url`` the in-process stores are used (one replica's view).

All coroutines run on the gateway's event loop (``redis.asyncio``); nothing here blocks it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass

import orjson

log = logging.getLogger("zistboom.gateway")

# ---------------------------------------------------------------------------------- Redis link


class RedisLink:
    """One ``redis.asyncio`` client (per event loop) behind a circuit breaker.

    ``call(op, fn, *args)`` awaits ``fn(*args)``; it returns :data:`UNAVAILABLE` instead of raising
    when Redis is down or failed (and then skips Redis for ``retry_interval`` seconds).
    """

    UNAVAILABLE = object()

    def __init__(self, url: str, *, timeout: float = 0.2, retry_interval: float = 1.0, max_connections: int = 64,
                 metrics=None):
        from redis.asyncio import BlockingConnectionPool, Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.url = url
        self.metrics = metrics
        self.retry_interval = retry_interval
        # A *blocking* pool: with more concurrent requests than connections a call waits (up to
        # ``timeout``) for a free one; redis-py's default pool raises "Too many connections" at 100
        # instead, which under load would needlessly switch to the local fallback (seen in the bench
        # at 128 connections). No client-side retries: the breaker and the local fallback handle
        # failures, so a dead Redis costs at most one timeout per retry_interval.
        pool = BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=timeout,
                                               socket_timeout=timeout, socket_connect_timeout=timeout,
                                               retry_on_timeout=False, retry=Retry(NoBackoff(), 0),
                                               health_check_interval=0, decode_responses=False)
        self.client = Redis(connection_pool=pool)
        self.down_until = 0.0
        self.down = False
        self.errors = 0

    def script(self, lua: str):
        return self.client.register_script(lua)

    async def call(self, op: str, fn, *args, **kw):
        if self.down and time.monotonic() < self.down_until:
            return self.UNAVAILABLE
        try:
            result = await fn(*args, **kw)
        except Exception as exc:  # redis errors, OSError, timeouts: never into the request path
            if str(exc).startswith("No connection available"):
                # every pooled connection stayed busy for ``timeout`` (this replica is overloaded):
                # fall back for this call only; Redis itself is fine, so the breaker stays closed
                if self.metrics is not None:
                    self.metrics.redis_errors.labels("pool_wait").inc()
                return self.UNAVAILABLE
            self._failed(op, exc)
            return self.UNAVAILABLE
        if self.down:
            self.down = False
            log.warning("redis %s reachable again", self._where())
            if self.metrics is not None:
                self.metrics.redis_up.set(1)
        return result

    def _failed(self, op: str, exc: BaseException) -> None:
        self.errors += 1
        if self.metrics is not None:
            self.metrics.redis_errors.labels(op).inc()
            self.metrics.redis_up.set(0)
        if not self.down:
            log.error("redis %s unreachable (%s: %s); using this replica's local state for %.1fs",
                      self._where(), type(exc).__name__, exc, self.retry_interval)
        self.down = True
        self.down_until = time.monotonic() + self.retry_interval

    def _where(self) -> str:
        return self.url.rsplit("@", 1)[-1]  # never log a password

    async def aclose(self) -> None:
        try:
            await self.client.aclose()
            await self.client.connection_pool.disconnect()
        except Exception:  # pragma: no cover - shutdown
            pass


# ---------------------------------------------------------------------------------- rate limits

_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local wait = new_tat - tolerance - now
if wait > 0 then return math.ceil(wait) end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil(tolerance / 1000) + 1000)
return 0
"""


class SharedRateLimiter:
    """GCRA per key in Redis (see module docstring) with a local token-bucket fallback.

    ``await take(key)`` → 0.0 if the request may pass, else seconds until it would (``Retry-After``).
    ``local`` is a :class:`zistboom.gateway.routing.RateLimiter` with the same rate and burst.
    """

    def __init__(self, link: RedisLink, prefix: str, rate: float, burst: float, local, metrics=None):
        self.link = link
        self.prefix = prefix
        self.local = local
        self.metrics = metrics
        burst = max(1.0, burst)
        self.interval_us = 1e6 / rate if rate > 0 else float("inf")
        self.tolerance_us = self.interval_us * burst
        self.args = (f"{self.interval_us:.3f}", f"{self.tolerance_us:.3f}")
        self._script = link.script(_GCRA)
        self.enabled = rate > 0 and self.tolerance_us < 1e15

    async def take(self, key: str) -> float:
        if self.enabled:
            r = await self.link.call("rate_limit", self._script, keys=[self.prefix + key], args=self.args)
            if r is not RedisLink.UNAVAILABLE:
                return int(r) / 1e6
            if self.metrics is not None:
                self.metrics.redis_fallbacks.labels("rate_limit").inc()
        return self.local.take(key)


# ---------------------------------------------------------------------------------- idempotency


@dataclass(slots=True)
class StoredResponse:
    """An answer kept for replay: status, headers (names lower-case, without ``content-length``
    and ``x-request-id``), body (None when it was larger than the store's size limit), body
    SHA-256 digest (hex) and size (bytes)."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes | None
    digest: str
    size: int


@dataclass(slots=True)
class Claim:
    """The right to process one (client, key): ``store.complete`` or ``store.release`` it."""

    key: str
    lock: bytes
    redis: bool
    done: bool = False


# values: b"L" + fingerprint (64 hex) + owner token (32 hex)   — in flight
#         b"D" + fingerprint (64 hex) + meta length (8 hex) + meta JSON + body — completed
_BEGIN = """
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ''
"""
_COMPLETE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def fingerprint(method: str, target: str, body: bytes, province: str = "") -> str:
    """Request fingerprint (hex SHA-256) over method, request target (path and query), the
    caller's province (after defaulting: it decides where the request is routed) and body."""
    h = hashlib.sha256(method.encode("ascii", "replace"))
    h.update(b"\0" + target.encode("latin-1", "replace") + b"\0")
    h.update(province.encode("latin-1", "replace") + b"\0")
    h.update(body)
    return h.hexdigest()


def _encode(fp: str, resp: StoredResponse) -> bytes:
    meta = orjson.dumps({"status": resp.status, "digest": resp.digest, "size": resp.size,
                         "stored": resp.body is not None,
                         "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in resp.headers]})
    return b"D" + fp.encode() + b"%08x" % len(meta) + meta + (resp.body or b"")


def _decode(value: bytes) -> tuple[str, StoredResponse | None]:
    """(fingerprint, response) of a stored value; response None while in flight."""
    fp = value[1:65].decode()
    if value[:1] != b"D":
        return fp, None
    n = int(value[65:73], 16)
    meta = orjson.loads(value[73:73 + n])
    body = value[73 + n:] if meta["stored"] else None
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in meta["headers"]]
    return fp, StoredResponse(meta["status"], headers, body, meta["digest"], meta["size"])


class _Memory:
    """In-process store: key → (expires monotonic, value), bounded by entries and bytes (oldest
    first out). Used without Redis and as the fallback while Redis is down."""

    def __init__(self, max_entries: int, max_bytes: int):
        self.data: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0

    def get(self, key: str) -> bytes | None:
        hit = self.data.get(key)
        if hit is None:
            return None
        if hit[0] <= time.monotonic():
            self.delete(key)
            return None
        return hit[1]

    def set(self, key: str, value: bytes, ttl: float) -> None:
        self.delete(key)
        self.data[key] = (time.monotonic() + ttl, value)
        self.bytes += len(value)
        while self.data and (len(self.data) > self.max_entries or self.bytes > self.max_bytes):
            _, (_, old) = self.data.popitem(last=False)
            self.bytes -= len(old)

    def delete(self, key: str) -> None:
        hit = self.data.pop(key, None)
        if hit is not None:
            self.bytes -= len(hit[1])


class IdempotencyStore:
    """Idempotency-Key records in Redis (``link``) or in memory (``link`` None, or Redis down).

    ``begin(client_id, key, fp)`` returns one of

    * ``("proceed", Claim)`` — first time (or the earlier attempt was released): send the request,
      then ``complete(claim, response)`` or ``release(claim)``;
    * ``("replay", StoredResponse)`` — answer from the store;
    * ``("in_flight", None)`` — the same key is being processed now (409);
    * ``("mismatch", None)`` — the key was used with a different request fingerprint (422).

    Records of completed requests live ``ttl`` seconds (24 h by default); in-flight claims expire
    after ``lock_ttl`` seconds so a replica that died mid-request does not lock a key for ever.
    Bodies over ``max_body`` bytes are not kept (only their digest and size).
    """

    def __init__(self, link: RedisLink | None, prefix: str, *, ttl: float = 86400.0, lock_ttl: float = 60.0,
                 max_body: int = 1024 * 1024, max_entries: int = 100_000, max_bytes: int = 256 * 1024 * 1024,
                 metrics=None):
        import os

        self.link = link
        self.prefix = prefix
        self.ttl = ttl
        self.lock_ttl = lock_ttl
        self.max_body = max_body
        self.memory = _Memory(max_entries, max_bytes)
        self.metrics = metrics
        self._urandom = os.urandom
        if link is not None:
            self._begin = link.script(_BEGIN)
            self._complete = link.script(_COMPLETE)
            self._release = link.script(_RELEASE)

    def _key(self, client_id: str, key: str) -> str:
        return f"{self.prefix}idem:{client_id}:{hashlib.sha256(key.encode('latin-1')).hexdigest()[:40]}"

    def _fallback(self) -> None:
        if self.metrics is not None:
            self.metrics.redis_fallbacks.labels("idempotency").inc()

    async def begin(self, client_id: str, key: str, fp: str):
        rkey = self._key(client_id, key)
        lock = b"L" + fp.encode() + self._urandom(16).hex().encode()
        current: bytes | None
        use_redis = False
        if self.link is not None:
            r = await self.link.call("idempotency", self._begin, keys=[rkey],
                                     args=[lock, str(int(self.lock_ttl * 1000))])
            if r is RedisLink.UNAVAILABLE:
                self._fallback()
            else:
                use_redis = True
                current = r or None
        if not use_redis:
            current = self.memory.get(rkey)
            if current is None:
                self.memory.set(rkey, lock, self.lock_ttl)
        if current is None:
            return "proceed", Claim(rkey, lock, use_redis)
        stored_fp, resp = _decode(current)
        if stored_fp != fp:
            return "mismatch", None
        if resp is None:
            return "in_flight", None
        return "replay", resp

    def storable(self, status: int) -> bool:
        """Answers kept for replay: every operator answer except 5xx and the "try again" statuses
        (408, 409, 425, 429): those say the request was not (fully) processed, so the key is
        released and the client's retry with the same key goes to an operator again."""
        return status < 500 and status not in (408, 409, 425, 429)

    async def complete(self, claim: Claim, fp: str, resp: StoredResponse) -> None:
        """Store the answer for ``ttl`` seconds (only if ``claim`` still holds the key)."""
        if claim.done:
            return
        claim.done = True
        if resp.body is not None and len(resp.body) > self.max_body:
            resp = StoredResponse(resp.status, resp.headers, None, resp.digest, resp.size)
        value = _encode(fp, resp)
        if claim.redis:
            r = await self.link.call("idempotency", self._complete, keys=[claim.key],
                                     args=[claim.lock, value, str(int(self.ttl * 1000))])
            if r is not RedisLink.UNAVAILABLE:
                return
            self._fallback()  # keep it locally at least: a repeat to this replica is still deduplicated
            self.memory.set(claim.key, value, self.ttl)
            return
        if self.memory.get(claim.key) == claim.lock:
            self.memory.set(claim.key, value, self.ttl)

    async def release(self, claim: Claim) -> None:
        """Forget the in-flight claim (no answer worth keeping): a repeat may be sent again."""
        if claim.done:
            return
        claim.done = True
        if claim.redis:
            await self.link.call("idempotency", self._release, keys=[claim.key], args=[claim.lock])
        elif self.memory.get(claim.key) == claim.lock:
            self.memory.delete(claim.key)

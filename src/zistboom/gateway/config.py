"""Gateway tuning knobs (all times in seconds, sizes in bytes).

Defaults follow common data-plane practice: Envoy's outlier detection (5 consecutive failures,
30 s base ejection time growing with each ejection, capped), Finagle's retry budget (20 % of
requests plus 10 retries per second, over a 10 s window), and active health checks every 5 s.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields


@dataclass(slots=True)
class GatewayConfig:
    """Configuration of one gateway app.

    Attributes:
        refresh_interval: how often the route-table thread polls ``registry_state.version`` (s).
        try_timeout: per-try upstream timeout, connect + full response (s).
        connect_timeout: TCP connect timeout to an operator (s); counted inside ``try_timeout``.
        max_attempts: total tries per request (first try + failovers).
        retry_budget_percent: share of requests that may be retried (0.2 = 20 %).
        retry_budget_min_per_s: retries per second always allowed, whatever the traffic.
        retry_budget_ttl: window over which requests deposit retry credit (s).
        outlier_consecutive_failures: consecutive failures (connect error, timeout, reset, 5xx)
            that eject an operator.
        outlier_base_ejection: first ejection time (s); the n-th consecutive ejection lasts
            ``base * 2**(n-1)`` up to ``outlier_max_ejection``. After it an operator is half-open:
            one trial request (or a passing health check) re-admits it, a failure ejects it again.
        health_interval / health_timeout: active health check period and timeout (s).
        health_unhealthy_threshold: consecutive failed probes that mark an operator unhealthy.
        health_healthy_threshold: consecutive passing probes that mark it healthy again.
        pool_max_idle: idle keep-alive connections kept per upstream endpoint (LIFO).
        pool_max_connections: open connections per upstream endpoint (idle + busy); a request
            waits (inside its try timeout) for a free one.
        pool_idle_timeout: idle connections older than this are closed instead of reused (s); keep
            it below the operators' keep-alive timeout (uvicorn: 5 s) to avoid stale-connection races.
        max_request_body / max_response_body: body limits (413 to the client / 502 ``response_too_large``).
        client_rate / client_burst: per client system token bucket (requests/s, bucket size).
        ask_rate / ask_burst: per remote IP token bucket for ``POST /v1/ask``.
        panic_routing: when every licensed operator is ejected or unhealthy, still try them
            (Envoy's "panic threshold" idea) instead of failing fast with 503.
        redis_url: Redis shared by all gateway replicas (``redis://host:port/db``), or None: then
            idempotency records and rate limits are kept per replica, in memory. See
            :mod:`zistboom.gateway.shared_state`. Env ``ZISTBOOM_REDIS_URL`` (:meth:`from_env`).
        redis_prefix: prefix of every Redis key this gateway writes (one per deployment / test).
        redis_timeout: connect and per-command timeout towards Redis (s).
        redis_retry_interval: after a Redis error, use the local fallbacks this long before trying
            Redis again (s).
        redis_max_connections: connections to Redis per replica; more concurrent calls wait (up to
            ``redis_timeout``) for a free one.
        idempotency_ttl: how long the answer of a request with an ``Idempotency-Key`` is kept (s).
        idempotency_max_body: response bodies up to this size are kept for replay (bytes).
        idempotency_memory_entries / idempotency_memory_bytes: bounds of the in-process store.
        max_header_bytes: largest request head (request line + headers, raw bytes) accepted; more
            gets 431 and the connection is closed (nginx's ``large_client_header_buffers`` idea).
            See :mod:`zistboom.gateway.server`.
        header_timeout: a request head must be complete this long after the connection opens, or
            after the first byte of a later request on it (s); else the connection is closed
            (nginx's ``client_header_timeout``, default 60 s there; 10 s here).
        body_timeout: once a request body has started (or 100 Continue was sent), at most this
            long between two reads of it, else 408 and close (s; nginx's ``client_body_timeout``).
        keep_alive_timeout: idle client keep-alive connections are closed after this (s).
        limit_concurrency: open client connections + running requests above which the gateway's
            server answers new requests 503 ``overloaded`` (None: no limit).
        backlog: listen backlog of the gateway's server.
        trust_forwarded_for: keep a client's ``X-Forwarded-For`` and append the peer address (only
            behind a trusted proxy); False (default): the operator gets the peer address only.
    """

    refresh_interval: float = 1.0
    try_timeout: float = 10.0
    connect_timeout: float = 2.0
    max_attempts: int = 3
    retry_budget_percent: float = 0.2
    retry_budget_min_per_s: float = 10.0
    retry_budget_ttl: float = 10.0
    outlier_consecutive_failures: int = 5
    outlier_base_ejection: float = 30.0
    outlier_max_ejection: float = 300.0
    health_interval: float = 5.0
    health_timeout: float = 2.0
    health_unhealthy_threshold: int = 2
    health_healthy_threshold: int = 1
    pool_max_idle: int = 256
    pool_max_connections: int = 512
    pool_idle_timeout: float = 4.0
    max_request_body: int = 10 * 1024 * 1024
    max_response_body: int = 32 * 1024 * 1024
    client_rate: float = 5000.0
    client_burst: float = 10000.0
    ask_rate: float = 5.0
    ask_burst: float = 20.0
    panic_routing: bool = True
    gc_freeze: bool = True
    redis_url: str | None = None
    redis_prefix: str = "zistboom:gw:"
    redis_timeout: float = 0.2
    redis_retry_interval: float = 1.0
    redis_max_connections: int = 64
    idempotency_ttl: float = 24 * 3600.0
    idempotency_max_body: int = 1024 * 1024
    idempotency_memory_entries: int = 100_000
    idempotency_memory_bytes: int = 256 * 1024 * 1024
    max_header_bytes: int = 64 * 1024
    header_timeout: float = 10.0
    keep_alive_timeout: float = 5.0
    body_timeout: float = 30.0
    limit_concurrency: int | None = 8192
    backlog: int = 2048
    trust_forwarded_for: bool = False

    @classmethod
    def from_env(cls, environ=None, **overrides) -> "GatewayConfig":
        """Defaults, then ``ZISTBOOM_REDIS_URL`` / ``ZISTBOOM_REDIS_PREFIX`` from the environment,
        then ``overrides`` (field name → value). Raises TypeError for an unknown field."""
        env = os.environ if environ is None else environ
        kw = {}
        if env.get("ZISTBOOM_REDIS_URL"):
            kw["redis_url"] = env["ZISTBOOM_REDIS_URL"]
        if env.get("ZISTBOOM_REDIS_PREFIX"):
            kw["redis_prefix"] = env["ZISTBOOM_REDIS_PREFIX"]
        names = {f.name for f in fields(cls)}
        unknown = set(overrides) - names
        if unknown:
            raise TypeError(f"unknown GatewayConfig fields: {sorted(unknown)}")
        kw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kw)

"""What the gateway tells the rest of the product: one :class:`Exchange` per client request and one
:class:`ProbeResult` per active health check, delivered to registered :class:`ExchangeSink` objects
(the exchange log, monitoring).

Sinks are called on the gateway's event loop, so ``on_*`` methods must return quickly (enqueue and
go), never block on I/O and never raise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(slots=True)
class Attempt:
    """One try of a request at one upstream operator.

    ``outcome`` is one of ``ok`` (any answer that is not a failure), ``http_5xx``, ``connect_error``,
    ``timeout``, ``reset`` (connection dropped mid-exchange). ``latency_ms`` is wall time of the try.
    """

    operator_id: str
    outcome: str
    status: int | None
    latency_ms: float


@dataclass(slots=True)
class Exchange:
    """One client request through the gateway, finished.

    ``time`` is the arrival time (aware UTC, microseconds). ``path`` is the service-relative path
    without the query string. ``operator_id`` is the operator that gave the final answer (None when
    the gateway answered itself). ``gateway_error`` is the gateway's own error code (``no_route``,
    ``forbidden``...) or None. Digests are lowercase hex SHA-256 from ``zistboom.exchange_log.digest``.
    Bodies are only set when the service is configured to keep them (``ServiceInfo.keep_bodies``).

    Digests are computed lazily: the gateway sets ``digest_input`` = ``(method, path,
    request_headers, request_body, status, response_headers, response_body)`` (header lists of
    ``(bytes, bytes)``) and leaves ``request_digest``/``response_digest`` empty; :meth:`digests`
    computes both on first use. Why: hashing costs the gateway's event loop several µs per request,
    and the process writer ships the input to its own process and hashes there
    (:mod:`zistboom.exchange_log.writer_proc`). The header lists and bodies must not be changed
    after the exchange is emitted (the gateway never does).
    """

    request_id: str
    time: datetime
    client_id: str | None
    service_id: str | None
    operation: str | None
    operator_id: str | None
    caller_province: str | None
    method: str
    path: str
    status: int
    latency_ms: float
    attempts: list[Attempt] = field(default_factory=list)
    gateway_error: str | None = None
    request_digest: str = ""
    response_digest: str = ""
    request_body: bytes | None = None
    response_body: bytes | None = None
    digest_input: tuple | None = None

    def digests(self) -> tuple[str, str]:
        """``(request_digest, response_digest)``, computed from ``digest_input`` on first call (then
        ``digest_input`` is cleared and the fields hold the hex digests)."""
        if self.digest_input is not None:
            from zistboom.exchange_log.digest import digests_of  # noqa: PLC0415 - the gateway has no import-time dependency on it

            self.request_digest, self.response_digest = digests_of(self.digest_input)
            self.digest_input = None
        return self.request_digest, self.response_digest

    @property
    def failovers(self) -> int:
        """Number of times the request moved to a different operator."""
        return max(0, len({a.operator_id for a in self.attempts}) - 1)


@dataclass(slots=True)
class ProbeResult:
    """One active health check of an operator's health URL."""

    operator_id: str
    time: datetime
    ok: bool
    latency_ms: float
    status: int | None = None
    error: str | None = None


class ExchangeSink(Protocol):
    def on_exchange(self, exchange: Exchange) -> None: ...

    def on_probe(self, probe: ProbeResult) -> None: ...

"""Route table, operator choice, outlier detection, retry budget and rate limiting.

Tiering (which licensed operators serve a caller, in order)
-----------------------------------------------------------
A licence lists the provinces its operator may *serve*. A caller from province ``P`` may only be
routed to operators holding a routable licence (``LicenceInfo.routable``: status ``active`` and
``valid_from <= now < valid_until``) that covers the service and lists ``P``. Among those, tiers
are decided by where the *operator is based* (``OperatorInfo.home_province``):

* tier 0 — the operator is based in ``P`` (own province);
* tier 1 — the operator is based in a province bordering ``P`` (``ProvinceInfo.neighbours``);
* tier 2 — the operator is based anywhere else (national).

An operator with no licence listing ``P`` is never used for ``P``, whatever its tier would be.
The best (lowest) tier with an *available* operator is used; within it the choice is by load
(power of two choices, Mitzenmacher 2001, on ``(in-flight + 1) × latency estimate``, see below).
Failover moves to the next best operator not yet tried, which may be in the next tier.

Latency estimate (Peak EWMA with aging)
---------------------------------------
Per operator, in milliseconds, updated on the event loop only:

* **Peak EWMA** (Finagle's ``com.twitter.finagle.loadbalancer.PeakEwma``, also Linkerd's
  ``tower::load::PeakEwma`` and Envoy's contrib ``peak_ewma``): a sample above the estimate
  replaces it at once (a slowdown is seen on the first slow answer); a sample below it moves the
  estimate by ``PEAK_ALPHA`` (0.3) towards it. A failed try's wall time counts only if it raises
  the estimate (a fast 5xx is no evidence of speed; a timeout is evidence of slowness).
* **Aging** (the classic anti-starvation remedy of priority schedulers): an estimate only changes
  when its operator answers, so a single slow answer (a cold connection, a GC pause) could keep an
  equally good operator unpicked for ever — with sequential traffic (in-flight always 0) P2C then
  always prefers the other one (seen: 1 of 1 400 requests). So each time an operator *loses* a
  P2C comparison with a higher latency estimate than the winner's, the gap between the two
  estimates shrinks to ``(1 − AGING) × exp(−Δt / DECAY_S)`` of itself (``AGING`` = 0.1 per lost
  comparison; ``DECAY_S`` = 10 s, Finagle's default ``decayTime``, with Δt the time since the
  loser's estimate last changed), and once it is under ``SNAP`` (2 %) of the winner's estimate the
  two are taken as equal (the P2C tie is then broken by the random draw order). The neutral prior
  a stale estimate relaxes to is therefore *the competing operator's current estimate*: what the
  balancer believes a healthy peer costs now. Finagle and Linkerd decay towards 0 with time only,
  which takes ``decayTime × ln(ratio)`` (tens of seconds) to recover; counting lost comparisons
  makes recovery independent of the request rate.
  Cost: a truly ``k``-times slower operator is re-sampled about once per
  ``ln(k / SNAP) / −ln(1 − AGING)`` comparisons it takes part in (k = 10: ~1 in 60), and its
  estimate jumps back up to its real latency on that answer. Health-check latency is deliberately
  *not* fed in: a cheap ``/health`` says nothing about the cost of the service's operations.
* An operator without any sample yet is assumed to cost what its competitor costs (1 ms if
  neither has a sample), so a new operator is neither flooded nor starved.

Availability (outlier detection, after Envoy's ``consecutive_5xx``)
-------------------------------------------------------------------
An operator is ejected after ``outlier_consecutive_failures`` consecutive failed tries (connect
error, timeout, reset, 5xx). The n-th consecutive ejection lasts ``base × 2^(n-1)`` (capped).
When it ends the operator is *half-open*: exactly one trial request is let through; success
re-admits it, failure ejects it again for twice as long. A passing active health check after the
ejection time also re-admits it. Active health checks failing ``health_unhealthy_threshold``
times in a row mark the operator unhealthy (not routed) until a probe passes again. If every
licensed operator is unavailable the gateway still tries them ("panic routing", Envoy's panic
threshold idea) rather than refuse service, unless ``panic_routing`` is off.
"""

from __future__ import annotations

import logging
import math
import random
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from zistboom.gateway.config import GatewayConfig
from zistboom.gateway.upstream import split_endpoint
from zistboom.registry.snapshot import Operation, OperatorInfo, RegistrySnapshot, ServiceInfo, hash_api_key

log = logging.getLogger("zistboom.gateway")

_PARAM = re.compile(r"\{[^/{}]+\}")


class Template:
    """An OpenAPI path template (``/fines/{plate}``, ``/r/v{n}.json``) matched in linear time.

    The path is split at ``/``; the segment counts must be equal; a literal segment must be equal;
    a segment with one parameter matches a segment that starts with its literal prefix, ends with
    its literal suffix and has a non-empty rest (a parameter never spans a ``/``) — the same
    language as the former regex ``[^/]+`` per parameter. Home-made rather than a regex because
    ``{a}{b}…`` in one segment compiled to ``[^/]+[^/]+…``, which backtracks exponentially
    (ReDoS on the event loop). Raises ValueError for a segment with two or more parameters
    (ambiguous; the registry's contract validator rejects such contracts).
    """

    __slots__ = ("path", "n", "segs")

    def __init__(self, path: str):
        self.path = path
        parts = path.split("/")
        self.n = len(parts)
        segs: list[tuple[str, str | None]] = []  # (literal, None) or (prefix, suffix)
        for part in parts:
            params = list(_PARAM.finditer(part))
            if not params:
                segs.append((part, None))
            elif len(params) == 1:
                m = params[0]
                segs.append((part[:m.start()], part[m.end():]))
            else:
                raise ValueError(f"path segment {part!r} has {len(params)} parameters (at most one is routable)")
        self.segs = tuple(segs)

    def match(self, path: str) -> bool:
        parts = path.split("/", self.n)  # at most n+1 pieces: enough to see a count mismatch
        if len(parts) != self.n:
            return False
        for part, (pre, suf) in zip(parts, self.segs):
            if suf is None:
                if part != pre:
                    return False
            elif not (len(part) > len(pre) + len(suf) and part.startswith(pre) and part.endswith(suf)):
                return False
        return True


def compile_template(path: str) -> Template:
    """OpenAPI path template → :class:`Template` (``.match(path) -> bool``); a parameter matches
    one non-empty path segment (or its non-empty middle, between a literal prefix and suffix).
    Raises ValueError for a segment with two or more parameters."""
    return Template(path)


@dataclass(slots=True)
class Candidate:
    """One operator able to serve (service, province): tier and parsed endpoints."""

    operator: OperatorInfo
    tier: int
    endpoints: tuple[tuple[str, int, str], ...]  # (host, port, path prefix)


class RouteTable:
    """Immutable view of a :class:`RegistrySnapshot` prepared for the request path.

    ``loaded_at`` / ``checked_at`` are ``time.monotonic()`` values: when this table was built and
    when the registry version was last confirmed unchanged.
    """

    def __init__(self, snapshot: RegistrySnapshot):
        self.snapshot = snapshot
        self.version = snapshot.version
        self.loaded_at = self.checked_at = time.monotonic()
        self.ops: dict[str, tuple[tuple[str, Template, Operation], ...]] = {}
        for sid, svc in snapshot.services.items():
            compiled = []
            for op in svc.operations:
                try:
                    compiled.append((op.method, compile_template(op.path), op))
                except ValueError as exc:  # not routable: the rest of the contract still is
                    log.warning("service %s: operation %s %s skipped: %s", sid, op.method, op.path, exc)
                    continue
            # literal templates before templated ones so /fines/summary beats /fines/{plate}
            compiled.sort(key=lambda t: t[2].path.count("{"))
            self.ops[sid] = tuple(compiled)
        self.endpoints: dict[str, tuple[tuple[str, int, str], ...]] = {}
        for oid, op in snapshot.operators.items():
            eps = []
            for url in op.endpoints:
                try:
                    eps.append(split_endpoint(url))
                except ValueError:
                    continue
            self.endpoints[oid] = tuple(eps)
        self._cache: dict[tuple[str, str], tuple[float, list[Candidate]]] = {}
        self._keys: dict[bytes, str] = {}

    def client_for_key(self, key: bytes) -> str | None:
        """Client id of an API key (raw header bytes), or None. SHA-256 of valid keys is cached
        (bounded) for the life of this table; invalid keys are not cached."""
        cid = self._keys.get(key)
        if cid is None:
            cid = self.snapshot.key_index.get(hash_api_key(key.decode("latin-1")))
            if cid is not None:
                if len(self._keys) > 50_000:
                    self._keys.clear()
                self._keys[key] = cid
        return cid

    def service(self, service_id: str) -> ServiceInfo | None:
        return self.snapshot.services.get(service_id)

    def match_operation(self, service_id: str, method: str, path: str) -> Operation | None:
        """The contract operation for ``method`` and service-relative ``path`` (leading ``/``)."""
        for m, tpl, op in self.ops.get(service_id, ()):
            if m == method and tpl.match(path):
                return op
        if method == "HEAD":
            return self.match_operation(service_id, "GET", path)
        return None

    def candidates(self, service_id: str, province: str, now: float | None = None) -> list[Candidate]:
        """Operators that may serve ``service_id`` for callers in ``province`` at ``now`` (UNIX
        seconds), sorted by tier then operator id. Cached until the next licence validity
        boundary so the per-request cost is a dict lookup."""
        now = time.time() if now is None else now
        key = (service_id, province)
        hit = self._cache.get(key)
        if hit is not None and now < hit[0]:
            return hit[1]
        when = datetime.fromtimestamp(now, timezone.utc)
        expires = now + 3600.0
        chosen: dict[str, Candidate] = {}
        prov = self.snapshot.provinces.get(province)
        neighbours = prov.neighbours if prov else frozenset()
        for lic in self.snapshot.licences:
            if service_id not in lic.service_ids or province not in lic.provinces:
                continue
            for b in (lic.valid_from.timestamp(), lic.valid_until.timestamp()):
                if b > now:
                    expires = min(expires, b)
            if not lic.routable(service_id, province, when):
                continue
            op = self.snapshot.operators.get(lic.operator_id)
            if op is None or op.id in chosen or not self.endpoints.get(op.id):
                continue
            tier = 0 if op.home_province == province else 1 if op.home_province in neighbours else 2
            chosen[op.id] = Candidate(op, tier, self.endpoints[op.id])
        result = sorted(chosen.values(), key=lambda c: (c.tier, c.operator.id))
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[key] = (expires, result)
        return result


class OperatorState:
    """Passive and active health of one operator (kept across route-table reloads)."""

    __slots__ = ("id", "inflight", "ewma_ms", "stamp", "failures", "ejected_until", "ejections", "trial",
                 "probe_ok", "probe_fail_streak", "probe_ok_streak", "rr", "admitted_at")

    def __init__(self, operator_id: str):
        self.id = operator_id
        self.inflight = 0
        self.ewma_ms = 0.0  # latency estimate (ms); 0 = no sample yet
        self.stamp = 0.0  # monotonic time the estimate last changed
        self.failures = 0
        self.ejected_until = 0.0  # monotonic; 0 = admitted
        self.ejections = 0
        self.trial = 0.0  # monotonic start of the half-open trial request; 0 = none
        self.probe_ok = True
        self.probe_fail_streak = 0
        self.probe_ok_streak = 0
        self.rr = 0
        self.admitted_at = 0.0

    @property
    def ejected(self) -> bool:
        return self.ejected_until != 0.0

    def available(self, now: float, trial_timeout: float = 30.0) -> bool:
        if not self.probe_ok:
            return False
        if self.ejected_until == 0.0:
            return True
        # half-open: one trial at a time (a trial that never reported back expires)
        return now >= self.ejected_until and (not self.trial or now - self.trial > trial_timeout)

    def score(self, prior_ms: float = 1.0) -> float:
        """P2C cost: ``(in-flight + 1) × latency estimate`` (``prior_ms`` when there is no sample)."""
        return (self.inflight + 1) * (self.ewma_ms or prior_ms)


class Balancer:
    """Chooses operators and keeps their :class:`OperatorState`; all methods run on the event loop."""

    PEAK_ALPHA = 0.3  # weight of a sample below the estimate
    AGING = 0.1  # share of the estimate gap closed per lost P2C comparison
    DECAY_S = 10.0  # time constant of the relaxation of a stale estimate (Finagle's decayTime)
    SNAP = 0.02  # relative gap under which two estimates count as equal

    def __init__(self, config: GatewayConfig, on_eject=None):
        self.config = config
        self.states: dict[str, OperatorState] = {}
        self.on_eject = on_eject  # callback(operator_id, seconds)
        self._rand = random.Random()
        self.trial_timeout = config.try_timeout + 1.0

    def state(self, operator_id: str) -> OperatorState:
        st = self.states.get(operator_id)
        if st is None:
            st = self.states[operator_id] = OperatorState(operator_id)
        return st

    def choose(self, cands: list[Candidate], tried: set[str]) -> tuple[Candidate, OperatorState] | None:
        """Best available untried candidate and its state (lowest tier, then P2C on load);
        panic routing if none is available."""
        now = time.monotonic()
        states = self.states
        pool: list[tuple[Candidate, OperatorState]] = []
        tier = -1
        for c in cands:
            oid = c.operator.id
            if oid in tried:
                continue
            if tier >= 0 and c.tier != tier:
                break
            st = states.get(oid) or self.state(oid)
            if st.available(now, self.trial_timeout):
                pool.append((c, st))
                tier = c.tier
        if not pool:
            if not self.config.panic_routing:
                return None
            rest = [c for c in cands if c.operator.id not in tried]
            if not rest:
                return None
            pool = [(c, self.state(c.operator.id)) for c in rest if c.tier == rest[0].tier]
        if len(pool) == 1:
            pick = pool[0]
        else:
            a, b = self._rand.sample(pool, 2)
            pick = a if self._p2c(a[1], b[1], now) is a[1] else b
        st = pick[1]
        if st.ejected_until and now >= st.ejected_until:
            st.trial = now  # half-open trial request
        return pick

    def _p2c(self, a: OperatorState, b: OperatorState, now: float) -> OperatorState:
        """The cheaper of two operators (``a`` on a tie); ages the loser's estimate (module docstring)."""
        ea, eb = a.ewma_ms, b.ewma_ms
        if not ea:
            ea = eb or 1.0
        if not eb:
            eb = ea
        win, lose, ew, el = (a, b, ea, eb) if (a.inflight + 1) * ea <= (b.inflight + 1) * eb else (b, a, eb, ea)
        if lose.ewma_ms and el > ew:
            gap = (el - ew) * (1.0 - self.AGING) * math.exp(-max(0.0, now - lose.stamp) / self.DECAY_S)
            lose.ewma_ms = ew + (gap if gap > self.SNAP * ew else 0.0)
            lose.stamp = now
        return win

    def observe(self, st: OperatorState, latency_ms: float, now: float | None = None) -> None:
        """Fold one answer's latency (ms) into the Peak EWMA estimate of ``st``."""
        e = st.ewma_ms
        st.ewma_ms = latency_ms if (not e or latency_ms > e) else e + self.PEAK_ALPHA * (latency_ms - e)
        st.stamp = time.monotonic() if now is None else now

    def success(self, operator_id: str, latency_ms: float) -> None:
        st = self.state(operator_id)
        st.failures = 0
        now = time.monotonic()
        self.observe(st, latency_ms, now)
        if st.ejected_until and now >= st.ejected_until:
            self._readmit(st)  # half-open trial passed (a late success of an older try does not count)

    def failure(self, operator_id: str, latency_ms: float | None = None) -> None:
        """Record a failed try; its wall time (ms) raises the latency estimate if it is higher."""
        st = self.state(operator_id)
        st.failures += 1
        now = time.monotonic()
        if latency_ms is not None and latency_ms > st.ewma_ms:
            st.ewma_ms = latency_ms
            st.stamp = now
        if st.ejected_until:
            if st.trial or now >= st.ejected_until:
                self._eject(st, now)  # failed half-open trial: eject again, longer
            return
        if st.failures >= self.config.outlier_consecutive_failures:
            self._eject(st, now)

    def _eject(self, st: OperatorState, now: float) -> None:
        cfg = self.config
        if st.admitted_at and now - st.admitted_at > cfg.outlier_max_ejection:
            st.ejections = 0  # long clean run since the last re-admission: back-off starts over
        st.ejections += 1
        seconds = min(cfg.outlier_base_ejection * (2 ** (st.ejections - 1)), cfg.outlier_max_ejection)
        st.ejected_until = now + seconds
        st.trial = 0.0
        if self.on_eject:
            self.on_eject(st.id, seconds)

    def _readmit(self, st: OperatorState) -> None:
        st.ejected_until = 0.0
        st.trial = 0.0
        st.failures = 0
        st.admitted_at = time.monotonic()
        if self.on_eject:
            self.on_eject(st.id, 0.0)

    def probe(self, operator_id: str, ok: bool) -> None:
        """Record an active health check result."""
        cfg = self.config
        st = self.state(operator_id)
        if ok:
            st.probe_fail_streak = 0
            st.probe_ok_streak += 1
            if st.probe_ok_streak >= cfg.health_healthy_threshold:
                st.probe_ok = True
                if st.ejected_until and time.monotonic() >= st.ejected_until:
                    self._readmit(st)
        else:
            st.probe_ok_streak = 0
            st.probe_fail_streak += 1
            if st.probe_fail_streak >= cfg.health_unhealthy_threshold:
                st.probe_ok = False


class RetryBudget:
    """Finagle-style retry budget: over the last ``ttl`` seconds, retries may not exceed
    ``percent`` × requests + ``min_per_s`` × ``ttl`` (Finagle's ``RetryBudget`` defaults:
    20 %, 10/s, 10 s). Kept in one-second buckets."""

    def __init__(self, percent: float, min_per_s: float, ttl: float):
        self.percent = percent
        self.reserve = min_per_s * ttl
        self.n = max(1, int(ttl))
        self.deposits = [0] * self.n
        self.withdrawals = [0] * self.n
        self.sec = int(time.monotonic())

    def _roll(self) -> int:
        now = int(time.monotonic())
        if now != self.sec:
            steps = min(now - self.sec, self.n)
            for i in range(1, steps + 1):
                j = (self.sec + i) % self.n
                self.deposits[j] = 0
                self.withdrawals[j] = 0
            self.sec = now
        return now % self.n

    def deposit(self) -> None:
        self.deposits[self._roll()] += 1

    def try_withdraw(self) -> bool:
        i = self._roll()
        balance = self.reserve + self.percent * sum(self.deposits) - sum(self.withdrawals)
        if balance >= 1.0:
            self.withdrawals[i] += 1
            return True
        return False


class RateLimiter:
    """Token buckets keyed by client id or remote IP: ``rate`` tokens/s up to ``burst``.

    ``take(key)`` returns 0.0 if the request may pass, else the seconds until a token is due
    (for ``Retry-After``). The table is bounded: stale full buckets are dropped when it grows.
    """

    def __init__(self, rate: float, burst: float, max_keys: int = 100_000):
        self.rate = rate
        self.burst = max(1.0, burst)
        self.buckets: dict[str, list[float]] = {}
        self.max_keys = max_keys

    def take(self, key: str) -> float:
        now = time.monotonic()
        b = self.buckets.get(key)
        if b is None:
            if len(self.buckets) >= self.max_keys:
                self._prune(now)
            b = self.buckets[key] = [self.burst, now]
        tokens = min(self.burst, b[0] + (now - b[1]) * self.rate)
        b[1] = now
        if tokens >= 1.0:
            b[0] = tokens - 1.0
            return 0.0
        b[0] = tokens
        return (1.0 - tokens) / self.rate if self.rate > 0 else 60.0

    def _prune(self, now: float) -> None:
        full = [k for k, (t, last) in self.buckets.items() if t + (now - last) * self.rate >= self.burst]
        for k in full:
            del self.buckets[k]
        if len(self.buckets) >= self.max_keys:
            self.buckets.clear()

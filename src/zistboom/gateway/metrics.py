"""Prometheus metrics of one gateway app, on its own :class:`CollectorRegistry` (not the process
global one, so tests and benchmarks can build many apps in one process).

Label cardinality is bounded by the registry, never by client input: ``service`` is a registered
service id or ``_unknown``; ``operator`` a registered operator id or ``_gateway`` (the gateway
answered itself); ``province`` a registered province code or ``_unknown``; ``code`` a status class
(``2xx``…``5xx``) or a fixed gateway error code.
"""

from __future__ import annotations

from bisect import bisect_left

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _HotPath:
    """Request counters, latency histograms and attempt counters kept as plain Python numbers and
    exported by a custom collector at scrape time. The request path runs on one event loop thread,
    so no locks are needed; prometheus_client's own metric objects take a lock per update, which
    costs more than the rest of the bookkeeping of a request."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str, str], list[int]] = {}
        self.latency: dict[tuple[str, str, str], list] = {}  # key → [bucket counts..., sum]
        self.attempts: dict[tuple[str, str], list[int]] = {}
        self.n = len(LATENCY_BUCKETS)

    def request(self, service: str, operator: str, province: str, code: str, seconds: float) -> None:
        c = self.requests.get((service, operator, province, code))
        if c is None:
            c = self.requests[(service, operator, province, code)] = [0]
        c[0] += 1
        k = (service, operator, province)
        h = self.latency.get(k)
        if h is None:
            h = self.latency[k] = [0] * (self.n + 1) + [0.0]
        h[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        h[-1] += seconds

    def attempt(self, operator: str, outcome: str) -> None:
        c = self.attempts.get((operator, outcome))
        if c is None:
            c = self.attempts[(operator, outcome)] = [0]
        c[0] += 1

    def collect(self):
        req = CounterMetricFamily("zistboom_gateway_requests", "Client requests finished, by service, answering "
                                  "operator, caller province and status class", labels=("service", "operator", "province", "code"))
        for k, c in list(self.requests.items()):
            req.add_metric(k, c[0])
        yield req
        lat = HistogramMetricFamily("zistboom_gateway_request_duration_seconds",
                                    "Client request latency through the gateway (s)", labels=("service", "operator", "province"))
        for k, h in list(self.latency.items()):
            acc, buckets = 0, []
            for bound, n in zip(LATENCY_BUCKETS + (float("inf"),), h[:-1]):
                acc += n
                buckets.append((str(bound) if bound != float("inf") else "+Inf", acc))
            lat.add_metric(k, buckets, h[-1])
        yield lat
        att = CounterMetricFamily("zistboom_gateway_upstream_attempts", "Upstream tries by operator and outcome",
                                  labels=("operator", "outcome"))
        for k, c in list(self.attempts.items()):
            att.add_metric(k, c[0])
        yield att


class GatewayMetrics:
    """All metric families; ``render()`` gives the text exposition format (bytes, content type)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.hot = _HotPath()
        r.register(self.hot)
        self.gateway_errors = Counter(
            "zistboom_gateway_errors", "Requests the gateway answered itself, by error code", ("code",), registry=r)
        self.retries = Counter("zistboom_gateway_retries", "Upstream retries (second and later tries)",
                               ("service",), registry=r)
        self.failovers = Counter("zistboom_gateway_failovers",
                                 "Requests answered by a different operator than the first one tried",
                                 ("service",), registry=r)
        self.retry_budget_exhausted = Counter("zistboom_gateway_retry_budget_exhausted",
                                              "Retries refused by the retry budget", registry=r)
        self.ejections = Counter("zistboom_gateway_ejections", "Outlier ejections of operators", ("operator",), registry=r)
        self.ejected = Gauge("zistboom_gateway_operator_ejected", "1 while an operator is ejected", ("operator",), registry=r)
        self.probes = Counter("zistboom_gateway_health_probes", "Active health checks by result",
                              ("operator", "result"), registry=r)
        self.probe_latency = Histogram("zistboom_gateway_health_probe_duration_seconds", "Health check latency (s)",
                                       ("operator",), buckets=LATENCY_BUCKETS, registry=r)
        self.operator_healthy = Gauge("zistboom_gateway_operator_healthy",
                                      "1 if the operator passes active health checks", ("operator",), registry=r)
        self.route_version = Gauge("zistboom_gateway_route_table_version", "Registry version of the route table", registry=r)
        self.route_age = Gauge("zistboom_gateway_route_table_age_seconds", "Seconds since the route table was last confirmed current",
                               registry=r)
        self.refresh_errors = Counter("zistboom_gateway_route_refresh_errors", "Failed registry polls/loads", registry=r)
        self.inflight = Gauge("zistboom_gateway_inflight_requests", "Client requests in progress", registry=r)
        self.redis_errors = Counter("zistboom_gateway_redis_errors", "Failed Redis calls (the local fallback was used)",
                                    ("op",), registry=r)
        self.redis_fallbacks = Counter("zistboom_gateway_redis_fallbacks",
                                       "Requests served with this replica's local state because Redis was down",
                                       ("feature",), registry=r)
        self.redis_up = Gauge("zistboom_gateway_redis_up", "1 while the shared Redis answers (when configured)",
                              registry=r)
        self.idempotency = Counter("zistboom_gateway_idempotency",
                                   "Requests with an Idempotency-Key on non-idempotent operations, by result "
                                   "(stored, replayed, in_flight, mismatch, released)", ("result",), registry=r)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

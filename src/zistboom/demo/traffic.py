"""The demo's burst of client traffic: several client systems in different provinces calling
services through the gateway, with one operator killed part-way through.

Latency figures are client-side wall times (ms) measured with :func:`time.perf_counter`;
percentiles use the nearest-rank method.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

# A mix weighted towards inquiries, as citizen traffic is.
DEMO_CALLS: tuple[tuple[str, str, str], ...] = (
    ("GET", "transport.traffic-fines", "/fines?q=12B345-67"),
    ("GET", "transport.traffic-fines", "/fines?q=45J678-11"),
    ("GET", "payments.utility-bill", "/bills?q=1234567890"),
    ("GET", "identity.national-card", "/inquiry?q=0012345678"),
    ("GET", "health.insurance-coverage", "/coverage?q=0012345678"),
    ("GET", "judicial.criminal-record", "/inquiry?q=0012345678"),
    ("GET", "welfare.pension-slip", "/slips?q=1403-07"),
    ("GET", "education.degree-verification", "/verifications?q=98765"),
    ("GET", "agriculture.farmer-card", "/inquiry?q=556677"),
    ("POST", "tax.income-tax-return", "/applications"),
    ("POST", "business.permit", "/applications"),
)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile ``q`` in [0, 100] of ``values`` (NaN for an empty list)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class TrafficResult:
    requests: int = 0
    successes: int = 0
    failures: int = 0
    statuses: Counter = field(default_factory=Counter)
    by_operator: Counter = field(default_factory=Counter)
    by_province: Counter = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)


async def drive(gateway_url: str, clients: dict[str, tuple[str, str]], *, total: int = 600,
                concurrency: int = 16, on_progress: Callable[[int], None] | None = None,
                seed: int = 1405) -> TrafficResult:
    """Send ``total`` requests through the gateway with ``concurrency`` workers.

    Args:
        clients: ``{client_id: (api_key, province_code)}``.
        on_progress: called with the number of finished requests after each one (the demo uses it
            to kill an operator part-way through).
    """
    rng = random.Random(seed)
    plan = [(rng.choice(list(clients.items())), rng.choice(DEMO_CALLS)) for _ in range(total)]
    result = TrafficResult()
    queue: asyncio.Queue = asyncio.Queue()
    for item in plan:
        queue.put_nowait(item)
    timeout = aiohttp.ClientTimeout(total=15)

    async def worker(session: aiohttp.ClientSession) -> None:
        while True:
            try:
                (client_id, (key, province)), (method, service, path) = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            headers = {"X-Api-Key": key, "X-Caller-Province": province}
            body = None
            if method == "POST":
                headers["Idempotency-Key"] = str(uuid.uuid4())
                body = b'{"applicant": "demo"}'
                headers["Content-Type"] = "application/json"
            t0 = time.perf_counter()
            try:
                async with session.request(method, f"{gateway_url}/v1/services/{service}{path}",
                                           headers=headers, data=body) as resp:
                    await resp.read()
                    status = resp.status
                    operator = resp.headers.get("X-Zistboom-Operator")
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                status, operator = 0, None
                result.errors[type(exc).__name__] += 1
            result.latencies_ms.append((time.perf_counter() - t0) * 1000)
            result.requests += 1
            result.statuses[status] += 1
            result.by_province[province] += 1
            if 200 <= status < 300:
                result.successes += 1
                result.by_operator[operator or "?"] += 1
            else:
                result.failures += 1
            if on_progress:
                on_progress(result.requests)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return result

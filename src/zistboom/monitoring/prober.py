"""Active health checks of operators, for running the monitor without a gateway.

Inside the gateway the gateway's own health checks feed the sink (``on_probe``), so this prober is
not started there. A standalone ``zistboom monitor`` starts it, but skips a round whenever a
gateway-embedded monitor has reported probes recently (its ``monitor_instances.last_probe_at``
is within two probe intervals), so operators are never probed twice.

A check is ``GET health_url`` with a total timeout of ``probe_timeout``; a 2xx answer is healthy
(Envoy's default expected status range), anything else (other status, connection refused,
timeout, reset) is a failure with the reason in ``ProbeResult.error``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import aiohttp
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from zistboom.gateway.events import ProbeResult
from zistboom.monitoring.models import MonitorInstance
from zistboom.monitoring.reports import COVERING_STATUSES
from zistboom.monitoring.settings import MonitorSettings
from zistboom.registry.db import utcnow
from zistboom.registry.snapshot import RegistrySnapshot, current_version, load_snapshot

log = logging.getLogger("zistboom.monitoring")


def probe_targets(snap: RegistrySnapshot) -> dict[str, str]:
    """``{operator_id: health_url}`` of operators holding an active or suspended licence (suspended
    operators stay probed so automatic reinstatement has evidence)."""
    ops = {lic.operator_id for lic in snap.licences if lic.status in COVERING_STATUSES}
    return {o: snap.operators[o].health_url for o in sorted(ops) if o in snap.operators and snap.operators[o].health_url}


class Prober:
    """Probe every licensed operator's ``health_url`` each ``probe_interval`` seconds and hand each
    :class:`~zistboom.gateway.events.ProbeResult` to ``on_probe`` (usually ``sink.on_probe``).

    Args:
        session_factory: to read the registry (reloaded when its version changes) and the monitor
            instances (double-probing guard).
        instance_id: this monitor's id, ignored by the double-probing guard.
        targets: fixed ``{operator_id: url}`` instead of reading the registry (tests, tools).
    """

    def __init__(self, session_factory: sessionmaker[Session] | None, on_probe: Callable[[ProbeResult], None],
                 settings: MonitorSettings | None = None, *, instance_id: str = "",
                 targets: dict[str, str] | None = None, clock: Callable[[], datetime] = utcnow):
        self.session_factory = session_factory
        self.on_probe = on_probe
        self.settings = settings or MonitorSettings()
        self.instance_id = instance_id
        self.clock = clock
        self._fixed = targets
        self._targets: dict[str, str] = dict(targets or {})
        self._version = -1
        self._stop = asyncio.Event()
        self.rounds = 0
        self.skipped_rounds = 0

    def _refresh(self) -> None:
        if self._fixed is not None or self.session_factory is None:
            return
        with self.session_factory() as s:
            v = current_version(s)
            if v != self._version:
                self._targets = probe_targets(load_snapshot(s))
                self._version = v

    def _gateway_probing(self) -> bool:
        if self.session_factory is None:
            return False
        since = self.clock() - timedelta(seconds=2 * self.settings.probe_interval)
        with self.session_factory() as s:
            q = select(MonitorInstance.id).where(MonitorInstance.role == "gateway", MonitorInstance.id != self.instance_id,
                                                 MonitorInstance.last_probe_at >= since)
            return s.scalars(q).first() is not None

    async def probe_one(self, http: aiohttp.ClientSession, operator_id: str, url: str) -> ProbeResult:
        """One health check; never raises."""
        at = self.clock()
        t = time.perf_counter()
        try:
            async with http.get(url, allow_redirects=False) as resp:
                await resp.read()
                ok = 200 <= resp.status < 300
                return ProbeResult(operator_id, at, ok, (time.perf_counter() - t) * 1000, resp.status,
                                   None if ok else f"http_{resp.status}")
        except asyncio.TimeoutError:
            err = "timeout"
        except aiohttp.ClientConnectorError:
            err = "connect_error"
        except (aiohttp.ClientError, OSError) as exc:
            err = f"reset: {type(exc).__name__}"
        return ProbeResult(operator_id, at, False, (time.perf_counter() - t) * 1000, None, err)

    async def probe_round(self, http: aiohttp.ClientSession) -> list[ProbeResult]:
        """Probe all targets concurrently and deliver the results."""
        results = await asyncio.gather(*(self.probe_one(http, o, u) for o, u in self._targets.items()))
        for r in results:
            self.on_probe(r)
        self.rounds += 1
        return list(results)

    async def run(self) -> None:
        """Probe until :meth:`stop`; rounds start every ``probe_interval`` seconds."""
        timeout = aiohttp.ClientTimeout(total=self.settings.probe_timeout)
        connector = aiohttp.TCPConnector(limit=64, force_close=True)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
            loop = asyncio.get_running_loop()
            next_at = loop.time()
            while not self._stop.is_set():
                try:
                    await asyncio.to_thread(self._refresh)
                    if await asyncio.to_thread(self._gateway_probing):
                        self.skipped_rounds += 1
                    else:
                        await self.probe_round(http)
                except Exception:  # the registry may be briefly unreachable; keep probing
                    log.exception("probe round failed")
                next_at += self.settings.probe_interval
                delay = max(0.0, next_at - loop.time())
                try:
                    await asyncio.wait_for(self._stop.wait(), timeout=delay)
                except asyncio.TimeoutError:
                    pass

    def stop(self) -> None:
        self._stop.set()

"""Monitoring knobs (times in seconds)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields
from typing import Any


@dataclass(slots=True)
class MonitorSettings:
    """Configuration of the monitoring sink, evaluator and prober.

    Attributes:
        probe_interval / probe_timeout: active health check period and timeout (s). Also the
            evaluator's period for incident checks.
        max_gap_factor: a probe's verdict holds until the next probe if that comes within
            ``max_gap_factor * probe_interval``; otherwise it holds for one ``probe_interval`` and
            the rest of the gap is *unknown* (the monitor was not looking).
        unhealthy_threshold / healthy_threshold: consecutive failed / passing probes that flip an
            operator's live health verdict (used for incidents and the status page).
        flush_interval: how often buckets are written to the database (s).
        slo_interval: how often burn rates and licence SLAs are evaluated (s).
        burn_min_requests: a request-based window with fewer requests gives no burn rate (avoids
            paging on 1 failure out of 1 request; see SRE workbook ch. 5, "Low-traffic services").
        sla_window: the window over which a licence's contracted SLA is judged (s, default 30 d).
        sanction_min_known_s / sanction_min_requests: least evidence before a sanction: known
            probe time (s) or requests in the SLA window.
        sanctions: apply licence suspensions automatically.
        recovery_period: a licence suspended by the monitor is reinstated automatically after this
            long (s) if its operator met the SLA over that period; 0 disables auto-reinstatement.
        incidents: open/resolve incidents automatically.
        max_pending_keys: in-memory bucket keys kept while the database is unreachable; beyond it
            new signals are dropped and counted in ``MonitoringSink.dropped``.
        role: ``gateway`` (sink embedded in a gateway, fed by the gateway's probes) or
            ``standalone`` (``zistboom monitor`` with its own prober).
    """

    probe_interval: float = 5.0
    probe_timeout: float = 2.0
    max_gap_factor: float = 3.0
    unhealthy_threshold: int = 1
    healthy_threshold: int = 1
    flush_interval: float = 2.0
    slo_interval: float = 30.0
    burn_min_requests: int = 10
    sla_window: float = 30 * 86400.0
    sanction_min_known_s: float = 600.0
    sanction_min_requests: int = 100
    sanctions: bool = True
    recovery_period: float = 3600.0
    incidents: bool = True
    max_pending_keys: int = 200_000
    role: str = "gateway"

    @classmethod
    def from_any(cls, obj: Any = None, **overrides: Any) -> MonitorSettings:
        """Build settings from ``obj`` (a :class:`MonitorSettings`, a dict, a gateway config with
        ``health_interval``/``health_timeout``, or ``None``), then environment variables
        ``ZISTBOOM_MONITOR_<FIELD>``, then ``overrides``."""
        if isinstance(obj, MonitorSettings) and not overrides:
            return obj
        values: dict[str, Any] = {}
        names = [f.name for f in fields(cls)]
        for f in names:
            env = os.environ.get(f"ZISTBOOM_MONITOR_{f.upper()}")
            if env is not None:
                default = getattr(cls(), f)
                values[f] = (env.lower() in ("1", "true", "yes")) if isinstance(default, bool) else type(default)(env)
        if isinstance(obj, dict):
            values.update({k: v for k, v in obj.items() if k in names})
        elif obj is not None:
            for f in names:
                if hasattr(obj, f):
                    values[f] = getattr(obj, f)
            if not hasattr(obj, "probe_interval") and hasattr(obj, "health_interval"):
                values["probe_interval"] = float(obj.health_interval)
            if not hasattr(obj, "probe_timeout") and hasattr(obj, "health_timeout"):
                values["probe_timeout"] = float(obj.health_timeout)
        values.update(overrides)
        s = cls(**values)
        if not all(math.isfinite(v) and v > 0 for v in (s.probe_interval, s.probe_timeout, s.flush_interval)):
            raise ValueError("probe_interval, probe_timeout and flush_interval must be finite and > 0")
        if s.max_gap_factor < 1:
            raise ValueError("max_gap_factor must be >= 1")
        return s

    @property
    def max_gap(self) -> float:
        """Largest gap between probes (s) still taken as continuous observation."""
        return self.probe_interval * self.max_gap_factor

"""Availability, error budget and burn rate: the formulas and the queries over the minute buckets.

Definitions (all windows are the minute buckets overlapping ``[now - W, now)``):

* **by requests** ``A_req = good / total`` (Google SRE workbook, ch. 2 "Implementing SLOs": an SLI
  is "the ratio of good events to total events"). For an operator, every *attempt* at it counts
  (``Attempt.outcome == "ok"`` is good); for a service, every client-facing exchange counts
  (status < 500 is good; requests the gateway refused before routing — auth, rate limit,
  validation, ``gateway_error`` with a 4xx status — are not valid events and are left out).
* **by time** ``A_time = up_s / (up_s + down_s)`` where ``up_s``/``down_s`` are seconds observed up
  / down by active health checks. Seconds the monitor did not observe (monitor down, probes
  stopped) are *unknown*: they are in neither term, so a monitor outage is never downtime.
  ``coverage = (up_s + down_s) / W`` says how much of the window was observed.
* A service (or cluster, or province) by time: in each minute the best licensed operator's
  observation is taken (``up_m = max_o up_o,m``, ``known_m = max_o known_o,m``), then
  ``A = Σ up_m / Σ known_m`` over the minutes and the (service, province) pairs rolled up. With
  one operator this is exact; with several it is a lower bound of "some operator was up"
  (overlaps within a minute are not known at minute resolution).
* **error budget** (workbook ch. 2/5): ``budget = 1 - SLO``; ``error_ratio = 1 - A``;
  ``budget_remaining = 1 - error_ratio / (1 - SLO)`` (1 = untouched, 0 = spent, < 0 overspent).
* **burn rate** (workbook ch. 5 "Alerting on SLOs"): ``burn = error_ratio / (1 - SLO)``; a burn rate
  of 1 spends exactly the budget over the SLO period (30 d).
* **multi-window, multi-burn-rate alerts** (workbook ch. 5, table 5-8 "Recommended parameters"):
  page when ``burn(1h) > 14.4 and burn(5m) > 14.4`` (2 % of a 30-day budget in one hour) or
  ``burn(6h) > 6 and burn(30m) > 6`` (5 % in six hours); ticket when ``burn(3d) > 3 and
  burn(6h) > 3`` (10 % in three days). The short window (1/12 of the long one) makes the alert
  reset soon after recovery.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from zistboom.monitoring.models import ProbeMinute, RequestMinute

WINDOWS: dict[str, int] = {
    "5m": 300, "30m": 1800, "1h": 3600, "6h": 6 * 3600, "24h": 86400, "3d": 3 * 86400, "30d": 30 * 86400,
}
AVAILABILITY_WINDOWS = ("1h", "24h", "30d")
SLO_PERIOD = "30d"


@dataclass(frozen=True, slots=True)
class AlertRule:
    """One multi-window burn-rate alert (workbook ch. 5, table 5-8)."""

    severity: str
    long_window: str
    short_window: str
    burn_rate: float
    budget_consumed: float  # share of the 30-day budget spent over the long window at that rate


ALERT_RULES: tuple[AlertRule, ...] = (
    AlertRule("page", "1h", "5m", 14.4, 0.02),
    AlertRule("page", "6h", "30m", 6.0, 0.05),
    AlertRule("ticket", "3d", "6h", 3.0, 0.10),
)
BURN_WINDOWS = ("5m", "30m", "1h", "6h", "3d")


class WindowError(ValueError):
    """An unknown window name."""


def parse_window(name: str | None, allowed: Iterable[str] = AVAILABILITY_WINDOWS) -> tuple[str, int]:
    """``"1h"`` → ``("1h", 3600)``. Raises :class:`WindowError` for names not in ``allowed``."""
    allowed = tuple(allowed)
    if name not in allowed:
        raise WindowError(f"window must be one of {', '.join(allowed)}")
    return name, WINDOWS[name]


def floor_minute(t: datetime) -> datetime:
    """Start of the UTC minute containing aware ``t``."""
    t = t.astimezone(timezone.utc)
    return t.replace(second=0, microsecond=0)


def window_start(now: datetime, seconds: float) -> datetime:
    """First bucket of the window of ``seconds`` ending at ``now``."""
    return floor_minute(now - timedelta(seconds=seconds))


@dataclass(slots=True)
class Requests:
    good: int = 0
    total: int = 0
    latency_ms_sum: float = 0.0

    def add(self, good: int, total: int, latency: float = 0.0) -> None:
        self.good += int(good)
        self.total += int(total)
        self.latency_ms_sum += float(latency or 0.0)

    @property
    def availability(self) -> float | None:
        return None if self.total == 0 else self.good / self.total

    @property
    def error_ratio(self) -> float | None:
        return None if self.total == 0 else (self.total - self.good) / self.total

    def as_dict(self) -> dict:
        return {
            "availability": self.availability, "good": self.good, "total": self.total,
            "bad": self.total - self.good,
            "mean_latency_ms": (self.latency_ms_sum / self.total) if self.total else None,
        }


@dataclass(slots=True)
class Uptime:
    up_s: float = 0.0
    down_s: float = 0.0

    def add(self, up: float, down: float) -> None:
        self.up_s += float(up)
        self.down_s += float(down)

    @property
    def known_s(self) -> float:
        return self.up_s + self.down_s

    @property
    def availability(self) -> float | None:
        return None if self.known_s <= 0 else self.up_s / self.known_s

    @property
    def error_ratio(self) -> float | None:
        return None if self.known_s <= 0 else self.down_s / self.known_s

    def as_dict(self, window_s: float | None = None) -> dict:
        d = {"availability": self.availability, "up_s": round(self.up_s, 3), "down_s": round(self.down_s, 3),
             "known_s": round(self.known_s, 3)}
        if window_s:
            d["coverage"] = min(1.0, self.known_s / window_s)
        return d


@dataclass(slots=True)
class Minutes:
    """Per-minute probe time of one operator: ``{minute: (up_s, down_s)}``."""

    by_minute: dict[datetime, tuple[float, float]] = field(default_factory=dict)


def burn_rate(error_ratio: float | None, slo: float) -> float | None:
    """``error_ratio / (1 - slo)`` (workbook ch. 5); None when there is no data."""
    if error_ratio is None:
        return None
    return error_ratio / (1.0 - slo)


def budget_remaining(error_ratio: float | None, slo: float) -> float | None:
    """``1 - error_ratio / (1 - slo)``: share of the error budget left (negative = overspent)."""
    if error_ratio is None:
        return None
    return 1.0 - error_ratio / (1.0 - slo)


def alerts_firing(burns: dict[str, float | None]) -> list[AlertRule]:
    """The rules of :data:`ALERT_RULES` whose long *and* short window burn rates exceed the rule."""
    out = []
    for rule in ALERT_RULES:
        lb, sb = burns.get(rule.long_window), burns.get(rule.short_window)
        if lb is not None and sb is not None and lb > rule.burn_rate and sb > rule.burn_rate:
            out.append(rule)
    return out


# --------------------------------------------------------------------------- queries


def request_counts(
    session: Session, start: datetime, end: datetime, *, operator_level: bool = True,
    services: Iterable[str] | None = None, operators: Iterable[str] | None = None,
    provinces: Iterable[str] | None = None, group: tuple[str, ...] = ("service_id", "operator_id", "province"),
) -> dict[tuple, Requests]:
    """Sum request buckets with ``start <= minute < end`` grouped by ``group`` columns.

    ``operator_level`` False selects the service-level rows (``operator_id == ""``).
    """
    cols = [getattr(RequestMinute, g) for g in group]
    q = select(*cols, func.sum(RequestMinute.good), func.sum(RequestMinute.total), func.sum(RequestMinute.latency_ms_sum)).where(
        RequestMinute.minute >= start, RequestMinute.minute < end
    )
    q = q.where(RequestMinute.operator_id != "") if operator_level else q.where(RequestMinute.operator_id == "")
    if services is not None:
        q = q.where(RequestMinute.service_id.in_(list(services)))
    if operators is not None:
        q = q.where(RequestMinute.operator_id.in_(list(operators)))
    if provinces is not None:
        q = q.where(RequestMinute.province.in_(list(provinces)))
    if cols:
        q = q.group_by(*cols)
    out: dict[tuple, Requests] = {}
    for row in session.execute(q):
        key = tuple(row[: len(cols)])
        r = Requests()
        r.add(row[len(cols)] or 0, row[len(cols) + 1] or 0, row[len(cols) + 2] or 0.0)
        out[key] = r
    return out


def probe_totals(session: Session, start: datetime, end: datetime,
                 operators: Iterable[str] | None = None) -> dict[str, Uptime]:
    """Observed up/down seconds per operator over buckets ``start <= minute < end``."""
    q = select(ProbeMinute.operator_id, func.sum(ProbeMinute.up_s), func.sum(ProbeMinute.down_s)).where(
        ProbeMinute.minute >= start, ProbeMinute.minute < end
    )
    if operators is not None:
        q = q.where(ProbeMinute.operator_id.in_(list(operators)))
    out: dict[str, Uptime] = {}
    for op_id, up, down in session.execute(q.group_by(ProbeMinute.operator_id)):
        u = Uptime()
        u.add(up or 0.0, down or 0.0)
        out[op_id] = u
    return out


def probe_minutes(session: Session, start: datetime, end: datetime,
                  operators: Iterable[str]) -> dict[str, dict[datetime, tuple[float, float]]]:
    """Per-minute ``(up_s, down_s)`` per operator (for service/cluster/province roll-ups by time)."""
    ops = list(operators)
    out: dict[str, dict[datetime, tuple[float, float]]] = defaultdict(dict)
    if not ops:
        return out
    q = select(ProbeMinute.operator_id, ProbeMinute.minute, ProbeMinute.up_s, ProbeMinute.down_s).where(
        ProbeMinute.minute >= start, ProbeMinute.minute < end, ProbeMinute.operator_id.in_(ops)
    )
    for op_id, minute, up, down in session.execute(q):
        out[op_id][minute] = (up or 0.0, down or 0.0)
    return out


def best_of(per_op: Iterable[dict[datetime, tuple[float, float]]]) -> Uptime:
    """Roll several operators' minutes into one service timeline: per minute the best up and
    known seconds (see module doc), summed over minutes."""
    best: dict[datetime, list[float]] = {}
    for minutes in per_op:
        for minute, (up, down) in minutes.items():
            b = best.setdefault(minute, [0.0, 0.0])
            b[0] = max(b[0], up)
            b[1] = max(b[1], up + down)
    u = Uptime()
    for up, known in best.values():
        u.add(up, known - up)
    return u

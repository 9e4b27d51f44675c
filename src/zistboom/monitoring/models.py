"""Monitoring tables: per-minute signal buckets, live operator health, monitor heartbeats, incidents.

Buckets are additive (every writer does ``INSERT … ON CONFLICT DO UPDATE SET x = x + excluded.x``),
so several gateway processes may feed the same database and ratios stay correct.

* :class:`RequestMinute` — passive signal. ``operator_id = ""`` rows count client-facing exchanges
  of a service (what the citizen saw, after failover); rows with an operator id count that
  operator's attempts (what the operator did).
* :class:`ProbeMinute` — active signal: seconds of the minute during which the operator was
  observed up / down (sample-and-hold between probes, see ``zistboom.monitoring.sink``). Seconds
  neither up nor down are *unknown* (the monitor was not looking) and never count as downtime.
* :class:`MonitorHeartbeat` — one row per (minute, monitor instance) the monitor was alive.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, CheckConstraint, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from zistboom.registry.db import Base, UTCDateTime, utcnow

INCIDENT_STATES = ("investigating", "identified", "monitoring", "resolved")
INCIDENT_KINDS = ("no_operator", "burn_rate", "manual")


class RequestMinute(Base):
    """Requests in one minute for (service, operator, province): ``good`` of ``total``.

    ``operator_id == ""`` is the service-level (client-facing) count; ``province == ""`` means the
    caller's province was unknown. ``latency_ms_sum`` / ``total`` is the mean latency.
    """

    __tablename__ = "monitor_request_minutes"
    minute: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    service_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    operator_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    province: Mapped[str] = mapped_column(String(5), primary_key=True)
    total: Mapped[int] = mapped_column(BigInteger, default=0)
    good: Mapped[int] = mapped_column(BigInteger, default=0)
    latency_ms_sum: Mapped[float] = mapped_column(Float, default=0.0)


class ProbeMinute(Base):
    """Active health-check time of one operator in one minute (seconds up / down; rest unknown)."""

    __tablename__ = "monitor_probe_minutes"
    minute: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    operator_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    up_s: Mapped[float] = mapped_column(Float, default=0.0)
    down_s: Mapped[float] = mapped_column(Float, default=0.0)
    probes: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)


class OperatorHealth(Base):
    """Latest health-check verdict per operator (written by the monitor at every flush)."""

    __tablename__ = "monitor_operator_health"
    operator_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    healthy: Mapped[bool] = mapped_column(Boolean)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    last_probe_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_change_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(200), nullable=True)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)


class MonitorInstance(Base):
    """A running monitor (a gateway-embedded sink or a standalone ``zistboom monitor``)."""

    __tablename__ = "monitor_instances"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_probe_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class MonitorHeartbeat(Base):
    """The monitor instance was alive during ``minute`` (gaps = unknown time)."""

    __tablename__ = "monitor_heartbeats"
    minute: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    instance_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    beats: Mapped[int] = mapped_column(Integer, default=0)


class Incident(Base):
    """An incident (رخداد). ``key`` identifies what it is about, so at most one open incident per key
    is kept (``no_operator:<service>:<province>``, ``burn_rate:<service>:<operator>``)."""

    __tablename__ = "incidents"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(20))
    key: Mapped[str] = mapped_column(String(300), index=True)
    service_id: Mapped[str | None] = mapped_column(String(100), nullable=True, index=True)
    operator_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    province: Mapped[str | None] = mapped_column(String(5), nullable=True, index=True)
    severity: Mapped[str] = mapped_column(String(10), default="page")
    state: Mapped[str] = mapped_column(String(14), default="investigating", index=True)
    title_fa: Mapped[str] = mapped_column(Text)
    title_en: Mapped[str] = mapped_column(Text)
    auto: Mapped[bool] = mapped_column(Boolean, default=True)
    evidence: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    notes: Mapped[list[IncidentNote]] = relationship(
        back_populates="incident", cascade="all, delete-orphan", order_by="IncidentNote.id"
    )
    __table_args__ = (
        CheckConstraint("state IN ('investigating','identified','monitoring','resolved')", name="state"),
        CheckConstraint("kind IN ('no_operator','burn_rate','manual')", name="kind"),
    )


class IncidentNote(Base):
    """An update on an incident: a note in Persian, optionally with a state change."""

    __tablename__ = "incident_notes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    author: Mapped[str] = mapped_column(String(100))
    from_state: Mapped[str | None] = mapped_column(String(14), nullable=True)
    to_state: Mapped[str | None] = mapped_column(String(14), nullable=True)
    text_fa: Mapped[str] = mapped_column(Text, default="")
    text_en: Mapped[str] = mapped_column(Text, default="")
    incident: Mapped[Incident] = relationship(back_populates="notes")

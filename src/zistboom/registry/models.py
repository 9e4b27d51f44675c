"""Registry tables: provinces, clusters, services and their contracts, operators, licences,
client systems (consumers) with hashed API keys and access rights.

Licence status changes are written as :class:`LicenceEvent` rows by ``zistboom.licensing``; the
registry's ``registry_state.version`` counter is bumped on every write so the gateway can refresh
its in-memory route table cheaply.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from zistboom.registry.db import Base, UTCDateTime, utcnow

SERVICE_TYPES = ("G2C", "G2B", "G2G")
SERVICE_LEVELS = ("national", "provincial")
LICENCE_STATUSES = ("pending", "active", "suspended", "revoked", "expired", "rejected")


class Province(Base):
    """One of Iran's 31 provinces, keyed by ISO 3166-2 code (``IR-00`` … ``IR-30``)."""

    __tablename__ = "provinces"
    code: Mapped[str] = mapped_column(String(5), primary_key=True)
    sci_code: Mapped[int] = mapped_column(Integer)
    name_fa: Mapped[str] = mapped_column(String(100))
    name_en: Mapped[str] = mapped_column(String(100))
    capital_fa: Mapped[str] = mapped_column(String(100))
    capital_en: Mapped[str] = mapped_column(String(100))


class ProvinceBorder(Base):
    """An undirected land border between two provinces, stored once with ``a < b``."""

    __tablename__ = "province_borders"
    a: Mapped[str] = mapped_column(ForeignKey("provinces.code", ondelete="CASCADE"), primary_key=True)
    b: Mapped[str] = mapped_column(ForeignKey("provinces.code", ondelete="CASCADE"), primary_key=True)
    __table_args__ = (CheckConstraint("a < b", name="ordered"),)


class Cluster(Base):
    """A cluster (خوشه) of public services."""

    __tablename__ = "clusters"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name_fa: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))
    services: Mapped[list[Service]] = relationship(back_populates="cluster")


class Service(Base):
    """A public service with the fields of its service identity card (شناسنامه خدمت)."""

    __tablename__ = "services"
    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    cluster_id: Mapped[str] = mapped_column(ForeignKey("clusters.id", ondelete="RESTRICT"), index=True)
    name_fa: Mapped[str] = mapped_column(String(300))
    name_en: Mapped[str] = mapped_column(String(300))
    agency_fa: Mapped[str] = mapped_column(String(300))
    agency_en: Mapped[str] = mapped_column(String(300))
    service_type: Mapped[str] = mapped_column(String(3))
    level: Mapped[str] = mapped_column(String(10))
    fee_rials: Mapped[int] = mapped_column(BigInteger, default=0)
    national_service_id: Mapped[str | None] = mapped_column(String(11), unique=True, nullable=True)
    current_contract_version: Mapped[str | None] = mapped_column(String(40), nullable=True)
    slo_target: Mapped[float] = mapped_column(Float, default=0.999)
    keep_bodies: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    cluster: Mapped[Cluster] = relationship(back_populates="services")
    contracts: Mapped[list[ServiceContract]] = relationship(
        back_populates="service", cascade="all, delete-orphan", order_by="ServiceContract.id"
    )
    __table_args__ = (
        CheckConstraint("service_type IN ('G2C','G2B','G2G')", name="service_type"),
        CheckConstraint("level IN ('national','provincial')", name="level"),
        CheckConstraint("fee_rials >= 0", name="fee_nonneg"),
    )


class ServiceContract(Base):
    """A versioned OpenAPI 3 contract of a service; each operation carries ``x-idempotent``."""

    __tablename__ = "service_contracts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    service_id: Mapped[str] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"), index=True)
    version: Mapped[str] = mapped_column(String(40))
    openapi: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    service: Mapped[Service] = relationship(back_populates="contracts")
    __table_args__ = (UniqueConstraint("service_id", "version", name="service_version"),)


class Operator(Base):
    """A licensed private-sector operator (اپراتور)."""

    __tablename__ = "operators"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name_fa: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))
    national_id: Mapped[str] = mapped_column(String(11), unique=True)
    home_province: Mapped[str] = mapped_column(ForeignKey("provinces.code", ondelete="RESTRICT"), index=True)
    endpoints: Mapped[list[str]] = mapped_column(JSON)
    health_url: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    licences: Mapped[list[Licence]] = relationship(back_populates="operator")


class Licence(Base):
    """Operator × (one service or a whole cluster) × provinces, valid in ``[valid_from, valid_until)``.

    Exactly one of ``service_id`` / ``cluster_id`` is set. ``sla_target`` is the contracted
    availability (fraction, e.g. 0.995).
    """

    __tablename__ = "licences"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    operator_id: Mapped[str] = mapped_column(ForeignKey("operators.id", ondelete="RESTRICT"), index=True)
    service_id: Mapped[str | None] = mapped_column(ForeignKey("services.id", ondelete="RESTRICT"), nullable=True, index=True)
    cluster_id: Mapped[str | None] = mapped_column(ForeignKey("clusters.id", ondelete="RESTRICT"), nullable=True, index=True)
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime)
    valid_until: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(12), default="pending", index=True)
    sla_target: Mapped[float] = mapped_column(Float, default=0.995)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    operator: Mapped[Operator] = relationship(back_populates="licences")
    province_links: Mapped[list[LicenceProvince]] = relationship(cascade="all, delete-orphan")
    events: Mapped[list[LicenceEvent]] = relationship(
        back_populates="licence", cascade="all, delete-orphan", order_by="LicenceEvent.id"
    )
    __table_args__ = (
        CheckConstraint("(service_id IS NULL) <> (cluster_id IS NULL)", name="one_scope"),
        CheckConstraint("valid_until > valid_from", name="validity"),
        CheckConstraint(
            "status IN ('pending','active','suspended','revoked','expired','rejected')", name="status"
        ),
    )

    @property
    def provinces(self) -> list[str]:
        return sorted(link.province_code for link in self.province_links)


class LicenceProvince(Base):
    __tablename__ = "licence_provinces"
    licence_id: Mapped[int] = mapped_column(ForeignKey("licences.id", ondelete="CASCADE"), primary_key=True)
    province_code: Mapped[str] = mapped_column(ForeignKey("provinces.code", ondelete="RESTRICT"), primary_key=True, index=True)


class LicenceEvent(Base):
    """One audited licensing action (apply, review, grant, suspend, reinstate, revoke, renew, expire…)."""

    __tablename__ = "licence_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    licence_id: Mapped[int] = mapped_column(ForeignKey("licences.id", ondelete="CASCADE"), index=True)
    action: Mapped[str] = mapped_column(String(20))
    from_status: Mapped[str | None] = mapped_column(String(12), nullable=True)
    to_status: Mapped[str] = mapped_column(String(12))
    actor: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(Text, default="")
    evidence: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    licence: Mapped[Licence] = relationship(back_populates="events")


class ClientSystem(Base):
    """A consumer system (سامانه) calling services through the gateway. Deny by default."""

    __tablename__ = "client_systems"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    province: Mapped[str | None] = mapped_column(ForeignKey("provinces.code", ondelete="RESTRICT"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    keys: Mapped[list[ApiKey]] = relationship(cascade="all, delete-orphan")
    access: Mapped[list[ClientAccess]] = relationship(cascade="all, delete-orphan")


class ApiKey(Base):
    """An API key of a client system, stored as SHA-256 of the key (never the key itself).

    Keys are 256-bit random tokens, so a fast hash is enough (no password stretching needed) and
    keeps the gateway's per-request lookup a dict hit.
    """

    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("client_systems.id", ondelete="CASCADE"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ClientAccess(Base):
    """An access right: client system may call service."""

    __tablename__ = "client_access"
    client_id: Mapped[str] = mapped_column(ForeignKey("client_systems.id", ondelete="CASCADE"), primary_key=True)
    service_id: Mapped[str] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"), primary_key=True)


class RegistryState(Base):
    """Single row (id=1): a counter bumped by every registry write; the gateway polls it."""

    __tablename__ = "registry_state"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

"""An immutable, in-memory copy of what the gateway needs from the registry.

The gateway never queries the database per request: it loads a :class:`RegistrySnapshot` at start,
polls :func:`current_version` (one tiny query) and reloads only on change, and keeps serving from
the last good snapshot while the database is unreachable.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from zistboom.registry import models as m


def hash_api_key(key: str) -> str:
    """SHA-256 hex digest of an API key (what the registry stores)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class ProvinceInfo:
    code: str
    name_fa: str
    name_en: str
    neighbours: frozenset[str]


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation of a service contract. ``path`` is an OpenAPI template (``/fines/{plate}``)."""

    method: str
    path: str
    operation_id: str
    idempotent: bool


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    id: str
    cluster_id: str
    name_fa: str
    name_en: str
    level: str
    contract_version: str | None
    operations: tuple[Operation, ...]
    slo_target: float
    keep_bodies: bool


@dataclass(frozen=True, slots=True)
class OperatorInfo:
    id: str
    name_fa: str
    name_en: str
    home_province: str
    endpoints: tuple[str, ...]
    health_url: str


@dataclass(frozen=True, slots=True)
class LicenceInfo:
    """A licence expanded to the services it covers (a cluster licence lists all its services)."""

    id: int
    operator_id: str
    service_ids: frozenset[str]
    provinces: frozenset[str]
    valid_from: datetime
    valid_until: datetime
    status: str
    sla_target: float

    def routable(self, service_id: str, province: str, now: datetime) -> bool:
        """True if this licence lets its operator serve ``service_id`` for ``province`` at ``now``:
        status ``active`` and ``valid_from <= now < valid_until``."""
        return (
            self.status == "active"
            and service_id in self.service_ids
            and province in self.provinces
            and self.valid_from <= now < self.valid_until
        )


@dataclass(frozen=True, slots=True)
class ClientInfo:
    id: str
    name: str
    province: str | None
    allowed_services: frozenset[str]


@dataclass(frozen=True, slots=True)
class RegistrySnapshot:
    """Everything routing needs. ``key_index`` maps SHA-256(key) → client id (unrevoked keys only)."""

    version: int
    provinces: dict[str, ProvinceInfo]
    services: dict[str, ServiceInfo]
    operators: dict[str, OperatorInfo]
    licences: tuple[LicenceInfo, ...]
    clients: dict[str, ClientInfo]
    key_index: dict[str, str] = field(default_factory=dict)


def current_version(session: Session) -> int:
    """The registry's change counter (0 if never written)."""
    v = session.scalar(select(m.RegistryState.version).where(m.RegistryState.id == 1))
    return int(v or 0)


def bump_version(session: Session) -> int:
    """Increment the change counter inside the caller's transaction; returns the new value.

    Every registry/licensing write must call this so gateways refresh their route tables.
    """
    state = session.get(m.RegistryState, 1)
    if state is None:
        state = m.RegistryState(id=1, version=0)
        session.add(state)
    state.version = (state.version or 0) + 1
    state.updated_at = m.utcnow()
    session.flush()
    return state.version


def _operations(contract: dict | None) -> tuple[Operation, ...]:
    ops: list[Operation] = []
    paths = (contract or {}).get("paths") if isinstance(contract, dict) else None
    for path, item in (paths.items() if isinstance(paths, dict) else ()):
        if not isinstance(path, str) or not isinstance(item, dict):
            continue  # a malformed entry stored before validation was strict: not routable
        for method, op in item.items():
            if method.lower() not in {"get", "put", "post", "delete", "patch", "head", "options"} or not isinstance(op, dict):
                continue
            ops.append(
                Operation(
                    method=method.upper(),
                    path=path,
                    operation_id=str(op.get("operationId", f"{method}:{path}")),
                    idempotent=bool(op.get("x-idempotent", method.upper() in {"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})),
                )
            )
    return tuple(ops)


def load_snapshot(session: Session) -> RegistrySnapshot:
    """Read the registry into a :class:`RegistrySnapshot` (a handful of queries)."""
    version = current_version(session)
    neighbours: dict[str, set[str]] = {}
    for border in session.scalars(select(m.ProvinceBorder)):
        neighbours.setdefault(border.a, set()).add(border.b)
        neighbours.setdefault(border.b, set()).add(border.a)
    provinces = {
        p.code: ProvinceInfo(p.code, p.name_fa, p.name_en, frozenset(neighbours.get(p.code, ())))
        for p in session.scalars(select(m.Province))
    }
    services: dict[str, ServiceInfo] = {}
    cluster_services: dict[str, set[str]] = {}
    for s in session.scalars(select(m.Service).options(selectinload(m.Service.contracts))):
        contract = next((c.openapi for c in s.contracts if c.version == s.current_contract_version), None)
        services[s.id] = ServiceInfo(
            s.id, s.cluster_id, s.name_fa, s.name_en, s.level, s.current_contract_version,
            _operations(contract), s.slo_target, s.keep_bodies,
        )
        cluster_services.setdefault(s.cluster_id, set()).add(s.id)
    operators = {
        o.id: OperatorInfo(o.id, o.name_fa, o.name_en, o.home_province, tuple(o.endpoints), o.health_url)
        for o in session.scalars(select(m.Operator))
    }
    licences = tuple(
        LicenceInfo(
            id=lic.id,
            operator_id=lic.operator_id,
            service_ids=frozenset({lic.service_id} if lic.service_id else cluster_services.get(lic.cluster_id or "", set())),
            provinces=frozenset(lic.provinces),
            valid_from=lic.valid_from,
            valid_until=lic.valid_until,
            status=lic.status,
            sla_target=lic.sla_target,
        )
        for lic in session.scalars(select(m.Licence).options(selectinload(m.Licence.province_links)))
    )
    clients: dict[str, ClientInfo] = {}
    key_index: dict[str, str] = {}
    for c in session.scalars(
        select(m.ClientSystem).options(selectinload(m.ClientSystem.keys), selectinload(m.ClientSystem.access))
    ):
        clients[c.id] = ClientInfo(c.id, c.name, c.province, frozenset(a.service_id for a in c.access))
        for k in c.keys:
            if k.revoked_at is None:
                key_index[k.key_hash] = c.id
    return RegistrySnapshot(version, provinces, services, operators, licences, clients, key_index)

"""Admin API: provinces (read, rename, neighbours), clusters, services and their OpenAPI contracts."""

from __future__ import annotations

import json
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from zistboom.admin.common import Page, apply_patch, page_params, paginate, put_time
from zistboom.admin.deps import get_session, write_txn
from zistboom.admin.errors import ApiError, duplicate, invalid_field, not_found
from zistboom.admin.schemas import (
    ClusterCreate,
    ClusterPatch,
    ContractCreate,
    ProvincePatch,
    ServiceCreate,
    ServicePatch,
)
from zistboom.registry import models as m
from zistboom.registry.contracts import validate_contract
from zistboom.registry.validation import is_semver, semver_key
from zistboom.text.digits import to_ascii_digits, to_persian_digits

router = APIRouter()
MAX_CONTRACT_BYTES = 2_000_000


# --- provinces ---------------------------------------------------------------------------------

def _neighbours(session: Session, code: str) -> list[str]:
    rows = session.execute(
        select(m.ProvinceBorder.a, m.ProvinceBorder.b).where(or_(m.ProvinceBorder.a == code, m.ProvinceBorder.b == code))
    ).all()
    return sorted(b if a == code else a for a, b in rows)


def province_out(p: m.Province, neighbours: list[str] | None = None) -> dict[str, Any]:
    out = {"code": p.code, "sci_code": p.sci_code, "name_fa": p.name_fa, "name_en": p.name_en,
           "capital_fa": p.capital_fa, "capital_en": p.capital_en}
    if neighbours is not None:
        out["neighbours"] = neighbours
    return out


def _province(session: Session, code: str) -> m.Province:
    p = session.get(m.Province, code)
    if p is None:
        raise not_found("استان", "Province", code)
    return p


@router.get("/provinces", tags=["provinces"])
def list_provinces(q: str | None = Query(None, max_length=100, description="substring of a name"),
                   page: Page = Depends(page_params), session: Session = Depends(get_session)) -> dict[str, Any]:
    """The 31 provinces (ISO 3166-2 codes), ordered by code."""
    stmt = select(m.Province).order_by(m.Province.code)
    if q:
        # '%' and '_' are LIKE wildcards: escape them (and the escape character) so q is a plain substring
        like = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(or_(m.Province.name_fa.like(like, escape="\\"), m.Province.name_en.ilike(like, escape="\\")))
    return paginate(session, stmt, page, province_out)


@router.get("/provinces/{code}", tags=["provinces"])
def get_province(code: str, session: Session = Depends(get_session)) -> dict[str, Any]:
    return province_out(_province(session, code), _neighbours(session, code))


@router.get("/provinces/{code}/neighbours", tags=["provinces"])
def province_neighbours(code: str, session: Session = Depends(get_session)) -> dict[str, Any]:
    """Provinces sharing a land border with ``code``."""
    _province(session, code)
    codes = _neighbours(session, code)
    rows = session.scalars(select(m.Province).where(m.Province.code.in_(codes)).order_by(m.Province.code)).all()
    return {"code": code, "items": [province_out(p) for p in rows], "total": len(rows)}


@router.patch("/provinces/{code}", tags=["provinces"])
def patch_province(code: str, body: ProvincePatch, session: Session = Depends(get_session)) -> dict[str, Any]:
    """Correct a province's names (codes and borders are fixed)."""
    with write_txn(session):
        p = _province(session, code)
        apply_patch(p, body.model_dump(exclude_unset=True))
    return province_out(p, _neighbours(session, code))


# --- clusters ----------------------------------------------------------------------------------

def cluster_out(c: m.Cluster, service_count: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": c.id, "name_fa": c.name_fa, "name_en": c.name_en}
    if service_count is not None:
        out["service_count"] = service_count
    return out


def _cluster(session: Session, cluster_id: str) -> m.Cluster:
    c = session.get(m.Cluster, cluster_id)
    if c is None:
        raise not_found("خوشه", "Cluster", cluster_id)
    return c


def _service_count(session: Session, cluster_id: str) -> int:
    return len(session.scalars(select(m.Service.id).where(m.Service.cluster_id == cluster_id)).all())


@router.get("/clusters", tags=["clusters"])
def list_clusters(page: Page = Depends(page_params), session: Session = Depends(get_session)) -> dict[str, Any]:
    return paginate(session, select(m.Cluster).order_by(m.Cluster.id), page, cluster_out)


@router.post("/clusters", status_code=201, tags=["clusters"])
def create_cluster(body: ClusterCreate, session: Session = Depends(get_session)) -> dict[str, Any]:
    with write_txn(session):
        if session.get(m.Cluster, body.id) is not None:
            raise duplicate("خوشه", "Cluster", body.id)
        c = m.Cluster(**body.model_dump())
        session.add(c)
    return cluster_out(c, 0)


@router.get("/clusters/{cluster_id}", tags=["clusters"])
def get_cluster(cluster_id: str, session: Session = Depends(get_session)) -> dict[str, Any]:
    return cluster_out(_cluster(session, cluster_id), _service_count(session, cluster_id))


@router.patch("/clusters/{cluster_id}", tags=["clusters"])
def patch_cluster(cluster_id: str, body: ClusterPatch, session: Session = Depends(get_session)) -> dict[str, Any]:
    with write_txn(session):
        c = _cluster(session, cluster_id)
        apply_patch(c, body.model_dump(exclude_unset=True))
    return cluster_out(c, _service_count(session, cluster_id))


@router.delete("/clusters/{cluster_id}", status_code=204, tags=["clusters"])
def delete_cluster(cluster_id: str, session: Session = Depends(get_session)) -> Response:
    """Delete an empty cluster (409 while it still has services or licences)."""
    with write_txn(session):
        c = _cluster(session, cluster_id)
        n = _service_count(session, cluster_id)
        if n:
            raise ApiError(409, "cluster_not_empty", f"خوشهٔ «{cluster_id}» هنوز {to_persian_digits(n)} خدمت دارد؛ نخست آن‌ها را حذف یا جابه‌جا کنید.",
                           f"Cluster {cluster_id!r} still has {n} service(s); delete or move them first.")
        if session.scalar(select(m.Licence.id).where(m.Licence.cluster_id == cluster_id).limit(1)) is not None:
            raise ApiError(409, "cluster_licensed", f"برای خوشهٔ «{cluster_id}» مجوز صادر شده است؛ نخست مجوزها را حذف کنید.",
                           f"Cluster {cluster_id!r} has licences; delete them first.")
        session.delete(c)
    return Response(status_code=204)


# --- services ----------------------------------------------------------------------------------

def service_out(s: m.Service) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": s.id, "cluster_id": s.cluster_id, "name_fa": s.name_fa, "name_en": s.name_en,
        "agency_fa": s.agency_fa, "agency_en": s.agency_en, "service_type": s.service_type, "level": s.level,
        "fee_rials": s.fee_rials, "national_service_id": s.national_service_id,
        "current_contract_version": s.current_contract_version, "slo_target": s.slo_target,
        "keep_bodies": s.keep_bodies,
    }
    put_time(out, "created_at", s.created_at)
    put_time(out, "updated_at", s.updated_at)
    return out


def _service(session: Session, service_id: str) -> m.Service:
    s = session.get(m.Service, service_id)
    if s is None:
        raise not_found("خدمت", "Service", service_id)
    return s


def _check_national_service_id(session: Session, value: str | None, own_id: str | None = None) -> str | None:
    if value is None:
        return None
    value = to_ascii_digits(value)
    if not (len(value) == 11 and value.isascii() and value.isdigit()):
        raise invalid_field("national_service_id", "شناسهٔ ملی خدمت باید دقیقاً ۱۱ رقم باشد.",
                            "national_service_id must be exactly 11 digits.")
    other = session.scalar(select(m.Service.id).where(m.Service.national_service_id == value))
    if other is not None and other != own_id:
        raise duplicate("خدمت", "Service", value, "national_service_id")
    return value


def _check_cluster_ref(session: Session, cluster_id: str) -> None:
    if session.get(m.Cluster, cluster_id) is None:
        raise invalid_field("cluster_id", f"خوشهٔ «{cluster_id}» وجود ندارد.", f"Cluster {cluster_id!r} does not exist.",
                            code="unknown_cluster")


@router.get("/services", tags=["services"])
def list_services(
    cluster: str | None = Query(None, max_length=64),
    level: Literal["national", "provincial"] | None = Query(None),
    type: Literal["G2C", "G2B", "G2G"] | None = Query(None, description="service type"),  # noqa: A002
    page: Page = Depends(page_params), session: Session = Depends(get_session),
) -> dict[str, Any]:
    stmt = select(m.Service).order_by(m.Service.id)
    if cluster:
        stmt = stmt.where(m.Service.cluster_id == cluster)
    if level:
        stmt = stmt.where(m.Service.level == level)
    if type:
        stmt = stmt.where(m.Service.service_type == type)
    return paginate(session, stmt, page, service_out)


@router.post("/services", status_code=201, tags=["services"])
def create_service(body: ServiceCreate, session: Session = Depends(get_session)) -> dict[str, Any]:
    with write_txn(session):
        if session.get(m.Service, body.id) is not None:
            raise duplicate("خدمت", "Service", body.id)
        _check_cluster_ref(session, body.cluster_id)
        data = body.model_dump()
        data["national_service_id"] = _check_national_service_id(session, body.national_service_id)
        s = m.Service(**data)
        session.add(s)
        session.flush()
    return service_out(s)


@router.get("/services/{service_id}", tags=["services"])
def get_service(service_id: str, session: Session = Depends(get_session)) -> dict[str, Any]:
    s = _service(session, service_id)
    out = service_out(s)
    out["contract_versions"] = sorted((c.version for c in s.contracts), key=semver_key)
    return out


@router.patch("/services/{service_id}", tags=["services"])
def patch_service(service_id: str, body: ServicePatch, session: Session = Depends(get_session)) -> dict[str, Any]:
    """Update identity-card fields; ``current_contract_version`` must name an uploaded contract."""
    changes = body.model_dump(exclude_unset=True)
    with write_txn(session):
        s = _service(session, service_id)
        if changes.get("cluster_id") is not None:
            _check_cluster_ref(session, changes["cluster_id"])
        if "national_service_id" in changes:
            changes["national_service_id"] = _check_national_service_id(session, changes["national_service_id"], s.id)
        version = changes.get("current_contract_version")
        if version is not None and version not in {c.version for c in s.contracts}:
            raise invalid_field("current_contract_version", f"نسخهٔ قرارداد «{version}» برای این خدمت بارگذاری نشده است.",
                                f"Contract version {version!r} has not been uploaded for this service.",
                                code="unknown_contract_version")
        apply_patch(s, changes, nullable=frozenset({"national_service_id", "current_contract_version"}))
        session.flush()
    return service_out(s)


@router.delete("/services/{service_id}", status_code=204, tags=["services"])
def delete_service(service_id: str, session: Session = Depends(get_session)) -> Response:
    """Delete a service with its contracts and client access rights (409 while licences name it)."""
    with write_txn(session):
        s = _service(session, service_id)
        if session.scalar(select(m.Licence.id).where(m.Licence.service_id == service_id).limit(1)) is not None:
            raise ApiError(409, "service_licensed", f"برای خدمت «{service_id}» مجوز صادر شده است؛ نخست مجوزها را حذف کنید.",
                           f"Service {service_id!r} has licences; delete them first.")
        for a in session.scalars(select(m.ClientAccess).where(m.ClientAccess.service_id == service_id)):
            session.delete(a)
        session.delete(s)
    return Response(status_code=204)


# --- contracts ---------------------------------------------------------------------------------

def _operation_count(doc: dict[str, Any]) -> int:
    methods = {"get", "put", "post", "delete", "patch", "head", "options"}
    return sum(1 for item in (doc.get("paths") or {}).values() if isinstance(item, dict)
               for k in item if str(k).lower() in methods)


def contract_out(c: m.ServiceContract, current: str | None, with_doc: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"service_id": c.service_id, "version": c.version, "is_current": c.version == current,
                           "operations": _operation_count(c.openapi or {})}
    put_time(out, "created_at", c.created_at)
    if with_doc:
        out["openapi"] = c.openapi
    return out


@router.get("/services/{service_id}/contracts", tags=["services"])
def list_contracts(service_id: str, page: Page = Depends(page_params),
                   session: Session = Depends(get_session)) -> dict[str, Any]:
    """The service's contract versions, newest (highest semver) first, without the documents."""
    s = _service(session, service_id)
    ordered = sorted(s.contracts, key=lambda c: semver_key(c.version) if c.version and is_semver(c.version) else (0, 0, 0, 0, ""),
                     reverse=True)
    items = ordered[page.offset: page.offset + page.limit]
    return {"items": [contract_out(c, s.current_contract_version, False) for c in items], "total": len(ordered),
            "limit": page.limit, "offset": page.offset, "current_version": s.current_contract_version}


@router.get("/services/{service_id}/contracts/{version}", tags=["services"])
def get_contract(service_id: str, version: str, session: Session = Depends(get_session)) -> dict[str, Any]:
    s = _service(session, service_id)
    c = next((c for c in s.contracts if c.version == version), None)
    if c is None:
        raise not_found("نسخهٔ قرارداد", "Contract version", f"{service_id}@{version}")
    return contract_out(c, s.current_contract_version, True)


@router.post("/services/{service_id}/contracts", status_code=201, tags=["services"])
def create_contract(service_id: str, body: ContractCreate, session: Session = Depends(get_session)) -> dict[str, Any]:
    """Upload a contract version (semver, OpenAPI 3, checked by ``validate_contract``).

    It becomes the current one (the one the gateway routes by) when ``make_current`` is true or the
    service has no current contract yet. A version already uploaded → 409.
    """
    if not is_semver(body.version):
        raise invalid_field("version", f"نسخهٔ «{body.version}» قالب نسخه‌بندی معنایی (مثلاً 1.2.0) ندارد.",
                            f"version {body.version!r} is not a semantic version (e.g. 1.2.0).", code="invalid_version")
    problems = validate_contract(body.openapi)
    encoded = json.dumps(body.openapi, ensure_ascii=False)
    if len(encoded.encode("utf-8")) > MAX_CONTRACT_BYTES:
        problems.append(f"the contract is larger than {MAX_CONTRACT_BYTES} bytes")
    if "\\u0000" in encoded or "\x00" in encoded:
        problems.append("the contract must not contain NUL (\\u0000) characters")
    if problems:
        raise ApiError(422, "invalid_contract", "قرارداد OpenAPI پذیرفته نشد: " + "؛ ".join(problems),
                       "The OpenAPI contract was rejected: " + "; ".join(problems),
                       {"field": "openapi", "problems": problems})
    with write_txn(session):
        s = _service(session, service_id)
        if any(c.version == body.version for c in s.contracts):
            raise ApiError(409, "duplicate_version", f"نسخهٔ «{body.version}» برای خدمت «{service_id}» از پیش ثبت شده است؛ نسخهٔ تازه‌ای بدهید.",
                           f"Version {body.version!r} of service {service_id!r} already exists; use a new version.",
                           {"field": "version"})
        c = m.ServiceContract(service_id=s.id, version=body.version, openapi=body.openapi)
        s.contracts.append(c)
        if body.make_current or s.current_contract_version is None:
            s.current_contract_version = body.version
        session.flush()
    return contract_out(c, s.current_contract_version, False)

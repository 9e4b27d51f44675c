"""Admin API: licences — apply, amend while pending, lifecycle actions, audited history.

Every change goes through :mod:`zistboom.licensing.service` (which writes a ``LicenceEvent`` and bumps
the registry version); the API adds filters, pagination and the JSON error shape.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Response
from sqlalchemy import or_, select
from sqlalchemy.orm import Session, selectinload

from zistboom.admin.common import Page, page_params, paginate, put_time
from zistboom.admin.deps import get_session, write_txn
from zistboom.admin.errors import ApiError, invalid_field, not_found
from zistboom.admin.schemas import LicenceAction, LicenceCreate, LicencePatch, Timestamp
from zistboom.licensing.service import LicensingError, apply, claim, transition
from zistboom.registry import models as m
from zistboom.registry.db import utcnow
from zistboom.text.digits import to_persian_digits

router = APIRouter()
ACTOR = "admin-api"
LicenceId = Annotated[int, Path(ge=1, le=2**31 - 1, description="licence id")]


class Action(str, Enum):
    review = "review"
    grant = "grant"
    reject = "reject"
    suspend = "suspend"
    reinstate = "reinstate"
    revoke = "revoke"
    renew = "renew"


def licence_out(lic: m.Licence) -> dict[str, Any]:
    out: dict[str, Any] = {"id": lic.id, "operator_id": lic.operator_id, "service_id": lic.service_id,
                           "cluster_id": lic.cluster_id, "provinces": lic.provinces, "status": lic.status,
                           "sla_target": lic.sla_target}
    put_time(out, "valid_from", lic.valid_from)
    put_time(out, "valid_until", lic.valid_until)
    put_time(out, "created_at", lic.created_at)
    put_time(out, "updated_at", lic.updated_at)
    return out


def event_out(ev: m.LicenceEvent) -> dict[str, Any]:
    out: dict[str, Any] = {"id": ev.id, "licence_id": ev.licence_id, "action": ev.action,
                           "from_status": ev.from_status, "to_status": ev.to_status, "actor": ev.actor,
                           "reason": ev.reason, "evidence": ev.evidence}
    put_time(out, "at", ev.at)
    return out


def _licensing_error(exc: LicensingError, *, refs_in_body: bool = False) -> ApiError:
    # On create, the operator/service/cluster are named in the body, not the URL: a bad reference
    # there is a bad field (422), not a missing resource (404).
    status = 422 if refs_in_body and exc.http_status == 404 else exc.http_status
    field = {"unknown_operator": "operator_id", "unknown_service": "service_id", "unknown_cluster": "cluster_id",
             "unknown_province": "provinces", "no_province": "provinces", "invalid_validity": "valid_until",
             "invalid_sla": "sla_target", "invalid_scope": "service_id/cluster_id", "validity_over": "valid_until",
             "invalid_evidence": "evidence", "evidence_too_large": "evidence"}.get(exc.code)
    return ApiError(status, exc.code, exc.message_fa, exc.message_en, {"field": field} if field else None)


def _licence(session: Session, licence_id: int) -> m.Licence:
    lic = session.get(m.Licence, licence_id)
    if lic is None:
        raise not_found("مجوز", "Licence", licence_id)
    return lic


@router.get("/licences", tags=["licences"])
def list_licences(
    cluster: str | None = Query(None, max_length=64, description="licences for this cluster or one of its services"),
    service: str | None = Query(None, max_length=100, description="licences covering this service (directly or via its cluster)"),
    operator: str | None = Query(None, max_length=64),
    province: str | None = Query(None, max_length=5, description="licences that include this province"),
    status: str | None = Query(None, pattern="^(pending|active|suspended|revoked|expired|rejected)$"),
    expiring_before: Timestamp | None = Query(None, description="valid_until earlier than this instant (ISO 8601 with zone)"),
    page: Page = Depends(page_params), session: Session = Depends(get_session),
) -> dict[str, Any]:
    stmt = select(m.Licence).options(selectinload(m.Licence.province_links)).order_by(m.Licence.id)
    if cluster:
        stmt = stmt.where(or_(m.Licence.cluster_id == cluster,
                              m.Licence.service_id.in_(select(m.Service.id).where(m.Service.cluster_id == cluster))))
    if service:
        stmt = stmt.where(or_(m.Licence.service_id == service,
                              m.Licence.cluster_id.in_(select(m.Service.cluster_id).where(m.Service.id == service))))
    if operator:
        stmt = stmt.where(m.Licence.operator_id == operator)
    if province:
        stmt = stmt.where(m.Licence.id.in_(
            select(m.LicenceProvince.licence_id).where(m.LicenceProvince.province_code == province)))
    if status:
        stmt = stmt.where(m.Licence.status == status)
    if expiring_before is not None:
        stmt = stmt.where(m.Licence.valid_until < expiring_before)
    return paginate(session, stmt, page, licence_out)


@router.post("/licences", status_code=201, tags=["licences"])
def create_licence(body: LicenceCreate, session: Session = Depends(get_session)) -> dict[str, Any]:
    """File an application (status ``pending``), audited as ``apply``."""
    with write_txn(session, bump=False):
        try:
            lic = apply(session, operator_id=body.operator_id, service_id=body.service_id, cluster_id=body.cluster_id,
                        provinces=body.provinces, valid_from=body.valid_from, valid_until=body.valid_until,
                        sla_target=body.sla_target, actor=ACTOR, reason=body.reason)
        except LicensingError as exc:
            raise _licensing_error(exc, refs_in_body=True) from exc
    return licence_out(lic)


@router.get("/licences/{licence_id}", tags=["licences"])
def get_licence(licence_id: LicenceId, session: Session = Depends(get_session)) -> dict[str, Any]:
    return licence_out(_licence(session, licence_id))


@router.patch("/licences/{licence_id}", tags=["licences"])
def patch_licence(licence_id: LicenceId, body: LicencePatch, session: Session = Depends(get_session)) -> dict[str, Any]:
    """Amend a pending application (provinces, validity, SLA); audited as ``amend``. Other statuses → 409
    (use the actions, e.g. ``renew``)."""
    changes = body.model_dump(exclude_unset=True)
    reason = changes.pop("reason", "")
    for name in ("provinces", "valid_from", "valid_until", "sla_target"):
        if name in changes and changes[name] is None:
            raise invalid_field(name, f"فیلد «{name}» نمی‌تواند خالی (null) باشد.", f"Field '{name}' cannot be null.")
    with write_txn(session):
        lic = _licence(session, licence_id)
        if lic.status != "pending":
            raise ApiError(409, "not_pending", f"فقط درخواست مجوزِ در انتظار را می‌توان ویرایش کرد؛ وضعیت این مجوز «{lic.status}» است.",
                           f"Only a pending licence can be amended; this one is {lic.status}. Use an action such as renew.")
        # claim the row while it is still pending: a grant committed between the check above and this
        # commit would otherwise have its scope or dates changed as if it were pending
        try:
            claim(session, lic, "pending", updated_at=utcnow())
        except LicensingError as exc:
            raise _licensing_error(exc) from exc
        valid_from = changes.get("valid_from", lic.valid_from)
        valid_until = changes.get("valid_until", lic.valid_until)
        if valid_until <= valid_from:
            raise invalid_field("valid_until", "تاریخ پایان اعتبار باید پس از تاریخ شروع باشد.",
                                "valid_until must be after valid_from.", code="invalid_validity")
        if "valid_until" in changes and valid_until <= utcnow():
            raise invalid_field("valid_until", "تاریخ پایان اعتبار گذشته است؛ باید در آینده باشد.",
                                "valid_until is in the past; it must be in the future.", code="invalid_validity")
        changed: dict[str, Any] = {}
        if "provinces" in changes:
            codes = sorted(set(changes["provinces"]))
            known = set(session.scalars(select(m.Province.code).where(m.Province.code.in_(codes))))
            unknown = [c for c in codes if c not in known]
            if unknown:
                raise invalid_field("provinces", f"استان ناشناخته: {', '.join(unknown)}",
                                    f"Unknown province code(s): {', '.join(unknown)}", code="unknown_province")
            if codes != lic.provinces:
                changed["provinces"] = codes
                lic.province_links = [m.LicenceProvince(province_code=c) for c in codes]
        for name in ("valid_from", "valid_until", "sla_target"):
            if name in changes and getattr(lic, name) != changes[name]:
                setattr(lic, name, changes[name])
                changed[name] = changes[name].isoformat() if isinstance(changes[name], datetime) else changes[name]
        if changed:
            session.flush()
            session.add(m.LicenceEvent(licence_id=lic.id, action="amend", from_status=lic.status, to_status=lic.status,
                                       actor=ACTOR, reason=reason, evidence={"changed": changed}))
        session.flush()
        session.refresh(lic)
    return licence_out(lic)


@router.delete("/licences/{licence_id}", status_code=204, tags=["licences"])
def delete_licence(licence_id: LicenceId, session: Session = Depends(get_session)) -> Response:
    """Delete a pending or rejected application (with its history). Licences in force (active,
    suspended) → 409 ``licence_in_force``: revoke them instead; revoked/expired ones → 409
    ``licence_has_history`` (kept for the audit trail, nothing to do)."""
    with write_txn(session):
        lic = _licence(session, licence_id)
        if lic.status not in ("pending", "rejected"):
            if lic.status in ("revoked", "expired"):
                # already out of force: "revoke it instead" would be wrong advice
                raise ApiError(409, "licence_has_history",
                               f"مجوز {to_persian_digits(licence_id)} در وضعیت «{lic.status}» است و برای حفظ سابقهٔ ممیزی حذف نمی‌شود؛ این مجوز دیگر نافذ نیست و کاری لازم نیست.",
                               f"Licence {licence_id} is {lic.status}; it is kept to preserve its audit trail and cannot be deleted. "
                               "It is no longer in force, so nothing else is needed.")
            raise ApiError(409, "licence_in_force",
                           f"مجوز {to_persian_digits(licence_id)} در وضعیت «{lic.status}» است و حذف‌شدنی نیست؛ به‌جای حذف آن را لغو (revoke) کنید.",
                           f"Licence {licence_id} is {lic.status} and cannot be deleted; revoke it instead.")
        session.delete(lic)
    return Response(status_code=204)


@router.get("/licences/{licence_id}/events", tags=["licences"])
def licence_events(licence_id: LicenceId, page: Page = Depends(page_params),
                   session: Session = Depends(get_session)) -> dict[str, Any]:
    """The audited history of a licence, oldest first."""
    _licence(session, licence_id)
    stmt = select(m.LicenceEvent).where(m.LicenceEvent.licence_id == licence_id).order_by(m.LicenceEvent.id)
    return paginate(session, stmt, page, event_out)


@router.post("/licences/{licence_id}/{action}", tags=["licences"])
def licence_action(licence_id: LicenceId, action: Action, body: LicenceAction | None = Body(None),
                   session: Session = Depends(get_session)) -> dict[str, Any]:
    """Carry out a lifecycle action: ``review grant reject suspend reinstate revoke renew``.

    ``renew`` needs ``valid_until`` later than the current one. A transition not allowed from the
    current status → 409; unknown licence → 404.
    """
    body = body or LicenceAction()
    if action is Action.renew and body.valid_until is None:
        raise invalid_field("valid_until", "برای تمدید، تاریخ پایان اعتبار تازه (valid_until) لازم است.",
                            "renew needs valid_until (the new end of validity).", code="invalid_validity")
    with write_txn(session, bump=False):
        try:
            lic = transition(session, licence_id, action.value, actor=ACTOR, reason=body.reason,
                             evidence=body.evidence, valid_until=body.valid_until)
        except LicensingError as exc:
            raise _licensing_error(exc) from exc
        session.flush()
        session.refresh(lic)
    out = licence_out(lic)
    out["event"] = event_out(lic.events[-1]) if lic.events else None
    return out


"""Admin API: private operators (اپراتورها)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from zistboom.admin.common import Page, apply_patch, page_params, paginate, put_time
from zistboom.admin.deps import get_session, write_txn
from zistboom.admin.errors import ApiError, duplicate, invalid_field, not_found
from zistboom.admin.schemas import OperatorCreate, OperatorPatch
from zistboom.registry import models as m
from zistboom.registry.validation import is_valid_company_national_id
from zistboom.text.digits import to_ascii_digits, to_persian_digits

router = APIRouter()


def operator_out(o: m.Operator) -> dict[str, Any]:
    out: dict[str, Any] = {"id": o.id, "name_fa": o.name_fa, "name_en": o.name_en, "national_id": o.national_id,
                           "home_province": o.home_province, "endpoints": list(o.endpoints or []),
                           "health_url": o.health_url}
    put_time(out, "created_at", o.created_at)
    put_time(out, "updated_at", o.updated_at)
    return out


def _operator(session: Session, operator_id: str) -> m.Operator:
    o = session.get(m.Operator, operator_id)
    if o is None:
        raise not_found("اپراتور", "Operator", operator_id)
    return o


def check_url(field: str, value: str) -> str:
    """An absolute ``http://`` URL with a host and no user-info; 422 naming ``field`` otherwise.

    ``https://`` is refused (code ``tls_not_supported``): the gateway's upstream client speaks plain
    HTTP only (operators are reached over the ministry's private network), and an https endpoint
    would be dropped silently, leaving calls with a misleading 503 ``no_route``. ``user:pass@``
    in a URL is refused too (credentials would be stored and logged in plain text).
    """
    try:
        parts = urlsplit(value)
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        parts, port_ok = None, False
    if parts is not None and parts.scheme.lower() == "https":
        raise invalid_field(
            field,
            f"«{value[:100]}» در فیلد «{field}» نشانی https است؛ این نسخه از زیست‌بوم با اپراتورها TLS (https) "
            "برقرار نمی‌کند — اپراتورها از راه شبکهٔ خصوصی وزارتخانه با http ساده در دسترس‌اند. نشانی http بدهید.",
            f"{field}: {value[:100]!r} uses https; TLS to operators is not supported by this version "
            "(operators are reached over the ministry's private network). Give an http:// URL.",
            code="tls_not_supported")
    if parts is not None and ("@" in parts.netloc or parts.username is not None):
        raise invalid_field(
            field,
            f"نشانی در فیلد «{field}» نباید نام کاربری یا گذرواژه (user:pass@) داشته باشد.",
            f"{field}: the URL must not contain user info (user:pass@host).", code="invalid_url")
    if parts is None or parts.scheme != "http" or not parts.hostname or not port_ok or " " in value:
        raise invalid_field(field, f"«{value[:100]}» در فیلد «{field}» نشانی http معتبری نیست.",
                            f"{field}: {value[:100]!r} is not a valid http URL.", code="invalid_url")
    return value


def _check_national_id(session: Session, value: str, own_id: str | None = None) -> str:
    value = to_ascii_digits(value)
    if not is_valid_company_national_id(value):
        raise invalid_field(
            "national_id",
            f"شناسهٔ ملی «{value}» معتبر نیست: باید ۱۱ رقم باشد و رقم کنترل (رقم آخر) آن درست باشد.",
            f"national_id {value!r} is not a valid 11-digit legal-entity national id (check digit mismatch or wrong length).",
            code="invalid_national_id")
    other = session.scalar(select(m.Operator.id).where(m.Operator.national_id == value))
    if other is not None and other != own_id:
        raise duplicate("اپراتور", "Operator", value, "national_id")
    return value


def _check_province(session: Session, field: str, code: str) -> None:
    if session.get(m.Province, code) is None:
        raise invalid_field(field, f"استان «{code}» وجود ندارد.", f"{field}: province {code!r} does not exist.",
                            code="unknown_province")


@router.get("/operators", tags=["operators"])
def list_operators(province: str | None = Query(None, max_length=5, description="home province (ISO code)"),
                   page: Page = Depends(page_params), session: Session = Depends(get_session)) -> dict[str, Any]:
    stmt = select(m.Operator).order_by(m.Operator.id)
    if province:
        stmt = stmt.where(m.Operator.home_province == province)
    return paginate(session, stmt, page, operator_out)


@router.post("/operators", status_code=201, tags=["operators"])
def create_operator(body: OperatorCreate, session: Session = Depends(get_session)) -> dict[str, Any]:
    for i, url in enumerate(body.endpoints):
        check_url(f"endpoints.{i}", url)
    check_url("health_url", body.health_url)
    with write_txn(session):
        if session.get(m.Operator, body.id) is not None:
            raise duplicate("اپراتور", "Operator", body.id)
        data = body.model_dump()
        data["national_id"] = _check_national_id(session, body.national_id)
        _check_province(session, "home_province", body.home_province)
        o = m.Operator(**data)
        session.add(o)
        session.flush()
    return operator_out(o)


@router.get("/operators/{operator_id}", tags=["operators"])
def get_operator(operator_id: str, session: Session = Depends(get_session)) -> dict[str, Any]:
    o = _operator(session, operator_id)
    out = operator_out(o)
    out["licence_ids"] = sorted(session.scalars(select(m.Licence.id).where(m.Licence.operator_id == o.id)))
    return out


@router.patch("/operators/{operator_id}", tags=["operators"])
def patch_operator(operator_id: str, body: OperatorPatch, session: Session = Depends(get_session)) -> dict[str, Any]:
    changes = body.model_dump(exclude_unset=True)
    for i, url in enumerate(changes.get("endpoints") or []):
        check_url(f"endpoints.{i}", url)
    if changes.get("health_url") is not None:
        check_url("health_url", changes["health_url"])
    with write_txn(session):
        o = _operator(session, operator_id)
        if changes.get("national_id") is not None:
            changes["national_id"] = _check_national_id(session, changes["national_id"], o.id)
        if changes.get("home_province") is not None:
            _check_province(session, "home_province", changes["home_province"])
        apply_patch(o, changes)
        session.flush()
    return operator_out(o)


@router.delete("/operators/{operator_id}", status_code=204, tags=["operators"])
def delete_operator(operator_id: str, session: Session = Depends(get_session)) -> Response:
    """Delete an operator that holds no licences (409 otherwise: the licences and their audit trail stay)."""
    with write_txn(session):
        o = _operator(session, operator_id)
        n = len(session.scalars(select(m.Licence.id).where(m.Licence.operator_id == o.id)).all())
        if n:
            raise ApiError(409, "operator_licensed",
                           f"اپراتور «{operator_id}» {to_persian_digits(n)} مجوز دارد؛ نخست مجوزهای در انتظار یا ردشده را حذف کنید (مجوزهای صادرشده برای حفظ سابقه می‌مانند).",
                           f"Operator {operator_id!r} holds {n} licence(s); it cannot be deleted while they exist.")
        session.delete(o)
    return Response(status_code=204)

"""Admin API: client systems (سامانه‌های مصرف‌کننده), their API keys and access rights.

A plain API key is shown exactly once — in the response that creates it; the registry keeps only
``hash_api_key(key)`` (SHA-256) and a short prefix to recognise the key in listings. Access is deny
by default: a client may call only the services listed in its access rights.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from zistboom.admin.common import Page, apply_patch, page_params, paginate, put_time
from zistboom.admin.deps import get_session, write_txn
from zistboom.admin.errors import duplicate, invalid_field, not_found
from zistboom.admin.schemas import AccessPut, ClientCreate, ClientPatch, KeyCreate
from zistboom.registry import models as m
from zistboom.registry.db import utcnow
from zistboom.registry.snapshot import hash_api_key

router = APIRouter()
KeyId = Annotated[int, Path(ge=1, le=2**31 - 1, description="API key id")]
KEY_PREFIX = "zb_"


def new_api_key() -> str:
    """A fresh 256-bit API key, ``zb_`` + URL-safe base64 (same form as the demo seed's keys)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_out(k: m.ApiKey) -> dict[str, Any]:
    out: dict[str, Any] = {"id": k.id, "prefix": k.prefix, "active": k.revoked_at is None}
    put_time(out, "created_at", k.created_at)
    put_time(out, "revoked_at", k.revoked_at)
    return out


def client_out(c: m.ClientSystem) -> dict[str, Any]:
    out: dict[str, Any] = {"id": c.id, "name": c.name, "province": c.province,
                           "services": sorted(a.service_id for a in c.access),
                           "keys": [key_out(k) for k in sorted(c.keys, key=lambda k: k.id or 0)]}
    put_time(out, "created_at", c.created_at)
    return out


def _client(session: Session, client_id: str) -> m.ClientSystem:
    c = session.get(m.ClientSystem, client_id)
    if c is None:
        raise not_found("سامانهٔ مصرف‌کننده", "Client system", client_id)
    return c


def _check_province(session: Session, code: str | None) -> None:
    if code is not None and session.get(m.Province, code) is None:
        raise invalid_field("province", f"استان «{code}» وجود ندارد.", f"province {code!r} does not exist.",
                            code="unknown_province")


def _check_services(session: Session, services: list[str]) -> list[str]:
    wanted = sorted(set(services))
    known = set(session.scalars(select(m.Service.id).where(m.Service.id.in_(wanted)))) if wanted else set()
    unknown = [s for s in wanted if s not in known]
    if unknown:
        raise invalid_field("services", f"خدمت ناشناخته: {'، '.join(unknown[:20])}",
                            f"Unknown service id(s): {', '.join(unknown[:20])}", code="unknown_service")
    return wanted


def _issue_key(session: Session, client: m.ClientSystem) -> tuple[m.ApiKey, str]:
    plain = new_api_key()
    key = m.ApiKey(client_id=client.id, key_hash=hash_api_key(plain), prefix=plain[:10])
    client.keys.append(key)
    session.flush()
    return key, plain


def _with_plain(key: m.ApiKey, plain: str) -> dict[str, Any]:
    out = key_out(key)
    out["key"] = plain
    out["note_fa"] = "این کلید فقط همین یک بار نشان داده می‌شود؛ آن را در جای امنی نگه دارید."
    out["note_en"] = "This key is shown only once; store it somewhere safe."
    return out


@router.get("/clients", tags=["clients"])
def list_clients(province: str | None = Query(None, max_length=5), page: Page = Depends(page_params),
                 session: Session = Depends(get_session)) -> dict[str, Any]:
    stmt = select(m.ClientSystem).order_by(m.ClientSystem.id)
    if province:
        stmt = stmt.where(m.ClientSystem.province == province)
    return paginate(session, stmt, page, client_out)


@router.post("/clients", status_code=201, tags=["clients"])
def create_client(body: ClientCreate, session: Session = Depends(get_session)) -> dict[str, Any]:
    """Register a client system; the response carries its first API key in plain text (once)."""
    with write_txn(session):
        if session.get(m.ClientSystem, body.id) is not None:
            raise duplicate("سامانهٔ مصرف‌کننده", "Client system", body.id)
        _check_province(session, body.province)
        services = _check_services(session, body.services)
        c = m.ClientSystem(id=body.id, name=body.name, province=body.province)
        c.access = [m.ClientAccess(service_id=s) for s in services]
        session.add(c)
        session.flush()
        key, plain = _issue_key(session, c)
    out = client_out(c)
    out["api_key"] = _with_plain(key, plain)
    return out


@router.get("/clients/{client_id}", tags=["clients"])
def get_client(client_id: str, session: Session = Depends(get_session)) -> dict[str, Any]:
    return client_out(_client(session, client_id))


@router.patch("/clients/{client_id}", tags=["clients"])
def patch_client(client_id: str, body: ClientPatch, session: Session = Depends(get_session)) -> dict[str, Any]:
    changes = body.model_dump(exclude_unset=True)
    with write_txn(session):
        c = _client(session, client_id)
        _check_province(session, changes.get("province"))
        apply_patch(c, changes, nullable=frozenset({"province"}))
    return client_out(c)


@router.delete("/clients/{client_id}", status_code=204, tags=["clients"])
def delete_client(client_id: str, session: Session = Depends(get_session)) -> Response:
    """Delete a client system with its keys and access rights."""
    with write_txn(session):
        session.delete(_client(session, client_id))
    return Response(status_code=204)


@router.get("/clients/{client_id}/keys", tags=["clients"])
def list_keys(client_id: str, session: Session = Depends(get_session)) -> dict[str, Any]:
    c = _client(session, client_id)
    items = [key_out(k) for k in sorted(c.keys, key=lambda k: k.id)]
    return {"items": items, "total": len(items)}


@router.post("/clients/{client_id}/keys", status_code=201, tags=["clients"])
def add_key(client_id: str, body: KeyCreate | None = Body(None), session: Session = Depends(get_session)) -> dict[str, Any]:
    """Add a key (shown once). ``revoke_existing: true`` rotates: every other key is revoked at once."""
    body = body or KeyCreate()
    with write_txn(session):
        c = _client(session, client_id)
        revoked = []
        if body.revoke_existing:
            now = utcnow()
            for k in c.keys:
                if k.revoked_at is None:
                    k.revoked_at = now
                    revoked.append(k.id)
        key, plain = _issue_key(session, c)
    out = _with_plain(key, plain)
    out["revoked_key_ids"] = revoked
    return out


@router.delete("/clients/{client_id}/keys/{key_id}", tags=["clients"])
def revoke_key(client_id: str, key_id: KeyId, session: Session = Depends(get_session)) -> dict[str, Any]:
    """Revoke one key (kept, marked ``revoked_at``, so the gateway stops accepting it). Idempotent."""
    with write_txn(session):
        c = _client(session, client_id)
        key = next((k for k in c.keys if k.id == key_id), None)
        if key is None:
            raise not_found("کلید", "API key", f"{client_id}/{key_id}")
        if key.revoked_at is None:
            key.revoked_at = utcnow()
    return key_out(key)


@router.get("/clients/{client_id}/access", tags=["clients"])
def get_access(client_id: str, session: Session = Depends(get_session)) -> dict[str, Any]:
    c = _client(session, client_id)
    return {"client_id": c.id, "services": sorted(a.service_id for a in c.access)}


@router.put("/clients/{client_id}/access", tags=["clients"])
def put_access(client_id: str, body: AccessPut, session: Session = Depends(get_session)) -> dict[str, Any]:
    """Replace the client's access rights with exactly ``services`` (unknown service → 422)."""
    with write_txn(session):
        c = _client(session, client_id)
        wanted = _check_services(session, body.services)
        have = {a.service_id: a for a in c.access}
        for sid, a in have.items():
            if sid not in wanted:
                c.access.remove(a)
        for sid in wanted:
            if sid not in have:
                c.access.append(m.ClientAccess(service_id=sid))
        session.flush()
    return {"client_id": c.id, "services": sorted(a.service_id for a in c.access)}

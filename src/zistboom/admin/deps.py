"""FastAPI dependencies shared by the admin API and the parts mounted on it (monitoring, dashboard).

* :func:`require_reader` — any valid bearer token (admin or province); returns its
  :class:`~zistboom.admin.auth.Role`. Missing/unknown token → 401 JSON error with
  ``WWW-Authenticate: Bearer``.
* :func:`require_admin` — the admin token only; a province token gets 403 (also used by the
  monitoring routes under ``/admin/v1``).
* :func:`authorize` — the admin role for every method (used as the admin API router's dependency so
  no endpoint can forget it); a province token, meant for the dashboard's read-only province
  views, gets 403 on the whole admin API.
* :func:`get_session` — a SQLAlchemy session from ``app.state.session_factory``, closed (and rolled
  back if uncommitted) after the request.
* :func:`write_txn` — wraps a write: bumps ``registry_state.version`` in the same transaction,
  commits, and turns integrity/data errors into 409/422.

The token checker is ``request.app.state.token_checker`` (set by ``create_admin_app``); an app that
mounts these dependencies without one falls back to ``TokenChecker(get_settings().var_dir)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from zistboom.admin.auth import Role, TokenChecker
from zistboom.admin.errors import ApiError, db_error
from zistboom.registry.snapshot import bump_version

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="Admin token (`zistboom admin token`). Province tokens "
    "(`zistboom admin province-token IR-xx`) are for the dashboard only and get 403 here.",
)

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_token_checker(request: Request) -> TokenChecker:
    """The app's :class:`TokenChecker` (created from settings on first use if the app has none)."""
    checker = getattr(request.app.state, "token_checker", None)
    if checker is None:
        from zistboom.config import get_settings

        checker = TokenChecker(get_settings().var_dir)
        request.app.state.token_checker = checker
    return checker


def _unauthorized(message_fa: str, message_en: str) -> ApiError:
    return ApiError(401, "unauthorized", message_fa, message_en, headers={"WWW-Authenticate": "Bearer"})


def require_reader(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme)
) -> Role:
    """Any valid token (admin or province). Raises :class:`ApiError` 401 otherwise."""
    if credentials is None or not credentials.credentials:
        raise _unauthorized("توکن ورود لازم است: سرآیند «Authorization: Bearer <token>» را بفرستید.",
                            "Authentication required: send the header 'Authorization: Bearer <token>'.")
    role = get_token_checker(request).resolve(credentials.credentials)
    if role is None:
        raise _unauthorized("توکن نامعتبر است.", "Invalid token.")
    request.state.role = role
    return role


PROVINCE_TOKEN_FA = ("توکن استانی فقط برای نماهای فقط‌خواندنیِ استان در داشبورد است و در API مدیریت "
                     "(‎/admin/v1‎) پذیرفته نمی‌شود؛ برای API مدیریت، توکن مدیر لازم است.")
PROVINCE_TOKEN_EN = ("Province tokens are for the dashboard's read-only province views; the admin API "
                     "(/admin/v1) accepts the admin token only.")


def require_admin(role: Role = Depends(require_reader)) -> Role:
    """The admin token only. Raises :class:`ApiError` 401 (no/unknown token) or 403 (province token,
    which is meant for the dashboard's read-only province views, not the admin API)."""
    if not role.can_write:
        raise ApiError(403, "forbidden", PROVINCE_TOKEN_FA, PROVINCE_TOKEN_EN)
    return role


def authorize(request: Request, role: Role = Depends(require_reader)) -> Role:
    """The admin API's guard: the admin role for every method, reads included.

    Province tokens are scoped to one province in the dashboard; the admin API has national data
    (clients with key prefixes, every province's licences, operators) and no per-province filter, so
    a province token gets 403 here on every route (one simple, consistent rule)."""
    return require_admin(role)


def get_session(request: Request) -> Iterator[Session]:
    """One session per request from ``app.state.session_factory``."""
    session = request.app.state.session_factory()
    try:
        yield session
    finally:
        session.close()


@contextmanager
def write_txn(session: Session, *, bump: bool = True) -> Iterator[Session]:
    """Run a registry write: on success bump the registry version (unless the callee already did,
    ``bump=False``) and commit; on a database error roll back and raise the matching
    :class:`ApiError` (unique → 409, FK/check → 422, unreachable DB → 503)."""
    try:
        yield session
        if bump:
            bump_version(session)
        session.commit()
    except SQLAlchemyError as exc:
        session.rollback()
        raise db_error(exc) from exc
    except BaseException:
        session.rollback()
        raise

"""Helpers shared by the admin API's resource modules: pagination, timestamps, PATCH application."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import Query
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from zistboom.admin.errors import invalid_field
from zistboom.text.jalali import jalali_iso_pair


@dataclass(frozen=True)
class Page:
    limit: int
    offset: int


def page_params(
    limit: int = Query(50, ge=1, le=500, description="items per page (1..500)"),
    offset: int = Query(0, ge=0, le=2**31 - 1, description="items to skip"),
) -> Page:
    return Page(limit, offset)


def paginate(session: Session, stmt: Select, page: Page, serialize: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """``{"items", "total", "limit", "offset"}`` for ``stmt`` (which must be ordered)."""
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    rows = session.scalars(stmt.limit(page.limit).offset(page.offset)).all()
    return {"items": [serialize(r) for r in rows], "total": int(total), "limit": page.limit, "offset": page.offset}


def put_time(out: dict[str, Any], name: str, value: datetime | None) -> None:
    """``out[name]`` = ISO 8601 UTC (``...Z``), ``out[name + "_jalali"]`` = Jalali (Tehran time)."""
    pair = jalali_iso_pair(value)
    out[name] = pair["iso"]
    out[f"{name}_jalali"] = pair["jalali"]


def apply_patch(obj: Any, changes: dict[str, Any], *, nullable: frozenset[str] = frozenset()) -> list[str]:
    """Set the fields of ``changes`` on ``obj``; ``None`` is allowed only for ``nullable`` fields.

    Returns the names changed. Raises ApiError 422 naming a non-nullable field sent as null.
    """
    changed = []
    for name, value in changes.items():
        if value is None and name not in nullable:
            raise invalid_field(name, f"فیلد «{name}» نمی‌تواند خالی (null) باشد.", f"Field '{name}' cannot be null.")
        if getattr(obj, name) != value:
            setattr(obj, name, value)
            changed.append(name)
    return changed

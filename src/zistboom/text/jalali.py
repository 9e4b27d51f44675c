"""Jalali (Solar Hijri) dates beside ISO 8601, via ``jdatetime``."""

from __future__ import annotations

from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import jdatetime

from zistboom.text.digits import to_persian_digits

TEHRAN = ZoneInfo("Asia/Tehran")


def format_jalali(value: datetime | date, *, with_time: bool = True, persian_digits: bool = True) -> str:
    """Format a date or datetime in the Jalali calendar, e.g. ``۱۴۰۵/۰۹/۰۸ ۲۱:۵۲``.

    Aware datetimes are shown in Tehran time (Asia/Tehran); naive ones are taken as UTC. A date
    the Jalali calendar library cannot hold (beyond ~Gregorian 9998, or a Tehran offset pushing
    past ``datetime.max``) is shown as its ISO date instead of raising.
    """
    try:
        if isinstance(value, datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=timezone.utc)
            local = value.astimezone(TEHRAN)
            jd = jdatetime.datetime.fromgregorian(datetime=local.replace(tzinfo=None))
            text = jd.strftime("%Y/%m/%d %H:%M") if with_time else jd.strftime("%Y/%m/%d")
        else:
            text = jdatetime.date.fromgregorian(date=value).strftime("%Y/%m/%d")
    except (ValueError, OverflowError):  # beyond jdatetime's range (~Gregorian 9998): show the ISO date
        text = value.isoformat()[:16 if with_time and isinstance(value, datetime) else 10].replace("T", " ")
    return to_persian_digits(text) if persian_digits else text


def jalali_iso_pair(value: datetime | None) -> dict[str, str | None]:
    """``{"iso": ISO 8601 UTC, "jalali": Jalali text with ASCII digits}`` for API payloads."""
    if value is None:
        return {"iso": None, "jalali": None}
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return {
        "iso": value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z"),
        "jalali": format_jalali(value, persian_digits=False),
    }

"""Jalali display of dates (``zistboom.text.jalali``)."""

from __future__ import annotations

from datetime import date, datetime, timezone

from zistboom.text.jalali import format_jalali, jalali_iso_pair


def test_tehran_time_and_persian_digits():
    assert format_jalali(datetime(2026, 11, 30, 6, 0, tzinfo=timezone.utc)) == "۱۴۰۵/۰۹/۰۹ ۰۹:۳۰"
    assert format_jalali(date(2026, 3, 21), persian_digits=False) == "1405/01/01"
    assert format_jalali(datetime(2026, 11, 30, 6, 0), with_time=False) == "۱۴۰۵/۰۹/۰۹"  # naive = UTC


def test_dates_beyond_the_jalali_library_fall_back_to_iso():
    """A stored year-9999 date once made every page showing it answer 500."""
    assert format_jalali(datetime(9999, 12, 31, tzinfo=timezone.utc)) == "۹۹۹۹-۱۲-۳۱ ۰۰:۰۰"
    assert format_jalali(date(9999, 12, 31), persian_digits=False) == "9999-12-31"
    pair = jalali_iso_pair(datetime(9999, 12, 31, tzinfo=timezone.utc))
    assert pair["iso"].startswith("9999-12-31")

"""Digit unification: Persian digits for display, ASCII digits for identifiers."""

from __future__ import annotations

_PERSIAN = "۰۱۲۳۴۵۶۷۸۹"
_ARABIC_INDIC = "٠١٢٣٤٥٦٧٨٩"
_ASCII = "0123456789"

_TO_ASCII = str.maketrans(_PERSIAN + _ARABIC_INDIC, _ASCII * 2)
_TO_PERSIAN = str.maketrans(_ASCII + _ARABIC_INDIC, _PERSIAN * 2)


def to_ascii_digits(text: str) -> str:
    """Replace Persian (U+06F0..9) and Arabic-Indic (U+0660..9) digits with ASCII 0-9."""
    return text.translate(_TO_ASCII)


def to_persian_digits(value: object) -> str:
    """``str(value)`` with ASCII and Arabic-Indic digits replaced by Persian digits (for display).

    Thousands separators are left as given; use :func:`format_number_fa` for grouped numbers.
    """
    return str(value).translate(_TO_PERSIAN)


def format_number_fa(value: int | float, decimals: int = 0) -> str:
    """A number for Persian readers: Persian digits, ``٬`` (U+066C) thousands separator and
    ``٫`` (U+066B) decimal separator, e.g. ``1234567.5 -> ۱٬۲۳۴٬۵۶۷٫۵``."""
    text = f"{value:,.{decimals}f}"
    return to_persian_digits(text.replace(",", "٬").replace(".", "٫"))

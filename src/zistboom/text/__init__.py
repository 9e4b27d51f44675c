"""Persian text utilities shared by every part: digits, Jalali dates, normalisation."""

from zistboom.text.digits import to_ascii_digits, to_persian_digits
from zistboom.text.jalali import format_jalali, jalali_iso_pair
from zistboom.text.normalize import has_content, normalize, normalize_for_model, tidy_name

__all__ = [
    "to_ascii_digits",
    "to_persian_digits",
    "format_jalali",
    "jalali_iso_pair",
    "has_content",
    "normalize",
    "tidy_name",
    "normalize_for_model",
]

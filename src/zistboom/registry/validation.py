"""Identifier checks for registry fields.

The 11-digit national identifier of a legal entity (شناسه ملی اشخاص حقوقی) carries a check digit
in its last place. Algorithm (as published by Iran's national organisation for civil registration
and implemented in open-source libraries such as persian-tools' ``verifyIranianLegalId``):
``k = (10th digit) + 2``; for the first 10 digits ``d[i]`` with weights
``29, 27, 23, 19, 17, 29, 27, 23, 19, 17``, ``s = sum((d[i] + k) * w[i])``; ``r = s mod 11``,
and ``r == 10`` counts as 0; the check digit equals ``r``. Digits ``d[3..8]`` must not all be 0.
"""

from __future__ import annotations

import re

from zistboom.text.digits import to_ascii_digits

_WEIGHTS = (29, 27, 23, 19, 17, 29, 27, 23, 19, 17)
_ELEVEN_DIGITS = re.compile(r"^\d{11}$")
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")


def company_id_check_digit(first10: str) -> int:
    """Check digit for the first 10 digits of a legal entity's national id.

    Raises:
        ValueError: if ``first10`` is not exactly 10 ASCII/Persian digits.
    """
    first10 = to_ascii_digits(first10)
    if not re.fullmatch(r"\d{10}", first10):
        raise ValueError("need exactly 10 digits")
    digits = [int(c) for c in first10]
    k = digits[9] + 2
    r = sum((d + k) * w for d, w in zip(digits, _WEIGHTS)) % 11
    return 0 if r == 10 else r


def is_valid_company_national_id(value: str) -> bool:
    """True if ``value`` (ASCII or Persian digits) is a well-formed 11-digit company national id."""
    value = to_ascii_digits(value or "")
    if not _ELEVEN_DIGITS.match(value) or int(value[3:9]) == 0:
        return False
    return company_id_check_digit(value[:10]) == int(value[10])


def is_semver(value: str) -> bool:
    """True if ``value`` is a Semantic Versioning 2.0.0 version (``MAJOR.MINOR.PATCH[-pre][+build]``)."""
    return bool(SEMVER.match(value or ""))


def semver_key(value: str) -> tuple[int, int, int, int, str]:
    """Sort key for semver strings: releases sort after their pre-releases (SemVer §11, simplified:
    pre-release identifiers compared as one string)."""
    m = SEMVER.match(value)
    if not m:
        raise ValueError(f"not a semantic version: {value!r}")
    pre = value.split("+", 1)[0].partition("-")[2]
    return (int(m.group(1)), int(m.group(2)), int(m.group(3)), 0 if pre else 1, pre)

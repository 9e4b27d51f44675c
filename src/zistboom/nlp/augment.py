"""Noise that citizens' typing adds, for data building and train-time augmentation.

Keyboard slips follow the standard Persian keyboard layout (ISIRI 9147): a neighbouring key, a
dropped letter, or a doubled letter. Deterministic for a given :class:`random.Random`.
"""

from __future__ import annotations

import random

ZWNJ = "\u200c"
# Neighbouring keys on the standard Persian (ISIRI 9147) keyboard.
NEIGHBOURS = {
    "ض": "صش", "ص": "ضثس", "ث": "صقی", "ق": "ثفب", "ف": "قغل", "غ": "فعا", "ع": "غهت", "ه": "عخن",
    "خ": "هحم", "ح": "خجک", "ج": "حچگ", "چ": "ج", "ش": "ضسظ", "س": "شیصط", "ی": "سبث", "ب": "یلق",
    "ل": "باف", "ا": "لتغ", "ت": "انع", "ن": "تمه", "م": "نکخ", "ک": "مگح", "گ": "کج", "ظ": "طش",
    "ط": "ظزس", "ز": "طری", "ر": "زذب", "ذ": "رد", "د": "ذپ", "پ": "د", "و": "ر", "ژ": "ز",
}


def typo(text: str, rng: random.Random) -> str:
    """``text`` with one keyboard slip (two when it has 12+ Persian letters)."""
    chars = list(text)
    positions = [i for i, ch in enumerate(chars) if ch in NEIGHBOURS and 0 < i < len(chars) - 1]
    picks = rng.sample(positions, min(len(positions), 1 if len(positions) < 12 else 2))
    for i in picks:
        kind = rng.random()
        if kind < 0.5:
            chars[i] = rng.choice(NEIGHBOURS[chars[i]])
        elif kind < 0.8:
            chars[i] = ""
        else:
            chars[i] = chars[i] * 2
    return "".join(chars)


def no_zwnj(text: str, rng: random.Random) -> str:
    """``text`` with each ZWNJ dropped or turned into a space."""
    return "".join(rng.choice(("", " ", "")) if ch == ZWNJ else ch for ch in text)


def arabic_keyboard(text: str) -> str:
    """``text`` as typed on an Arabic layout: ی→ي, ک→ك."""
    return text.replace("ی", "ي").replace("ک", "ك")

"""Normaliser tests: shared hazm/virastar vectors (or a documented policy difference), the seed's
prose that lost its half-spaces, and the rules the issue lists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.text.normalization_policy import DIFFERENCES, REASONS
from zistboom.text import normalize
from zistboom.text.normalize import ZWNJ, clean_zwnj, has_content, normalize_for_model

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "persian_normalization"


def _cases() -> list[tuple[str, int, object, object]]:
    if not SHARED.is_dir():
        pytest.fail(f"shared test vectors missing: {SHARED} (the ../shared folder beside the repository)")
    hazm = json.loads((SHARED / "hazm_normalizer_cases.json").read_text(encoding="utf-8"))
    vira = json.loads((SHARED / "virastar_cases.json").read_text(encoding="utf-8"))["cases"]
    return [("hazm", i, c["input"], c["expected"]) for i, c in enumerate(hazm)] + [
        ("virastar", i, c["input"], c["expected"]) for i, c in enumerate(vira)
    ]


CASES = _cases() if SHARED.is_dir() else []


def _run(inp: object) -> object:
    if isinstance(inp, list):  # hazm token_spacing: a token list in, a token list out
        out = normalize(" ".join(inp))
        return out.split(" ") if out else []
    return normalize(inp)


@pytest.mark.parametrize("suite,index,inp,expected", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_shared_vector(suite, index, inp, expected):
    got = _run(inp)
    reason = DIFFERENCES.get((suite, index))
    if reason is None:
        assert got == expected, f"{suite}[{index}] {inp!r}: expected {expected!r}, got {got!r}"
    else:
        assert reason in REASONS
        assert got != expected, f"{suite}[{index}] now passes: remove it from normalization_policy.DIFFERENCES"


def test_shared_vectors_present_and_mostly_passing():
    assert len(CASES) == 101 + 227
    passing = len(CASES) - len(DIFFERENCES)
    assert passing >= 200, passing


# Prose as the seed wrote it, half-spaces lost; the normaliser must restore them.
SEED_PROSE = [
    ("زیستبوم خدمات دولت هوشمند در همه استانها", "زیست‌بوم خدمات دولت هوشمند در همه استان‌ها"),
    ("این سامانه بهخوبی میداند کدام اپراتور بزرگتر است", "این سامانه به‌خوبی می‌داند کدام اپراتور بزرگ‌تر است"),
    ("درخواستها در بزرگترین استانها سریعتر پاسخ میگیرند",
     "درخواست‌ها در بزرگ‌ترین استان‌ها سریع‌تر پاسخ می‌گیرند"),
    ("شهروندان نمیدانند مجوزهای اپراتورها کجاست", "شهروندان نمی‌دانند مجوزهای اپراتورها کجاست"),
    ("ثبتنام در زیستبوم", "ثبت‌نام در زیست‌بوم"),
]


@pytest.mark.parametrize("raw,expected", SEED_PROSE)
def test_seed_prose_gets_half_spaces_back(raw, expected):
    assert normalize(raw) == expected


def test_words_correctly_written_joined_stay_joined():
    assert normalize("دفتر بیشتر کمتر بهتر تنها ریشتر دختر") == "دفتر بیشتر کمتر بهتر تنها ریشتر دختر"


def test_arabic_letters_become_persian():
    assert normalize("كارت ملي يك") == "کارت ملی یک"
    assert "ي" not in normalize("علي") and "ك" not in normalize("كتاب")


def test_digits_display_and_identifier_forms():
    assert normalize("کد 123 و ٤٥٦") == "کد ۱۲۳ و ۴۵۶"
    assert normalize("کد ۱۲۳ و ٤٥٦", digits="ascii") == "کد 123 و 456"
    assert normalize_for_model("کد ۱۲۳") == "کد 123"


def test_kashida_and_diacritics_removed():
    assert normalize("بـــزرگ کَرد") == "بزرگ کرد"


def test_zwnj_prefix_suffix_rules():
    assert normalize("می خواهم کتاب ها را") == "می‌خواهم کتاب‌ها را"
    assert normalize("نمی شود") == "نمی‌شود"
    assert normalize("خانه ای بزرگ تر") == "خانه‌ای بزرگ‌تر"
    assert normalize("شهرها و کارها") == "شهرها و کارها"  # no ZWNJ after non-joining ر


def test_no_stray_zwnj():
    assert clean_zwnj(f"سلام {ZWNJ}دنیا{ZWNJ} ") == "سلام دنیا "
    assert clean_zwnj(f"کار{ZWNJ}ها") == "کارها"
    assert clean_zwnj(f"کتاب{ZWNJ}{ZWNJ}ها") == f"کتاب{ZWNJ}ها"
    assert ZWNJ + " " not in normalize(f"کتاب{ZWNJ} ها")


def test_spaces_around_punctuation():
    assert normalize("سلام ، خوبی ؟") == "سلام، خوبی؟"
    assert normalize("« سلام »") == "«سلام»"


def test_urls_and_codes_untouched():
    assert normalize("سایت https://example.ir/a.b را ببین") == "سایت https://example.ir/a.b را ببین"
    assert normalize("کد ATM74 را") == "کد ATM74 را"


def test_blank_and_type_errors():
    assert normalize("   ") == ""
    with pytest.raises(TypeError):
        normalize(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("text,expected", [
    ("قبض برق", True), ("۱۲", True), ("a", True), ("  ؟ ق", True),
    ("", False), ("   ", False), (ZWNJ, False), (f" {ZWNJ} ", False), ("ـــ\u064b", False), ("؟!،", False),
    ("\u064e\u0650", False),
])
def test_has_content(text, expected):
    assert has_content(text) is expected


def test_tidy_name_fixes_letters_and_stray_zwnj_only():
    from zistboom.text import tidy_name

    assert tidy_name("گيلان پرداز" + ZWNJ) == "گیلان پرداز"
    assert tidy_name("خوشهٔ كشاورزي") == "خوشهٔ کشاورزی"  # the hamza stays: an official spelling is kept
    assert tidy_name("کارت" + ZWNJ + "های هوشمند") == "کارت" + ZWNJ + "های هوشمند"
    assert tidy_name("Gilan Pardaz ۱۲") == "Gilan Pardaz ۱۲"


def test_tidy_name_removes_bidi_overrides():
    from zistboom.text import tidy_name

    assert tidy_name("Alborz \u202eabr-live") == "Alborz abr-live"
    assert tidy_name("\u2067گیلان\u2069 پرداز") == "گیلان پرداز"

"""Persian text normalisation: letters, digits, diacritics, kashida, ZWNJ (نیم‌فاصله) and spacing.

Built on the maintained ``shekar`` library (MIT; its ``Normalizer`` pipeline and its word-frequency
vocabulary and compound-word list), with our own fixes where the library is wrong or silent
(each fix is marked ``# own fix:`` with the reason):

* Arabic ``ي ى ك`` (and the other Arabic/Urdu variants shekar knows) become Persian ``ی ک``.
* Diacritics (tashkil) and kashida (ـ) are removed.
* ZWNJ rules: ``می``/``نمی`` verb prefixes; ``ها/های/هایی…``, ``تر/تری/ترین`` and ``ای`` suffixes,
  whether written with a space or glued to the stem (``استانها`` → ``استان‌ها``, ``بزرگتر`` →
  ``بزرگ‌تر``, decided with shekar's word-frequency vocabulary and a short list of words that are
  correctly written joined such as ``دفتر``, ``بیشتر``, ``تنها``); compound words from shekar's
  compound list and our own lexicon (``زیستبوم`` → ``زیست‌بوم``, ``ثبتنام`` → ``ثبت‌نام``);
  the preposition ``به`` glued to an out-of-vocabulary word (``بهخوبی`` → ``به‌خوبی``);
  no ZWNJ after a non-joining letter (ا د ذ ر ز ژ و …); no ZWNJ next to a space, at a word edge or
  repeated.
* Spaces: runs collapsed, none before ``. ، ؛ : ؟ !`` and one after them, none inside «» or ().
* Digits: Persian for display (``digits="fa"``), ASCII for identifiers and models
  (``digits="ascii"``), via :mod:`zistboom.text.digits`.

Policy differences from the hazm and virastar test suites are listed, case by case, in
``tests/text/normalization_policy.py``.
"""

from __future__ import annotations

import html
import re
import threading
from typing import Literal

from zistboom.text.digits import to_ascii_digits, to_persian_digits

ZWNJ = "\u200c"
Digits = Literal["fa", "ascii", "keep"]

# Letters that do not join to the following letter: a ZWNJ after them is meaningless.
NON_JOINING = set("اآأإدذرزژوؤۀءة")
# Arabic letter forms that keyboards produce, mapped to Persian (own fix: applied first so every
# later vocabulary lookup sees Persian letters even if shekar's map changes).
_ARABIC_TO_PERSIAN = str.maketrans({"ي": "ی", "ى": "ی", "ك": "ک", "ۍ": "ی", "ې": "ی", "ە": "ه", "ہ": "ه", "ھ": "ه"})
_DIACRITICS_RE = re.compile("[\u064B-\u065F\u0670\u0610-\u061A\u06D6-\u06ED]")
_KASHIDA_RE = re.compile("\u0640+")
_PERSIAN_WORD_RE = re.compile("[\u0600-\u06FF\u200c]+")
_LETTERS = "آابپتثجچحخدذرزژسشصضطظعغفقکگلمنوهیءؤۀأئ"

# Words correctly written joined although they end in a suffix-like string (own list: the
# frequency test below would otherwise split them). Academy style writes بیشتر/کمتر/بهتر joined.
KEEP_JOINED = frozenset(
    """
    بیشتر بیشترین کمتر کمترین بهتر بهترین مهتر کهتر دفتر دفترها بستر فیلتر دکتر دختر چتر شتر
    کبوتر اختر انگشتر پوستر متر لیتر تئاتر کامپیوتر خاکستر گستر ستر تنها تنهایی منها رها بها
    سها شها ریشتر چنانکه آنکه اینکه چنانچه وانگهی همچنین بنابراین
    """.split()
)
# Project and catalogue compounds that shekar's compound list does not have (own lexicon).
OWN_COMPOUNDS = frozenset(
    """
    زیست‌بوم نوبت‌دهی بهره‌برداری بهره‌بردار سوء‌پیشینه کسب‌وکار درخواست‌دهنده هم‌اکنون
    نیم‌فاصله پیش‌فرض کارت‌به‌کارت
    """.split()
)
_PLURAL = ("هایشان", "هایتان", "هایمان", "هایی", "هایم", "هایت", "هایش", "های", "ها")
_COMPARATIVE = ("ترین", "تری", "تر")
_SPLIT_RATIO = 0.2  # split X+suffix when freq(X+suffix) < 0.2 * freq(X) (or X+suffix unknown)


class _Resources:
    """shekar's pipeline and word lists, loaded once (about 0.3 s) on first use."""

    _lock = threading.Lock()
    _loaded: "_Resources | None" = None

    def __init__(self) -> None:
        from shekar import Normalizer, data  # noqa: PLC0415 - heavy import kept lazy
        from shekar.preprocessing import (  # noqa: PLC0415
            AlphabetNormalizer,
            ArabicUnicodeNormalizer,
            DigitNormalizer,
            PunctuationNormalizer,
            RemoveDiacritics,
            SpacingNormalizer,
        )

        # own fix: shekar's RepeatedLetterNormalizer turns "..." into ".." and keeps two of any
        # repeated letter (اعلاممم -> اعلامم); we do both with the vocabulary below instead.
        # own fix: shekar's YaNormalizer rewrites ه‌ی as ۀ; we keep the writer's choice.
        self.pipeline = Normalizer(
            steps=[
                ("AlphabetNormalizer", AlphabetNormalizer()),
                ("ArabicUnicodeNormalizer", ArabicUnicodeNormalizer()),
                ("DigitNormalizer", DigitNormalizer()),
                ("PunctuationNormalizer", PunctuationNormalizer()),
                ("DiacriticRemover", RemoveDiacritics()),
                ("SpacingNormalizer", SpacingNormalizer()),
            ]
        )
        self.vocab: dict[str, int] = data.vocab
        compounds = {w for w in data.compound_words if ZWNJ in w and "#" not in w} | OWN_COMPOUNDS
        self.compounds = {w.replace(ZWNJ, ""): w for w in compounds}

    @classmethod
    def get(cls) -> "_Resources":
        if cls._loaded is None:
            with cls._lock:
                if cls._loaded is None:
                    cls._loaded = cls()
        return cls._loaded


def fix_arabic_letters(text: str) -> str:
    """Map Arabic ``ي ى ك`` (and ہ ھ ە ۍ ې) to Persian ``ی ک ه``; other text unchanged."""
    return text.translate(_ARABIC_TO_PERSIAN)


def remove_diacritics(text: str) -> str:
    """Remove Arabic diacritics (fatha, kasra, damma, tanwin, shadda, sukun, superscript alef…)
    and kashida (ـ)."""
    return _KASHIDA_RE.sub("", _DIACRITICS_RE.sub("", text))


def clean_zwnj(text: str) -> str:
    """Remove ZWNJs that carry no meaning: repeated, next to whitespace or punctuation, at a word
    edge, or after a non-joining letter (ا د ذ ر ز ژ و …)."""
    text = re.sub(f"{ZWNJ}{{2,}}", ZWNJ, text)
    text = re.sub(f"(?<![{_LETTERS}]){ZWNJ}|{ZWNJ}(?![{_LETTERS}])", "", text)
    return re.sub(f"(?<=[{''.join(NON_JOINING)}]){ZWNJ}", "", text)


def _join(stem: str, suffix: str) -> str:
    return stem + suffix if stem[-1] in NON_JOINING else stem + ZWNJ + suffix


def _eh_clitic(word: str, vocab: dict[str, int]) -> str | None:
    """``بچهام`` -> ``بچه‌ام`` when ``بچه`` is more frequent than both the glued word and the
    plural reading's stem (``بچ``); ``None`` when the rule does not apply."""
    for clitic in ("ایم", "اید", "اند", "ام", "ات", "اش", "ای"):
        if word.endswith("ه" + clitic) and len(word) - len(clitic) >= 3:
            stem = word[: -len(clitic)]
            plural_stem = word[: -len(clitic) - 1]
            if vocab.get(stem, 0) > max(vocab.get(word, 0), vocab.get(plural_stem, 0)):
                return stem + ZWNJ + clitic
            return None
    return None


def _fix_word(word: str, res: _Resources) -> str:
    """ZWNJ and repeated-letter fixes for one word without spaces (may already hold ZWNJs)."""
    if ZWNJ in word:
        joined = word.replace(ZWNJ, "")
        # own fix: shekar splits words that are written joined (ریشتر -> ریش‌تر); undo for those
        if joined in KEEP_JOINED:
            return joined
        # own fix: shekar reads بچهام as بچ‌هام (plural); prefer the ه-word + clitic when more frequent
        head, _, tail = word.partition(ZWNJ)
        if ZWNJ not in tail and tail.startswith("ها"):
            fixed = _eh_clitic(joined, res.vocab)
            if fixed:
                return fixed
        return word
    if len(word) < 3:
        return word
    vocab = res.vocab
    # own fix: letters repeated 3+ times -> 2 if that is a word, else 1 (hazm's rule, vocab-backed)
    if re.search(r"(.)\1\1", word):
        two = re.sub(r"(.)\1{2,}", r"\1\1", word)
        one = re.sub(r"(.)\1{2,}", r"\1", word)
        word = two if two in vocab and one not in vocab else one
    if word in KEEP_JOINED:
        return word
    if word in res.compounds:
        return res.compounds[word]
    freq = vocab.get(word, 0)
    # own fix: a clitic glued to a word ending in silent ه (بچهام -> بچه‌ام, پروندهاش -> پرونده‌اش);
    # chosen over the plural reading (بچ+هام) when the ه-word is the more frequent stem
    fixed = _eh_clitic(word, vocab)
    if fixed:
        return fixed
    # own fix: glued plural / comparative suffixes (shekar keeps any glued form it has in vocab)
    for suffixes in (_PLURAL, _COMPARATIVE):
        for suffix in suffixes:
            if word.endswith(suffix) and len(word) - len(suffix) >= 2:
                stem = word[: -len(suffix)]
                if stem[-1] in NON_JOINING or stem + suffixes[-1] in KEEP_JOINED:
                    break
                joined = stem + ZWNJ + suffix
                if joined in vocab and vocab[joined] >= freq:
                    return joined
                stem_freq = vocab.get(stem, 0)
                if stem_freq and len(stem) >= 2 and freq < _SPLIT_RATIO * stem_freq and stem + suffixes[-1] not in KEEP_JOINED:
                    return joined
                break
    # own fix: the preposition به glued to an unknown word (بهخوبی -> به‌خوبی)
    if word.startswith("به") and freq == 0 and vocab.get(word[2:], 0) > 1000 and len(word) >= 5:
        return "به" + ZWNJ + word[2:]
    # own fix: می/نمی glued to a verb the vocabulary knows only with the ZWNJ
    for prefix in ("نمی", "می"):
        if word.startswith(prefix) and len(word) > len(prefix) + 1:
            joined = prefix + ZWNJ + word[len(prefix):]
            if vocab.get(joined, 0) > freq or (freq == 0 and len(word) - len(prefix) >= 3):
                return joined
            break
    return word


_SPACED_SUFFIX_RE = re.compile(
    f"(?P<stem>[{_LETTERS}]+) (?P<suffix>ها|های|هایی|هایم|هایت|هایش|هایمان|هایتان|هایشان|ترین|تری|تر)(?=$|[^{_LETTERS}{ZWNJ}])"
)
_SPACED_EH_AI_RE = re.compile(f"(?P<stem>[{_LETTERS}]*ه) (?P<suffix>ای|ایی|ام|ات|اش|ایم|اید|اند)(?=$|[^{_LETTERS}{ZWNJ}])")
_SPACED_MI_RE = re.compile(f"(?<![{_LETTERS}{ZWNJ}])(?P<prefix>ن?می) (?P<stem>[{_LETTERS}]{{2,}})")


def _fix_spaced(text: str, res: _Resources) -> str:
    """Spaced affixes shekar leaves alone: «کار ها» -> «کارها», «خانه ای» -> «خانه‌ای»,
    «می شود» -> «می‌شود» (only when the joined form is in the vocabulary)."""
    vocab = res.vocab

    def suffix(m: re.Match[str]) -> str:
        stem, suf = m.group("stem"), m.group("suffix")
        if stem in vocab and len(stem) >= 2 and stem not in ("چه", "که", "از", "به", "در", "با", "تا", "را", "و"):
            return _join(stem, suf)
        return m.group(0)

    def mi(m: re.Match[str]) -> str:
        prefix, stem = m.group("prefix"), m.group("stem")
        joined = prefix + ZWNJ + stem
        if joined in vocab or (prefix + stem) in vocab:
            return joined
        return m.group(0)

    text = _SPACED_SUFFIX_RE.sub(suffix, text)
    text = _SPACED_EH_AI_RE.sub(lambda m: m.group("stem") + ZWNJ + m.group("suffix"), text)
    return _SPACED_MI_RE.sub(mi, text)


_PUNCT_SPACE_RES = (
    (re.compile(r"\s+([.،؛:؟!…,;?)\]»])"), r"\1"),  # no space before closing punctuation
    (re.compile(r"([(\[«])\s+"), r"\1"),  # no space after opening brackets
    (re.compile(r"([،؛:؟!])(?=[^\s\d.،؛:؟!»)\]])"), r"\1 "),  # one space after ، ؛ : ؟ !
    (re.compile(r"[ \t\u00a0]{2,}"), " "),
    (re.compile(r"(?<=[0-9۰-۹])\. (?=[0-9۰-۹])"), "٫"),  # own fix: shekar spaces a decimal point
    (re.compile(f"(?<=[0-9۰-۹])(?=[{_LETTERS}])|(?<=[{_LETTERS}])(?=[0-9۰-۹])"), " "),  # ۹کیلومتر
    (re.compile(r"(?<=[0-9۰-۹]): (?=[0-9۰-۹])"), ":"),  # 12:34 is a time, not a colon
    (re.compile(r"[!?؟]{2,}"), lambda m: ("؟" if re.search("[?؟]", m.group(0)) else "") + ("!" if "!" in m.group(0) else "")),
)

_PROTECT_RE = re.compile(
    r"(?:https?://|www\.)[^\s«»\"']+|[\w.+-]+@[\w-]+\.[\w.-]+|%(?:\d+\$)?[sdif]"
    r"|\b(?=[A-Za-z0-9_-]*[A-Za-z])(?=[A-Za-z0-9_-]*[0-9])[A-Za-z0-9_-]+\b"
)
_EH_YE_RE = re.compile("ه ?[ءٔ](?=\\s|$)|ه [یي](?=\\s|$)")
_FUNCTION_WORD_ZWNJ_RE = re.compile(
    f"(?<![{_LETTERS}{ZWNJ}])(?:یک|دو|سه|به|با|از|در|تا|که|آن|این){ZWNJ}[{_LETTERS}]+"
)


def _quote_pairs(text: str) -> str:
    """English quote pairs ("x", ''x'', 'x', `x`, ``x``) -> Persian guillemets «x» (own rule,
    after virastar's replaceEnglishQuotes)."""
    text = re.sub("“\\s*([^”\\n]+?)\\s*”", r"«\1»", text)
    for q in ('"', "''", "``", "'", "`"):
        e = re.escape(q)
        text = re.sub(f"{e}\\s*([^\n\"'`]+?)\\s*{e}", r"«\1»", text)
    return text


def normalize(text: str, *, digits: Digits = "fa") -> str:
    """Normalise Persian text for display or matching.

    Args:
        text: any string (``None`` is not accepted).
        digits: ``"fa"`` Persian digits (display), ``"ascii"`` ASCII digits (identifiers, models),
            ``"keep"`` leave digits as they come out of shekar (Persian).

    Returns:
        The normalised text, stripped; ``""`` for blank input.

    Raises:
        TypeError: if ``text`` is not a ``str``.
    """
    if not isinstance(text, str):
        raise TypeError(f"normalize() expects str, got {type(text).__name__}")
    if not text.strip():
        return ""
    res = _Resources.get()
    text = html.unescape(text).replace("\r\n", "\n").replace("\u00ad", ZWNJ)  # soft hyphen = ZWNJ
    # own fix: shekar spaces out URLs, e-mails, printf directives and Latin codes (ATM74):
    # park them behind placeholders and put them back untouched at the end.
    kept: list[str] = []

    def park(m: re.Match[str]) -> str:
        kept.append(m.group(0))
        return f"\ue000{len(kept) - 1}\ue001"

    text = _PROTECT_RE.sub(park, text)
    # own fix: an RLM between Persian letters stands for a ZWNJ (virastar); shekar deletes it
    text = re.sub(f"(?<=[{_LETTERS}])\u200f+(?=[{_LETTERS}])", ZWNJ, text)
    text = fix_arabic_letters(text)
    text = _EH_YE_RE.sub("ه" + ZWNJ + "ی", text)  # own fix: «خانه ی» / «خانهء» -> «خانه‌ی»
    text = remove_diacritics(text)
    text = re.sub(r"(?:…|\.{3,})+", "…", text)  # own fix: shekar's repeated-letter rule turns ... into ..
    text = _quote_pairs(text)
    text = re.sub(r"(?<=[0-9۰-۹]),(?=[0-9۰-۹]{3}(?![0-9۰-۹]))", "٬", text)  # 12,543 -> 12٬543
    typed_zwnj = set(re.findall(f"[^\\s{ZWNJ}]+{ZWNJ}[^\\s]+", text))
    text = res.pipeline(text)
    text = remove_diacritics(text)  # shekar may leave kashida when it split words
    # own fix: shekar's compound list glues function words to the next word (یک فاصله -> یک‌فاصله)
    text = _FUNCTION_WORD_ZWNJ_RE.sub(lambda m: m.group(0) if m.group(0) in typed_zwnj else m.group(0).replace(ZWNJ, " ", 1), text)
    text = _fix_spaced(text, res)
    text = _PERSIAN_WORD_RE.sub(lambda m: _fix_word(m.group(0), res), text)
    for pattern, repl in _PUNCT_SPACE_RES:
        text = pattern.sub(repl, text)
    text = clean_zwnj(text)
    text = "\n".join(line.strip() for line in text.split("\n")).strip()
    if digits == "fa":
        text = to_persian_digits(text)
    elif digits == "ascii":
        text = to_ascii_digits(text)
    if kept:
        text = re.sub("\ue000\\s*([0-9۰-۹]+)\\s*\ue001", lambda m: kept[int(to_ascii_digits(m.group(1)))], text)
    return text


def normalize_for_model(text: str) -> str:
    """The form fed to encoders: :func:`normalize` with ASCII digits and one line."""
    return " ".join(normalize(text, digits="ascii").split())


# explicit bidi embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069): in a name they
# can reverse the text around it on a page (a spoofed operator name); ZWNJ/ZWJ and the implicit
# marks (LRM/RLM) are left alone
_BIDI_CONTROLS_RE = re.compile("[\u202a-\u202e\u2066-\u2069]")


def tidy_name(text: str) -> str:
    """A name as people typed it, with only what is certainly wrong fixed: Arabic ``ي ى ك`` (and
    kin) become Persian ``ی ک ه``, ZWNJs that carry no meaning go (:func:`clean_zwnj`) and bidi
    embedding / override / isolate controls (U+202A–U+202E, U+2066–U+2069) are removed. Unlike
    :func:`normalize`, no half-space is added and no hamza or digit is changed, so an official
    spelling such as «خوشهٔ» stays as it is."""
    return clean_zwnj(fix_arabic_letters(_BIDI_CONTROLS_RE.sub("", text)))


def has_content(text: str) -> bool:
    """True when ``text`` keeps at least one letter or digit after :func:`normalize_for_model`.

    A text of only spaces, ZWNJ, kashida, diacritics, punctuation or emoji has none: ``str.strip``
    alone lets ``"\u200c"`` or ``"ـً"`` through, and a classifier would then name a service for an
    empty question."""
    return any(ch.isalnum() for ch in normalize_for_model(text))

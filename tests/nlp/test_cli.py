"""``zistboom nlp train | evaluate | predict`` run in-process through the real dispatcher."""

from __future__ import annotations

import io
import json

import pytest

from zistboom.cli import main

ROWS = [
    ("قبض برق", "payments.utility-bill", "keywords"), ("قبض گاز رو بدم", "payments.utility-bill", "colloquial"),
    ("پرداخت قبض آب", "payments.utility-bill", "formal"), ("برق خونه قطع شده چون پول ندادم", "payments.utility-bill", "situation"),
    ("وام دانشجویی", "education.student-loan", "keywords"), ("وام شهریه میخوام", "education.student-loan", "colloquial"),
    ("درخواست وام از صندوق رفاه", "education.student-loan", "formal"), ("پول شهریه ترم بعد رو ندارم", "education.student-loan", "situation"),
]


@pytest.fixture
def files(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"text": t, "intent": y, "style": s}, ensure_ascii=False) + "\n"
                            for t, y, s in ROWS), encoding="utf-8")
    return tmp_path, data


def test_train_evaluate_predict(files, capsys, monkeypatch):
    tmp, data = files
    model = tmp / "model"
    assert main(["nlp", "train", "--data", str(data), "--label-field", "intent", "--encoder", "tfidf",
                 "--out", str(model)]) == 0
    assert json.loads(capsys.readouterr().out)["encoder"] == "tfidf"

    assert main(["nlp", "evaluate", "--model", str(model), "--data", str(data), "--label-field", "intent"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert {"accuracy", "macro_f1", "per_label_f1", "confusions", "accuracy_by_style"} <= set(rep)
    assert set(rep["accuracy_by_style"]) == {"keywords", "colloquial", "formal", "situation"}
    assert rep["accuracy"] >= 0.75

    monkeypatch.setattr("sys.stdin", io.StringIO('{"text": "قبض برقم رو بدم", "id": 7}\n\n{"text": "وام دانشجویی"}\n'))
    assert main(["nlp", "predict", "--model", str(model)]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(out) == 2 and out[0]["id"] == 7
    assert out[0]["service"] == "payments.utility-bill" and out[0]["cluster"] == "payments"
    assert 0 < out[0]["confidence"] <= 1 and out[0]["alternatives"][0]["service"] == "payments.utility-bill"


@pytest.mark.parametrize("stdin,needle", [
    ('{"text": "قبض"}\n{"text": oops}\n', "<stdin>:2: invalid JSON"),
    ('{"text": "   "}\n', "<stdin>:1: field 'text' is empty"),
    ('{"text": "\\u200c\\u0640"}\n', "<stdin>:1: field 'text' is empty"),  # ZWNJ + kashida only
    ('{"txt": "قبض"}\n', "<stdin>:1: field 'text' is missing"),
    ('[1, 2]\n', "<stdin>:1: expected a JSON object"),
])
def test_predict_bad_input_names_the_line(files, capsys, monkeypatch, stdin, needle):
    tmp, data = files
    main(["nlp", "train", "--data", str(data), "--label-field", "intent", "--encoder", "tfidf", "--out", str(tmp / "m")])
    capsys.readouterr()
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    assert main(["nlp", "predict", "--model", str(tmp / "m")]) == 2
    captured = capsys.readouterr()
    assert needle in captured.err and captured.out == ""


def test_unknown_label_field_names_the_line(files, capsys):
    tmp, data = files
    assert main(["nlp", "train", "--data", str(data), "--out", str(tmp / "m")]) == 2
    err = capsys.readouterr().err
    assert "train.jsonl:1: label field 'label' not found" in err


def test_passages_with_a_tfidf_encoder_are_refused(files, capsys):
    tmp, data = files
    passages = tmp / "services.tsv"
    passages.write_text("payments.utility-bill\tپرداخت قبض برق\neducation.student-loan\tوام دانشجویی\n", encoding="utf-8")
    assert main(["nlp", "train", "--data", str(data), "--label-field", "intent", "--encoder", "tfidf",
                 "--passages", str(passages), "--out", str(tmp / "m")]) == 2
    assert "E5 encoder" in capsys.readouterr().err


def test_missing_model_dir_is_a_clear_error(files, capsys):
    tmp, data = files
    assert main(["nlp", "evaluate", "--model", str(tmp / "nope"), "--data", str(data), "--label-field", "intent"]) == 2
    assert "not a zistboom nlp model directory" in capsys.readouterr().err


def test_warm_trains_then_reuses_the_default_model(tmp_path):
    """``zistboom nlp warm`` in a fresh var/ (subprocess: settings are per process) on tiny data."""
    import os
    import subprocess
    import sys

    data = tmp_path / "data"
    data.mkdir()
    rows = [{"text": t, "label": y} for t, y, _ in ROWS]
    for name, part in (("train.jsonl", rows * 2), ("dev.jsonl", rows[::3])):
        (data / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part), encoding="utf-8")
    env = {**os.environ, "ZISTBOOM_NLP_DATA_DIR": str(data), "ZISTBOOM_VAR_DIR": str(tmp_path / "var")}
    runs = [subprocess.run([sys.executable, "-m", "zistboom.cli", "nlp", "warm"], capture_output=True, text=True,
                           env=env, timeout=300) for _ in range(2)]
    for r in runs:
        assert r.returncode == 0, r.stderr
    first, second = (json.loads(r.stdout) for r in runs)
    assert first["cached"] is False and second["cached"] is True
    assert first["model"] == second["model"] and first["model"].startswith(str(tmp_path / "var"))
    assert (tmp_path / "var" / "nlp" / "embeddings").is_dir()

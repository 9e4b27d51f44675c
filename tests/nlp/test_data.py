"""The labelled requests in data/requests: coverage of the catalogue, styles, split hygiene."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from zistboom.nlp.default_model import data_dir

CATALOG = Path(__file__).resolve().parents[2].parent / "shared" / "catalog.tsv"
STYLES = {"formal", "colloquial", "situation", "keywords", "finglish", "nozwnj", "arabic", "typo"}


def _rows(name):
    return [json.loads(line) for line in (data_dir() / name).read_text(encoding="utf-8").splitlines() if line.strip()]


def test_every_service_has_25_or_more_and_out_of_scope_exists():
    if not CATALOG.is_file():
        pytest.fail(f"shared catalogue missing: {CATALOG}")
    ids = [line.split("\t")[0] for line in CATALOG.read_text(encoding="utf-8").splitlines()[1:] if line.strip()]
    assert len(ids) == 42
    counts = Counter(r["label"] for r in _rows("train.jsonl") + _rows("dev.jsonl"))
    assert set(counts) == set(ids) | {"none"}
    assert min(counts[i] for i in ids) >= 25
    assert counts["none"] >= 25


def test_rows_carry_styles_and_every_style_is_used():
    rows = _rows("train.jsonl") + _rows("dev.jsonl")
    assert all(r["style"] in STYLES for r in rows)
    assert {r["style"] for r in rows} == STYLES
    assert all(r["text"].strip() for r in rows)


def test_no_text_and_no_source_group_in_both_splits():
    train, dev = _rows("train.jsonl"), _rows("dev.jsonl")
    assert not {r["text"] for r in train} & {r["text"] for r in dev}
    assert not {r["group"] for r in train} & {r["group"] for r in dev}
    assert len(dev) >= 250


def test_split_is_reproducible(tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_splits", data_dir() / "make_splits.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    train, dev = mod.build(mod.load_base())
    assert train == _rows("train.jsonl")
    assert dev == _rows("dev.jsonl")

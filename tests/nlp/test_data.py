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


def _near_copies(texts, dev, limit=0.7):
    """(text, ratio) pairs of ``texts`` within ``limit`` difflib similarity of a dev request (the rule
    the train-only additions follow, data/requests/README.md)."""
    import difflib

    out = []
    sm = difflib.SequenceMatcher(autojunk=False)
    for d in dev:
        sm.set_seq2(d)  # SequenceMatcher caches its analysis of the second sequence
        for t in texts:
            sm.set_seq1(t)
            if sm.real_quick_ratio() >= limit and sm.quick_ratio() >= limit and sm.ratio() >= limit:
                out.append((t, round(sm.ratio(), 3)))
    return out


def test_service_passages_cover_the_catalogue_and_copy_no_dev_request():
    from zistboom.nlp.dataset import read_passages

    if not CATALOG.is_file():
        pytest.fail(f"shared catalogue missing: {CATALOG}")
    ids = {line.split("\t")[0] for line in CATALOG.read_text(encoding="utf-8").splitlines()[1:] if line.strip()}
    passages = read_passages(data_dir() / "services.tsv")
    per = Counter(s for s, _ in passages)
    assert set(per) == ids and min(per.values()) >= 3
    assert _near_copies([t for _, t in passages], [r["text"] for r in _rows("dev.jsonl")]) == []


def test_split_is_reproducible(tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_splits", data_dir() / "make_splits.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    train, dev = mod.build(mod.load_base())
    assert train == _rows("train.jsonl")
    assert dev == _rows("dev.jsonl")

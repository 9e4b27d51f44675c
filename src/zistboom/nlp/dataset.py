"""Reading labelled JSONL and scoring predictions.

A labelled file has one JSON object per line with at least ``text`` and a label field
(default ``label``); an optional ``style`` field groups accuracy by writing style.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from zistboom.text import has_content

MAX_TEXT_CHARS = 1000


class DataError(ValueError):
    """Bad input data; the message names the file and line."""


@dataclass
class Example:
    text: str
    label: str | None
    style: str | None
    line: int
    group: str | None = None  # source-row id: a request and its derived variants share it


def parse_jsonl_line(raw: str, lineno: int, source: str = "<stdin>") -> dict:
    """Parse one JSONL line into a dict with a non-empty string ``text``.

    Raises:
        DataError: invalid JSON, not an object, or missing/empty/non-string ``text``.
    """
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise DataError(f"{source}:{lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from exc
    if not isinstance(obj, dict):
        raise DataError(f"{source}:{lineno}: expected a JSON object, got {type(obj).__name__}")
    text = obj.get("text")
    if not isinstance(text, str):
        raise DataError(f"{source}:{lineno}: field 'text' is missing or not a string")
    if not has_content(text):
        raise DataError(f"{source}:{lineno}: field 'text' is empty (no letter or digit)")
    return obj


def _numbered_lines(p: Path, comments: bool = False) -> list[tuple[int, str]]:
    """``(line number, line)`` of a UTF-8 text file, blank lines (and with ``comments`` lines
    starting with ``#``) left out. Raises DataError if the file cannot be read."""
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DataError(f"{p}: cannot read ({exc.strerror})") from exc
    return [(n, raw) for n, raw in enumerate(lines, 1)
            if raw.strip() and not (comments and raw.startswith("#"))]


def read_labelled(path: str | Path, label_field: str = "label") -> list[Example]:
    """Read a labelled JSONL file (blank lines skipped).

    Raises:
        DataError: unreadable file, bad line, or a line without ``label_field`` (named by line).
    """
    p = Path(path)
    out = []
    for n, raw in _numbered_lines(p):
        obj = parse_jsonl_line(raw, n, str(p))
        if label_field not in obj:
            raise DataError(f"{p}:{n}: label field {label_field!r} not found (fields: {', '.join(sorted(obj))})")
        label = obj[label_field]
        if label is not None and not isinstance(label, str):
            raise DataError(f"{p}:{n}: label field {label_field!r} must be a string or null")
        group = obj.get("group")
        out.append(Example(obj["text"], label if label is not None else "none", obj.get("style"), n,
                           str(group) if group is not None else None))
    if not out:
        raise DataError(f"{p}: no examples")
    return out


def read_passages(path: str | Path) -> list[tuple[str, str]]:
    """Service descriptions for retrieval: ``(service_id, passage)`` pairs, in file order.

    The file is UTF-8, one ``service_id<TAB>passage`` per line; blank lines and lines starting with
    ``#`` are skipped (``data/requests/services.tsv``).

    Raises:
        DataError: unreadable file, a line without exactly one tab, an empty id or passage, or no
            passages at all (named by file and line).
    """
    p = Path(path)
    out = []
    for n, raw in _numbered_lines(p, comments=True):
        parts = raw.split("\t")
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            raise DataError(f"{p}:{n}: expected 'service_id<TAB>passage'")
        out.append((parts[0].strip(), parts[1].strip()))
    if not out:
        raise DataError(f"{p}: no passages")
    return out


def score(y_true: Sequence[str], y_pred: Sequence[str], styles: Iterable[str | None] | None = None) -> dict:
    """Accuracy, macro-F1, per-label F1, confusions (true→pred counts, errors only) and, when
    styles are given, accuracy per style. ``None`` predictions count as ``"none"``."""
    from sklearn.metrics import f1_score  # noqa: PLC0415

    y_pred = [p if p is not None else "none" for p in y_pred]
    y_true = list(y_true)
    labels = sorted(set(y_true) | set(y_pred))
    per = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    conf: dict[str, dict[str, int]] = defaultdict(dict)
    for (t, p), c in sorted(Counter(zip(y_true, y_pred)).items()):
        if t != p:
            conf[t][p] = c
    report = {
        "n": len(y_true),
        "accuracy": round(sum(t == p for t, p in zip(y_true, y_pred)) / max(len(y_true), 1), 4),
        "macro_f1": round(float(f1_score(y_true, y_pred, labels=sorted(set(y_true)), average="macro", zero_division=0)), 4),
        "per_label_f1": {lab: round(float(f), 4) for lab, f in zip(labels, per)},
        "confusions": dict(conf),
    }
    if styles is not None:
        styles = list(styles)
        if any(s is not None for s in styles):
            by: dict[str, list[bool]] = defaultdict(list)
            for s, t, p in zip(styles, y_true, y_pred):
                by[s or "unknown"].append(t == p)
            report["accuracy_by_style"] = {s: {"n": len(v), "accuracy": round(sum(v) / len(v), 4)} for s, v in sorted(by.items())}
    return report

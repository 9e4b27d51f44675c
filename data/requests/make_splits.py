"""Build data/requests/{train,dev}.jsonl from the hand-written requests in base.tsv.

Run: ``.venv/bin/python data/requests/make_splits.py`` (deterministic: fixed seed, no network).

Each hand-written row (styles ``formal``, ``colloquial``, ``situation``, ``keywords``,
``finglish``) keeps its style. From them we derive, per service, rows as citizens really type:

* ``nozwnj``  – half-spaces dropped (ZWNJ removed or turned into a space, at random),
* ``arabic``  – typed on an Arabic keyboard layout (ی→ي, ک→ك),
* ``typo``    – one or two keyboard slips (an adjacent key, a dropped or doubled letter).

A derived row stays in the same split as the row it came from (``group``), so the dev split never
holds a near-copy of a training row. Dev gets, per label, one formal, one colloquial,
two situation, one keywords and (for half the labels) one finglish row, with their derived rows.

Rows below the ``# --- train-only additions`` line of base.tsv were written later (more
situation and Finglish requests); they go to train as written (no derived variants) and take no
part in the dev choice or in the random draws, so dev.jsonl stays byte-identical.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from collections import defaultdict
from pathlib import Path

from zistboom.nlp.augment import arabic_keyboard, no_zwnj, typo

HERE = Path(__file__).resolve().parent
ZWNJ = "\u200c"
SEED = 13
def _cluster(label: str) -> str | None:
    return None if label == "none" else label.split(".", 1)[0]


_nozwnj = no_zwnj
_arabic = arabic_keyboard
_typo = typo


TRAIN_ONLY_MARKER = "# --- train-only additions"


def load_base(path: Path = HERE / "base.tsv") -> list[dict]:
    """Rows of base.tsv; rows below the train-only marker line carry ``train_only=True``."""
    rows = []
    train_only = False
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.startswith(TRAIN_ONLY_MARKER):
                train_only = True
                continue
            if not line.strip() or line.startswith("#"):
                continue
            label, style, text = line.rstrip("\n").split("\t")
            rows.append({"label": label, "style": style, "text": text.strip(), "group": f"b{n}",
                         "train_only": train_only})
    return rows


def build(base: list[dict]) -> tuple[list[dict], list[dict]]:
    rng = random.Random(SEED)
    by_label: dict[str, list[dict]] = defaultdict(list)
    extra: dict[str, list[dict]] = defaultdict(list)
    for row in base:
        (extra if row.get("train_only") else by_label)[row["label"]].append(row)
    train, dev = [], []
    for li, (label, rows) in enumerate(sorted(by_label.items())):
        # dev groups: one per style (finglish for every other label), chosen by a stable hash
        dev_groups = set()
        for style in ("formal", "colloquial", "situation", "keywords", "finglish"):
            if style == "finglish" and li % 2:
                continue
            cands = sorted((r for r in rows if r["style"] == style), key=lambda r: hashlib.sha1(r["text"].encode()).hexdigest())
            dev_groups.update(c["group"] for c in cands[: 2 if style == "situation" else 1])
        derived = []
        hand = [r for r in rows if r["style"] != "finglish"]
        with_zwnj = [r for r in hand if ZWNJ in r["text"]]
        sample = rng.sample(hand, len(hand))
        for r in (with_zwnj + [r for r in sample if r not in with_zwnj])[:4]:
            if ZWNJ in r["text"]:
                derived.append({**r, "style": "nozwnj", "text": _nozwnj(r["text"], rng)})
        for r in sample[:4]:
            derived.append({**r, "style": "arabic", "text": _arabic(r["text"])})
        n_typo = 4
        for r in (sample[4:] + sample[:4])[:n_typo]:
            derived.append({**r, "style": "typo", "text": _typo(r["text"], rng)})
        seen = set()
        for r in rows + derived + extra[label]:
            if r["text"] in seen:
                continue
            seen.add(r["text"])
            out = {"text": r["text"], "label": label, "cluster": _cluster(label), "style": r["style"], "group": r["group"]}
            (dev if r["group"] in dev_groups else train).append(out)
    return train, dev


def main() -> None:
    train, dev = build(load_base())
    for name, rows in (("train", train), ("dev", dev)):
        with (HERE / f"{name}.jsonl").open("w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    counts = defaultdict(int)
    for row in train + dev:
        counts[row["label"]] += 1
    print(f"train={len(train)} dev={len(dev)} labels={len(counts)} min_per_label={min(counts.values())}")


if __name__ == "__main__":
    main()

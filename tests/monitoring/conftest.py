"""Monitoring test fixtures on the lead's migrated ``db_url`` (tests/conftest.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# the helpers beside this file (mon_helpers, mon_e2e) are imported by plain name, whatever the
# pytest import mode (prepend or importlib)
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mon_helpers import seed_world  # noqa: E402

from zistboom.registry.db import make_engine, make_sessionmaker  # noqa: E402


@pytest.fixture
def factory(db_url):
    engine = make_engine(db_url)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def world(factory):
    """Licence ids ``{"a", "b", "c"}`` of the seeded small registry (see ``mon_helpers.seed_world``)."""
    return seed_world(factory)

"""Shared fixtures: a real, migrated database per test.

SQLite (a file in the test's tmp dir) by default; PostgreSQL when ``ZISTBOOM_TEST_DATABASE_URL`` is
set — each test then gets its own schema (``search_path``) in that database, dropped afterwards, so
tests never see each other's rows. In CI (``CI=true``) a configured but unreachable PostgreSQL
fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from zistboom.registry.db import make_engine, make_sessionmaker, session_scope
from zistboom.registry.migrate import upgrade

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
PG_URL = os.environ.get("ZISTBOOM_TEST_DATABASE_URL")


def shared_path(*parts: str) -> Path:
    """A file under ../shared, or a clear failure when the shared folder is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"shared data missing: {path} (tests need ../shared beside the repository)")
    return path


def _pg_schema_url(base: str, schema: str) -> str:
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options={quote(f'-csearch_path={schema}')}"


def _pg_private_schema(base_url: str, *, required: bool):
    """Yield the URL of a migrated private schema on the PostgreSQL server at ``base_url``; drop it
    afterwards. Unreachable server: fail when ``required`` (or in CI), else skip."""
    schema = f"zbt_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base_url, connect_args={"connect_timeout": 3})
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as exc:  # pragma: no cover - environment problem
        if required or os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {base_url} is unreachable: {exc}")
        pytest.skip(f"PostgreSQL at {base_url} is unreachable (set ZISTBOOM_TEST_POSTGRES_URL)")
    url = _pg_schema_url(base_url, schema)
    try:
        upgrade(url)
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def db_url(tmp_path):
    """URL of a freshly migrated, empty database (SQLite file, or a private PostgreSQL schema)."""
    if not PG_URL:
        url = f"sqlite:///{tmp_path / 'zistboom.db'}"
        upgrade(url)
        yield url
        return
    yield from _pg_private_schema(PG_URL, required=True)


@pytest.fixture
def pg_db_url():
    """A migrated private PostgreSQL schema whatever database the suite runs on, for tests about
    PostgreSQL itself: ``ZISTBOOM_TEST_DATABASE_URL``, else ``ZISTBOOM_TEST_POSTGRES_URL``, else
    the local server (postgres@127.0.0.1:5432/test). Unreachable: fails in CI, skips elsewhere."""
    base = PG_URL or os.environ.get("ZISTBOOM_TEST_POSTGRES_URL") or "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    yield from _pg_private_schema(base, required=bool(PG_URL))


@pytest.fixture
def sqlite_db_url(tmp_path):
    """A migrated SQLite file whatever database the suite runs on, for tests about SQLite itself."""
    url = f"sqlite:///{tmp_path / 'sqlite-only.db'}"
    upgrade(url)
    return url


@pytest.fixture
def session_factory(db_url):
    engine = make_engine(db_url)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def seeded_db_url(db_url, session_factory):
    """``db_url`` with the demo ecosystem seeded; the clients' plain keys are on ``seeded_keys``."""
    from zistboom.registry.seed import seed

    shared_path("catalog.tsv")
    with session_scope(session_factory) as s:
        seed(s, shared=SHARED)
    return db_url


@pytest.fixture
def seeded_keys(db_url, session_factory):
    """Seed the demo ecosystem and return ``{client_id: plain API key}``."""
    from zistboom.registry.seed import seed

    shared_path("catalog.tsv")
    with session_scope(session_factory) as s:
        return seed(s, shared=SHARED)

"""Fixtures for the admin API tests: a real app over a real (seeded or empty) database, TestClient."""

from __future__ import annotations

import warnings

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from zistboom.admin.app import create_admin_app
from zistboom.admin.auth import issue_province_token


@pytest.fixture
def var_dir(tmp_path):
    d = tmp_path / "var"
    d.mkdir()
    return d


def _client(url, var_dir):
    app = create_admin_app(url, var_dir=var_dir)
    client = TestClient(app)
    client.headers["Authorization"] = f"Bearer {app.state.token_checker.admin_token}"
    return app, client


@pytest.fixture
def api(seeded_db_url, var_dir):
    """TestClient over the seeded demo registry, sending the admin token."""
    app, client = _client(seeded_db_url, var_dir)
    with client:
        yield client
    app.state.engine.dispose()


@pytest.fixture
def empty_api(db_url, var_dir):
    """TestClient over an empty migrated database, sending the admin token."""
    app, client = _client(db_url, var_dir)
    with client:
        yield client
    app.state.engine.dispose()


@pytest.fixture
def province_headers(var_dir):
    return {"Authorization": f"Bearer {issue_province_token(var_dir, 'IR-01')}"}



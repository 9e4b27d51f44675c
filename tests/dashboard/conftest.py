"""Dashboard test fixtures (helpers live in ``dashboard_support``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for `import dashboard_support` (no package here)

from dashboard_support import CHROME_ARGS, Page, chromium_path, dash_app, serve  # noqa: E402
from zistboom.admin.auth import issue_province_token


@pytest.fixture
def dash(seeded_db_url, tmp_path):
    """A running dashboard on the seeded test database: ``(base_url, admin_token, var_dir, db_url)``."""
    var_dir = tmp_path / "var"
    app, checker = dash_app(seeded_db_url, var_dir)
    with serve(app) as url:
        yield {"url": url, "token": checker.admin_token, "var_dir": var_dir, "db_url": seeded_db_url,
               "province_token": issue_province_token(var_dir, "IR-01")}
    app.state.engine.dispose()


@pytest.fixture(scope="module")
def browser():
    """Headless Debian chromium driven by Playwright (never a downloaded browser)."""
    from playwright.sync_api import sync_playwright

    exe = chromium_path()
    if exe is None:
        msg = "Debian chromium is missing: run `bash tools/ensure-browser.sh` (make test does)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=CHROME_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page_factory(browser):
    pages: list[Page] = []

    def make(base: str) -> Page:
        pg = Page(browser, base)
        pages.append(pg)
        return pg

    yield make
    for pg in pages:
        pg.assert_local_only()
        pg.close()



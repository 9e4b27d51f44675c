"""``/admin/docs`` works with no internet: every script and stylesheet it loads is served by the
admin app itself."""

import re

from fastapi.testclient import TestClient

from zistboom.admin.app import create_admin_app


def test_docs_page_loads_only_local_assets(db_url, tmp_path):
    with TestClient(create_admin_app(db_url, var_dir=tmp_path / "var")) as c:
        page = c.get("/admin/docs")
        assert page.status_code == 200
        urls = re.findall(r"""(?:src|href)\s*[=:]\s*['"]([^'"]+)['"]""", page.text)
        urls += re.findall(r"""url:\s*['"]([^'"]+)['"]""", page.text)
        assert urls and all(u.startswith("/") for u in urls), urls
        for u in urls:
            assert c.get(u).status_code == 200, u

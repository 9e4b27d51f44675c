"""Bearer-token auth: 401 without/with a bad token, province tokens refused (403) by the whole admin API."""

from __future__ import annotations

import pytest
from tests.admin.adminutil import assert_error


def test_no_token_is_401_json(api):
    for path in ("/admin/v1/clusters", "/admin/v1/services/transport.traffic-fines", "/admin/v1/licences",
                 "/admin/v1/no-such-thing"):
        r = api.get(path, headers={"Authorization": ""})
        err = assert_error(r, 401, "unauthorized")
        assert "Bearer" in r.headers["www-authenticate"]
        assert "Authorization" in err["message_en"]
    r = api.post("/admin/v1/clusters", json={"id": "x", "name_fa": "x", "name_en": "x"}, headers={"Authorization": ""})
    assert_error(r, 401)


@pytest.mark.parametrize("value", ["Bearer wrong", "Bearer ", "Basic YWRtaW46YWRtaW4=", "zbadmin_x", "Bearer zbprov_x"])
def test_bad_token_is_401(api, value):
    assert_error(api.get("/admin/v1/clusters", headers={"Authorization": value}), 401, "unauthorized")


def test_admin_token_reads_and_writes(api):
    r = api.get("/admin/v1/whoami")
    assert r.json() == {"role": "admin", "province": None, "can_write": True}
    assert api.post("/admin/v1/clusters", json={"id": "c1", "name_fa": "خوشه", "name_en": "C"}).status_code == 201


def test_province_token_is_refused_by_the_whole_admin_api(api, province_headers):
    """A province token is for the dashboard's read-only province views: every /admin/v1 route
    (reads included, monitoring's too) answers 403 with a message that says so."""
    reads = ["/admin/v1/whoami", "/admin/v1/licences?province=IR-01", "/admin/v1/licences",
             "/admin/v1/services/transport.traffic-fines", "/admin/v1/clients", "/admin/v1/operators",
             "/admin/v1/provinces", "/admin/v1/registry/version", "/admin/v1/incidents",
             "/admin/v1/availability", "/admin/v1/slo", "/admin/v1/no-such-thing"]
    for path in reads:
        err = assert_error(api.get(path, headers=province_headers), 403, "forbidden")
        assert "dashboard" in err["message_en"] and "داشبورد" in err["message_fa"], path
        assert "changes need" not in err["message_en"]
    writes = [
        ("post", "/admin/v1/clusters", {"id": "c1", "name_fa": "x", "name_en": "x"}),
        ("patch", "/admin/v1/provinces/IR-01", {"name_en": "Gilan!"}),
        ("delete", "/admin/v1/clusters/transport", None),
        ("post", "/admin/v1/licences/1/suspend", {"reason": "x"}),
        ("put", "/admin/v1/clients/citizen-app-mashhad/access", {"services": []}),
        ("post", "/admin/v1/clients/citizen-app-mashhad/keys", None),
        ("post", "/admin/v1/incidents/1/notes", {"text_fa": "یادداشت"}),
    ]
    for method, path, body in writes:
        kwargs = {"headers": province_headers}
        if body is not None:
            kwargs["json"] = body
        err = assert_error(getattr(api, method)(path, **kwargs), 403, "forbidden")
        assert "dashboard" in err["message_en"]
    # nothing changed
    assert api.get("/admin/v1/clusters/c1").status_code == 404
    assert api.get("/admin/v1/licences/1").json()["status"] == "active"
    # the public status pages stay open
    assert api.get("/status/v1/provinces", headers={"Authorization": ""}).status_code == 200
    assert api.get("/status/v1/clusters", headers=province_headers).status_code == 200


def test_openapi_and_docs_served(api):
    r = api.get("/admin/v1/openapi.json", headers={"Authorization": ""})
    assert r.status_code == 200
    doc = r.json()
    assert "/admin/v1/licences/{licence_id}/{action}" in doc["paths"]
    assert "/admin/v1/services/{service_id}/contracts" in doc["paths"]
    assert api.get("/admin/docs", headers={"Authorization": ""}).status_code == 200


def test_token_file_created_in_var_dir(api, var_dir):
    token = (var_dir / "admin-token").read_text().strip()
    assert token.startswith("zbadmin_")
    assert (var_dir / "admin-token").stat().st_mode & 0o077 == 0
    assert api.get("/admin/v1/whoami", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_dashboard_secret_lives_in_the_apps_var_dir(seeded_db_url, tmp_path, monkeypatch):
    """It was written under the working directory's ./var whatever var_dir said, so two apps with
    their own var_dirs shared it and accepted each other's dashboard sessions."""
    from zistboom.admin.app import create_admin_app

    monkeypatch.chdir(tmp_path)
    apps = [create_admin_app(seeded_db_url, var_dir=tmp_path / name) for name in ("a", "b")]
    if not all(app.state.dashboard_mounted for app in apps):
        pytest.fail("the dashboard should be mounted in the admin app")
    secrets = [(tmp_path / name / "dashboard-secret").read_bytes() for name in ("a", "b")]
    assert secrets[0] != secrets[1] and not (tmp_path / "var").exists()
    for app in apps:
        app.state.engine.dispose()

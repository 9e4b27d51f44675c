"""Operators: CRUD, national-id check digit, URLs, province filter."""

from __future__ import annotations

from tests.admin.adminutil import assert_error, national_id, operator_body, registry_version


def test_operator_crud(api, session_factory):
    listed = api.get("/admin/v1/operators").json()
    assert listed["total"] == 14
    gilan = api.get("/admin/v1/operators?province=IR-01").json()["items"]
    assert gilan and all(o["home_province"] == "IR-01" for o in gilan)
    assert api.get("/admin/v1/operators?province=IR-29").json()["total"] == len(
        [o for o in api.get("/admin/v1/operators?limit=500").json()["items"] if o["home_province"] == "IR-29"])

    v0 = registry_version(session_factory)
    body = operator_body()
    r = api.post("/admin/v1/operators", json=body)
    assert r.status_code == 201, r.text
    op = r.json()
    assert op["national_id"] == body["national_id"] and op["endpoints"] == body["endpoints"]
    assert op["created_at"].endswith("Z") and op["created_at_jalali"]
    assert registry_version(session_factory) == v0 + 1
    assert_error(api.post("/admin/v1/operators", json=body), 409, "duplicate_id")
    err = assert_error(api.post("/admin/v1/operators", json=dict(body, id="another")), 409)
    assert "national_id" in err["message_en"]
    got = api.get("/admin/v1/operators/test-op").json()
    assert got["licence_ids"] == []

    r = api.patch("/admin/v1/operators/test-op", json={"endpoints": ["http://op.example:8080/api", "http://127.0.0.1:1"],
                                                      "home_province": "IR-07"})
    assert r.status_code == 200 and r.json()["home_province"] == "IR-07" and len(r.json()["endpoints"]) == 2
    assert_error(api.patch("/admin/v1/operators/test-op", json={"home_province": "IR-99"}), 422, "unknown_province")
    assert_error(api.patch("/admin/v1/operators/nope", json={"name_en": "x"}), 404)
    assert api.delete("/admin/v1/operators/test-op").status_code == 204
    assert_error(api.get("/admin/v1/operators/test-op"), 404)
    err = assert_error(api.delete("/admin/v1/operators/gilan-pardaz"), 409, "operator_licensed")
    assert "gilan-pardaz" in err["message_en"]
    assert registry_version(session_factory) == v0 + 3


def test_national_id_check_digit(api):
    good = national_id("1040999888")
    wrong_digit = good[:-1] + str((int(good[-1]) + 1) % 10)
    for bad in (wrong_digit, "12345", "1040999888a", "10400000001"):
        err = assert_error(api.post("/admin/v1/operators", json=dict(operator_body(), national_id=bad)), 422)
        assert "national_id" in err["message_en"]
    err = assert_error(api.post("/admin/v1/operators", json=dict(operator_body(), national_id=wrong_digit)), 422, "invalid_national_id")
    assert "check digit" in err["message_en"] and "رقم کنترل" in err["message_fa"]
    persian = good.translate(str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹"))
    r = api.post("/admin/v1/operators", json=dict(operator_body(), national_id=persian))
    assert r.status_code == 201 and r.json()["national_id"] == good


def test_operator_urls_and_refs(api):
    for field, value in (("endpoints", ["ftp://x"]), ("endpoints", ["not a url"]), ("endpoints", []),
                         ("health_url", "javascript:alert(1)"), ("endpoints", ["http://"]),
                         ("endpoints", ["http://127.0.0.1:99999"])):
        err = assert_error(api.post("/admin/v1/operators", json=dict(operator_body(), **{field: value})), 422)
        assert field in str(err)
    err = assert_error(api.post("/admin/v1/operators", json=operator_body(province="IR-88")), 422, "unknown_province")
    assert "home_province" in err["message_en"]
    assert_error(api.post("/admin/v1/operators", json=operator_body(province="Tehran")), 422)


def test_https_and_userinfo_urls_refused(api):
    """The gateway's upstream client speaks plain HTTP: an https endpoint would be dropped silently
    (503 no_route for callers), so the admin API refuses it up front with a clear 422."""
    for field, value in (("endpoints", ["https://op.example:8443/api"]), ("health_url", "https://op.example/health"),
                         ("endpoints", ["http://127.0.0.1:1", "HTTPS://op.example/"])):
        err = assert_error(api.post("/admin/v1/operators", json=dict(operator_body(), **{field: value})), 422,
                           "tls_not_supported")
        assert "TLS to operators is not supported" in err["message_en"] and "TLS" in err["message_fa"]
        assert field in str(err)
    err = assert_error(api.patch("/admin/v1/operators/gilan-pardaz", json={"health_url": "https://x.example/h"}), 422,
                       "tls_not_supported")
    for field, value in (("endpoints", ["http://user:pass@127.0.0.1:1/"]), ("health_url", "http://u@127.0.0.1/h"),
                         ("endpoints", ["http://@127.0.0.1/"])):
        err = assert_error(api.post("/admin/v1/operators", json=dict(operator_body(), **{field: value})), 422, "invalid_url")
        assert "user info" in err["message_en"], value
    assert api.get("/admin/v1/operators/test-op").status_code == 404  # nothing was created

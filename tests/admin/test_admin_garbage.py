"""Garbage in, 4xx out: every write endpoint of the admin API is fed wrong types, missing fields,
huge strings, NUL characters, unknown foreign keys, bad dates and malformed JSON; none may answer
5xx (the TestClient re-raises server exceptions, so a crash fails the test), and every error has the
project's JSON shape.

The endpoints are read from the app's route table, so an endpoint added later is covered too.
"""

from __future__ import annotations

import json

import pytest

from tests.admin.adminutil import CONTRACT, SERVICE, operator_body

OWN_TAGS = {"provinces", "clusters", "services", "operators", "licences", "clients", "meta"}
VALID_PATH = {"code": "IR-01", "cluster_id": "transport", "service_id": "transport.traffic-fines",
              "operator_id": "gilan-pardaz", "licence_id": "1", "client_id": "citizen-app-mashhad", "key_id": "1",
              "action": "suspend", "version": "1.0.0"}
BAD_PATH = ["Missing.ID", "a" * 3000, "-1", "99999999999999999999", "%00", "x%00y", "%FF", "IR-01%27--", "0"]
BASE_BODIES = {
    ("POST", "/admin/v1/clusters"): {"id": "g-cluster", "name_fa": "خوشه", "name_en": "Cluster"},
    ("PATCH", "/admin/v1/clusters/{cluster_id}"): {"name_en": "Transport"},
    ("PATCH", "/admin/v1/provinces/{code}"): {"name_en": "Gilan"},
    ("POST", "/admin/v1/services"): dict(SERVICE, id="g.service"),
    ("PATCH", "/admin/v1/services/{service_id}"): {"fee_rials": 10},
    ("POST", "/admin/v1/services/{service_id}/contracts"): {"version": "9.0.0", "openapi": CONTRACT},
    ("POST", "/admin/v1/operators"): operator_body("g-op", "1040777666"),
    ("PATCH", "/admin/v1/operators/{operator_id}"): {"name_en": "Gilan Pardaz"},
    ("POST", "/admin/v1/licences"): {"operator_id": "gilan-pardaz", "service_id": "health.appointment",
                                     "provinces": ["IR-01"], "valid_from": "2026-01-01T00:00:00Z",
                                     "valid_until": "2027-01-01T00:00:00Z"},
    ("PATCH", "/admin/v1/licences/{licence_id}"): {"sla_target": 0.99},
    ("POST", "/admin/v1/licences/{licence_id}/{action}"): {"reason": "x"},
    ("POST", "/admin/v1/clients"): {"id": "g-client", "name": "G"},
    ("PATCH", "/admin/v1/clients/{client_id}"): {"name": "G"},
    ("POST", "/admin/v1/clients/{client_id}/keys"): {"revoke_existing": False},
    ("PUT", "/admin/v1/clients/{client_id}/access"): {"services": ["transport.traffic-fines"]},
}
GARBAGE_VALUES = [None, 0, -1, 2**70, 1.5e308, -0.0, True, "", " ", "x" * 5000, "a\x00b", "nope", "IR-99",
                  "2026-13-45T99:00:00Z", "2026-01-01T00:00:00", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z",
                  [], ["IR-99"], [None], {}, {"a": [1, {"b": None}]}, "ftp://x", "http://", "۱۲۳"]
RAW_BODIES = [b"{bad", b"", b"null", b"[]", b'"text"', b"123", b"\xff\xfe\x00", b"{" * 50 + b"}" * 50,
              b"[" * 100_000 + b"]" * 100_000, b'{"id": NaN}', b'{"id": Infinity, "fee_rials": -Infinity}',
              json.dumps({"x": "y" * 1_000_000}).encode()]


def _write_routes(app) -> list[tuple[str, str]]:
    out = []
    for path, item in app.openapi()["paths"].items():
        for method, op in item.items():
            # this part's endpoints only (monitoring and dashboard routes mounted beside them are tested there)
            if method.upper() in ("POST", "PUT", "PATCH", "DELETE") and set(op.get("tags", ())) & OWN_TAGS:
                out.append((method.upper(), path))
    # deletes last so the other routes still find their objects
    return sorted(out, key=lambda mp: (mp[0] == "DELETE", mp[1], mp[0]))


def _fill(path: str, **override: str) -> str:
    for name, value in {**VALID_PATH, **override}.items():
        path = path.replace("{" + name + "}", value)
    return path


def _check(resp, where) -> None:
    assert resp.status_code < 500, (where, resp.status_code, resp.text[:500])
    if resp.status_code >= 400:
        err = resp.json()["error"]
        assert err["code"] and err["message_fa"] and err["message_en"], (where, err)


def _fields(base: dict) -> list[str]:
    return list(base) + ["unknown_field"]


@pytest.mark.timeout(600)
def test_garbage_never_5xx(api):
    routes = _write_routes(api.app)
    assert len(routes) >= 20, routes
    missing = [(m, p) for m, p in routes if m != "DELETE" and (m, p) not in BASE_BODIES]
    assert not missing, f"add a base body for new write endpoints: {missing}"
    statuses: dict[int, int] = {}
    for method, path in routes:
        url = _fill(path)
        base = BASE_BODIES.get((method, path))
        # 1. malformed / wrong-shape bodies
        for raw in RAW_BODIES:
            for ctype in ("application/json", "text/plain"):
                resp = api.request(method, url, content=raw, headers={"Content-Type": ctype})
                _check(resp, (method, url, raw[:30], ctype))
                statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
        # 2. one field at a time replaced by garbage, the rest valid
        if base is not None:
            for field in _fields(base):
                for value in GARBAGE_VALUES:
                    body = dict(base)
                    body[field] = value
                    resp = api.request(method, url, json=body)
                    _check(resp, (method, url, field, repr(value)[:40]))
                    statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
                body = {k: v for k, v in base.items() if k != field}  # field missing
                _check(api.request(method, url, json=body), (method, url, "missing", field))
        # 3. garbage in the path
        for name in [n for n in VALID_PATH if "{" + n + "}" in path]:
            for bad in BAD_PATH:
                resp = api.request(method, _fill(path, **{name: bad}), json=base or {})
                _check(resp, (method, path, name, bad[:30]))
                assert resp.status_code >= 400 or name == "action" and bad == "x", (method, path, name, bad)
    assert statuses.get(500, 0) == 0
    assert sum(statuses.values()) > 1500


def test_malformed_json_is_422_with_shape(api):
    r = api.post("/admin/v1/clusters", content=b'{"id": "x", ', headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "malformed_json"
    r = api.post("/admin/v1/clusters", content=b"[" * 100_000 + b"]" * 100_000, headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500 and r.json()["error"]["message_en"]


def test_unknown_foreign_keys_are_4xx(api):
    cases = [
        ("post", "/admin/v1/services", dict(SERVICE, cluster_id="ghost")),
        ("post", "/admin/v1/operators", operator_body(province="IR-45")),
        ("post", "/admin/v1/licences", {"operator_id": "ghost", "cluster_id": "transport", "provinces": ["IR-01"],
                                        "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2027-01-01T00:00:00Z"}),
        ("post", "/admin/v1/licences", {"operator_id": "gilan-pardaz", "cluster_id": "ghost", "provinces": ["IR-01"],
                                        "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2027-01-01T00:00:00Z"}),
        ("post", "/admin/v1/clients", {"id": "gc", "name": "x", "province": "IR-30", "services": ["ghost"]}),
        ("put", "/admin/v1/clients/citizen-app-mashhad/access", {"services": ["ghost"]}),
    ]
    for method, url, body in cases:
        r = getattr(api, method)(url, json=body)
        assert r.status_code == 422, (url, r.text)
        assert "ghost" in r.json()["error"]["message_en"] or "IR-45" in r.json()["error"]["message_en"]


def test_all_write_routes_need_admin(api, province_headers):
    for method, path in _write_routes(api.app):
        r = api.request(method, _fill(path), json=BASE_BODIES.get((method, path)) or {}, headers=province_headers)
        assert r.status_code == 403, (method, path, r.status_code)
        r = api.request(method, _fill(path), json={}, headers={"Authorization": ""})
        assert r.status_code == 401, (method, path, r.status_code)


def test_oversized_body_is_413(api):
    r = api.post("/admin/v1/clusters", content=b"{" + b" " * 5_000_000 + b"}", headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"


@pytest.mark.parametrize("name", ["\u200c", " \u200c ", "ـــ\u064b", "؟!"])
def test_invisible_names_are_422(api, name):
    """A name people read must have a letter or digit: ZWNJ, kashida, diacritics or punctuation alone
    pass a length check (and ``str.strip``) but show nothing in the dashboard."""
    r = api.post("/admin/v1/clusters", json={"id": "g-invisible", "name_fa": name, "name_en": "Cluster"})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert "name_fa" in err["message_en"] and err["message_fa"]
    r = api.patch("/admin/v1/clients/citizen-app-mashhad", json={"name": name})
    assert r.status_code == 422, r.text
    assert api.post("/admin/v1/clusters", json={"id": "g-visible", "name_fa": "خوشهٔ آزمایشی",
                                                "name_en": "Test"}).status_code == 201


def test_names_are_stored_with_persian_letters_and_no_stray_zwnj(api):
    r = api.post("/admin/v1/clusters", json={"id": "g-arabic", "name_fa": "خوشهٔ كيك\u200c", "name_en": "Cake"})
    assert r.status_code == 201, r.text
    assert api.get("/admin/v1/clusters/g-arabic").json()["name_fa"] == "خوشهٔ کیک"  # hamza kept, ي/ك fixed
    r = api.patch("/admin/v1/provinces/IR-01", json={"name_fa": "گيلان\u200c"})
    assert r.status_code == 200 and r.json()["name_fa"] == "گیلان"

"""Provinces, clusters, services and contracts through the admin API."""

from __future__ import annotations

import copy

from tests.admin.adminutil import CONTRACT, SERVICE, assert_error, registry_version


def test_provinces_list_get_neighbours_patch(api, session_factory):
    r = api.get("/admin/v1/provinces?limit=500").json()
    assert r["total"] == 31 and len(r["items"]) == 31 and r["items"][0]["code"] == "IR-00"
    page = api.get("/admin/v1/provinces?limit=10&offset=30").json()
    assert [p["code"] for p in page["items"]] == ["IR-30"] and page["offset"] == 30 and page["limit"] == 10
    gilan = api.get("/admin/v1/provinces/IR-01").json()
    assert gilan["name_en"] == "Gilan" and "IR-02" in gilan["neighbours"]
    nb = api.get("/admin/v1/provinces/IR-01/neighbours").json()
    assert sorted(p["code"] for p in nb["items"]) == gilan["neighbours"]
    assert_error(api.get("/admin/v1/provinces/IR-99"), 404, "not_found")
    v0 = registry_version(session_factory)
    r = api.patch("/admin/v1/provinces/IR-01", json={"name_en": "Guilan"})
    assert r.status_code == 200 and r.json()["name_en"] == "Guilan" and r.json()["name_fa"] == "گیلان"
    assert registry_version(session_factory) == v0 + 1
    assert_error(api.patch("/admin/v1/provinces/IR-01", json={"code": "IR-77"}), 422, "invalid_fields")
    assert_error(api.patch("/admin/v1/provinces/IR-01", json={"name_en": None}), 422)
    assert_error(api.patch("/admin/v1/provinces/IR-01", json={"name_en": ""}), 422)


def test_cluster_crud(api, session_factory):
    v0 = registry_version(session_factory)
    r = api.post("/admin/v1/clusters", json={"id": "energy", "name_fa": "انرژی", "name_en": "Energy"})
    assert r.status_code == 201 and r.json() == {"id": "energy", "name_fa": "انرژی", "name_en": "Energy", "service_count": 0}
    assert registry_version(session_factory) == v0 + 1
    err = assert_error(api.post("/admin/v1/clusters", json={"id": "energy", "name_fa": "x", "name_en": "x"}), 409, "duplicate_id")
    assert "energy" in err["message_en"]
    assert api.get("/admin/v1/clusters").json()["total"] == 11
    assert api.patch("/admin/v1/clusters/energy", json={"name_en": "Energy & water"}).json()["name_en"] == "Energy & water"
    assert_error(api.patch("/admin/v1/clusters/nope", json={"name_en": "x"}), 404)
    # a cluster with services cannot be deleted
    err = assert_error(api.delete("/admin/v1/clusters/transport"), 409, "cluster_not_empty")
    assert "transport" in err["message_en"]
    assert api.delete("/admin/v1/clusters/energy").status_code == 204
    assert_error(api.get("/admin/v1/clusters/energy"), 404)
    assert_error(api.delete("/admin/v1/clusters/energy"), 404)
    assert registry_version(session_factory) == v0 + 3


def test_service_crud_and_filters(api, session_factory):
    all_ = api.get("/admin/v1/services?limit=500").json()
    assert all_["total"] == len(all_["items"]) >= 40
    transport = api.get("/admin/v1/services?cluster=transport").json()
    assert transport["total"] >= 3 and all(s["cluster_id"] == "transport" for s in transport["items"])
    prov = api.get("/admin/v1/services?level=provincial&limit=500").json()["items"]
    assert prov and all(s["level"] == "provincial" for s in prov)
    g2b = api.get("/admin/v1/services?type=G2B&limit=500").json()["items"]
    assert g2b and all(s["service_type"] == "G2B" for s in g2b)
    both = api.get("/admin/v1/services?type=G2B&cluster=tax").json()["items"]
    assert both and all(s["cluster_id"] == "tax" and s["service_type"] == "G2B" for s in both)
    p1 = api.get("/admin/v1/services?limit=5&offset=0").json()["items"]
    p2 = api.get("/admin/v1/services?limit=5&offset=5").json()["items"]
    assert len(p1) == len(p2) == 5 and not {s["id"] for s in p1} & {s["id"] for s in p2}
    assert_error(api.get("/admin/v1/services?level=city"), 422)
    assert_error(api.get("/admin/v1/services?limit=0"), 422)
    assert_error(api.get("/admin/v1/services?limit=501"), 422)
    assert_error(api.get("/admin/v1/services?offset=-1"), 422)

    v0 = registry_version(session_factory)
    body = dict(SERVICE, national_service_id="۱۲۳۴۵۶۷۸۹۰۱")  # Persian digits are accepted
    r = api.post("/admin/v1/services", json=body)
    assert r.status_code == 201, r.text
    s = r.json()
    assert s["national_service_id"] == "12345678901" and s["current_contract_version"] is None
    assert s["created_at"].endswith("Z") and s["created_at_jalali"][:2] in ("14", "15")
    assert registry_version(session_factory) == v0 + 1
    assert_error(api.post("/admin/v1/services", json=body), 409, "duplicate_id")
    err = assert_error(api.post("/admin/v1/services", json=dict(body, id="test.other")), 409)
    assert "national_service_id" in err["message_en"]
    err = assert_error(api.post("/admin/v1/services", json=dict(SERVICE, id="test.x", cluster_id="nope")), 422, "unknown_cluster")
    assert "cluster_id" in str(err)
    err = assert_error(api.post("/admin/v1/services", json=dict(SERVICE, id="test.x", national_service_id="123")), 422)
    assert "national_service_id" in err["message_en"]
    for bad in ({"fee_rials": -1}, {"service_type": "B2B"}, {"level": "city"}, {"slo_target": 1.5}, {"colour": "red"}):
        err = assert_error(api.post("/admin/v1/services", json=dict(SERVICE, id="test.y", **bad)), 422, "invalid_fields")
        assert next(iter(bad)) in err["details"]["field_names"]

    r = api.patch("/admin/v1/services/test.new-service", json={"fee_rials": 0, "level": "provincial", "national_service_id": None})
    assert r.status_code == 200 and r.json()["fee_rials"] == 0 and r.json()["level"] == "provincial"
    assert r.json()["national_service_id"] is None
    assert_error(api.patch("/admin/v1/services/test.new-service", json={"cluster_id": "nope"}), 422, "unknown_cluster")
    assert_error(api.patch("/admin/v1/services/test.new-service", json={"current_contract_version": "9.9.9"}), 422)
    assert_error(api.patch("/admin/v1/services/test.new-service", json={"fee_rials": None}), 422)
    assert_error(api.patch("/admin/v1/services/nope", json={"fee_rials": 1}), 404)
    # a licensed service cannot be deleted; an unlicensed one can
    r = api.post("/admin/v1/licences", json={"operator_id": "gilan-pardaz", "service_id": "test.new-service",
                                             "provinces": ["IR-01"], "valid_from": "2026-01-01T00:00:00Z",
                                             "valid_until": "2027-01-01T00:00:00Z"})
    assert r.status_code == 201, r.text
    assert_error(api.delete("/admin/v1/services/test.new-service"), 409, "service_licensed")
    assert api.delete(f"/admin/v1/licences/{r.json()['id']}").status_code == 204
    assert api.delete("/admin/v1/services/test.new-service").status_code == 204
    assert_error(api.get("/admin/v1/services/test.new-service"), 404)
    # deleting a service with client access rights removes the rights too
    assert "judicial.exit-ban" in api.get("/admin/v1/clients/citizen-app-mashhad/access").json()["services"]
    assert api.delete("/admin/v1/services/judicial.exit-ban").status_code == 204  # covered only by cluster licences
    assert "judicial.exit-ban" not in api.get("/admin/v1/clients/citizen-app-mashhad/access").json()["services"]


def test_contracts(api, session_factory):
    sid = "transport.traffic-fines"
    lst = api.get(f"/admin/v1/services/{sid}/contracts").json()
    assert lst["total"] == 1 and lst["items"][0]["version"] == "1.0.0" and lst["items"][0]["is_current"]
    v0 = registry_version(session_factory)
    r = api.post(f"/admin/v1/services/{sid}/contracts", json={"version": "1.1.0", "openapi": CONTRACT})
    assert r.status_code == 201, r.text
    assert r.json()["is_current"] is False and r.json()["operations"] == 1
    assert api.get(f"/admin/v1/services/{sid}").json()["current_contract_version"] == "1.0.0"
    r = api.post(f"/admin/v1/services/{sid}/contracts", json={"version": "1.10.0", "openapi": CONTRACT, "make_current": True})
    assert r.status_code == 201 and r.json()["is_current"] is True
    svc = api.get(f"/admin/v1/services/{sid}").json()
    assert svc["current_contract_version"] == "1.10.0" and svc["contract_versions"] == ["1.0.0", "1.1.0", "1.10.0"]
    assert registry_version(session_factory) == v0 + 2
    lst = api.get(f"/admin/v1/services/{sid}/contracts").json()
    assert [c["version"] for c in lst["items"]] == ["1.10.0", "1.1.0", "1.0.0"]  # semver order, newest first
    one = api.get(f"/admin/v1/services/{sid}/contracts/1.1.0").json()
    assert one["openapi"] == CONTRACT and one["created_at_jalali"]
    assert_error(api.get(f"/admin/v1/services/{sid}/contracts/7.0.0"), 404)
    err = assert_error(api.post(f"/admin/v1/services/{sid}/contracts", json={"version": "1.1.0", "openapi": CONTRACT}), 409,
                       "duplicate_version")
    assert "1.1.0" in err["message_en"]
    err = assert_error(api.post(f"/admin/v1/services/{sid}/contracts", json={"version": "v2", "openapi": CONTRACT}), 422)
    assert "version" in err["message_en"]
    bad = copy.deepcopy(CONTRACT)
    bad["openapi"] = "2.0"
    bad["paths"]["/x"]["get"]["x-idempotent"] = "yes"
    err = assert_error(api.post(f"/admin/v1/services/{sid}/contracts", json={"version": "3.0.0", "openapi": bad}), 422,
                       "invalid_contract")
    assert len(err["details"]["problems"]) == 2
    assert_error(api.post(f"/admin/v1/services/{sid}/contracts", json={"version": "3.0.0", "openapi": []}), 422)
    assert_error(api.post("/admin/v1/services/nope/contracts", json={"version": "3.0.0", "openapi": CONTRACT}), 404)
    # switching the current version via PATCH; a service's first contract becomes current by itself
    assert api.patch(f"/admin/v1/services/{sid}", json={"current_contract_version": "1.0.0"}).json()["current_contract_version"] == "1.0.0"
    api.post("/admin/v1/services", json=SERVICE)
    r = api.post(f"/admin/v1/services/{SERVICE['id']}/contracts", json={"version": "0.1.0", "openapi": CONTRACT})
    assert r.json()["is_current"] is True


def test_province_search_treats_like_wildcards_literally(api):
    """'%' and '_' in q are plain characters, not LIKE wildcards (security review)."""
    for q in ("%", "_", "%%", "G_lan", "\\"):
        r = api.get("/admin/v1/provinces", params={"q": q})
        assert r.status_code == 200 and r.json()["total"] == 0, (q, r.json()["total"])
    names = [p["name_en"] for p in api.get("/admin/v1/provinces", params={"q": "gilan"}).json()["items"]]
    assert names and all("gilan" in n.lower() for n in names)

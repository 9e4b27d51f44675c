"""Client systems: keys shown once and stored hashed, rotation/revocation, access rights (deny by default)."""

from __future__ import annotations

from sqlalchemy import select

from tests.admin.adminutil import assert_error, registry_version
from zistboom.registry import models as m
from zistboom.registry.snapshot import hash_api_key, load_snapshot


def test_create_client_key_once_hashed(api, session_factory):
    v0 = registry_version(session_factory)
    r = api.post("/admin/v1/clients", json={"id": "new-app", "name": "سامانهٔ نو", "province": "IR-07"})
    assert r.status_code == 201, r.text
    body = r.json()
    plain = body["api_key"]["key"]
    assert plain.startswith("zb_") and len(plain) > 40 and body["services"] == []  # deny by default
    assert registry_version(session_factory) == v0 + 1
    with session_factory() as s:
        rows = s.scalars(select(m.ApiKey).where(m.ApiKey.client_id == "new-app")).all()
        assert len(rows) == 1 and rows[0].key_hash == hash_api_key(plain) and plain not in (rows[0].key_hash, rows[0].prefix)
        snap = load_snapshot(s)
    assert snap.key_index[hash_api_key(plain)] == "new-app" and snap.clients["new-app"].allowed_services == frozenset()
    # the plain key never appears again
    for path in ("/admin/v1/clients/new-app", "/admin/v1/clients/new-app/keys", "/admin/v1/clients?limit=500"):
        text = api.get(path).text
        assert plain not in text and hash_api_key(plain) not in text
    assert_error(api.post("/admin/v1/clients", json={"id": "new-app", "name": "x"}), 409, "duplicate_id")
    assert_error(api.post("/admin/v1/clients", json={"id": "other", "name": "x", "province": "IR-66"}), 422, "unknown_province")
    err = assert_error(api.post("/admin/v1/clients", json={"id": "other", "name": "x", "services": ["nope.x"]}), 422,
                       "unknown_service")
    assert "nope.x" in err["message_en"]
    assert_error(api.get("/admin/v1/clients/other"), 404)


def test_client_crud_and_filter(api, session_factory):
    assert api.get("/admin/v1/clients").json()["total"] >= 4
    shiraz = api.get("/admin/v1/clients?province=IR-07").json()["items"]
    assert shiraz and all(c["province"] == "IR-07" for c in shiraz)
    api.post("/admin/v1/clients", json={"id": "c2", "name": "C2", "services": ["transport.traffic-fines"]})
    r = api.patch("/admin/v1/clients/c2", json={"name": "C two", "province": "IR-01"})
    assert r.status_code == 200 and r.json()["name"] == "C two" and r.json()["province"] == "IR-01"
    assert api.patch("/admin/v1/clients/c2", json={"province": None}).json()["province"] is None
    assert_error(api.patch("/admin/v1/clients/c2", json={"name": None}), 422)
    assert_error(api.patch("/admin/v1/clients/zz", json={"name": "x"}), 404)
    assert api.delete("/admin/v1/clients/c2").status_code == 204
    assert_error(api.get("/admin/v1/clients/c2"), 404)
    with session_factory() as s:
        assert s.scalars(select(m.ApiKey).where(m.ApiKey.client_id == "c2")).all() == []
        assert s.scalars(select(m.ClientAccess).where(m.ClientAccess.client_id == "c2")).all() == []


def test_keys_rotate_and_revoke(api, session_factory):
    first = api.post("/admin/v1/clients", json={"id": "k-app", "name": "K"}).json()["api_key"]
    v0 = registry_version(session_factory)
    second = api.post("/admin/v1/clients/k-app/keys").json()
    assert second["key"] != first["key"] and second["revoked_key_ids"] == []
    keys = api.get("/admin/v1/clients/k-app/keys").json()["items"]
    assert [k["active"] for k in keys] == [True, True]
    third = api.post("/admin/v1/clients/k-app/keys", json={"revoke_existing": True})
    assert third.status_code == 201
    assert sorted(third.json()["revoked_key_ids"]) == sorted([first["id"], second["id"]])
    r = api.delete(f"/admin/v1/clients/k-app/keys/{third.json()['id']}")
    assert r.status_code == 200 and r.json()["active"] is False and r.json()["revoked_at"].endswith("Z")
    assert r.json()["revoked_at_jalali"]
    assert api.delete(f"/admin/v1/clients/k-app/keys/{third.json()['id']}").status_code == 200  # idempotent
    assert registry_version(session_factory) == v0 + 4
    with session_factory() as s:
        snap = load_snapshot(s)
    assert not any(cid == "k-app" for cid in snap.key_index.values())
    assert_error(api.delete("/admin/v1/clients/k-app/keys/999999"), 404)
    assert_error(api.delete("/admin/v1/clients/citizen-app-mashhad/keys/" + str(first["id"])), 404)  # not its key
    assert_error(api.post("/admin/v1/clients/nope/keys"), 404)
    assert_error(api.post("/admin/v1/clients/k-app/keys", json={"revoke_existing": "perhaps"}), 422)


def test_access_rights(api, session_factory):
    api.post("/admin/v1/clients", json={"id": "acc", "name": "A"})
    v0 = registry_version(session_factory)
    r = api.put("/admin/v1/clients/acc/access", json={"services": ["transport.traffic-fines", "health.appointment",
                                                                   "transport.traffic-fines"]})
    assert r.status_code == 200 and r.json()["services"] == ["health.appointment", "transport.traffic-fines"]
    assert api.get("/admin/v1/clients/acc/access").json()["services"] == r.json()["services"]
    r = api.put("/admin/v1/clients/acc/access", json={"services": ["health.appointment"]})
    assert r.json()["services"] == ["health.appointment"]
    assert registry_version(session_factory) == v0 + 2
    err = assert_error(api.put("/admin/v1/clients/acc/access", json={"services": ["health.appointment", "ghost.svc"]}),
                       422, "unknown_service")
    assert "ghost.svc" in err["message_en"] and "services" in str(err["details"])
    assert api.get("/admin/v1/clients/acc/access").json()["services"] == ["health.appointment"]  # unchanged
    assert registry_version(session_factory) == v0 + 2
    with session_factory() as s:
        assert load_snapshot(s).clients["acc"].allowed_services == frozenset({"health.appointment"})
    assert api.put("/admin/v1/clients/acc/access", json={"services": []}).json()["services"] == []
    assert_error(api.put("/admin/v1/clients/acc/access", json={}), 422)
    assert_error(api.put("/admin/v1/clients/nobody/access", json={"services": []}), 404)

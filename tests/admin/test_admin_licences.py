"""Licences: apply, filters, the audited lifecycle through the API, amend, delete rules."""

from __future__ import annotations

from tests.admin.adminutil import assert_error, registry_version

APP = {"operator_id": "gilan-pardaz", "service_id": "health.appointment", "provinces": ["IR-01", "IR-02"],
       "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2036-11-29T08:30:00Z", "sla_target": 0.99,
       "reason": "درخواست آزمایشی"}


def test_filters_and_pagination(api):
    total = api.get("/admin/v1/licences").json()["total"]
    assert total >= 14
    active = api.get("/admin/v1/licences?status=active&limit=500").json()
    assert active["total"] == total and all(l["status"] == "active" for l in active["items"])
    assert api.get("/admin/v1/licences?status=pending").json()["total"] == 0
    by_op = api.get("/admin/v1/licences?operator=gilan-pardaz").json()["items"]
    assert by_op and all(l["operator_id"] == "gilan-pardaz" for l in by_op)
    by_cluster = api.get("/admin/v1/licences?cluster=transport").json()["items"]
    assert by_cluster and all(l["cluster_id"] == "transport" for l in by_cluster)
    # service filter: licences covering the service, here through its cluster
    assert {l["id"] for l in api.get("/admin/v1/licences?service=transport.traffic-fines").json()["items"]} == {
        l["id"] for l in by_cluster}
    by_prov = api.get("/admin/v1/licences?province=IR-29&limit=500").json()["items"]
    assert by_prov and all("IR-29" in l["provinces"] for l in by_prov)
    assert len(by_prov) < total
    assert api.get("/admin/v1/licences?expiring_before=2026-01-01T00:00:00Z").json()["total"] == 0
    assert api.get("/admin/v1/licences?expiring_before=2199-01-01T00:00:00Z").json()["total"] == total
    page = api.get("/admin/v1/licences?limit=3&offset=3").json()
    assert len(page["items"]) == 3 and page["total"] == total and page["offset"] == 3
    assert_error(api.get("/admin/v1/licences?status=happy"), 422)
    assert_error(api.get("/admin/v1/licences?expiring_before=tomorrow"), 422)
    assert_error(api.get("/admin/v1/licences?expiring_before=2026-01-01T00:00:00"), 422)  # no time zone


def test_lifecycle_audited(api, session_factory):
    v0 = registry_version(session_factory)
    r = api.post("/admin/v1/licences", json=APP)
    assert r.status_code == 201, r.text
    lic = r.json()
    lid = lic["id"]
    assert lic["status"] == "pending" and lic["provinces"] == ["IR-01", "IR-02"]
    assert lic["valid_until"] == "2036-11-29T08:30:00Z"
    assert lic["valid_until_jalali"] == "1415/09/09 12:00"  # Tehran time, UTC+03:30
    assert registry_version(session_factory) == v0 + 1

    steps = [("review", {"reason": "مدارک بررسی شد"}, "pending"), ("grant", {"reason": "ok"}, "active"),
             ("suspend", {"reason": "SLA", "evidence": {"availability": 0.97}}, "suspended"),
             ("reinstate", None, "active"),
             ("renew", {"valid_until": "2037-11-29T08:30:00Z", "reason": "تمدید"}, "active"),
             ("revoke", {"reason": "پایان همکاری"}, "revoked")]
    for action, body, status in steps:
        r = api.post(f"/admin/v1/licences/{lid}/{action}", json=body) if body is not None else api.post(
            f"/admin/v1/licences/{lid}/{action}")
        assert r.status_code == 200, (action, r.text)
        assert r.json()["status"] == status and r.json()["event"]["action"] == action
    assert registry_version(session_factory) == v0 + 1 + len(steps)
    got = api.get(f"/admin/v1/licences/{lid}").json()
    assert got["valid_until"] == "2037-11-29T08:30:00Z"
    events = api.get(f"/admin/v1/licences/{lid}/events").json()
    assert [e["action"] for e in events["items"]] == ["apply"] + [s[0] for s in steps]
    assert [e["to_status"] for e in events["items"]][-1] == "revoked"
    assert all(e["actor"] == "admin-api" and e["at"].endswith("Z") and e["at_jalali"] for e in events["items"])
    assert events["items"][3]["evidence"] == {"availability": 0.97} and events["items"][0]["reason"] == "درخواست آزمایشی"

    # not allowed from revoked → 409 with the reason; nothing written
    v1 = registry_version(session_factory)
    err = assert_error(api.post(f"/admin/v1/licences/{lid}/grant", json={}), 409, "invalid_transition")
    assert "revoked" in err["message_en"]
    err = assert_error(api.delete(f"/admin/v1/licences/{lid}"), 409, "licence_has_history")
    assert "revoke it instead" not in err["message_en"] and "لغو (revoke) کنید" not in err["message_fa"]
    assert_error(api.delete("/admin/v1/licences/1"), 409, "licence_in_force")  # active: revoke it instead
    assert registry_version(session_factory) == v1
    assert_error(api.post(f"/admin/v1/licences/{lid}/explode", json={}), 422)
    assert_error(api.post(f"/admin/v1/licences/{lid}/expire", json={}), 422)  # system-only action
    assert_error(api.post("/admin/v1/licences/999999/grant", json={}), 404, "not_found")
    assert_error(api.get("/admin/v1/licences/999999/events"), 404)


def test_renew_needs_later_date(api):
    lid = 1
    assert_error(api.post(f"/admin/v1/licences/{lid}/renew", json={}), 422, "invalid_validity")
    assert_error(api.post(f"/admin/v1/licences/{lid}/renew", json={"valid_until": "2020-01-01T00:00:00Z"}), 422,
                 "invalid_validity")
    assert_error(api.post(f"/admin/v1/licences/{lid}/renew", json={"valid_until": "2030-13-01T00:00:00Z"}), 422)


def test_apply_errors(api):
    for patch, field in (({"operator_id": "nope"}, "operator_id"), ({"service_id": "nope.x"}, "service_id"),
                         ({"provinces": ["IR-77"]}, "provinces"), ({"provinces": []}, "provinces"),
                         ({"valid_until": "2025-01-01T00:00:00Z"}, "valid_until"), ({"sla_target": 1.0}, "sla_target"),
                         ({"cluster_id": "transport"}, "service_id/cluster_id")):
        err = assert_error(api.post("/admin/v1/licences", json=dict(APP, **patch)), 422)
        assert field in str(err), (patch, err)
    body = dict(APP)
    del body["service_id"]
    assert_error(api.post("/admin/v1/licences", json=body), 422, "invalid_scope")


def test_amend_and_delete_pending(api, session_factory):
    lid = api.post("/admin/v1/licences", json=APP).json()["id"]
    v0 = registry_version(session_factory)
    r = api.patch(f"/admin/v1/licences/{lid}", json={"provinces": ["IR-02", "IR-03"], "sla_target": 0.995,
                                                     "reason": "اصلاح استان‌ها"})
    assert r.status_code == 200, r.text
    assert r.json()["provinces"] == ["IR-02", "IR-03"] and r.json()["sla_target"] == 0.995
    assert registry_version(session_factory) == v0 + 1
    ev = api.get(f"/admin/v1/licences/{lid}/events").json()["items"][-1]
    assert ev["action"] == "amend" and ev["evidence"]["changed"]["provinces"] == ["IR-02", "IR-03"]
    assert_error(api.patch(f"/admin/v1/licences/{lid}", json={"provinces": ["IR-55"]}), 422, "unknown_province")
    assert_error(api.patch(f"/admin/v1/licences/{lid}", json={"valid_until": "2025-06-01T00:00:00Z"}), 422, "invalid_validity")
    assert_error(api.patch(f"/admin/v1/licences/{lid}", json={"status": "active"}), 422)  # status only via actions
    assert_error(api.patch("/admin/v1/licences/1", json={"sla_target": 0.9}), 409, "not_pending")
    assert api.get("/admin/v1/licences?province=IR-03&operator=gilan-pardaz&status=pending").json()["total"] == 1
    # rejected applications can be deleted too
    api.post(f"/admin/v1/licences/{lid}/reject", json={"reason": "ناقص"})
    assert api.delete(f"/admin/v1/licences/{lid}").status_code == 204
    assert_error(api.get(f"/admin/v1/licences/{lid}"), 404)
    assert_error(api.delete(f"/admin/v1/licences/{lid}"), 404)


def test_dates_in_the_past_are_refused(api, session_factory):
    """Security review: a 2001→2002 licence could be applied for, granted (active) and renewed to 2003."""
    past = dict(APP, valid_from="2001-01-01T00:00:00Z", valid_until="2002-01-01T00:00:00Z")
    err = assert_error(api.post("/admin/v1/licences", json=past), 422, "invalid_validity")
    assert "valid_until" in str(err)
    lid = api.post("/admin/v1/licences", json=APP).json()["id"]
    assert_error(api.patch(f"/admin/v1/licences/{lid}", json={"valid_until": "2002-01-01T00:00:00Z"}), 422,
                 "invalid_validity")
    # an application whose validity ran out while it waited cannot be granted
    from zistboom.registry import models as m
    from zistboom.registry.db import session_scope
    from datetime import datetime, timezone

    with session_scope(session_factory) as s:
        lic = s.get(m.Licence, lid)
        lic.valid_from = datetime(2001, 1, 1, tzinfo=timezone.utc)
        lic.valid_until = datetime(2002, 1, 1, tzinfo=timezone.utc)
    err = assert_error(api.post(f"/admin/v1/licences/{lid}/grant", json={"reason": "ok"}), 409, "validity_over")
    assert "renew" in err["message_en"].lower() and "apply again" in err["message_en"]
    assert api.get(f"/admin/v1/licences/{lid}").json()["status"] == "pending"
    # an active licence cannot be renewed to a date that is also in the past
    err = assert_error(api.post("/admin/v1/licences/1/renew", json={"valid_until": "2003-01-01T00:00:00Z"}), 422,
                       "invalid_validity")


def test_evidence_is_capped(api):
    big = {"blob": "x" * (64 * 1024)}
    err = assert_error(api.post("/admin/v1/licences/1/review", json={"reason": "r", "evidence": big}), 413,
                       "evidence_too_large")
    assert "evidence" in str(err)
    assert api.get("/admin/v1/licences/1").json()["status"] == "active"
    assert len(api.get("/admin/v1/licences/1/events").json()["items"]) == 2  # nothing written
    ok = api.post("/admin/v1/licences/1/suspend", json={"reason": "r", "evidence": {"blob": "x" * 60_000}})
    assert ok.status_code == 200, ok.text


def test_lapsed_licence_is_marked_expired_while_the_app_runs(seeded_db_url, var_dir):
    """Nothing called ``expire_due``: a licence past its validity stayed "active" in its status, the
    ``?status=active`` filter and the dashboard's counts. The admin app now runs it periodically."""
    import time
    from datetime import datetime, timedelta, timezone

    from fastapi.testclient import TestClient

    from zistboom.admin.app import create_admin_app

    app = create_admin_app(seeded_db_url, var_dir=var_dir, licence_expiry_interval=0.2)
    with TestClient(app) as c:
        c.headers["Authorization"] = f"Bearer {app.state.token_checker.admin_token}"
        until = datetime.now(timezone.utc) + timedelta(seconds=2)
        r = c.post("/admin/v1/licences", json={"operator_id": "gilan-pardaz", "service_id": "health.appointment",
                                               "provinces": ["IR-01"], "valid_from": "2026-01-01T00:00:00Z",
                                               "valid_until": until.isoformat()})
        assert r.status_code == 201, r.text
        lid = r.json()["id"]
        assert c.post(f"/admin/v1/licences/{lid}/grant", json={"reason": "ok"}).status_code == 200
        assert c.get(f"/admin/v1/licences/{lid}").json()["status"] == "active"
        deadline = time.monotonic() + 15
        while c.get(f"/admin/v1/licences/{lid}").json()["status"] != "expired" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert c.get(f"/admin/v1/licences/{lid}").json()["status"] == "expired"
        events = c.get(f"/admin/v1/licences/{lid}/events").json()["items"]
        assert [(e["action"], e["from_status"], e["to_status"], e["actor"]) for e in events][-1] == \
            ("expire", "active", "expired", "system")
        assert lid not in [x["id"] for x in c.get("/admin/v1/licences", params={"status": "active"}).json()["items"]]
    app.state.engine.dispose()


def test_amend_racing_a_grant_is_refused(api, session_factory, monkeypatch):
    """The amend checked "pending", then a grant committed before the amend did: the amend must not
    change the provinces of what is by then an active licence."""
    from zistboom.admin import routes_licences
    from zistboom.licensing import transition
    from zistboom.registry import models as m
    from zistboom.registry.db import session_scope

    lid = api.post("/admin/v1/licences", json=APP).json()["id"]
    read = routes_licences._licence

    def read_then_someone_grants(session, licence_id):
        lic = read(session, licence_id)  # this request has seen "pending"...
        with session_scope(session_factory) as other:  # ...and another officer grants meanwhile
            transition(other, licence_id, "grant", actor="officer-2")
        return lic

    monkeypatch.setattr(routes_licences, "_licence", read_then_someone_grants)
    assert_error(api.patch(f"/admin/v1/licences/{lid}", json={"provinces": ["IR-30"]}), 409, "conflict")
    monkeypatch.setattr(routes_licences, "_licence", read)
    with session_scope(session_factory) as s:
        lic = s.get(m.Licence, lid)
        assert lic.status == "active" and lic.provinces == ["IR-01", "IR-02"]
        assert [e.action for e in lic.events] == ["apply", "grant"]

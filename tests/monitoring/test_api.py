"""Monitoring API: availability, SLO, incidents lifecycle (Persian notes, Jalali times), public status."""

from __future__ import annotations

import pytest
from fastapi import FastAPI, Header, HTTPException
from fastapi.testclient import TestClient
from mon_helpers import at

from zistboom.gateway.events import Attempt, Exchange, ProbeResult
from zistboom.monitoring.api import make_router
from zistboom.monitoring.evaluator import Evaluator
from zistboom.monitoring.settings import MonitorSettings
from zistboom.monitoring.sink import MonitoringSink

S = MonitorSettings(probe_interval=10.0, probe_timeout=2.0, sanctions=False)
ADMIN = {"X-Test-Admin": "yes"}


def require_admin(x_test_admin: str | None = Header(default=None)):
    if x_test_admin != "yes":
        raise HTTPException(401, "no")
    return "admin"


@pytest.fixture
def client(factory, world):
    sink = MonitoringSink(factory, S)
    # op-c (birth-cert, Fars) up for 20 min then its last probe fails; op-a serves 2 % errors
    for t in range(0, 1201, 10):
        sink.on_probe(ProbeResult("op-c", at(t), t < 1200, 2.0))
    for t in range(0, 1201, 10):
        sink.on_probe(ProbeResult("op-a", at(t), True, 2.0))
    for i in range(1000):
        bad = i % 50 == 0
        sink.on_exchange(Exchange(f"r{i}", at(i), "c1", "vaccination", "getCard", "op-a", "IR-23", "GET", "/cards/1",
                                  503 if bad else 200, 4.0, [Attempt("op-a", "http_5xx" if bad else "ok", 503, 4.0)]))
    sink.flush(now=at(1201))
    Evaluator(factory, S).evaluate(at(1201))
    app = FastAPI()
    app.include_router(make_router(factory, require_admin, settings=S, clock=lambda: at(1201)))
    with TestClient(app) as c:
        yield c


def test_admin_routes_need_admin(client):
    assert client.get("/admin/v1/availability").status_code == 401
    assert client.get("/admin/v1/incidents").status_code == 401
    assert client.get("/status/v1/clusters").status_code == 200  # public


def test_availability_endpoint(client):
    r = client.get("/admin/v1/availability", params={"window": "1h", "service": "vaccination", "province": "IR-23"},
                   headers=ADMIN)
    assert r.status_code == 200
    body = r.json()
    row = next(i for i in body["items"] if i["operator_id"] == "op-a")
    assert row["requests"]["availability"] == pytest.approx(0.98)
    assert row["time"]["availability"] == pytest.approx(1.0)
    assert body["services"]["vaccination"]["requests"]["total"] == 1000
    assert body["from"]["jalali"] and body["to"]["iso"].endswith("Z")
    bad = client.get("/admin/v1/availability", params={"window": "7d"}, headers=ADMIN)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_window"
    assert set(bad.json()["error"]) == {"code", "message_fa", "message_en"}
    nf = client.get("/admin/v1/availability", params={"service": "nope"}, headers=ADMIN)
    assert nf.status_code == 404 and nf.json()["error"]["code"] == "unknown_service"


def test_slo_endpoint(client):
    r = client.get("/admin/v1/slo", params={"service": "vaccination"}, headers=ADMIN)
    assert r.status_code == 200
    body = r.json()
    svc = body["services"][0]
    assert svc["slo_target"] == 0.999
    assert svc["requests"]["burn_rates"]["1h"] == pytest.approx(20.0)
    assert svc["requests"]["budget_remaining"] == pytest.approx(-19.0)
    op = next(o for o in body["operators"] if o["operator_id"] == "op-a")
    assert op["alert"] == "page"
    assert [rule["burn_rate"] for rule in body["rules"]] == [14.4, 6.0, 3.0]
    lic = next(x for x in body["licences"] if x["operator_id"] == "op-a")
    # 0.98 < SLA 0.995 over ≥ 100 requests: a breach by requests; this evaluator runs with sanctions
    # off, so the report says so while the licence stays active
    assert lic["breached"] is True and lic["breached_by"] == ["requests"] and lic["status"] == "active"
    assert lic["requests"]["availability"] == pytest.approx(0.98)


def test_incident_lifecycle(client):
    items = client.get("/admin/v1/incidents", params={"state": "open"}, headers=ADMIN).json()["items"]
    kinds = sorted((i["kind"], i["service_id"]) for i in items)
    assert kinds == [("burn_rate", "vaccination"), ("no_operator", "birth-cert")]
    inc = next(i for i in items if i["kind"] == "no_operator")
    assert inc["state"] == "investigating" and inc["province"] == "IR-07"
    assert inc["opened_at"]["jalali_fa"].startswith("۱۴۰۴/۱۲/۱۰")  # 2026-03-01 08:20 UTC = 11:50 Tehran
    iid = inc["id"]
    r = client.post(f"/admin/v1/incidents/{iid}/notes", json={"text_fa": "تیم فنی اپراتور در حال بررسی است.", "author": "کشیک"},
                    headers=ADMIN)
    assert r.status_code == 201 and r.json()["notes"][-1]["text_fa"] == "تیم فنی اپراتور در حال بررسی است."
    assert r.json()["notes"][-1]["author"] == "admin: کشیک"  # the role first, the display name after it
    r = client.post(f"/admin/v1/incidents/{iid}/notes", json={"text_fa": "همه چیز عادی است.", "author": "monitoring"},
                    headers=ADMIN)
    assert r.status_code == 201 and r.json()["notes"][-1]["author"] == "admin: monitoring"  # cannot pose as monitoring
    r = client.post(f"/admin/v1/incidents/{iid}/notes", json={"text_fa": "بدون نام."}, headers=ADMIN)
    assert r.json()["notes"][-1]["author"] == "admin"
    for state in ("identified", "monitoring"):
        r = client.post(f"/admin/v1/incidents/{iid}/state", json={"state": state, "note_fa": "به‌روزرسانی"}, headers=ADMIN)
        assert r.status_code == 200 and r.json()["state"] == state
    assert r.json()["state_fa"] == "در حال پایش"
    r = client.post(f"/admin/v1/incidents/{iid}/state", json={"state": "resolved"}, headers=ADMIN)
    assert r.json()["state"] == "resolved" and r.json()["resolved_at"]["iso"]
    detail = client.get(f"/admin/v1/incidents/{iid}", headers=ADMIN).json()
    assert [n["to_state"] for n in detail["notes"]] == ["investigating", None, None, None, "identified", "monitoring", "resolved"]
    # errors
    again = client.post(f"/admin/v1/incidents/{iid}/state", json={"state": "monitoring"}, headers=ADMIN)
    assert again.status_code == 409 and again.json()["error"]["code"] == "invalid_transition"
    assert client.post(f"/admin/v1/incidents/{iid}/state", json={"state": "done"}, headers=ADMIN).status_code == 422
    assert client.post(f"/admin/v1/incidents/{iid}/notes", json={"text_fa": "  "}, headers=ADMIN).status_code == 422
    assert client.post(f"/admin/v1/incidents/{iid}/notes", content=b"{", headers=ADMIN).status_code == 422
    # both languages capped, on a note and on a state change's note (text_en and note_fa were not)
    r = client.post(f"/admin/v1/incidents/{iid}/notes", json={"text_fa": "کوتاه", "text_en": "x" * 5001}, headers=ADMIN)
    assert r.status_code == 422 and r.json()["error"]["code"] == "note_too_long"
    r = client.post(f"/admin/v1/incidents/{iid}/state", json={"state": "monitoring", "note_fa": "ی" * 5001}, headers=ADMIN)
    assert r.status_code == 422 and r.json()["error"]["code"] == "note_too_long"
    assert client.get("/admin/v1/incidents/99999", headers=ADMIN).status_code == 404
    for bad in ("²", "①", "0", "1001", "-1", "1e3"):  # '²'.isdigit() is True but int() refuses it (was a 500)
        r = client.get("/admin/v1/incidents", params={"limit": bad}, headers=ADMIN)
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_limit", (bad, r.text)
    assert client.get("/admin/v1/incidents/abc", headers=ADMIN).json()["error"]["code"] == "not_found"
    for bad in ("%C2%B2", "1%C2%B2", "0", "9" * 30):  # '²' passes str.isdigit() but not int()
        assert client.get(f"/admin/v1/incidents/{bad}", headers=ADMIN).status_code == 404, bad
        assert client.post(f"/admin/v1/incidents/{bad}/notes", json={"text_fa": "یادداشت"}, headers=ADMIN).status_code == 404
    assert client.get("/admin/v1/incidents", params={"state": "x"}, headers=ADMIN).status_code == 422


def test_public_status(client):
    idx = client.get("/status/v1/clusters").json()
    assert idx["clusters"][0]["cluster_id"] == "health"
    doc = client.get("/status/v1/clusters/health").json()
    by = {s["service_id"]: s for s in doc["services"]}
    assert by["birth-cert"]["status"] == "major_outage" and by["birth-cert"]["status_fa"] == "قطع"
    assert by["vaccination"]["status"] == "degraded"  # op-a up but burning its budget
    assert by["vaccination"]["availability_24h"] == pytest.approx(0.98)
    assert doc["name_fa"] == "سلامت"
    prov = client.get("/status/v1/provinces/IR-07").json()
    assert prov["status"] == "major_outage" and prov["name_fa"] == "فارس"
    assert prov["incidents"][0]["title_fa"].startswith("خدمت «گواهی ولادت»")
    assert "evidence" not in prov["incidents"][0] and "author" not in prov["incidents"][0]["notes"][0]
    provs = {p["province"]: p for p in client.get("/status/v1/provinces").json()["provinces"]}
    assert provs["IR-10"]["status"] == "degraded"  # served by op-a, which is burning its budget
    assert client.get("/status/v1/provinces/IR-99").status_code == 404
    assert client.get("/status/v1/clusters/nope").json()["error"]["code"] == "unknown_cluster"


def test_mounted_in_the_admin_app(db_url, world, tmp_path):
    import zistboom.admin.app as admin_app
    from zistboom.admin.auth import load_or_create_admin_token

    app = admin_app.create_admin_app(db_url, var_dir=tmp_path)
    token, _ = load_or_create_admin_token(tmp_path)
    with TestClient(app) as c:
        assert c.get("/admin/v1/availability").status_code == 401
        r = c.get("/admin/v1/availability", params={"window": "1h"}, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and {i["operator_id"] for i in r.json()["items"]} == {"op-a", "op-b", "op-c"}
        bad = c.get("/admin/v1/availability", params={"window": "1y"}, headers={"Authorization": f"Bearer {token}"})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_window"
        assert c.get("/status/v1/provinces/IR-23").status_code == 200  # public, no token

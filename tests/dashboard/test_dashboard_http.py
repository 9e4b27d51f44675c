"""Dashboard over plain HTTP (httpx against uvicorn on 127.0.0.1): login and sessions, CSRF, a
person's mistakes (bad input, expired session, deleted object) answered in Persian with the typed
text kept, licence actions audited, incident notes, and the pieces behind the pages (charts,
tile grid, Jalali date input)."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import jdatetime
import pytest
from sqlalchemy import select

from dashboard_support import dash_app, serve  # noqa: F401 - dash_app is a fixture
from zistboom.dashboard import charts
from zistboom.dashboard.app import parse_date_fa, static_dir
from zistboom.dashboard.session import COOKIE_NAME, SessionSigner
from zistboom.dashboard.tilegrid import TILES
from zistboom.registry import models as m
from zistboom.registry.borders import border_pairs
from zistboom.registry.db import make_engine, make_sessionmaker
from zistboom.text.jalali import TEHRAN

CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


def client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, follow_redirects=False, timeout=10)


def login(c: httpx.Client, token: str, nxt: str = "/") -> httpx.Response:
    r = c.post("/login", data={"token": token, "next": nxt})
    assert r.status_code == 303, r.text[:500]
    return r


def sessionmaker_for(db_url: str):
    return make_sessionmaker(make_engine(db_url))


def licence_id(db_url: str, operator: str = "gilan-pardaz", cluster: str = "transport") -> int:
    with sessionmaker_for(db_url)() as s:
        return s.scalar(select(m.Licence.id).where(m.Licence.operator_id == operator, m.Licence.cluster_id == cluster))


# ----------------------------------------------------------------------------- pure pieces

def test_session_cookie_signature_and_expiry():
    signer = SessionSigner(b"k" * 32, ttl_s=60)
    sess = signer.new_session("admin", None, now=1000)
    cookie = signer.encode(sess)
    assert signer.decode(cookie, now=1010) == (sess, None)
    assert signer.decode(cookie, now=1061) == (None, "expired")
    body, sig = cookie.split(".")
    forged = SessionSigner(b"x" * 32).encode(SessionSigner(b"x" * 32).new_session("admin", None, now=1000))
    assert signer.decode(forged, now=1010) == (None, "invalid")
    assert signer.decode(body + "." + "0" * len(sig), now=1010) == (None, "invalid")
    assert signer.decode("", now=1010) == (None, "missing")
    assert signer.decode("garbage", now=1010) == (None, "invalid")
    assert signer.decode("abc.\u00e9", now=1010) == (None, "invalid")  # non-ASCII: was a TypeError (500)
    assert signer.decode(body + ".\udcff" + sig[1:], now=1010) == (None, "invalid")


def test_parse_date_fa_jalali_persian_digits_and_errors():
    d = parse_date_fa("۱۴۰۶/۰۹/۰۸")
    assert d.tzinfo == TEHRAN and (d.year, d.month, d.day) == (2027, 11, 29)
    assert parse_date_fa("1406-9-8") == d
    assert parse_date_fa("2027-11-29") == d
    for bad in ("", "فردا", "1406/13/01", "1405/12/31"):  # 1405 is not a leap year in the Jalali calendar
        with pytest.raises(ValueError) as ei:
            parse_date_fa(bad)
        assert re.search("[\u0600-\u06FF]", str(ei.value))


def test_tile_grid_has_every_province_once():
    codes = {c for pair in border_pairs() for c in pair}
    assert set(TILES) == codes and len(codes) == 31
    assert len(set(TILES.values())) == 31


def test_chart_without_data_says_so_and_draws_no_numbers():
    now = datetime(2026, 11, 29, 12, tzinfo=timezone.utc)
    svg = str(charts.line_chart([(now - timedelta(hours=i), None) for i in range(24)], start=now - timedelta(hours=24),
                                end=now, title_fa="دسترس‌پذیری", y_label_fa="درصد (٪)", window_fa="۲۴ ساعت گذشته"))
    assert charts.NO_DATA_FA in svg and "polyline" not in svg and "<circle" not in svg
    assert "درصد (٪)" in svg and "۲۴ ساعت گذشته" in svg


def test_chart_with_gap_breaks_line_and_labels_in_persian():
    now = datetime(2026, 11, 29, 12, tzinfo=timezone.utc)
    pts = [(now - timedelta(hours=24 - i), None if i in (10, 11) else 99.0 + (i % 3) * 0.3) for i in range(24)]
    svg = str(charts.line_chart(pts, start=now - timedelta(hours=24), end=now, title_fa="t", y_label_fa="درصد (٪)",
                                window_fa="w", y_max=100, target=99.5, target_label_fa="هدف"))
    assert svg.count("<polyline") == 2  # the gap splits the line
    assert "اکنون" in svg and "۱۰۰" in svg and not re.search(r">[0-9]", svg)  # tick labels in Persian digits


def test_static_assets_are_vendored_small_and_offline():
    d = static_dir()
    fonts = list((d / "fonts").glob("*.woff2"))
    assert fonts and sum(f.stat().st_size for f in fonts) < 300_000
    assert (d / "fonts" / "OFL.txt").is_file()
    for f in [*d.rglob("*.css"), *d.rglob("*.js"), *Path(d.parent / "templates").glob("*.html")]:
        text = f.read_text(encoding="utf-8")
        for url in re.findall(r"(?:https?:)?//[\w.-]+", text):
            assert url in ("http://www.w3.org",) or "127.0.0.1" in url, (f.name, url)


# ----------------------------------------------------------------------------- over HTTP

def test_every_page_needs_login_and_bad_token_keeps_next(dash):
    c = client(dash["url"])
    for path in ("/", "/provinces", "/provinces/IR-01", "/services/transport.traffic-fines", "/operators/gilan-pardaz",
                 "/licences", "/incidents", "/ask"):
        r = c.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), path
    r = c.post("/login", data={"token": "wrong", "next": "/licences?status=active"})
    assert r.status_code == 401 and "توکن نادرست است" in r.text
    assert 'value="/licences?status=active"' in r.text
    r = login(c, dash["token"], "//evil.example/x")  # no open redirect
    assert r.headers["location"] == "/"
    assert c.get("/").status_code == 200


def test_pages_render_persian_rtl_with_jalali_dates(dash):
    c = client(dash["url"])
    login(c, dash["token"])
    for path in ("/", "/provinces", "/provinces/IR-01", "/services/transport.traffic-fines",
                 "/operators/gilan-pardaz", "/licences", "/incidents", "/ask"):
        r = c.get(path)
        assert r.status_code == 200, path
        assert '<html lang="fa" dir="rtl">' in r.text
        assert re.search(r'<time class="jdate" datetime="\d{4}-\d\d-\d\dT[^"]+Z" title="میلادی: \d{4}-\d\d-\d\d', r.text), path
        assert re.search("[۰-۹]{4}/[۰-۹]{2}/[۰-۹]{2}", r.text), path
    assert c.get("/provinces/IR-99").status_code == 404
    assert "وجود ندارد" in c.get("/services/no.such").text
    assert c.get("/operators/nobody").status_code == 404


def test_licence_filters(dash):
    c = client(dash["url"])
    login(c, dash["token"])
    with sessionmaker_for(dash["db_url"])() as s:
        n = len(s.scalars(select(m.Licence.id)).all())
    all_rows = c.get("/licences").text.count("data-licence=")
    assert all_rows == n > 0
    gilan = c.get("/licences", params={"province": "IR-01"}).text.count("data-licence=")
    assert 0 < gilan < all_rows
    assert c.get("/licences", params={"status": "suspended"}).text.count("data-licence=") == 0
    assert c.get("/licences", params={"expiry": "30d"}).text.count("data-licence=") == 0  # seeded: valid one year
    r = c.get("/licences", params={"status": "bogus"})
    assert r.status_code == 200 and "شناخته نیست" in r.text


def test_renew_with_jalali_date_and_mistakes_keep_typed_text(dash):
    lid = licence_id(dash["db_url"])
    c = client(dash["url"])
    login(c, dash["token"])
    page = c.get(f"/licences/{lid}/renew")
    assert page.status_code == 200
    csrf = CSRF_RE.search(page.text).group(1)
    # bad date: Persian message, typed reason and date kept
    r = c.post(f"/licences/{lid}/renew", data={"csrf": csrf, "reason": "تمدید سالانه", "valid_until": "۱۴۰۶/۱۳/۰۱"})
    assert r.status_code == 422 and "این تاریخ در تقویم وجود ندارد" in r.text
    assert "تمدید سالانه" in r.text and "۱۴۰۶/۱۳/۰۱" in r.text
    # wrong CSRF token: refused, typed text kept
    r = c.post(f"/licences/{lid}/renew", data={"csrf": "nope", "reason": "تمدید سالانه", "valid_until": "۱۴۰۷/۰۱/۱۵"})
    assert r.status_code == 400 and "تمدید سالانه" in r.text
    r = c.post(f"/licences/{lid}/renew", data={"csrf": csrf, "reason": "تمدید سالانه", "valid_until": "۱۴۰۷/۰۱/۱۵"})
    assert r.status_code == 303 and "done=" in r.headers["location"]
    with sessionmaker_for(dash["db_url"])() as s:
        lic = s.get(m.Licence, lid)
        assert lic.valid_until.astimezone(TEHRAN).date() == jdatetime.date(1407, 1, 15).togregorian()
        assert (lic.events[-1].action, lic.events[-1].reason) == ("renew", "تمدید سالانه")
    # an action the status does not allow: the licensing service's Persian message
    r = c.post(f"/licences/{lid}/grant", data={"csrf": csrf, "reason": "اعطای دوباره"})
    assert r.status_code == 409 and "مجاز نیست" in r.text and "اعطای دوباره" in r.text


def test_expired_session_keeps_the_reason_through_login(dash):
    lid = licence_id(dash["db_url"])
    c = client(dash["url"])
    login(c, dash["token"])
    csrf = CSRF_RE.search(c.get(f"/licences/{lid}/revoke").text).group(1)
    # the session runs out while the person types
    signer = SessionSigner((dash["var_dir"] / "dashboard-secret").read_bytes())
    old = signer.new_session("admin", None, now=time.time() - 9 * 3600)
    c.cookies.set(COOKIE_NAME, signer.encode(old))
    r = c.post(f"/licences/{lid}/revoke", data={"csrf": csrf, "reason": "پایان قرارداد اپراتور"})
    assert r.status_code == 401 and "نشست شما منقضی شده است" in r.text
    nxt = re.search(r'name="next" value="([^"]+)"', r.text).group(1).replace("&amp;", "&")
    c.cookies.clear()  # as a browser does when the server sets the cookie anew
    r = login(c, dash["token"], nxt)
    page = c.get(r.headers["location"])
    assert page.status_code == 200 and "پایان قرارداد اپراتور" in page.text and "نگه داشته شد" in page.text
    with sessionmaker_for(dash["db_url"])() as s:
        assert s.get(m.Licence, lid).status == "active"  # nothing changed without a valid session


def test_deleted_licence_gets_persian_404(dash):
    c = client(dash["url"])
    login(c, dash["token"])
    page = c.get("/licences/1/suspend")
    csrf = CSRF_RE.search(page.text).group(1)
    r = c.post("/licences/99999/suspend", data={"csrf": csrf, "reason": "تعلیق آزمایشی"})
    assert r.status_code == 404 and "وجود ندارد" in r.text
    assert c.get("/licences/99999/suspend").status_code == 404


def test_province_token_is_read_only_and_scoped(dash):
    c = client(dash["url"])
    login(c, dash["province_token"])
    r = c.get("/licences")
    assert r.status_code == 200 and "data-action=" not in r.text
    assert c.get("/provinces/IR-23").status_code == 403
    assert c.get("/provinces/IR-01").status_code == 200
    csrf = "x"
    r = c.post("/licences/1/suspend", data={"csrf": csrf, "reason": "تلاش بی‌اجازه"})
    assert r.status_code == 403
    with sessionmaker_for(dash["db_url"])() as s:
        assert s.get(m.Licence, 1).status == "active"


def test_revoked_province_token_ends_its_dashboard_session(dash):
    """The signed cookie stayed valid for its 8 hours after the token was removed from the table,
    while the admin API refused the token at once."""
    import json
    import os

    c = client(dash["url"])
    login(c, dash["province_token"])
    assert c.get("/").status_code == 200
    table = dash["var_dir"] / "province-tokens.json"
    table.write_text(json.dumps({}))
    st = table.stat()
    os.utime(table, (st.st_atime, st.st_mtime + 5))  # a new mtime even within the file system's resolution
    r = c.get("/")
    assert r.status_code == 303 and "why=revoked" in r.headers["location"]
    assert "دیگر معتبر نیست" in c.get(r.headers["location"]).text
    admin = client(dash["url"])
    login(admin, dash["token"])
    assert admin.get("/").status_code == 200  # the admin's session is untouched


def test_province_user_sees_only_its_province_on_operator_and_service_pages(dash):
    """An IR-01 user could read another province's incident titles on an operator's page and every
    licence (with its error budget) on operator and service pages; /incidents/{id} already said 404."""
    from zistboom.monitoring import incidents as mon_inc
    from zistboom.registry.db import session_scope

    with session_scope(sessionmaker_for(dash["db_url"])) as s:
        lic = next(x for x in s.query(m.Licence).order_by(m.Licence.id).all() if "IR-01" not in x.provinces)
        svc_id = lic.service_id or s.query(m.Service).filter(m.Service.cluster_id == lic.cluster_id).first().id
        op_id, lid, prov = lic.operator_id, lic.id, lic.provinces[0]
        mon_inc.open_incident(s, kind="manual", key="manual:scope-test", title_fa="قطعی محرمانهٔ استان دیگر",
                              title_en="Other province outage", service_id=svc_id, operator_id=op_id, province=prov,
                              auto=False)
    admin, user = client(dash["url"]), client(dash["url"])
    login(admin, dash["token"])
    login(user, dash["province_token"])
    marker = f'data-licence="{lid}"'
    for path in (f"/operators/{op_id}", f"/services/{svc_id}"):
        seen, scoped = admin.get(path), user.get(path)
        assert seen.status_code == scoped.status_code == 200
        assert marker in seen.text and marker not in scoped.text, path
    assert "قطعی محرمانهٔ استان دیگر" in admin.get(f"/operators/{op_id}").text
    assert "قطعی محرمانهٔ استان دیگر" not in user.get(f"/operators/{op_id}").text


def test_incident_notes_and_state_change(dash):
    from zistboom.monitoring import incidents as mon_inc
    from zistboom.registry.db import session_scope

    with session_scope(sessionmaker_for(dash["db_url"])) as s:
        iid = mon_inc.open_incident(s, kind="manual", key="manual:http-test", title_fa="قطعی آزمایشی",
                                    title_en="Test outage", service_id="health.appointment", province="IR-07",
                                    auto=False).id
    c = client(dash["url"])
    login(c, dash["token"])
    page = c.get(f"/incidents/{iid}")
    assert page.status_code == 200 and "قطعی آزمایشی" in page.text
    csrf = CSRF_RE.search(page.text).group(1)
    r = c.post(f"/incidents/{iid}/notes", data={"csrf": csrf, "text": "", "to_state": ""})
    assert r.status_code == 422 and "متن یادداشت" in r.text
    r = c.post(f"/incidents/{iid}/notes", data={"csrf": csrf, "text": "علت: قطع برق مرکز داده", "to_state": "identified"})
    assert r.status_code == 303
    page = c.get(f"/incidents/{iid}").text
    assert "علت: قطع برق مرکز داده" in page and "علت شناسایی شد" in page
    assert "قطعی آزمایشی" in c.get("/incidents", params={"state": "open"}).text
    r = c.post("/incidents/99999/notes", data={"csrf": csrf, "text": "یادداشت گمشده"})
    assert r.status_code == 404 and "یادداشت گمشده" in r.text  # the typed note is shown back


def test_ask_box_shows_service_and_operator_for_the_province(dash):
    """The real Persian front door names the service; the page lists who serves the province."""
    c = client(dash["url"])
    login(c, dash["token"])
    r = c.get("/ask", params={"q": "خلافی ماشینم چقدره؟", "province": "IR-01"})
    assert r.status_code == 200 and 'id="ask-result"' in r.text
    assert 'href="/services/transport.traffic-fines"' in r.text
    assert "گیلان‌پرداز" in r.text  # licensed in Gilan for the transport cluster
    r = c.get("/ask", params={"q": "x" * 1200, "province": "IR-01"})
    assert r.status_code == 200 and "بیش از ۱۰۰۰ نویسه" in r.text  # the front door's own message
    assert "x" * 1200 in r.text  # what the person typed is kept


def test_mounted_under_a_prefix_links_follow_it(seeded_db_url, tmp_path):
    """Links and redirects use the prefix the router is included under (e.g. ``/dashboard``)."""
    from fastapi import FastAPI
    from fastapi.staticfiles import StaticFiles

    from zistboom.admin.auth import TokenChecker
    from zistboom.config import Settings
    from zistboom.dashboard.app import make_router

    checker = TokenChecker(tmp_path / "var")
    engine = make_engine(seeded_db_url)
    app = FastAPI()
    app.include_router(make_router(make_sessionmaker(engine), checker, Settings(var_dir=tmp_path / "var")), prefix="/dashboard")
    app.mount("/static", StaticFiles(directory=static_dir()))
    with serve(app) as url:
        c = client(url)
        r = c.get("/dashboard/licences")
        assert r.status_code == 303 and r.headers["location"].startswith("/dashboard/login?")
        r = c.post("/dashboard/login", data={"token": checker.admin_token, "next": ""})
        assert r.headers["location"] == "/dashboard/"
        page = c.get("/dashboard/").text
        assert 'href="/dashboard/services/transport.traffic-fines"' in page
    engine.dispose()


def test_admin_app_mounts_the_dashboard(seeded_db_url, tmp_path):
    import zistboom.admin.app as admin
    app = admin.create_admin_app(seeded_db_url, var_dir=tmp_path / "var")
    token = (tmp_path / "var" / "admin-token").read_text().strip()
    with serve(app, lifespan="on") as url:
        c = client(url)
        login(c, token)
        r = c.get("/licences")
        assert r.status_code == 200 and 'dir="rtl"' in r.text
        assert c.get("/static/fonts/Vazirmatn-Regular.woff2").status_code == 200
        assert c.get("/static/dashboard.css").status_code == 200


def test_new_licence_then_grant_both_audited(dash):
    c = client(dash["url"])
    login(c, dash["token"])
    page = c.get("/licences/new")
    assert page.status_code == 200
    csrf = CSRF_RE.search(page.text).group(1)
    form = {"csrf": csrf, "operator": "kavir-yazd", "scope": "service:health.appointment", "provinces": ["IR-21", "IR-10"],
            "valid_from": "۱۴۰۵/۰۱/۰۱", "valid_until": "۱۴۰۷/۰۱/۰۱", "sla": "نود و نه", "reason": "گسترش خدمت نوبت‌دهی"}
    r = c.post("/licences/new", data=form)
    assert r.status_code == 422 and "سطح توافق خدمت را به درصد بنویسید" in r.text
    assert "گسترش خدمت نوبت‌دهی" in r.text and 'value="IR-21" checked' in r.text  # typed values kept
    form["sla"] = "۹۹٫۵"
    for far in ("۹۹۹۹/۱۲/۳۱", "0001/01/01"):  # beyond 2000..2200: refused with a Persian reason, nothing stored
        r = c.post("/licences/new", data={**form, "valid_until" if far[0] == "۹" else "valid_from": far})
        assert r.status_code == 422 and "تاریخ‌های اعتبار باید از ۱۳۷۸/۱۰/۱۱" in r.text, r.text[:2000]
    assert c.get("/licences").status_code == 200
    r = c.post("/licences/new", data=form)
    assert r.status_code == 303
    new_id = int(re.search(r"done=(\d+)", r.headers["location"]).group(1))
    with sessionmaker_for(dash["db_url"])() as s:
        lic = s.get(m.Licence, new_id)
        assert (lic.status, lic.sla_target, lic.provinces) == ("pending", 0.995, ["IR-10", "IR-21"])
    assert 'data-action="grant"' in c.get("/licences", params={"status": "pending"}).text
    r = c.post(f"/licences/{new_id}/grant", data={"csrf": csrf, "reason": "مدارک کامل است"})
    assert r.status_code == 303
    with sessionmaker_for(dash["db_url"])() as s:
        lic = s.get(m.Licence, new_id)
        assert lic.status == "active"
        assert [(e.action, e.actor) for e in lic.events] == [("apply", "dashboard:admin"), ("grant", "dashboard:admin")]


def test_overview_for_one_province_shows_its_operators(dash):
    c = client(dash["url"])
    login(c, dash["token"])
    r = c.get("/", params={"province": "IR-01"})
    assert r.status_code == 200 and "برای ساکنان گیلان" in r.text
    row = re.search(r'href="/services/transport.traffic-fines".*?</tr>', r.text, re.S).group(0)
    assert "گیلان‌پرداز" in row and "۱ از ۱" in row
    assert "شناخته نیست" in c.get("/", params={"province": "IR-77"}).text


# ----------------------------------------------------------------------------- security-review regressions

BAD_IDS = ["99999999999999999999999", "9223372036854775808", "0", "%C2%B2", "1%C2%B2", "%D9%A1%C2%B2", "-1"]


def test_unparseable_or_huge_ids_are_persian_404_not_500(dash):
    c = client(dash["url"])
    login(c, dash["token"])
    csrf = CSRF_RE.search(c.get("/licences/1/suspend").text).group(1)
    for bad in BAD_IDS:
        r = c.get(f"/licences/{bad}/suspend")
        assert r.status_code == 404 and "پیدا نشد" in r.text, (bad, r.status_code)
        r = c.post(f"/licences/{bad}/suspend", data={"csrf": csrf, "reason": "تعلیق آزمایشی"})
        assert r.status_code == 404 and "وجود ندارد" in r.text, (bad, r.status_code)
        r = c.get(f"/incidents/{bad}")
        assert r.status_code == 404, (bad, r.status_code)
        r = c.post(f"/incidents/{bad}/notes", data={"csrf": csrf, "text": "یادداشت آزمایشی"})
        assert r.status_code == 404 and "یادداشت آزمایشی" in r.text, (bad, r.status_code)
        # a stale form (bad CSRF) re-renders the incident page: the id must not crash there either
        r = c.post(f"/incidents/{bad}/notes", data={"csrf": "stale", "text": "یادداشت آزمایشی"})
        assert r.status_code == 404, (bad, r.status_code)
    # Persian digits still work for a real id
    assert c.get("/licences/۱/suspend").status_code == 200


def test_parse_id_is_strict():
    from zistboom.dashboard.app import parse_id

    assert parse_id("42") == 42 and parse_id("۴۲") == 42 and parse_id(str(2**63 - 1)) == 2**63 - 1
    for bad in ("", "0", "-1", "²", "1²", "４２", "1e3", " 1", str(2**63), "9" * 40):
        assert parse_id(bad) is None, bad


def test_service_page_survives_contract_without_optional_fields(dash):
    with sessionmaker_for(dash["db_url"])() as s:
        svc = s.get(m.Service, "health.appointment")
        s.add(m.ServiceContract(service_id=svc.id, version="9.9.9", openapi={
            "openapi": "3.0.3", "paths": {"/x": {"get": {}, "post": {"parameters": "junk", "requestBody": {}},
                                                   "summary": "not an operation"}}}))
        svc.current_contract_version = "9.9.9"
        s.commit()
    c = client(dash["url"])
    login(c, dash["token"])
    r = c.get("/services/health.appointment")
    assert r.status_code == 200, r.text[:500]
    assert "/v1/services/health.appointment/x" in r.text and "تعریف نشده" in r.text

"""Browser tests: Playwright (Python) driving Debian's chromium, headless, against the dashboard
running under real uvicorn on 127.0.0.1.

Every page is opened through the login form; each is checked for ``dir="rtl"``, a Jalali date
(with the Gregorian date on hover), Persian digits and the vendored Vazirmatn font, and saved as
``test-artifacts/dashboard/<name>.png``. Every request the page makes is recorded; any host other
than 127.0.0.1/localhost fails the test.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from dashboard_support import ARTIFACTS  # noqa: F401

def _seed_monitoring(db_url: str) -> int:
    """Some request buckets, a probe verdict and an open incident in Gilan, so that charts, tiles
    and incident pages have something to show (test data written through the monitoring tables)."""
    from zistboom.monitoring import incidents as mon_inc
    from zistboom.monitoring import models as mm
    from zistboom.registry.db import make_engine, make_sessionmaker, session_scope, utcnow

    engine = make_engine(db_url)
    try:
        with session_scope(make_sessionmaker(engine)) as s:
            now = utcnow().replace(second=0, microsecond=0)
            for i in range(1, 24 * 60, 7):  # every 7th minute over the last day
                t = now - timedelta(minutes=i)
                bad = 3 if 300 < i < 360 else 0
                for op, prov in (("", "IR-01"), ("gilan-pardaz", "IR-01"), ("", "IR-23")):
                    s.add(mm.RequestMinute(minute=t, service_id="transport.traffic-fines", operator_id=op,
                                           province=prov, total=20, good=20 - bad, latency_ms_sum=20 * (40 + i % 13)))
            s.add(mm.OperatorHealth(operator_id="gilan-pardaz", healthy=True, consecutive_failures=0,
                                    last_probe_at=now, last_change_at=now - timedelta(hours=2), last_status=200,
                                    latency_ms=12.5))
            inc = mon_inc.open_incident(
                s, kind="manual", key="manual:test", title_fa="کندی پاسخ استعلام خلافی در گیلان",
                title_en="Slow traffic-fine inquiries in Gilan", service_id="transport.traffic-fines",
                operator_id="gilan-pardaz", province="IR-01", now=now - timedelta(hours=5), auto=False)
            return inc.id
    finally:
        engine.dispose()


def test_every_page_rtl_jalali_persian_digits_local_only(dash, page_factory):
    inc_id = _seed_monitoring(dash["db_url"])
    pg = page_factory(dash["url"])
    pg.goto("/")
    assert "/login" in pg.page.url  # login required
    pg.check_page("00-login")
    pg.login(dash["token"])
    pages = {
        "01-overview": "/",
        "02-provinces": "/provinces",
        "03-province-gilan": "/provinces/IR-01",
        "04-service-traffic-fines": "/services/transport.traffic-fines",
        "05-operator-gilan-pardaz": "/operators/gilan-pardaz",
        "06-licences": "/licences",
        "07-licences-expiring-this-month": "/licences?expiry=this_month",
        "08-licence-confirm-suspend": "/licences/1/suspend",
        "09-incidents": "/incidents",
        f"10-incident-{inc_id}": f"/incidents/{inc_id}",
        "11-ask": "/ask?q=" + "خلافی ماشینم چقدره؟&province=IR-01",
        "15-licence-new": "/licences/new",
    }
    texts = {}
    for name, path in pages.items():
        resp = pg.goto(path)
        assert resp.status == 200, (path, resp.status)
        texts[name] = pg.check_page(name)
        if name not in ("01-overview", "02-provinces", "11-ask", "15-licence-new", "07-licences-expiring-this-month"):
            assert pg.page.locator("main time.jdate").count() > 0, f"{name}: no Jalali date in the content"
    # overview lists every cluster and all 42 services
    pg.goto("/")
    assert pg.page.locator("section[id^=cluster-]").count() == 10
    assert pg.page.locator("section[id^=cluster-] tbody tr").count() == 42
    # the tile map has all 31 provinces, and Gilan is coloured from its measured availability
    pg.goto("/provinces")
    assert pg.page.locator("svg.tiles a[data-code], svg.tiles g.tile-locked").count() == 31
    assert "tile-nodata" not in (pg.page.locator('svg.tiles a[data-code="IR-01"] rect').get_attribute("class") or "")
    # charts say what they measure
    pg.goto("/services/transport.traffic-fines")
    for cid in ("avail-24h", "latency-24h", "avail-30d", "latency-30d"):
        svg = pg.page.locator(f"svg#{cid}")
        assert svg.count() == 1
        title = pg.page.locator(f"svg#{cid} > title").text_content()
        assert "گذشته" in title and ("درصد" in title or "میلی‌ثانیه" in title), title
    assert pg.page.locator("svg#avail-24h polyline").count() >= 1
    # Gilan's residents get traffic fines from Gilan Pardaz (home province) among others
    pg.goto("/provinces/IR-01")
    assert "گیلان‌پرداز" in pg.page.inner_text("body")
    pg.assert_local_only()


def test_request_guard_catches_a_foreign_host(dash, browser):
    """The no-outside-requests check can fail: a fetch to another host is caught (and aborted
    inside the browser, so nothing leaves the machine)."""
    from dashboard_support import Page

    pg = Page(browser, dash["url"])
    try:
        pg.goto("/login")
        pg.page.evaluate("fetch('http://zistboom-guard-test.invalid/x').catch(() => null)")
        pg.page.wait_for_timeout(300)
        with pytest.raises(AssertionError, match="outside 127.0.0.1"):
            pg.assert_local_only()
    finally:
        pg.close()


def test_suspend_through_ui_is_audited_and_keeps_typed_text(dash, page_factory):
    from sqlalchemy import select

    from zistboom.registry import models as m
    from zistboom.registry.db import make_engine, make_sessionmaker

    engine = make_engine(dash["db_url"])
    sf = make_sessionmaker(engine)
    with sf() as s:
        lic_id = s.scalar(select(m.Licence.id).where(m.Licence.operator_id == "gilan-pardaz",
                                                     m.Licence.cluster_id == "transport"))
    pg = page_factory(dash["url"])
    pg.login(dash["token"], "/licences?operator=gilan-pardaz")
    pg.page.click(f'tr[data-licence="{lic_id}"] a[data-action="suspend"]')
    pg.page.wait_for_load_state("load")
    # a too-short reason: Persian message, the typed text is kept
    pg.page.fill("#reason", "بد")
    pg.page.evaluate("document.querySelector('#reason').removeAttribute('minlength')")
    pg.page.click("#confirm-form button[type=submit]")
    pg.page.wait_for_load_state("load")
    assert "دلیل این اقدام را بنویسید" in pg.page.inner_text(".error")
    assert pg.page.input_value("#reason") == "بد"
    pg.check_page("12-licence-confirm-error")
    pg.page.fill("#reason", "نقض مکرر سطح توافق خدمت در آزمون")
    pg.page.click("#confirm-form button[type=submit]")
    pg.page.wait_for_load_state("load")
    assert "ثبت و در سابقهٔ ممیزی نوشته شد" in pg.page.inner_text(".flash")
    pg.check_page("13-licences-after-suspend")
    pg.assert_local_only()
    with sf() as s:
        lic = s.get(m.Licence, lic_id)
        assert lic.status == "suspended"
        ev = lic.events[-1]
        assert (ev.action, ev.actor, ev.reason) == ("suspend", "dashboard:admin", "نقض مکرر سطح توافق خدمت در آزمون")
    engine.dispose()


def test_province_role_is_read_only(dash, page_factory):
    pg = page_factory(dash["url"])
    pg.login(dash["province_token"], "/provinces/IR-01")
    assert pg.page.url.endswith("/provinces/IR-01")
    pg.check_page("14-province-role-gilan")
    resp = pg.goto("/provinces/IR-23")
    assert resp.status == 403
    pg.goto("/licences")
    assert pg.page.locator("a[data-action]").count() == 0
    resp = pg.goto("/licences/1/suspend")
    assert resp.status == 403
    pg.assert_local_only()

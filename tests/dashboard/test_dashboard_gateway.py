"""End to end: suspend a licence through the dashboard UI (real browser), then call the gateway and
see the request go to another licensed operator.

Stack, all on 127.0.0.1 ephemeral ports: the seeded registry (SQLite file), two demo operators
(``zistboom.demo.operator_server``) licensed for the transport cluster in Gilan (IR-01), the gateway
(``zistboom.gateway.app.create_gateway`` on its own server) and the dashboard under uvicorn.
Gilan Pardaz is based in Gilan, so the gateway prefers it for a Gilan caller; Khorasan Shabakeh is
licensed nationally and takes over once Gilan Pardaz's licence is suspended.
"""

from __future__ import annotations

import time

import httpx
from sqlalchemy import select

from dashboard_support import dash_app, operator_servers, point_operators_at, serve, serve_gateway

SERVICE = "transport.traffic-fines"
CLIENT = "bank-melli-rasht"  # a Gilan (IR-01) client system


def _operator_of(gw: str, key: str) -> str | None:
    r = httpx.get(f"{gw}/v1/services/{SERVICE}/fines", params={"q": "۱۲ب۳۴۵-۲۶"},
                  headers={"X-Api-Key": key, "X-Caller-Province": "IR-01"}, timeout=10)
    assert r.status_code == 200, (r.status_code, r.text[:300])
    return r.headers.get("x-zistboom-operator")


def test_suspend_in_ui_reroutes_gateway(db_url, seeded_keys, tmp_path, page_factory):
    import zistboom.gateway.app as gateway_app
    from zistboom.gateway.config import GatewayConfig
    from zistboom.registry import models as m
    from zistboom.registry.db import make_engine, make_sessionmaker

    with operator_servers(["gilan-pardaz", "khorasan-shabakeh"]) as urls:
        point_operators_at(db_url, urls)
        gw_app = gateway_app.create_gateway(db_url, sinks=[], config=GatewayConfig(refresh_interval=0.5))
        app, checker = dash_app(db_url, tmp_path / "var")
        with serve_gateway(gw_app) as gw, serve(app) as dash_url:
            key = seeded_keys[CLIENT]
            assert _operator_of(gw, key) == "gilan-pardaz"  # own province first

            engine = make_engine(db_url)
            with make_sessionmaker(engine)() as s:
                lic_id = s.scalar(select(m.Licence.id).where(m.Licence.operator_id == "gilan-pardaz",
                                                             m.Licence.cluster_id == "transport"))
            pg = page_factory(dash_url)
            pg.login(checker.admin_token, "/licences?operator=gilan-pardaz")
            pg.page.click(f'tr[data-licence="{lic_id}"] a[data-action="suspend"]')
            pg.page.wait_for_load_state("load")
            pg.page.fill("#reason", "آزمون سرتاسری: تعلیق و مسیریابی دوباره")
            pg.page.click("#confirm-form button[type=submit]")
            pg.page.wait_for_load_state("load")
            assert "ثبت و در سابقهٔ ممیزی نوشته شد" in pg.page.inner_text(".flash")
            pg.check_page("20-e2e-after-suspend")

            deadline = time.monotonic() + 15
            seen = []
            while time.monotonic() < deadline:
                op = _operator_of(gw, key)
                seen.append(op)
                if op == "khorasan-shabakeh":
                    break
                time.sleep(0.25)
            assert seen[-1] == "khorasan-shabakeh", seen
            with make_sessionmaker(engine)() as s:
                ev = s.get(m.Licence, lic_id).events[-1]
                assert (ev.action, ev.to_status, ev.actor) == ("suspend", "suspended", "dashboard:admin")
            engine.dispose()
            app.state.engine.dispose()

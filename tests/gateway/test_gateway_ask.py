"""``POST /v1/ask``: the front door answer plus the licensed operators in tier order.

The tier-order tests run on a tiny registry whose service ids are not in the catalogue, so they put a
stand-in door with the real answer shape in ``sys.modules``; the last test runs the real front door
(the trained catalogue model) against the seeded demo registry.
"""

from __future__ import annotations

import sys
import time
import types

import httpx
import pytest

from zistboom.gateway.config import GatewayConfig


class BadQuestion(ValueError):
    def __init__(self, message_fa: str, message_en: str, code: str = "empty_question"):
        super().__init__(message_en)
        self.message_fa, self.message_en, self.code = message_fa, message_en, code


class Door:
    def ask(self, text: str) -> dict:
        if not text.strip():
            raise BadQuestion("پرسش خالی است.", "The question is empty.")
        return {"service": "fines", "cluster": "transport", "confidence": 0.9, "name_fa": "خلافی خودرو",
                "name_en": "Traffic fines", "out_of_scope": False, "alternatives": []}


@pytest.fixture
def frontdoor(monkeypatch):
    mod = types.ModuleType("zistboom.nlp.frontdoor")
    mod.BadQuestion = BadQuestion
    door = Door()
    mod.get_front_door = lambda: door
    monkeypatch.setitem(sys.modules, "zistboom.nlp.frontdoor", mod)
    return mod


def test_ask_lists_operators_in_tier_order(registry, operators, gateway, frontdoor):
    own, border, far = operators("own"), operators("border"), operators("far")
    provs = ("IR-01", "IR-02", "IR-03")
    registry.operator("far", "IR-05", far.url, provinces=provs)
    registry.operator("border", "IR-02", border.url, provinces=provs)
    registry.operator("own", "IR-01", own.url, provinces=provs)
    registry.operator("off", "IR-01", own.url, provinces=provs, status="suspended")
    gw = gateway()
    r = httpx.post(gw.url + "/v1/ask", json={"text": "خلافی خودروی من چقدر است؟"}, headers={"X-Caller-Province": "IR-01"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["service"] == "fines"
    assert [o["id"] for o in body["operators"]] == ["own", "border", "far"]
    assert body["operators"][0]["name_fa"] == "اپراتور own" and body["operators"][0]["home_province"] == "IR-01"
    r = httpx.post(gw.url + "/v1/ask", json={"text": "خلافی"}, headers={"X-Caller-Province": "IR-03"})
    assert [o["id"] for o in r.json()["operators"]] == ["border", "far", "own"]  # IR-01 and IR-05 are both national tier for IR-03
    r = httpx.post(gw.url + "/v1/ask", json={"text": "  "})
    assert r.status_code == 400 and r.headers["x-zistboom-error"] == "empty_question"
    assert r.json()["error"]["message_fa"] == "پرسش خالی است."
    r = httpx.post(gw.url + "/v1/ask", content=b"{oops")
    assert r.status_code == 400 and r.headers["x-zistboom-error"] == "bad_json"
    r = httpx.post(gw.url + "/v1/ask", json={"text": "x"}, headers={"X-Caller-Province": "IR-77"})
    assert r.status_code == 400 and r.headers["x-zistboom-error"] == "unknown_province"
    r = httpx.post(gw.url + "/v1/ask", json={"text": "x"},
                   headers=httpx.Headers([("X-Caller-Province", "IR-01"), ("X-Caller-Province", "IR-02")]))
    assert r.status_code == 400 and r.headers["x-zistboom-error"] == "ambiguous_province"


def test_ask_rate_limited_per_ip(registry, gateway, frontdoor):
    gw = gateway(GatewayConfig(refresh_interval=0.2, health_interval=60, ask_rate=0.5, ask_burst=2))
    codes = [httpx.post(gw.url + "/v1/ask", json={"text": "سلام"}).status_code for _ in range(4)]
    assert codes[:2] == [200, 200] and codes[2:] == [429, 429]


def test_ask_without_front_door_is_503(registry, gateway, monkeypatch):
    monkeypatch.setitem(sys.modules, "zistboom.nlp.frontdoor", None)  # import fails
    gw = gateway()
    r = httpx.post(gw.url + "/v1/ask", json={"text": "سلام"})
    assert r.status_code == 503 and r.headers["x-zistboom-error"] == "ask_unavailable"
    assert r.json()["error"]["message_fa"]


def test_ask_with_the_real_front_door_on_the_demo_registry(seeded_db_url):
    from gwutil import GatewayServer

    from zistboom.gateway.app import create_gateway

    gw = GatewayServer(create_gateway(seeded_db_url, config=GatewayConfig(health_interval=60))).start()
    try:
        r = httpx.post(gw.url + "/v1/ask", json={"text": "میخوام خلافی ماشینم رو ببینم"},
                       headers={"X-Caller-Province": "IR-01"}, timeout=120)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["service"] == "transport.traffic-fines" and body["cluster"] == "transport"
        assert body["name_fa"] and len(body["alternatives"]) == 3
        ops = [o["id"] for o in body["operators"]]
        assert ops[0] == "gilan-pardaz"  # the Gilan operator licensed for transport comes first
        assert set(ops) == {"gilan-pardaz", "khorasan-shabakeh"}
        r = httpx.post(gw.url + "/v1/ask", json={"text": "ب" * 1500}, timeout=30)
        assert r.status_code == 400 and r.headers["x-zistboom-error"] == "question_too_long"
        assert r.json()["error"]["message_fa"]
    finally:
        gw.stop()


def test_ask_marks_operators_the_gateway_sees_down(registry, operators, gateway, frontdoor):
    """``healthy`` in /v1/ask's operator list is the gateway's live view (active health checks)."""
    up, down = operators("up"), operators("down")
    registry.operator("up", "IR-01", up.url)
    registry.operator("down", "IR-01", down.url)
    gw = gateway(GatewayConfig(refresh_interval=0.2, health_interval=0.2, health_timeout=0.3,
                               health_unhealthy_threshold=1))
    ask = lambda: {o["id"]: o["healthy"] for o in httpx.post(  # noqa: E731
        gw.url + "/v1/ask", json={"text": "خلافی"}, headers={"X-Caller-Province": "IR-01"}).json()["operators"]}
    assert ask() == {"up": True, "down": True}
    down.stop()
    deadline = time.monotonic() + 10
    while ask().get("down") is not False:
        assert time.monotonic() < deadline, "the stopped operator never showed as unhealthy"
        time.sleep(0.1)
    assert ask() == {"up": True, "down": False}

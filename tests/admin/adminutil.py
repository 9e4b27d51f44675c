"""Helpers for the admin API tests."""

from __future__ import annotations

from sqlalchemy import select

from zistboom.registry import models as m


def registry_version(session_factory) -> int:
    with session_factory() as s:
        return int(s.scalar(select(m.RegistryState.version).where(m.RegistryState.id == 1)) or 0)


def assert_error(resp, status: int, code: str | None = None) -> dict:
    """The response has ``status`` and the project's JSON error shape; returns the error object."""
    assert resp.status_code == status, (resp.status_code, resp.text[:2000])
    body = resp.json()
    err = body["error"]
    assert err["message_fa"] and err["message_en"], err
    if code is not None:
        assert err["code"] == code, err
    return err


SERVICE = {
    "id": "test.new-service", "cluster_id": "transport", "name_fa": "خدمت آزمایشی", "name_en": "Test service",
    "agency_fa": "سازمان آزمایش", "agency_en": "Test Agency", "service_type": "G2C", "level": "national",
    "fee_rials": 1000,
}
CONTRACT = {
    "openapi": "3.0.3", "info": {"title": "t", "version": "2.0.0"},
    "paths": {"/x": {"get": {"operationId": "x", "x-idempotent": True, "responses": {"200": {"description": "ok"}}}}},
}


def national_id(prefix10: str) -> str:
    """A valid 11-digit company national id from its first 10 digits."""
    from zistboom.registry.validation import company_id_check_digit

    return prefix10 + str(company_id_check_digit(prefix10))


def operator_body(op_id: str = "test-op", prefix10: str = "1040999888", province: str = "IR-01") -> dict:
    return {"id": op_id, "name_fa": "اپراتور آزمایشی", "name_en": "Test Operator", "national_id": national_id(prefix10),
            "home_province": province, "endpoints": ["http://127.0.0.1:18999"],
            "health_url": "http://127.0.0.1:18999/healthz"}

"""Helpers for the monitoring tests: a small seeded registry and injected timestamps."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from zistboom.licensing import apply, transition
from zistboom.registry import models as m
from zistboom.registry.db import session_scope
from zistboom.registry.snapshot import bump_version, hash_api_key

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=timezone.utc)  # 1404/12/10 11:30 Tehran; minute-aligned


CONTRACT = {
    "openapi": "3.0.3",
    "info": {"title": "cards", "version": "1"},
    "paths": {"/cards/{id}": {"get": {"operationId": "getCard"}}},
}
CLIENT_KEY = "k-monitoring-test-0123456789abcdef"


def seed_world(factory, *, urls: dict[str, str] | None = None, sla: float = 0.995,
               homes: dict[str, str] | None = None) -> dict[str, int]:
    """Seed provinces IR-23 (Tehran), IR-10 (Isfahan), IR-07 (Fars); cluster ``health``; services
    ``vaccination`` (slo 0.999) and ``birth-cert`` with a one-operation contract; operators ``op-a``
    (vaccination: Tehran + Isfahan), ``op-b`` (vaccination: Tehran), ``op-c`` (birth-cert: Fars),
    each at ``urls[op]`` (health check ``<url>/health``) and based in ``homes[op]`` (default IR-23,
    which decides the operator's routing tier for a caller's province); client ``c1`` (Tehran) with
    key :data:`CLIENT_KEY` and access to both services. Returns the licence ids ``{"a", "b", "c"}``."""
    urls = urls or {}
    homes = homes or {}
    with session_scope(factory) as s:
        for code, sci, fa, en in (("IR-23", 23, "تهران", "Tehran"), ("IR-10", 10, "اصفهان", "Isfahan"),
                                  ("IR-07", 7, "فارس", "Fars")):
            s.add(m.Province(code=code, sci_code=sci, name_fa=fa, name_en=en, capital_fa=fa, capital_en=en))
        s.flush()
        s.add(m.ProvinceBorder(a="IR-10", b="IR-23"))
        s.add(m.Cluster(id="health", name_fa="سلامت", name_en="Health"))
        s.flush()
        for sid, fa, en in (("vaccination", "کارت واکسن", "Vaccination card"),
                            ("birth-cert", "گواهی ولادت", "Birth certificate")):
            s.add(m.Service(id=sid, cluster_id="health", name_fa=fa, name_en=en, agency_fa="وزارت بهداشت",
                            agency_en="Ministry of Health", service_type="G2C", level="provincial",
                            slo_target=0.999, current_contract_version="1"))
            s.flush()
            s.add(m.ServiceContract(service_id=sid, version="1", openapi=CONTRACT))
        for i, (oid, fa, en) in enumerate((("op-a", "اپراتور الف", "Operator A"), ("op-b", "اپراتور ب", "Operator B"),
                                           ("op-c", "اپراتور ج", "Operator C"))):
            url = urls.get(oid, f"http://127.0.0.1:{19000 + i}")
            s.add(m.Operator(id=oid, name_fa=fa, name_en=en, national_id=f"1000000000{i}",
                             home_province=homes.get(oid, "IR-23"),
                             endpoints=[url], health_url=url + "/health"))
        s.flush()
        ids = {}
        start = datetime(2025, 1, 1, tzinfo=timezone.utc)
        end = datetime(2030, 1, 1, tzinfo=timezone.utc)
        for name, op, svc, provs in (("a", "op-a", "vaccination", ["IR-23", "IR-10"]),
                                     ("b", "op-b", "vaccination", ["IR-23"]),
                                     ("c", "op-c", "birth-cert", ["IR-07"])):
            lic = apply(s, operator_id=op, service_id=svc, provinces=provs, valid_from=start, valid_until=end,
                        sla_target=sla, actor="test")
            transition(s, lic.id, "grant", actor="officer-1", reason="test grant")
            # the scripted tests run on an injected clock (T0, March 2026): date the audit trail on
            # it too, granted at valid_from, so the licence was active before any probe (the SLA
            # window starts when a licence last became active)
            s.flush()
            for ev in lic.events:
                ev.at = start
            ids[name] = lic.id
        c = m.ClientSystem(id="c1", name="سامانهٔ آزمون", province="IR-23")
        c.keys = [m.ApiKey(key_hash=hash_api_key(CLIENT_KEY), prefix=CLIENT_KEY[:8])]
        c.access = [m.ClientAccess(service_id="vaccination"), m.ClientAccess(service_id="birth-cert")]
        s.add(c)
        bump_version(s)
    return ids


def at(seconds: float) -> datetime:
    """T0 + ``seconds`` (the injected clock of the scripted tests)."""
    return T0 + timedelta(seconds=seconds)

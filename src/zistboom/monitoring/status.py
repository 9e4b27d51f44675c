"""What a citizen-facing status page shows, per cluster and per province (read-only, public).

Per (service, province) the live state comes from the health checks (see
:func:`zistboom.monitoring.reports.pair_state`); a service in a cluster is ``operational`` when all
its covered provinces are, ``partial_outage`` when some are out, ``major_outage`` when all are,
``degraded`` when it works but an operator's burn-rate incident is open, ``unknown`` when the
monitor has no fresh verdict. Availability figures are the service-level request ratio
(client-facing exchanges) over 24 h and 30 d.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from zistboom.monitoring.availability import WINDOWS, request_counts, window_start
from zistboom.monitoring.incidents import incident_dict
from zistboom.monitoring.models import Incident
from zistboom.monitoring.reports import coverage, operator_health, pair_state
from zistboom.monitoring.settings import MonitorSettings
from zistboom.registry.snapshot import RegistrySnapshot
from zistboom.text import format_jalali, jalali_iso_pair

STATUS_FA = {
    "operational": "عادی",
    "degraded": "کاهش کیفیت",
    "partial_outage": "اختلال در برخی استان‌ها",
    "major_outage": "قطع",
    "unknown": "نامعلوم",
}
_RANK = {"operational": 0, "unknown": 1, "degraded": 2, "partial_outage": 3, "major_outage": 4}


def _label(state: str) -> dict[str, str]:
    return {"status": state, "status_fa": STATUS_FA[state]}


def _worst(states: list[str]) -> str:
    return max(states, key=_RANK.__getitem__) if states else "unknown"


class StatusBuilder:
    """Builds the public status documents from one consistent read."""

    def __init__(self, session: Session, snap: RegistrySnapshot, now: datetime, settings: MonitorSettings):
        self.session, self.snap, self.now = session, snap, now
        health = operator_health(session, now, settings)
        self.pairs: dict[tuple[str, str], str] = {}
        for (s, p), lics in coverage(snap, now).items():
            state, _, _ = pair_state(lics, s, p, now, health)
            self.pairs[(s, p)] = {"operational": "operational", "outage": "major_outage"}.get(state, "unknown")
        recent = now - timedelta(days=1)
        self.incidents = session.scalars(
            select(Incident).options(selectinload(Incident.notes))
            .where((Incident.state != "resolved") | (Incident.resolved_at >= recent)).order_by(Incident.id.desc())
        ).all()
        self.burning = {i.service_id for i in self.incidents if i.kind == "burn_rate" and i.state != "resolved"}
        self.avail: dict[str, dict[str, float | None]] = defaultdict(dict)
        for w in ("24h", "30d"):
            for (s,), r in request_counts(session, window_start(now, WINDOWS[w]), now, operator_level=False,
                                          group=("service_id",)).items():
                self.avail[s][w] = r.availability

    def _service(self, sid: str, provinces: list[str]) -> dict[str, Any]:
        info = self.snap.services.get(sid)
        states = [self.pairs[(sid, p)] for p in provinces if (sid, p) in self.pairs]
        if states and all(x == "major_outage" for x in states):
            state = "major_outage"
        elif "major_outage" in states:
            state = "partial_outage"
        elif states and all(x == "unknown" for x in states):
            state = "unknown"
        else:
            state = "operational" if states else "unknown"
        if state == "operational" and sid in self.burning:
            state = "degraded"
        return {
            "service_id": sid, "name_fa": info.name_fa if info else sid, "name_en": info.name_en if info else sid,
            **_label(state),
            "availability_24h": self.avail.get(sid, {}).get("24h"), "availability_30d": self.avail.get(sid, {}).get("30d"),
        }

    def _incidents(self, pred) -> list[dict[str, Any]]:
        return [incident_dict(i, public=True) for i in self.incidents if pred(i)]

    def _doc(self, extra: dict[str, Any]) -> dict[str, Any]:
        return {"generated_at": {**jalali_iso_pair(self.now), "jalali_fa": format_jalali(self.now)}, **extra}

    def cluster(self, cluster_id: str) -> dict[str, Any] | None:
        """Status of one cluster's services (over all provinces where they are licensed)."""
        c_services = sorted(s.id for s in self.snap.services.values() if s.cluster_id == cluster_id)
        if not c_services:
            return None
        services = []
        for sid in c_services:
            provs = sorted(p for (s, p) in self.pairs if s == sid)
            row = self._service(sid, provs)
            row["provinces_out"] = sorted(p for p in provs if self.pairs[(sid, p)] == "major_outage")
            services.append(row)
        sids = set(c_services)
        return self._doc({
            "cluster_id": cluster_id, **_label(_worst([r["status"] for r in services])), "services": services,
            "incidents": self._incidents(lambda i: i.service_id in sids),
        })

    def province(self, code: str) -> dict[str, Any] | None:
        """Status of every service licensed in one province."""
        info = self.snap.provinces.get(code)
        if info is None:
            return None
        services = []
        for sid in sorted({s for (s, p) in self.pairs if p == code}):
            row = self._service(sid, [code])
            services.append(row)
        sids = {r["service_id"] for r in services}
        return self._doc({
            "province": code, "name_fa": info.name_fa, "name_en": info.name_en,
            **_label(_worst([r["status"] for r in services]) if services else "unknown"), "services": services,
            "incidents": self._incidents(lambda i: i.province == code or (i.province is None and i.service_id in sids)),
        })

    def clusters_index(self, names: dict[str, tuple[str, str]]) -> dict[str, Any]:
        out = []
        for cid in sorted({s.cluster_id for s in self.snap.services.values()}):
            doc = self.cluster(cid)
            fa, en = names.get(cid, (cid, cid))
            out.append({"cluster_id": cid, "name_fa": fa, "name_en": en, "status": doc["status"],
                        "status_fa": doc["status_fa"], "open_incidents": sum(1 for i in doc["incidents"] if i["state"] != "resolved")})
        return self._doc({"clusters": out})

    def provinces_index(self) -> dict[str, Any]:
        out = []
        for code in sorted(self.snap.provinces):
            doc = self.province(code)
            out.append({"province": code, "name_fa": doc["name_fa"], "name_en": doc["name_en"], "status": doc["status"],
                        "status_fa": doc["status_fa"], "services": len(doc["services"]),
                        "open_incidents": sum(1 for i in doc["incidents"] if i["state"] != "resolved")})
        return self._doc({"provinces": out})

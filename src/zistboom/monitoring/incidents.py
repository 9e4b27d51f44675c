"""Incident lifecycle: investigating → identified → monitoring → resolved, every step noted.

Automatic incidents are opened by :mod:`zistboom.monitoring.evaluator` and resolved by it on
recovery; people add notes (Persian) and move the state through the admin API.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from zistboom.monitoring.models import INCIDENT_STATES, Incident, IncidentNote
from zistboom.registry.db import utcnow
from zistboom.text import format_jalali, jalali_iso_pair

STATE_FA = {
    "investigating": "در حال بررسی",
    "identified": "علت شناسایی شد",
    "monitoring": "در حال پایش",
    "resolved": "برطرف شد",
}
# Allowed moves: forward along the lifecycle (skipping allowed), or back to investigating when a
# fix did not hold. ``resolved`` is final: a recurrence opens a new incident.
ALLOWED: dict[str, tuple[str, ...]] = {
    "investigating": ("identified", "monitoring", "resolved"),
    "identified": ("investigating", "monitoring", "resolved"),
    "monitoring": ("investigating", "identified", "resolved"),
    "resolved": (),
}


class IncidentError(ValueError):
    """A request on an incident that cannot be carried out (``code``, Persian/English messages,
    ``http_status`` 404/409/422)."""

    def __init__(self, code: str, message_fa: str, message_en: str, http_status: int = 422):
        super().__init__(message_en)
        self.code, self.message_fa, self.message_en, self.http_status = code, message_fa, message_en, http_status


def open_incident(session: Session, *, kind: str, key: str, title_fa: str, title_en: str,
                  service_id: str | None = None, operator_id: str | None = None, province: str | None = None,
                  severity: str = "page", note_fa: str = "", note_en: str = "", author: str = "monitoring",
                  evidence: dict[str, Any] | None = None, now: datetime | None = None, auto: bool = True) -> Incident:
    """Open an incident in state ``investigating`` with a first note."""
    now = now or utcnow()
    inc = Incident(kind=kind, key=key, service_id=service_id, operator_id=operator_id, province=province,
                   severity=severity, state="investigating", title_fa=title_fa, title_en=title_en, auto=auto,
                   evidence=evidence, opened_at=now, updated_at=now)
    inc.notes.append(IncidentNote(at=now, author=author, from_state=None, to_state="investigating",
                                  text_fa=note_fa or title_fa, text_en=note_en or title_en))
    session.add(inc)
    session.flush()
    return inc


def open_by_key(session: Session, key: str) -> Incident | None:
    """The open (not resolved) incident with ``key``, if any."""
    return session.scalars(
        select(Incident).where(Incident.key == key, Incident.state != "resolved").order_by(Incident.id.desc())
    ).first()


def get_incident(session: Session, incident_id: int) -> Incident:
    inc = session.get(Incident, incident_id, options=[selectinload(Incident.notes)])
    if inc is None:
        raise IncidentError("not_found", f"رخداد {incident_id} پیدا نشد.", f"Incident {incident_id} not found.", 404)
    return inc


MAX_NOTE_CHARS = 5000


def _check_note_length(*texts: str) -> None:
    """Both languages of a note are capped (only the Persian text was: a 2,000,000-character
    ``text_en`` was stored, and a state change's note skipped the cap altogether)."""
    if any(len(t or "") > MAX_NOTE_CHARS for t in texts):
        raise IncidentError("note_too_long", "متن یادداشت بیش از ۵۰۰۰ نویسه است.",
                            f"The note is longer than {MAX_NOTE_CHARS} characters.")


def add_note(session: Session, incident_id: int, *, text_fa: str, author: str, text_en: str = "",
             now: datetime | None = None) -> IncidentNote:
    """Add a Persian note. Raises :class:`IncidentError` (404 unknown, 422 empty text or either
    language over :data:`MAX_NOTE_CHARS`)."""
    inc = get_incident(session, incident_id)
    text_fa = (text_fa or "").strip()
    if not text_fa:
        raise IncidentError("empty_note", "متن یادداشت خالی است.", "The note text (text_fa) is empty.")
    _check_note_length(text_fa, (text_en or "").strip())
    now = now or utcnow()
    note = IncidentNote(at=now, author=(author or "unknown")[:100], text_fa=text_fa, text_en=(text_en or "").strip())
    inc.notes.append(note)
    inc.updated_at = now
    session.flush()
    return note


def change_state(session: Session, incident_id: int, state: str, *, author: str, note_fa: str = "",
                 note_en: str = "", now: datetime | None = None) -> Incident:
    """Move an incident to ``state`` (see :data:`ALLOWED`). Raises :class:`IncidentError`: 404
    unknown incident, 422 unknown state or a note over :data:`MAX_NOTE_CHARS`, 409 move not allowed."""
    _check_note_length((note_fa or "").strip(), (note_en or "").strip())
    inc = get_incident(session, incident_id)
    if state not in INCIDENT_STATES:
        raise IncidentError("invalid_state", f"وضعیت «{state}» تعریف نشده است.",
                            f"Unknown state {state!r}; use one of {', '.join(INCIDENT_STATES)}.")
    if state not in ALLOWED[inc.state]:
        raise IncidentError("invalid_transition",
                            f"رخداد در وضعیت «{STATE_FA[inc.state]}» است و نمی‌تواند به «{STATE_FA[state]}» برود.",
                            f"Cannot move an incident from {inc.state} to {state}.", 409)
    now = now or utcnow()
    before = inc.state
    inc.state = state
    inc.updated_at = now
    if state == "resolved":
        inc.resolved_at = now
    inc.notes.append(IncidentNote(at=now, author=(author or "unknown")[:100], from_state=before, to_state=state,
                                  text_fa=(note_fa or "").strip() or f"وضعیت به «{STATE_FA[state]}» تغییر کرد.",
                                  text_en=(note_en or "").strip() or f"State changed to {state}."))
    session.flush()
    return inc


def resolve(session: Session, inc: Incident, *, note_fa: str, note_en: str, author: str = "monitoring",
            now: datetime | None = None) -> Incident:
    """Resolve ``inc`` whatever its current (open) state."""
    now = now or utcnow()
    before = inc.state
    inc.state, inc.updated_at, inc.resolved_at = "resolved", now, now
    inc.notes.append(IncidentNote(at=now, author=author, from_state=before, to_state="resolved",
                                  text_fa=note_fa, text_en=note_en))
    session.flush()
    return inc


def _when(t: datetime | None) -> dict[str, str | None]:
    d = jalali_iso_pair(t)
    d["jalali_fa"] = format_jalali(t) if t else None
    return d


def incident_dict(inc: Incident, *, notes: bool = True, public: bool = False) -> dict[str, Any]:
    """JSON view of an incident; times as ``{"iso", "jalali", "jalali_fa"}`` (Tehran time)."""
    d: dict[str, Any] = {
        "id": inc.id, "kind": inc.kind, "service_id": inc.service_id, "operator_id": inc.operator_id,
        "province": inc.province, "severity": inc.severity, "state": inc.state, "state_fa": STATE_FA[inc.state],
        "title_fa": inc.title_fa, "title_en": inc.title_en, "opened_at": _when(inc.opened_at),
        "updated_at": _when(inc.updated_at), "resolved_at": _when(inc.resolved_at),
    }
    if not public:
        d["auto"] = inc.auto
        d["key"] = inc.key
        d["evidence"] = inc.evidence
    if notes:
        d["notes"] = [
            {"at": _when(n.at), "from_state": n.from_state, "to_state": n.to_state, "text_fa": n.text_fa,
             "text_en": n.text_en, **({} if public else {"id": n.id, "author": n.author})}
            for n in inc.notes
        ]
    return d

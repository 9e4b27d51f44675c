"""One-window licensing: the licence lifecycle as a state machine, every change audited.

Actions and the status changes they make::

    apply      (new)                   -> pending
    review     pending                 -> pending        (a reviewer's note)
    grant      pending                 -> active
    reject     pending                 -> rejected
    suspend    active                  -> suspended
    reinstate  suspended               -> active
    revoke     pending|active|suspended-> revoked
    renew      active|suspended|expired-> active|suspended|active  (new valid_until)
    expire     active|suspended        -> expired        (validity over; done by :func:`expire_due`)

Each call writes one :class:`~zistboom.registry.models.LicenceEvent` (actor, reason, optional
evidence) and bumps the registry version so gateways reroute within their refresh interval.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from zistboom.registry import models as m
from zistboom.registry.db import utcnow
from zistboom.registry.snapshot import bump_version
from zistboom.text.digits import to_persian_digits

TRANSITIONS: dict[str, dict[str, str]] = {
    "review": {"pending": "pending"},
    "grant": {"pending": "active"},
    "reject": {"pending": "rejected"},
    "suspend": {"active": "suspended"},
    "reinstate": {"suspended": "active"},
    "revoke": {"pending": "revoked", "active": "revoked", "suspended": "revoked"},
    "renew": {"active": "active", "suspended": "suspended", "expired": "active"},
    "expire": {"active": "expired", "suspended": "expired"},
}
ACTIONS = ("apply", *TRANSITIONS)


# Validity dates outside this range are refused (the admin API's timestamps use the same bounds):
# a licence for the year 9999 once came in through the dashboard's form and then broke every page
# that shows it (jdatetime cannot represent it in the Jalali calendar).
EARLIEST_DATE = datetime(2000, 1, 1, tzinfo=timezone.utc)
LATEST_DATE = datetime(2200, 1, 1, tzinfo=timezone.utc)


def _check_date_range(*dates: datetime) -> None:
    if any(not EARLIEST_DATE <= d < LATEST_DATE for d in dates):
        raise LicensingError("invalid_validity",
                             "تاریخ‌های اعتبار باید از ۱۳۷۸/۱۰/۱۱ تا پیش از ۱۵۷۸/۱۰/۱۱ باشند (۲۰۰۰ تا ۲۲۰۰ میلادی).",
                             "Validity dates must be from 2000-01-01 up to (not including) 2200-01-01.")


class LicensingError(ValueError):
    """A licensing request that cannot be carried out.

    Attributes:
        code: machine-readable code (``not_found``, ``invalid_transition``, ``conflict`` (changed by
            a concurrent action: 409), ``invalid_scope``,
            ``invalid_validity``, ``unknown_province``, ``unknown_operator``...).
        message_fa / message_en: what a person should read.
        http_status: 404 for unknown objects, 409 for a transition not allowed from the current
            status, 422 for bad fields.
    """

    def __init__(self, code: str, message_fa: str, message_en: str, http_status: int = 422):
        super().__init__(message_en)
        self.code = code
        self.message_fa = message_fa
        self.message_en = message_en
        self.http_status = http_status


MAX_EVIDENCE_BYTES = 64 * 1024  # the audit trail keeps facts, not documents (attach those elsewhere)


def check_evidence(evidence: Any) -> None:
    """``evidence`` must be a JSON object of at most :data:`MAX_EVIDENCE_BYTES` (UTF-8, compact).

    Raises:
        LicensingError: ``invalid_evidence`` (422) or ``evidence_too_large`` (413).
    """
    if evidence is None:
        return
    try:
        encoded = json.dumps(evidence, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise LicensingError("invalid_evidence", "شواهد باید یک شیء JSON معتبر باشد.",
                             f"evidence must be a JSON object ({exc}).") from None
    if not isinstance(evidence, dict):
        raise LicensingError("invalid_evidence", "شواهد باید یک شیء JSON باشد.", "evidence must be a JSON object.")
    if len(encoded) > MAX_EVIDENCE_BYTES:
        raise LicensingError(
            "evidence_too_large",
            f"شواهد بزرگ‌تر از {to_persian_digits(MAX_EVIDENCE_BYTES // 1024)} کیلوبایت است؛ "
            "خلاصهٔ آن را بفرستید و پرونده‌ها را جای دیگر نگه دارید.",
            f"evidence is {len(encoded)} bytes of JSON; at most {MAX_EVIDENCE_BYTES} bytes are kept in the audit trail.",
            413)


def _record(session: Session, lic: m.Licence, action: str, before: str | None, actor: str,
            reason: str, evidence: dict[str, Any] | None, at: datetime | None = None) -> m.LicenceEvent:
    ev = m.LicenceEvent(
        licence_id=lic.id, action=action, from_status=before, to_status=lic.status,
        actor=actor, reason=reason or "", evidence=evidence, at=at or utcnow(),
    )
    session.add(ev)
    return ev


def apply(session: Session, *, operator_id: str, service_id: str | None = None, cluster_id: str | None = None,
          provinces: Iterable[str], valid_from: datetime, valid_until: datetime, sla_target: float = 0.995,
          actor: str, reason: str = "", now: datetime | None = None) -> m.Licence:
    """File a licence application (status ``pending``) and audit it.

    Args:
        provinces: ISO 3166-2 codes the operator asks to serve (at least one).
        valid_from / valid_until: aware datetimes; ``valid_until > valid_from`` and
            ``valid_until > now`` (a validity already over cannot be applied for); both within
            :data:`EARLIEST_DATE` .. :data:`LATEST_DATE` (2000-01-01 .. 2200-01-01, exclusive).
        sla_target: contracted availability as a fraction in (0, 1).
    Raises:
        LicensingError: unknown operator/service/cluster/province (404/422), not exactly one of
            service/cluster, bad validity window (incl. one already over) or SLA (422).
        now: the current time (default :func:`utcnow`; injectable for tests).
    """
    if (service_id is None) == (cluster_id is None):
        raise LicensingError("invalid_scope", "مجوز باید دقیقاً برای یک خدمت یا یک خوشه باشد.",
                             "A licence covers exactly one service or one cluster.")
    if session.get(m.Operator, operator_id) is None:
        raise LicensingError("unknown_operator", f"اپراتور «{operator_id}» پیدا نشد.",
                             f"Operator {operator_id!r} not found.", 404)
    if service_id is not None and session.get(m.Service, service_id) is None:
        raise LicensingError("unknown_service", f"خدمت «{service_id}» پیدا نشد.", f"Service {service_id!r} not found.", 404)
    if cluster_id is not None and session.get(m.Cluster, cluster_id) is None:
        raise LicensingError("unknown_cluster", f"خوشهٔ «{cluster_id}» پیدا نشد.", f"Cluster {cluster_id!r} not found.", 404)
    codes = sorted(set(provinces))
    if not codes:
        raise LicensingError("no_province", "دست‌کم یک استان لازم است.", "At least one province is required.")
    known = set(session.scalars(select(m.Province.code).where(m.Province.code.in_(codes))))
    unknown = [c for c in codes if c not in known]
    if unknown:
        raise LicensingError("unknown_province", f"استان ناشناخته: {', '.join(unknown)}",
                             f"Unknown province code(s): {', '.join(unknown)}")
    if valid_from.tzinfo is None or valid_until.tzinfo is None or valid_until <= valid_from:
        raise LicensingError("invalid_validity", "تاریخ پایان اعتبار باید پس از تاریخ شروع باشد.",
                             "valid_until must be after valid_from (both with a time zone).")
    _check_date_range(valid_from, valid_until)
    if valid_until <= (now or utcnow()):
        raise LicensingError("invalid_validity", "تاریخ پایان اعتبار گذشته است؛ مجوزی که اعتبارش تمام شده را نمی‌توان درخواست کرد.",
                             "valid_until is in the past: a licence whose validity is already over cannot be applied for.")
    if not 0 < sla_target < 1:
        raise LicensingError("invalid_sla", "سطح توافق خدمت باید عددی بین ۰ و ۱ باشد.", "sla_target must be in (0, 1).")
    lic = m.Licence(operator_id=operator_id, service_id=service_id, cluster_id=cluster_id,
                    valid_from=valid_from, valid_until=valid_until, status="pending", sla_target=sla_target)
    lic.province_links = [m.LicenceProvince(province_code=c) for c in codes]
    session.add(lic)
    session.flush()
    _record(session, lic, "apply", None, actor, reason, None)
    bump_version(session)
    return lic


def transition(session: Session, licence_id: int, action: str, *, actor: str, reason: str = "",
               evidence: dict[str, Any] | None = None, valid_until: datetime | None = None,
               now: datetime | None = None) -> m.Licence:
    """Carry out ``action`` on a licence and audit it (see the module table).

    Args:
        action: one of ``review grant reject suspend reinstate revoke renew expire``.
        valid_until: required for ``renew`` (must be later than the current ``valid_until`` and
            than ``now``).
        now: the current time (default :func:`utcnow`; injectable for tests).
        evidence: a JSON object of facts behind the action (e.g. measured availability for an SLA
            sanction), at most :data:`MAX_EVIDENCE_BYTES` (64 KiB) encoded.
    Raises:
        LicensingError: unknown licence (404), action not allowed from the current status (409),
            ``grant`` of an application whose validity is already over (409 ``validity_over``:
            renew or re-apply), unknown action, bad renewal date or evidence (422), evidence over
            64 KiB (413).
    """
    check_evidence(evidence)
    lic = session.get(m.Licence, licence_id)
    if lic is None:
        raise LicensingError("not_found", f"مجوز {licence_id} پیدا نشد.", f"Licence {licence_id} not found.", 404)
    allowed = TRANSITIONS.get(action)
    if allowed is None:
        raise LicensingError("unknown_action", f"اقدام «{action}» تعریف نشده است.",
                             f"Unknown action {action!r}; use one of {', '.join(TRANSITIONS)}.")
    if lic.status not in allowed:
        raise LicensingError(
            "invalid_transition",
            f"اقدام «{action}» برای مجوزی با وضعیت «{lic.status}» مجاز نیست.",
            f"Cannot {action} a licence that is {lic.status}.", 409,
        )
    before = lic.status
    now = now or utcnow()
    if action == "reinstate" and lic.valid_until <= now:
        raise LicensingError(
            "validity_over",
            "دورهٔ اعتبار این مجوز تمام شده است؛ بازگرداندن آن ممکن نیست. نخست مجوز را تمدید کنید.",
            "The validity period of this licence is over; it cannot be reinstated. Renew it first.", 409)
    if action == "grant" and lic.valid_until <= now:
        raise LicensingError(
            "validity_over",
            "دورهٔ اعتبار این درخواست تمام شده است؛ نمی‌توان آن را اعطا کرد. درخواست را تمدید کنید یا درخواست تازه بدهید.",
            "The validity period of this application is over; it cannot be granted. Renew it or apply again.", 409)
    if action == "renew":
        if valid_until is None or valid_until.tzinfo is None or valid_until <= lic.valid_until:
            raise LicensingError("invalid_validity", "تاریخ تمدید باید پس از پایان اعتبار فعلی باشد.",
                                 "Renewal needs a valid_until later than the current one.")
        if valid_until <= now:
            raise LicensingError("invalid_validity", "تاریخ تمدید گذشته است؛ پایان اعتبار تازه باید در آینده باشد.",
                                 "Renewal needs a valid_until in the future.")
        _check_date_range(valid_until)
    values: dict[str, Any] = {"status": allowed[before], "updated_at": utcnow()}
    if action == "renew":
        values["valid_until"] = valid_until
    claim(session, lic, before, **values)
    _record(session, lic, action, before, actor, reason, evidence)
    bump_version(session)
    return lic


def claim(session: Session, lic: m.Licence, expected: str, /, **values: Any) -> None:
    """Write ``values`` to ``lic`` only if its status in the database is still ``expected``
    (compare-and-set), and hold the row until the transaction ends.

    Why: a request reads the status, checks it, then writes. Two actions at once (a grant and a
    reject from two officers) both passed the check, and with plain assignments both committed: a
    rejected application ended up active with two transitions from "pending" in its history. The
    guarded ``UPDATE`` lets exactly one win (PostgreSQL re-checks the WHERE after the other's row
    lock; SQLite serialises writers).

    Raises:
        LicensingError: ``conflict`` (409) when the status changed meanwhile.
    """
    done = session.execute(update(m.Licence).where(m.Licence.id == lic.id, m.Licence.status == expected)
                           .values(**values).execution_options(synchronize_session=False))
    if done.rowcount != 1:
        raise LicensingError(
            "conflict", "وضعیت این مجوز هم‌زمان با درخواست شما تغییر کرد؛ صفحه را تازه کنید و دوباره بکوشید.",
            f"The licence changed while you were acting on it (it is no longer {expected}); reload it and try again.",
            409)
    for key, value in values.items():
        set_committed_value(lic, key, value)


def expire_due(session: Session, now: datetime | None = None, actor: str = "system") -> list[int]:
    """Mark every active/suspended licence whose ``valid_until`` has passed as ``expired``.

    Returns the ids changed. (The gateway already refuses out-of-date licences by itself; this
    makes the status and the audit trail say so.)
    """
    now = now or utcnow()
    due = session.scalars(
        select(m.Licence).where(m.Licence.status.in_(("active", "suspended")), m.Licence.valid_until <= now)
    ).all()
    changed = []
    for lic in due:
        try:
            transition(session, lic.id, "expire", actor=actor, reason="validity period ended", now=now)
        except LicensingError as exc:  # changed meanwhile by someone else (e.g. revoked): theirs stands
            if exc.code not in ("conflict", "invalid_transition"):
                raise
            continue
        changed.append(lic.id)
    return changed

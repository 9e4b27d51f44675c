from datetime import timedelta

import pytest

from zistboom import licensing
from zistboom.licensing import LicensingError
from zistboom.registry import models as m
from zistboom.registry.db import session_scope, utcnow
from zistboom.registry.snapshot import current_version


def _apply(s, **kw):
    now = utcnow()
    args = dict(operator_id="gilan-pardaz", service_id="transport.traffic-fines", provinces=["IR-01", "IR-26"],
                valid_from=now - timedelta(days=1), valid_until=now + timedelta(days=30), actor="officer-1")
    args.update(kw)
    return licensing.apply(s, **args)


def test_full_lifecycle_is_audited_and_bumps_version(seeded_db_url, session_factory):
    with session_scope(session_factory) as s:
        v0 = current_version(s)
        lic = _apply(s, reason="درخواست")
        lid = lic.id
        for action in ("review", "grant", "suspend", "reinstate"):
            licensing.transition(s, lid, action, actor="officer-1", reason=f"{action} note")
        licensing.transition(s, lid, "renew", actor="officer-1", valid_until=lic.valid_until + timedelta(days=365))
        licensing.transition(s, lid, "revoke", actor="officer-2", reason="تخلف", evidence={"availability": 0.97})
        assert current_version(s) == v0 + 7
    with session_scope(session_factory) as s:
        lic = s.get(m.Licence, lid)
        assert lic.status == "revoked"
        assert [(e.action, e.from_status, e.to_status) for e in lic.events] == [
            ("apply", None, "pending"), ("review", "pending", "pending"), ("grant", "pending", "active"),
            ("suspend", "active", "suspended"), ("reinstate", "suspended", "active"), ("renew", "active", "active"),
            ("revoke", "active", "revoked"),
        ]
        assert lic.events[-1].evidence == {"availability": 0.97}
        assert lic.events[-1].actor == "officer-2"


@pytest.mark.parametrize("action", ["grant", "reinstate", "renew", "suspend"])
def test_transitions_not_allowed_from_revoked(seeded_db_url, session_factory, action):
    with session_scope(session_factory) as s:
        lid = _apply(s).id
        licensing.transition(s, lid, "revoke", actor="x")
    with session_scope(session_factory) as s, pytest.raises(LicensingError) as err:
        licensing.transition(s, lid, action, actor="x", valid_until=utcnow() + timedelta(days=900))
    assert err.value.http_status == 409 and err.value.message_fa


def test_bad_applications_are_refused_with_reasons(seeded_db_url, session_factory):
    now = utcnow()
    cases = [
        (dict(cluster_id="transport"), "invalid_scope"),
        (dict(operator_id="nobody"), "unknown_operator"),
        (dict(service_id="no.such"), "unknown_service"),
        (dict(provinces=["IR-99"]), "unknown_province"),
        (dict(provinces=[]), "no_province"),
        (dict(valid_until=now - timedelta(days=5)), "invalid_validity"),
        (dict(sla_target=1.5), "invalid_sla"),
    ]
    for kwargs, code in cases:
        with session_scope(session_factory) as s, pytest.raises(LicensingError) as err:
            _apply(s, **kwargs)
        assert err.value.code == code


def test_expire_due_marks_and_audits(seeded_db_url, session_factory):
    with session_scope(session_factory) as s:
        lid = _apply(s, valid_until=utcnow() + timedelta(seconds=1)).id
        licensing.transition(s, lid, "grant", actor="x")
    with session_scope(session_factory) as s:
        changed = licensing.expire_due(s, now=utcnow() + timedelta(seconds=5))
        assert lid in changed
    with session_scope(session_factory) as s:
        lic = s.get(m.Licence, lid)
        assert lic.status == "expired" and lic.events[-1].action == "expire"


def _refused_validity_over(session_factory, lid: int, action: str) -> None:
    """``action`` on licence ``lid`` is refused with 409 validity_over, telling to renew."""
    with session_scope(session_factory) as s, pytest.raises(LicensingError) as err:
        licensing.transition(s, lid, action, actor="x")
    assert err.value.code == "validity_over" and err.value.http_status == 409
    assert "renew" in err.value.message_en.lower() and "تمدید" in err.value.message_fa


def test_validity_in_the_past_is_refused(seeded_db_url, session_factory):
    """Security review: apply 2001→2002, grant (active), renew to 2003 all used to succeed."""
    from datetime import datetime, timezone

    y = lambda year: datetime(year, 1, 1, tzinfo=timezone.utc)  # noqa: E731
    with session_scope(session_factory) as s, pytest.raises(LicensingError) as err:
        _apply(s, valid_from=y(2001), valid_until=y(2002))
    assert err.value.code == "invalid_validity" and err.value.http_status == 422
    with session_scope(session_factory) as s:
        lid = _apply(s).id
        # the application waited too long: its validity is over before it is granted
        s.get(m.Licence, lid).valid_until = utcnow() - timedelta(seconds=1)
    _refused_validity_over(session_factory, lid, "grant")
    with session_scope(session_factory) as s:
        assert s.get(m.Licence, lid).status == "pending"
        # an expired licence cannot be renewed into the past either (even if later than its old end)
        lid2 = _apply(s).id
        licensing.transition(s, lid2, "grant", actor="x")
        lic = s.get(m.Licence, lid2)
        lic.valid_from, lic.valid_until = y(2001), y(2002)
        licensing.expire_due(s)
        assert lic.status == "expired"
    with session_scope(session_factory) as s, pytest.raises(LicensingError) as err:
        licensing.transition(s, lid2, "renew", actor="x", valid_until=y(2003))
    assert err.value.code == "invalid_validity"
    with session_scope(session_factory) as s:
        licensing.transition(s, lid2, "renew", actor="x", valid_until=utcnow() + timedelta(days=30))
        assert s.get(m.Licence, lid2).status == "active"


def test_evidence_size_is_capped(seeded_db_url, session_factory):
    with session_scope(session_factory) as s:
        lid = _apply(s).id
    with session_scope(session_factory) as s, pytest.raises(LicensingError) as err:
        licensing.transition(s, lid, "review", actor="x", evidence={"blob": "x" * (64 * 1024)})
    assert err.value.code == "evidence_too_large" and err.value.http_status == 413
    with session_scope(session_factory) as s, pytest.raises(LicensingError) as err:
        licensing.transition(s, lid, "review", actor="x", evidence=["not", "an", "object"])
    assert err.value.code == "invalid_evidence"
    with session_scope(session_factory) as s:
        licensing.transition(s, lid, "review", actor="x", evidence={"ok": "x" * 1000})


def test_suspended_licence_past_its_validity_cannot_be_reinstated(seeded_db_url, session_factory):
    """A licence suspended while valid whose period then ended must be renewed, not reinstated
    (reinstating would make an out-of-date licence active until the next expiry sweep)."""
    with session_scope(session_factory) as s:
        lid = _apply(s).id
        licensing.transition(s, lid, "grant", actor="x")
        licensing.transition(s, lid, "suspend", actor="x", reason="SLA")
        s.get(m.Licence, lid).valid_until = utcnow() - timedelta(seconds=1)
    _refused_validity_over(session_factory, lid, "reinstate")
    with session_scope(session_factory) as s:
        assert s.get(m.Licence, lid).status == "suspended"
        licensing.transition(s, lid, "renew", actor="x", valid_until=utcnow() + timedelta(days=30))
        assert licensing.transition(s, lid, "reinstate", actor="x").status == "active"


def test_two_actions_at_once_only_one_wins(seeded_db_url, session_factory):
    """Two officers act on one pending application at the same moment (grant and reject): both read
    "pending"; the second write must fail with 409 ``conflict`` rather than turn a granted licence
    into a rejected one (or the reverse) with two transitions from "pending" in its history."""
    with session_scope(session_factory) as s:
        lid = _apply(s).id
    a, b = session_factory(), session_factory()
    try:
        seen_a, seen_b = a.get(m.Licence, lid), b.get(m.Licence, lid)  # held: the sessions keep weak references
        assert seen_a.status == seen_b.status == "pending"
        licensing.transition(a, lid, "grant", actor="alice")
        a.commit()
        with pytest.raises(LicensingError) as err:
            licensing.transition(b, lid, "reject", actor="bob")
        assert err.value.code == "conflict" and err.value.http_status == 409 and err.value.message_fa
        b.rollback()
    finally:
        a.close()
        b.close()
    with session_scope(session_factory) as s:
        lic = s.get(m.Licence, lid)
        assert lic.status == "active"
        assert [(e.action, e.from_status, e.to_status, e.actor) for e in lic.events] == [
            ("apply", None, "pending", "officer-1"), ("grant", "pending", "active", "alice")]


def test_validity_dates_beyond_2000_2200_are_refused(seeded_db_url, session_factory):
    from datetime import datetime, timezone

    far = datetime(9999, 12, 31, tzinfo=timezone.utc)
    with session_scope(session_factory) as s:
        with pytest.raises(LicensingError) as err:
            _apply(s, valid_until=far)
        assert err.value.code == "invalid_validity" and "2200" in err.value.message_en
        with pytest.raises(LicensingError):
            _apply(s, valid_from=datetime(622, 3, 20, tzinfo=timezone.utc))
        lid = _apply(s).id
        licensing.transition(s, lid, "grant", actor="x")
        with pytest.raises(LicensingError) as err:
            licensing.transition(s, lid, "renew", actor="x", valid_until=far)
        assert err.value.code == "invalid_validity"

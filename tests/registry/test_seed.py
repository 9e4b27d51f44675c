from datetime import datetime, timezone

from sqlalchemy import func, select

from zistboom.registry import models as m
from zistboom.registry.borders import border_pairs, neighbours
from zistboom.registry.db import session_scope
from zistboom.registry.snapshot import load_snapshot
from zistboom.registry.validation import is_valid_company_national_id


def test_demo_seed_meets_the_brief(seeded_db_url, session_factory):
    with session_scope(session_factory) as s:
        assert s.scalar(select(func.count()).select_from(m.Province)) == 31
        assert s.scalar(select(func.count()).select_from(m.Service)) == 42
        assert s.scalar(select(func.count()).select_from(m.Cluster)) == 10
        ops = s.scalars(select(m.Operator)).all()
        assert len(ops) >= 12
        homes = {o.home_province for o in ops}
        assert len(homes) >= 8 and "IR-01" in homes  # Gilan among them
        assert all(is_valid_company_national_id(o.national_id) for o in ops)
        # every licence was applied for and granted: two audited events each
        for lic in s.scalars(select(m.Licence)):
            assert [e.action for e in lic.events] == ["apply", "grant"]
        # keys are stored hashed, never plain
        for k in s.scalars(select(m.ApiKey)):
            assert len(k.key_hash) == 64 and not k.key_hash.startswith("zb_")
        snap = load_snapshot(s)
    now = datetime.now(timezone.utc)
    for sid in snap.services:
        for prov in snap.provinces:
            ops = {lic.operator_id for lic in snap.licences if lic.routable(sid, prov, now)}
            assert len(ops) >= 2, (sid, prov)
            assert {snap.operators[o].home_province for o in ops} - {prov}, (sid, prov)


def test_borders_are_symmetric_and_cover_every_province():
    pairs = border_pairs()
    assert all(a < b for a, b in pairs)
    codes = {f"IR-{i:02d}" for i in range(31)}
    assert {c for p in pairs for c in p} == codes
    assert "IR-26" in neighbours("IR-01") and "IR-01" in neighbours("IR-26")  # Gilan–Qazvin
    assert "IR-23" not in neighbours("IR-01")  # Gilan does not touch Tehran


def test_company_national_id_check_digit():
    assert is_valid_company_national_id("10380284790")
    assert is_valid_company_national_id("۱۰۳۸۰۲۸۴۷۹۰")  # Persian digits accepted
    for bad in ("10380284791", "1038028479", "abcdefghijk", "", "10300000000"):
        assert not is_valid_company_national_id(bad)


def test_snapshot_skips_malformed_stored_contract_entries():
    from zistboom.registry.snapshot import _operations

    ops = _operations({"paths": {"/y": "junk", "/x": {"get": "bad", "post": {"operationId": "p"}}, 7: {}}})
    assert [(o.method, o.path, o.idempotent) for o in ops] == [("POST", "/x", False)]
    assert _operations(None) == () and _operations({"paths": []}) == ()

"""Every tamper kind is found by ``verify``: changed, inserted, deleted, reordered records, a cut-off
tail (given an older signed tree head), forged tree heads and wrong cached nodes; plus a hypothesis
property: any single changed byte of any stored record fails verification."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from logutil import fill_log, first_head_after, sql

from zistboom.exchange_log import merkle
from zistboom.exchange_log.keys import key_path, load_public_from_key_file
from zistboom.exchange_log.store import ExchangeLogStore

N = 700  # > 512 so cached nodes (level >= 8) exist; several tree heads (every 100 records)


@pytest.fixture
def log(log_db_url, settings):
    sink, exs = fill_log(log_db_url, settings.var_dir, N, sth_every_records=100, batch_max=100)
    pub = load_public_from_key_file(key_path(settings.var_dir))
    store = ExchangeLogStore(log_db_url, public_key=pub)
    rep = store.verify(strict=True)
    assert rep.ok, rep.problems
    assert rep.records == N and rep.tree_heads >= 5 and rep.latest_signed_size == N
    yield store, exs
    store.engine.dispose()


def codes(rep):
    return {p["code"] for p in rep.problems}


def test_clean_log_verifies(log):
    store, exs = log
    rep = store.verify()
    assert rep.ok and rep.unsigned_tail == 0
    assert rep.root_hash == store.latest_sth().root_hash.hex()


def test_changed_record(log):
    store, _ = log
    rec = sql(store_url(store), "SELECT record FROM exchange_log_records WHERE seq = 123")[0][0]
    bad = bytes(rec).replace(b'"status":200', b'"status":201')
    assert bad != rec
    sql(store_url(store), ("UPDATE exchange_log_records SET record = :r WHERE seq = 123", {"r": bad}))
    rep = store.verify()
    assert not rep.ok and {"record_changed", "root_mismatch"} <= codes(rep)
    assert any(p.get("seq") == 123 for p in rep.problems)


def test_changed_record_with_recomputed_leaf_hash(log):
    store, _ = log
    rec = sql(store_url(store), "SELECT record FROM exchange_log_records WHERE seq = 5")[0][0]
    bad = bytes(rec).replace(b'"status":200', b'"status":500')
    sql(store_url(store), ("UPDATE exchange_log_records SET record = :r, leaf_hash = :h WHERE seq = 5",
                           {"r": bad, "h": merkle.leaf_hash(bad)}))
    rep = store.verify()
    assert not rep.ok and "root_mismatch" in codes(rep) and "record_changed" not in codes(rep)


def test_changed_indexed_column_only(log):
    store, exs = log
    sql(store_url(store), "UPDATE exchange_log_records SET client_id = 'client-evil' WHERE seq = 40")
    rep = store.verify()
    assert not rep.ok and codes(rep) == {"column_mismatch"}
    # The API trusts the signed record, not the column: the forged owner gets nothing.
    assert store.receipt_for_client(exs[40].request_id, "client-evil") is None


def test_inserted_record_in_the_middle(log):
    store, exs = log
    url = store_url(store)
    fake = orjson.loads(sql(url, "SELECT record FROM exchange_log_records WHERE seq = 300")[0][0])
    fake["request_id"] = "forged-1"
    data = orjson.dumps(fake, option=orjson.OPT_SORT_KEYS)
    sql(url, "UPDATE exchange_log_records SET seq = seq + 1000000 WHERE seq >= 300",
        "UPDATE exchange_log_records SET seq = seq - 999999 WHERE seq >= 1000000",
        ("INSERT INTO exchange_log_records (seq, request_id, client_id, time_us, kind, record, leaf_hash) "
         "VALUES (300, 'forged-1', :c, :t, 'exchange', :r, :h)",
         {"c": fake["client_id"], "t": 0, "r": data, "h": merkle.leaf_hash(data)}))
    rep = store.verify()
    assert not rep.ok and "root_mismatch" in codes(rep)
    assert min(p["tree_size"] for p in rep.problems if p["code"] == "root_mismatch") == first_head_after(store, 300)


def test_appended_record_after_last_tree_head(log):
    store, _ = log
    url = store_url(store)
    rec = sql(url, "SELECT record FROM exchange_log_records WHERE seq = 0")[0][0]
    obj = orjson.loads(rec)
    obj["request_id"] = "forged-tail"
    data = orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    sql(url, ("INSERT INTO exchange_log_records (seq, request_id, client_id, time_us, kind, record, leaf_hash) "
              "VALUES (:s, 'forged-tail', :c, :t, 'exchange', :r, :h)",
              {"s": N, "c": obj["client_id"], "t": 1774008000000000, "r": data, "h": merkle.leaf_hash(data)}))
    assert store.verify().unsigned_tail == 1
    rep = store.verify(strict=True)
    assert not rep.ok and "unsigned_tail" in codes(rep)


def test_deleted_record(log):
    store, _ = log
    sql(store_url(store), "DELETE FROM exchange_log_records WHERE seq = 250")
    rep = store.verify()
    assert not rep.ok and {"seq_gap", "root_mismatch", "truncated"} <= codes(rep)


def test_deleted_record_renumbered(log):
    store, _ = log
    url = store_url(store)
    sql(url, "DELETE FROM exchange_log_records WHERE seq = 250",
        "UPDATE exchange_log_records SET seq = seq + 1000000 WHERE seq > 250",
        "UPDATE exchange_log_records SET seq = seq - 1000001 WHERE seq >= 1000000")
    rep = store.verify()
    assert not rep.ok and "root_mismatch" in codes(rep) and "seq_gap" not in codes(rep)


def test_reordered_records(log):
    store, _ = log
    url = store_url(store)
    sql(url, "UPDATE exchange_log_records SET seq = -1 WHERE seq = 10",
        "UPDATE exchange_log_records SET seq = 10 WHERE seq = 11",
        "UPDATE exchange_log_records SET seq = 11 WHERE seq = -1")
    rep = store.verify()
    assert not rep.ok and "root_mismatch" in codes(rep)
    assert min(p["tree_size"] for p in rep.problems if p["code"] == "root_mismatch") == first_head_after(store, 10)


def test_cut_off_tail_is_found_with_an_older_tree_head(log):
    store, _ = log
    older = store.sth_at(first_head_after(store, 500))
    assert older.tree_size > 500
    url = store_url(store)
    # The attacker removes the last 200 records AND every tree head that covered them.
    sql(url, "DELETE FROM exchange_log_records WHERE seq >= 500",
        "DELETE FROM exchange_log_tree_heads WHERE tree_size > 500",
        "DELETE FROM exchange_log_nodes WHERE (idx + 1) * (1 << level) > 500")
    assert store.verify().ok  # internally consistent…
    rep = store.verify([older])  # …but not with the head a client kept
    assert not rep.ok and codes(rep) == {"truncated"}


def test_cut_and_regrown_log_fails_older_head(log):
    """A log cut back and regrown to the same size cannot match an older signed head."""
    store, _ = log
    older = store.sth_at(N)
    url = store_url(store)
    rows = sql(url, "SELECT seq, record FROM exchange_log_records WHERE seq >= 650 ORDER BY seq")
    stmts = []
    for seq, rec in rows:
        obj = orjson.loads(rec)
        obj["status"] = 404
        data = orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
        stmts.append(("UPDATE exchange_log_records SET record = :r, leaf_hash = :h WHERE seq = :s",
                      {"r": data, "h": merkle.leaf_hash(data), "s": seq}))
    sql(url, *stmts, "DELETE FROM exchange_log_tree_heads WHERE tree_size >= 650")
    rep = store.verify([older])
    assert not rep.ok and "root_mismatch" in codes(rep)


def test_forged_tree_head(log):
    store, _ = log
    url = store_url(store)
    size = first_head_after(store, 300)
    sql(url, ("UPDATE exchange_log_tree_heads SET root_hash = :h WHERE tree_size = :s", {"h": b"\x11" * 32, "s": size}))
    rep = store.verify()
    assert not rep.ok and {"bad_signature", "root_mismatch"} <= codes(rep)


def test_tree_head_signed_by_another_key(log, tmp_path):
    from zistboom.exchange_log.keys import load_or_create_signer

    store, _ = log
    other = load_or_create_signer(tmp_path / "other.key")
    head = store.sth_at(first_head_after(store, 300))
    forged = other.sign(head.tree_size, head.timestamp_ms, head.root_hash)
    sql(store_url(store), ("UPDATE exchange_log_tree_heads SET signature = :s, key_id = :k WHERE tree_size = :t",
                           {"s": forged.signature, "k": forged.key_id, "t": head.tree_size}))
    rep = store.verify()
    assert not rep.ok and codes(rep) == {"bad_signature"}


def test_wrong_cached_node(log):
    store, _ = log
    sql(store_url(store), ("UPDATE exchange_log_nodes SET hash = :h WHERE level = 8 AND idx = 1", {"h": b"\0" * 32}))
    rep = store.verify()
    assert not rep.ok and codes(rep) == {"node_mismatch"}


def store_url(store: ExchangeLogStore) -> str:
    return store.engine.url.render_as_string(hide_password=False)


# ------------------------------------------------------------------------------ property test

@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_single_byte_change_of_any_record_fails(log, data):
    store, _ = log
    url = store_url(store)
    seq = data.draw(st.integers(0, N - 1), label="seq")
    rec = bytes(sql(url, ("SELECT record FROM exchange_log_records WHERE seq = :s", {"s": seq}))[0][0])
    pos = data.draw(st.integers(0, len(rec) - 1), label="pos")
    new = data.draw(st.integers(0, 255).filter(lambda b: b != rec[pos]), label="byte")
    bad = rec[:pos] + bytes([new]) + rec[pos + 1:]
    sql(url, ("UPDATE exchange_log_records SET record = :r WHERE seq = :s", {"r": bad, "s": seq}))
    try:
        rep = store.verify(check_columns=False)  # the hash alone must catch it
        assert not rep.ok
        assert any(p.get("seq") == seq for p in rep.problems)
    finally:
        sql(url, ("UPDATE exchange_log_records SET record = :r WHERE seq = :s", {"r": rec, "s": seq}))


def test_cli_verify_sth_and_consistency(log, settings, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    store, _ = log
    url = store_url(store)
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "ZISTBOOM_VAR_DIR": str(settings.var_dir), "PYTHONPATH": str(repo / "src")}

    def run(*args):
        return subprocess.run([sys.executable, "-m", "zistboom", "log", *args, *(
            ["--database-url", url] if args[0] in ("verify", "sth", "consistency") else [])],
            env=env, capture_output=True, text=True, timeout=120)

    r = run("verify", "--strict")
    assert r.returncode == 0 and r.stdout.startswith("OK"), r.stdout + r.stderr
    old = tmp_path / "old.json"
    old.write_bytes(orjson.dumps(store.sth_at(first_head_after(store, 200)).to_json()))
    r = run("sth", "-o", str(tmp_path / "new.json"))
    assert r.returncode == 0, r.stderr
    r = run("consistency", str(old), str(tmp_path / "new.json"))
    assert r.returncode == 0 and r.stdout.startswith("OK"), r.stdout + r.stderr
    sql(url, "DELETE FROM exchange_log_records WHERE seq >= 600", "DELETE FROM exchange_log_tree_heads WHERE tree_size > 600")
    r = run("verify", "--sth", str(tmp_path / "new.json"))
    assert r.returncode == 1 and "truncated" in r.stdout, r.stdout
    r = run("consistency", str(old), str(tmp_path / "new.json"))
    assert r.returncode == 1 and "NOT consistent" in r.stderr

"""Smaller parts: key file (0600, reused, exportable), canonical records, spill file framing and
torn-tail recovery, and that migration 0002 creates exactly the models' tables."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest

from zistboom.exchange_log import merkle
from zistboom.exchange_log.keys import load_or_create_signer, load_public_key
from zistboom.exchange_log.record import encode_exchange, encode_gap, iso_to_us, time_fields
from zistboom.exchange_log.spill import SpillFile

REPO = Path(__file__).resolve().parents[2]


def test_key_made_once_with_0600(tmp_path):
    p = tmp_path / "var" / "exchange-log" / "ed25519.key"
    s1 = load_or_create_signer(p)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    s2 = load_or_create_signer(p)
    assert s1.key_id == s2.key_id
    assert load_public_key(s1.public_pem()).public_bytes_raw() == s1.public_raw
    assert load_public_key(s1.public_raw.hex()).public_bytes_raw() == s1.public_raw
    sth = s1.sign(5, 1_700_000_000_000, b"\1" * 32)
    sth.verify(s2.public_key)


def test_cli_public_key_export(tmp_path):
    env = {**os.environ, "ZISTBOOM_VAR_DIR": str(tmp_path), "PYTHONPATH": str(REPO / "src")}
    r = subprocess.run([sys.executable, "-m", "zistboom", "log", "public-key", "--raw"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.strip()) == 64
    assert stat.S_IMODE(os.stat(tmp_path / "exchange-log" / "ed25519.key").st_mode) == 0o600


def test_record_is_canonical_and_has_no_query(exchange_factory):
    ex = exchange_factory(7, body=True)
    ex.path = "/v1/tax/assessments/7?national_id=0012345678"
    enc = encode_exchange(ex)
    obj = orjson.loads(enc.record)
    assert obj["path"] == "/v1/tax/assessments/7" and b"0012345678" not in enc.record
    assert orjson.dumps(obj, option=orjson.OPT_SORT_KEYS) == enc.record
    assert enc.leaf_hash == merkle.leaf_hash(enc.record)
    assert obj["retries"] == 1 and obj["failovers"] == 1 and len(obj["attempts"]) == 2
    assert obj["request_body_sha256"] and obj["response_body_sha256"]
    assert all(not isinstance(v, float) for v in obj.values())
    assert iso_to_us(obj["time"]) == enc.time_us
    with pytest.raises(ValueError):
        time_fields(datetime(2026, 1, 1))


def test_time_fields_convert_to_utc():
    tehran = timezone(timedelta(hours=3, minutes=30))
    iso, us = time_fields(datetime(2026, 3, 20, 15, 30, 0, 42, tzinfo=tehran))
    assert iso == "2026-03-20T12:00:00.000042Z" and iso_to_us(iso) == us


def test_spill_roundtrip_and_torn_tail(tmp_path, exchange_factory):
    path = tmp_path / "spill.bin"
    sp = SpillFile(path, 10**7)
    items = [encode_exchange(exchange_factory(i, body=(i % 2 == 0))) for i in range(10)]
    assert sp.append(items) == 10
    sp.close()
    with open(path, "ab") as f:  # a crash in the middle of the next frame
        f.write(SpillFile.frame(items[0])[:17])
    sp = SpillFile(path, 10**7)
    assert sp.pending_records == 10 and path.stat().st_size == sp.size
    frames, off = sp.read(4)
    assert [f[0] for f in frames] == [it.record for it in items[:4]]
    assert frames[0][1] == items[0].request_body and frames[1][1] is None
    sp.consume(off, 4)
    sp.close()
    sp = SpillFile(path, 10**7)  # the read offset survives a restart
    frames, off = sp.read(100)
    assert [f[0] for f in frames] == [it.record for it in items[4:]]
    sp.consume(off, len(frames))
    assert sp.size == 0 and not sp.pending and path.stat().st_size == 0
    sp.close()


def test_spill_respects_max_bytes(tmp_path, exchange_factory):
    items = [encode_exchange(exchange_factory(i)) for i in range(10)]
    one = len(SpillFile.frame(items[0]))
    sp = SpillFile(tmp_path / "s.bin", one * 3 + 10)
    assert sp.append(items) == 3
    assert not sp.room_for(one)
    sp.close()


def test_gap_record_shape():
    t = datetime(2026, 3, 20, tzinfo=timezone.utc)
    enc = encode_gap(12, t, t + timedelta(seconds=1), {"spill_full": 12}, t + timedelta(seconds=2))
    obj = orjson.loads(enc.record)
    assert obj["kind"] == "gap" and obj["dropped"] == 12 and obj["client_id"] is None


def test_migration_matches_models(log_db_url):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from zistboom.exchange_log.models import TABLES
    from zistboom.registry.db import Base, make_engine

    names = {t.name for t in TABLES}
    eng = make_engine(log_db_url)
    with eng.connect() as c:
        ctx = MigrationContext.configure(c, opts={"compare_type": True,
                                                  "include_name": lambda n, t, p: t != "table" or n in names})
        diff = [d for d in compare_metadata(ctx, Base.metadata)
                if any(getattr(x, "name", None) in names or getattr(getattr(x, "table", None), "name", None) in names
                       for x in (d if isinstance(d, tuple) else d[0])[1:2])]
    eng.dispose()
    assert diff == []


# ------------------------------------------------------------------------------ digest fast path

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_NAMES = st.sampled_from([b"content-type", b"Content-Type", b"X-Request-Id", b"x-request-id", b"idempotency-key",
                          b"IDEMPOTENCY-KEY", b"content-encoding", b"server", b"x-api-key", b"content-length",
                          b"x-request-ix"])
_VALUES = st.binary(max_size=12) | st.sampled_from([b" application/json ", b"\xa0x\xa0", b"a\x85", b"\tb\x0b"])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(_NAMES, _VALUES), max_size=8))
def test_header_lines_fast_path_equals_reference(headers):
    """The gateway's fast header-lines encoding gives exactly the reference canonical bytes, for
    any mix of names (any case), values with non-ASCII / Unicode-whitespace bytes, and repeats."""
    from zistboom.exchange_log.digest import _header_lines, _header_lines_reference

    assert _header_lines(headers) == _header_lines_reference(headers)
    as_str = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in headers]
    assert _header_lines(as_str) == _header_lines_reference(as_str)


def test_digests_are_sha256_of_the_documented_canonical_form():
    import hashlib

    from zistboom.exchange_log.digest import request_digest, response_digest

    hs = [(b"Content-Type", b" application/json "), (b"x-request-id", b"r-1"), ("content-encoding", "gzip"),
          (b"x-api-key", b"secret")]
    lines = b"content-encoding:gzip\ncontent-type:application/json\nx-request-id:r-1\n"
    assert request_digest("post", "/a/ب", hs, b"{}") == hashlib.sha256(
        b"REQ\nPOST\n/a/" + "ب".encode() + b"\n" + lines + b"\n{}").hexdigest()
    assert response_digest(201, hs, b"ok") == hashlib.sha256(b"RES\n201\n" + lines + b"\nok").hexdigest()


@settings(max_examples=300, deadline=None)
@given(st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(timezone.utc)))
def test_iso_from_us_matches_time_fields(t):
    from zistboom.exchange_log.record import iso_from_us

    iso, us = time_fields(t)
    assert iso_from_us(us) == iso
    assert iso_to_us(iso) == us


def test_packed_exchange_encodes_like_the_exchange(exchange_factory):
    from zistboom.exchange_log.record import encode_packed, pack_exchange

    for i in range(6):
        ex = exchange_factory(i, body=(i % 2 == 0))
        assert encode_packed(pack_exchange(ex)) == encode_exchange(ex)


def test_on_packed_queues_up_to_room_and_counts_the_rest(tmp_path, exchange_factory):
    from types import SimpleNamespace

    from zistboom.exchange_log.record import pack_exchange
    from zistboom.exchange_log.sink import make_sink
    from zistboom.registry.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'z.db'}"
    upgrade(url)
    sink = make_sink(url, SimpleNamespace(var_dir=tmp_path / "var"), queue_max=5, mode="thread")
    packed = [pack_exchange(exchange_factory(i)) for i in range(8)]
    sink.on_packed(packed[:3])
    sink.on_packed(packed[3:])
    assert list(sink._q) == packed[:5]
    assert sink.counters["dropped"] == 3
    assert sink._gap_n == 3 and sink._gap_reasons == {"queue_full": 3}
    sink.store.engine.dispose()


def test_deferred_digests_hash_in_the_writer_to_the_same_record():
    """The gateway sets only ``digest_input``; shipped through ``marshal`` (as to the writer process)
    with ``defer_digests``, the writer's record is the same as with digests computed in place."""
    import copy
    import marshal

    from zistboom.exchange_log.digest import request_digest, response_digest
    from zistboom.exchange_log.record import encode_packed, pack_exchange
    from zistboom.exchange_log.writer_proc import _hashed
    from zistboom.gateway.events import Attempt, Exchange

    req_h = [(b"content-type", b"application/json"), (b"x-request-id", b"r-9"), (b"x-api-key", b"k")]
    resp_h = [(b"Content-Type", b"application/json"), (b"content-length", b"2")]
    ex = Exchange("r-9", datetime(2026, 11, 30, 1, 2, 3, 456789, tzinfo=timezone.utc), "c1", "fines", "GET",
                  "op-a", "THR", "POST", "/x", 200, 1.25, [Attempt("op-a", "ok", 200, 1.0)],
                  digest_input=("POST", "/x", req_h, b"{}", 200, resp_h, b"ok"))
    eager = copy.copy(ex)
    assert eager.digests() == (request_digest("POST", "/x", req_h, b"{}"), response_digest(200, resp_h, b"ok"))
    assert eager.digest_input is None and eager.request_digest  # computed once, then kept
    deferred = pack_exchange(ex, defer_digests=True)
    assert deferred[13] is None and deferred[17] is not None and ex.request_digest == ""  # nothing hashed here
    shipped = marshal.loads(marshal.dumps(deferred))
    assert encode_packed(shipped) == encode_packed(pack_exchange(eager)) == encode_exchange(eager)
    # the feeder's fallback when marshal refuses the input: hash in the gateway instead
    assert _hashed(deferred) == pack_exchange(eager)
    # large bodies are hashed at once rather than shipped to the writer
    from zistboom.exchange_log.record import DEFER_BODY_MAX

    big = copy.copy(ex)
    big.digest_input = ("POST", "/x", req_h, b"a" * (DEFER_BODY_MAX // 2), 200, resp_h, b"b" * (DEFER_BODY_MAX // 2 + 1))
    t = pack_exchange(big, defer_digests=True)
    assert t[13] == request_digest("POST", "/x", req_h, b"a" * (DEFER_BODY_MAX // 2)) and t[17] is None


def test_gateway_side_falls_back_to_hashing_when_marshal_refuses_the_digest_input():
    import marshal

    from zistboom.exchange_log.record import pack_exchange
    from zistboom.exchange_log.writer_proc import _marshal_packed
    from zistboom.gateway.events import Exchange

    class OddStr(str):  # marshal refuses str subclasses (bytes-like objects it takes)
        pass

    ex = Exchange("r-odd", datetime(2026, 11, 30, tzinfo=timezone.utc), None, None, None, None, None, "GET", "/", 200,
                  0.5, digest_input=("GET", "/", [(b"x-request-id", OddStr("r-odd"))], b"", 200, [], b""))
    t = marshal.loads(_marshal_packed(pack_exchange(ex, defer_digests=True)))
    assert t[13] is not None and t[17] is None  # hashed in the gateway instead
    assert encode_packed_eq(t, ex)
    plain = Exchange("r-ok", ex.time, None, None, None, None, None, "GET", "/", 200, 0.5,
                     digest_input=("GET", "/", [(b"x-request-id", b"r-ok")], b"", 200, [], b""))
    t2 = marshal.loads(_marshal_packed(pack_exchange(plain, defer_digests=True)))
    assert t2[13] is None and t2[17] is not None  # the usual case: deferred to the writer


def encode_packed_eq(t: tuple, ex) -> bool:
    from zistboom.exchange_log.record import encode_packed, pack_exchange

    return encode_packed(t) == encode_packed(pack_exchange(ex))


def test_widen_pipe_grows_the_kernel_buffer_best_effort():
    import fcntl
    import os

    from zistboom.exchange_log.writer_proc import _widen_pipe

    r, w = os.pipe()
    try:
        before = fcntl.fcntl(w, 1032)  # F_GETPIPE_SZ
        _widen_pipe(w, 1 << 20)
        after = fcntl.fcntl(w, 1032)
        cap = int(open("/proc/sys/fs/pipe-max-size").read())
        assert after == (1 << 20 if os.geteuid() == 0 else max(before, min(1 << 20, cap)))
        _widen_pipe(-1)  # a bad descriptor is ignored, never raised
    finally:
        os.close(r)
        os.close(w)


def test_on_packed_takes_marshal_bytes_like_tuples(tmp_path, exchange_factory):
    """The writer process queues the marshalled records it receives; they are stored exactly as the
    tuples would be, and the ones over the queue's room are counted with their own times."""
    import marshal
    from types import SimpleNamespace

    from zistboom.exchange_log.record import encode_packed, pack_exchange
    from zistboom.exchange_log.sink import make_sink
    from zistboom.exchange_log.store import ExchangeLogStore
    from zistboom.registry.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'z.db'}"
    upgrade(url)
    exs = [exchange_factory(i) for i in range(8)]
    sink = make_sink(url, SimpleNamespace(var_dir=tmp_path / "var"), queue_max=5, mode="thread")
    sink.on_packed([marshal.dumps(pack_exchange(ex)) for ex in exs])
    assert sink.counters["dropped"] == 3 and sink._gap_first == exs[5].time and sink._gap_last == exs[7].time
    sink.start()
    assert sink.wait_ready() and sink.flush(30)
    sink.close()
    store = ExchangeLogStore(url)
    try:
        for ex in exs[:5]:
            assert store.find(ex.request_id)["record"] == encode_packed(pack_exchange(ex)).record
    finally:
        store.engine.dispose()


def test_cli_unreadable_files_get_one_line_errors(tmp_path):
    """A missing --public-key file, a signed tree head that is not JSON, a damaged key file: exit 2
    with one line, not a traceback."""
    env = {**os.environ, "ZISTBOOM_VAR_DIR": str(tmp_path), "PYTHONPATH": str(REPO / "src"),
           "ZISTBOOM_DATABASE_URL": f"sqlite:///{tmp_path / 'none.db'}"}
    (tmp_path / "junk.json").write_text("not json")
    key = tmp_path / "exchange-log" / "ed25519.key"
    key.parent.mkdir(parents=True)
    key.write_text("-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n")
    for cmd in (["verify", "--public-key", str(tmp_path / "missing.pem")],
                ["consistency", str(tmp_path / "junk.json"), str(tmp_path / "junk.json")],
                ["public-key"]):
        r = subprocess.run([sys.executable, "-m", "zistboom", "log", *cmd], env=env, capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 2, (cmd, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr and r.stderr.startswith("error: "), (cmd, r.stderr)

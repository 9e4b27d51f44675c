"""The native record encoder (``_fastrecord.c``) gives the Python encoder's bytes, or hands over.

``record.encode_packed_py`` defines the record bytes. For any packed exchange the native encoder
must return exactly the same ``Encoded`` or ``None`` (then the Python encoder runs); it must never
raise, and never accept what the Python encoder rejects. Generated exchanges include everything
its fast path declines: kept bodies, non-ASCII and str headers, huge ints, non-finite latencies,
times outside datetime's range, JSON control characters and lone surrogates. The native form
(``pack_native`` in the gateway, ``encode_native`` in the writer) must give the same records or
decline, never crash, whatever the exchange holds (including attempts read through Python code).
"""

from __future__ import annotations

import math
import os
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings, strategies as st

from zistboom.exchange_log import record
from zistboom.exchange_log.record import (Encoded, encode_packed, encode_packed_py, encode_queued, pack_exchange,
                                          queued_request_id, queued_time_us, to_us)
from zistboom.gateway.events import Attempt, Exchange

from logutil import make_exchange

if record._fastrecord is None:  # pragma: no cover - the build needs a C compiler and OpenSSL headers
    if os.environ.get("CI") == "true":
        pytest.fail("zistboom.exchange_log._fastrecord is not built (pip install -e . builds it)",
                    pytrace=False)
    pytest.skip("native record encoder not built", allow_module_level=True)

fast = record._fastrecord.encode_packed

text = st.text(st.characters(min_codepoint=0, max_codepoint=0x2FFF), max_size=12) | st.sampled_from(
    ["", "op-a", "ثبت‌نام", "a\"b\\c", "\x00\x1f\x7f", "\ud800", "/v1/x?q=1&r=2", "tab\there"])
maybe_text = st.none() | text
ints = st.integers(-(2**63), 2**63 - 1) | st.integers(-(2**70), 2**70) | st.sampled_from([0, 200, 503, -1])
latency = (st.floats(allow_nan=True, allow_infinity=True) | st.floats(0, 1e6) | st.integers(-(2**65), 2**65)
           | st.just(0.0005) | st.just(-0.0005))
header_name = st.sampled_from([b"content-type", b"Content-Type", b"CONTENT-ENCODING", b"idempotency-key",
                               b"X-Request-Id", b"x-request-idd", b"host", b"accept", "content-type", b"x-b\xe9"])
header_value = (st.binary(max_size=10) | st.sampled_from([b" application/json ", b"\t\x1cv\x1f ", b"\xff", b""])
                | st.just("text"))
headers = st.lists(st.tuples(header_name, header_value), max_size=6) | st.lists(st.tuples(header_name, header_value), max_size=3).map(tuple)
digest_input = st.tuples(st.sampled_from(["GET", "post", "Päst", "", "HEAD"]) | text,
                         text, headers, st.binary(max_size=40), ints, headers, st.binary(max_size=40))
attempt = st.tuples(st.sampled_from(["op-a", "op-b", "op-c"]) | maybe_text, maybe_text,
                    st.none() | ints | st.just(True), latency)
times = st.integers(-62_135_596_800_000_000 - 5, 253_402_300_799_999_999 + 5) | st.sampled_from(
    [0, -1, 1_774_008_000_000_000, -62_135_596_800_000_000, 253_402_300_799_999_999]) | st.integers(-(2**70), 2**70)

packed = st.tuples(
    text, times, maybe_text, maybe_text, maybe_text, maybe_text, maybe_text,
    st.sampled_from(["GET", "POST"]) | maybe_text, text, ints | st.just(True), latency,
    st.lists(attempt, max_size=4) | st.lists(attempt, max_size=2).map(tuple), maybe_text,
    st.none(), st.none(), st.none() | st.binary(max_size=8), st.none() | st.binary(max_size=8), digest_input,
) | st.tuples(  # digests already computed (large bodies are hashed in the gateway)
    text, times, maybe_text, maybe_text, maybe_text, maybe_text, maybe_text, st.just("GET"), text,
    st.just(200), latency, st.lists(attempt, max_size=2), maybe_text,
    text | st.just(1), text, st.none(), st.none(), st.none())


def _python(t):
    try:
        return encode_packed_py(t)
    except Exception as e:  # noqa: BLE001 - what the Python encoder raises is the point here
        return e


@settings(max_examples=3000, deadline=None)
@given(t=packed)
def test_native_gives_python_bytes_or_hands_over(t):
    got = fast(t)
    want = _python(t)
    if got is None:
        return
    assert not isinstance(want, Exception), f"native accepted what Python rejects: {want!r}"
    assert type(got) is Encoded
    assert tuple(got) == tuple(want)


def test_gateway_exchanges_take_the_native_path():
    """The common case (what the gateway ships) is encoded natively, with the same bytes, including
    the attempts' failovers, JSON escapes, a query string cut from the path and odd header forms."""
    n = 0
    for i in range(300):
        ex = make_exchange(i)
        rid = ex.request_id.encode()
        ex.path = f"/v1/tax/\"x\\y\"/{i}?secret={i}"
        ex.client_id = "کلاینت\t" + str(i)
        ex.digest_input = (ex.method, ex.path, [(b"Host", b"gw"), (b"X-Request-ID", b" " + rid + b" "),
                                                (b"content-type", b"a"), (b"Content-Type", b"\tB\x1f")],
                           b"{}", 200, [(b"content-type", b"application/json"), (b"x-request-id", rid)], b"ok")
        t = pack_exchange(ex, defer_digests=True)
        got = fast(t)
        assert got is not None, t
        assert tuple(got) == tuple(encode_packed_py(t))
        assert tuple(encode_packed(t)) == tuple(got)
        n += "?" not in got.record.decode()
    assert n == 300


@pytest.mark.parametrize("us", [0, -1, 951_782_400_000_000, 4_107_542_400_000_000, 253_402_300_799_999_999,
                                -62_135_596_800_000_000])
def test_time_edges(us):
    """Leap days, the epoch, one microsecond before it and datetime's first and last instants."""
    ex = make_exchange(1)
    t = list(pack_exchange(ex, defer_digests=True))
    t[1] = us
    t = tuple(t)
    assert tuple(fast(t)) == tuple(encode_packed_py(t))


@pytest.mark.parametrize("us", [253_402_300_800_000_000, -62_135_596_800_000_001])
def test_declines_times_outside_datetime(us):
    t = list(pack_exchange(make_exchange(1), defer_digests=True))
    t[1] = us
    assert fast(tuple(t)) is None
    assert isinstance(_python(tuple(t)), (OverflowError, ValueError))


def test_declines_kept_bodies_and_bad_floats():
    t = list(pack_exchange(make_exchange(2), defer_digests=True))
    assert fast(tuple(t[:15] + [b"body", None] + t[17:])) is None
    t[10] = math.nan
    assert fast(tuple(t)) is None
    assert isinstance(_python(tuple(t)), ValueError)


# -- the native form: gateway side (pack_native) to writer side (encode_native) -------------------


pack_native = record._fastrecord.pack_native
encode_native = record._fastrecord.encode_native

zones = st.sampled_from([timezone.utc, timezone(timedelta(hours=3, minutes=30)), None])
when = st.builds(lambda d, z: d.replace(tzinfo=z), st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
                 zones)
attempt_obj = st.builds(Attempt, st.sampled_from(["op-a", "op-b"]) | maybe_text, maybe_text,
                        st.none() | ints, latency)
small_body = st.binary(max_size=40) | st.just(b"x" * 2100)
exchange = st.builds(
    Exchange, request_id=text, time=when, client_id=maybe_text, service_id=maybe_text, operation=maybe_text,
    operator_id=maybe_text, caller_province=maybe_text, method=st.sampled_from(["GET", "POST"]) | maybe_text,
    path=text, status=ints, latency_ms=latency, attempts=st.lists(attempt_obj, max_size=3) | st.just(()),
    gateway_error=maybe_text, request_digest=st.just("") | text, response_digest=st.just("") | text,
    request_body=st.none() | st.none() | st.binary(max_size=4), response_body=st.none(),
    digest_input=st.none() | st.tuples(st.sampled_from(["GET", "put", "Ğet"]), text, headers, small_body, ints,
                                       headers, small_body))


@settings(max_examples=2000, deadline=None)
@given(ex=exchange)
def test_native_form_gives_python_bytes_or_declines(ex):
    """Whatever the gateway hands over, the native form either is declined (the Python packing is
    used) or decodes in the writer to exactly the record the Python encoder makes of it."""
    try:
        want = encode_packed_py(pack_exchange(ex, defer_digests=True))
    except Exception as e:  # noqa: BLE001
        want = e
    data = pack_native(ex)
    if data is None:
        return
    assert not isinstance(want, Exception), f"native form made of what Python rejects: {want!r}"
    assert tuple(encode_native(data)) == tuple(want)
    assert tuple(encode_queued(data)) == tuple(want)
    assert queued_time_us(data) == to_us(ex.time)
    assert queued_request_id(data) == ex.request_id


def test_gateway_exchanges_take_the_native_form():
    for i in range(200):
        ex = make_exchange(i)
        ex.digest_input = (ex.method, ex.path + "?q=1", [(b"X-Request-Id", ex.request_id.encode()), (b"host", b"h")],
                           b"{}", 200, [(b"content-type", b"application/json")], b'{"ok":1}')
        want = encode_packed_py(pack_exchange(ex, defer_digests=True))
        data = pack_native(ex)
        assert data is not None and data[:1] == b"\x01"
        assert tuple(encode_native(data)) == tuple(want)
    ex.digest_input = None  # digests already computed in the gateway: shipped as they are
    ex.request_digest, ex.response_digest = "a" * 64, "b" * 64
    assert tuple(encode_native(pack_native(ex))) == tuple(encode_packed_py(pack_exchange(ex)))


def test_damaged_native_data_raises_value_error():
    ex = make_exchange(3)
    ex.digest_input = (ex.method, ex.path, [], b"", 200, [], b"")
    data = pack_native(ex)
    for n in range(len(data)):  # every truncation
        with pytest.raises(ValueError):
            encode_native(data[:n])
    with pytest.raises(ValueError):
        encode_native(data + b"\x00")
    for i in range(len(data)):  # any changed byte: a ValueError or some record, never a crash
        for flip in (0x01, 0x80, 0xFF):
            bad = bytearray(data)
            bad[i] ^= flip
            try:
                encode_native(bytes(bad))
            except ValueError:
                pass


# -- edges of the native form's buffers and limits (pinned) ---------------------------------------

def _din_exchange(i: int = 11) -> Exchange:
    ex = make_exchange(i)
    ex.digest_input = (ex.method, ex.path, [(b"x-request-id", ex.request_id.encode())], b"{}", 200,
                       [(b"content-type", b"application/json")], b"ok")
    return ex


def _set_din(ex: Exchange, k: int, v) -> Exchange:
    d = list(ex.digest_input)
    d[k] = v
    ex.digest_input = tuple(d)
    return ex


def _edge_exchanges():
    for a, b in [(2048, 0), (0, 2048), (1024, 1024), (2047, 1), (2049, 0), (1025, 1024)]:
        ex = _set_din(_din_exchange(), 3, b"q" * a)
        yield f"bodies {a}+{b}", _set_din(ex, 6, b"r" * b), a + b <= 2048
    for n in (32, 33):  # signed header lines: up to 32 in C, more in Python
        hs = [(b"Content-Type", b" v%03d " % (n - k)) for k in range(n)]
        yield f"{n} signed headers", _set_din(_din_exchange(), 2, hs), n <= 32
    big = [(b"host", b"h" * 5000)] * 40 + [(b"X-Request-Id", b"\t" + b"i" * 6000 + b"\x1f")]
    yield "40 KiB of headers (buffers leave the stack)", _set_din(_din_exchange(), 2, big), True
    for n in (64, 65):
        ex = _din_exchange()
        ex.attempts = [Attempt(f"op-{k % 3}-" + "\"" * 70, "http_5xx", 503, k + 0.0005) for k in range(n)]
        yield f"{n} attempts", ex, n <= 64
    ex = _din_exchange()
    ex.path = "/" + "\x01\"\\" * 3000 + "?q=" + "x" * 5000
    ex.client_id = "کلاینت" * 1000
    yield "long escaped strings", ex, True


@pytest.mark.parametrize("label, ex, native", list(_edge_exchanges()), ids=lambda v: v if isinstance(v, str) else "")
def test_native_form_edges(label, ex, native):
    """The 2 KiB deferred-body limit (inclusive), the 32 signed header lines and 64 attempts the C
    side holds, and strings and messages larger than its 4 KiB stack buffers: the native form where
    it applies, with the Python encoder's bytes; declined beyond its limits."""
    data = pack_native(ex)  # first: pack_exchange hashes large bodies in place (clears digest_input)
    want = encode_packed_py(pack_exchange(ex, defer_digests=True))
    assert (data is not None) == native, label
    if data is not None:
        assert tuple(encode_native(data)) == tuple(want)
    got = fast(pack_exchange(ex, defer_digests=True))
    assert got is None or tuple(got) == tuple(want)


# -- attempts read through Python code (duck-typed or computed fields) ----------------------------

class _ComputedAttempt:
    """An attempt whose fields are computed on access: each read returns a new str object (what
    a property, or an Attempt subclass with one, does)."""

    def __init__(self, op: str):
        self._op = op

    @property
    def operator_id(self) -> str:
        return "اپراتور-" + self._op  # non-ASCII: its UTF-8 lives in a buffer of its own

    @property
    def outcome(self) -> str:
        return "".join(["http_", "5xx", "-", "ö" * 20])

    status = 503
    latency_ms = 1.5


def test_native_form_of_attempts_with_computed_fields():
    """Found: ``pack_native`` read each attempt's ``operator_id``/``outcome`` with
    ``PyObject_GetAttr``, took their UTF-8 pointers, dropped the references (att_of's ``done:``)
    and only then copied the bytes, trusting the attempt to keep the strings alive. A computed
    field's str is freed there, so the native form carried freed memory: a different record
    (allocator pointers, invalid UTF-8) than the Python encoder's. Must be the same record or a
    decline."""
    ex = _din_exchange(12)
    ex.attempts = [_ComputedAttempt("a" * 30), _ComputedAttempt("b" * 30)]
    want = encode_packed_py(pack_exchange(ex, defer_digests=True))
    for _ in range(3):
        data = pack_native(ex)
        if data is not None:
            assert encode_native(data).record == want.record


_MUTATING = r"""
from datetime import datetime, timezone
from zistboom.exchange_log import record
from zistboom.gateway.events import Exchange

ex = Exchange("rid-1", datetime(2026, 3, 20, tzinfo=timezone.utc), None, None, None, None, None, "GET", "/x",
              200, 1.0, digest_input=("GET", "/x", [], b"", 200, [], b""))

class Att:
    outcome, status, latency_ms = "ok", 200, 1.5

    @property
    def operator_id(self):
        ex.attempts.clear()  # reading one attempt changes the exchange's list of them
        return "op"

ex.attempts = [Att(), Att(), Att()]
data = record._fastrecord.pack_native(ex)
assert data is None or record._fastrecord.encode_native(data).request_id == "rid-1"
print("survived")
"""


def test_pack_native_survives_attempts_changed_while_it_reads_them():
    """Found: ``pack_native`` took the number of attempts once and borrowed each attempt from the
    list while reading its attributes (Python code for a property): when that code shrinks the
    list, the next ``PySequence_Fast_GET_ITEM`` reads past it and the gateway process dies
    (SIGSEGV) — pack_native must never crash. Run in a child process so a crash fails this test
    only."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    r = subprocess.run([sys.executable, "-c", _MUTATING], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "survived" in r.stdout, (r.returncode, r.stderr[-2000:])

"""Canonical bytes of one exchange-log record.

A record is a JSON object serialised with sorted keys and no white space (``orjson`` with
``OPT_SORT_KEYS``). Records hold only strings, integers, ``null``, lists and objects — never
floats (latencies are integer microseconds) — so the bytes are the RFC 8785 (JCS) canonical form
and any implementation can recompute them. The leaf hash is ``SHA-256(0x00 || bytes)``
(RFC 9162 §2.1.1); the exact bytes are stored, so verification needs no re-serialisation.

Record shape (``kind == "exchange"``)::

    {"v": 1, "kind": "exchange", "request_id": str, "time": "YYYY-MM-DDTHH:MM:SS.ffffffZ",
     "client_id": str|null, "service_id": str|null, "operation": str|null,
     "operator_id": str|null, "caller_province": str|null, "method": str,
     "path": str (no query string), "status": int, "latency_us": int,
     "attempts": [{"operator_id": str, "outcome": str, "status": int|null, "latency_us": int}],
     "retries": int, "failovers": int, "gateway_error": str|null,
     "request_digest": hex, "response_digest": hex,
     ["request_body_sha256": hex, "response_body_sha256": hex]   # only when bodies are kept
    }

A ``kind == "gap"`` record says that ``dropped`` records were lost on purpose (queue or spill file
full) between ``first_dropped`` and ``last_dropped``; it is signed like any other record so a gap
is visible, never silent.
"""

from __future__ import annotations

import marshal
import struct
import uuid
from datetime import datetime, timedelta, timezone
from hashlib import sha256
from typing import NamedTuple

import orjson

from zistboom.exchange_log.digest import digests_of
from zistboom.gateway.events import Exchange

RECORD_VERSION = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_OPTS = orjson.OPT_SORT_KEYS


class Encoded(NamedTuple):
    """A record ready for the store: canonical bytes, its leaf hash and the indexed columns."""

    record: bytes
    leaf_hash: bytes
    request_id: str
    client_id: str | None
    time_us: int
    kind: str
    request_body: bytes | None = None
    response_body: bytes | None = None


def canonical(obj: dict) -> bytes:
    """Canonical JSON bytes of a record object (sorted keys, compact, UTF-8)."""
    return orjson.dumps(obj, option=_OPTS)


_ONE_US = timedelta(microseconds=1)


def to_us(t: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime (exact integer arithmetic)."""
    return (t - _EPOCH) // _ONE_US


def from_us(us: int) -> datetime:
    """The aware UTC datetime ``us`` microseconds after the Unix epoch."""
    return _EPOCH + timedelta(microseconds=us)


def time_fields(t: datetime) -> tuple[str, int]:
    """``(ISO 8601 UTC string with microseconds and Z, microseconds since the Unix epoch)``.

    Raises ``ValueError`` for a naive datetime.
    """
    if t.tzinfo is None:
        raise ValueError("exchange time must be timezone-aware UTC")
    us = to_us(t)
    return iso_from_us(us), us


def _us(ms: float) -> int:
    return int(ms * 1000.0 + 0.5) if ms >= 0 else -int(-ms * 1000.0 + 0.5)


# Bytes of request + response body up to which digests are left to the writer process. Small on
# purpose: the queues are bounded by count (queue_max each side), so this bounds the memory of a
# queued record (~2.5 kB at most instead of ~0.5 kB with digests); hashlib hashes larger buffers
# without the GIL (over 2047 bytes), so hashing them in the gateway holds its loop less.
DEFER_BODY_MAX = 2048


def pack_exchange(ex: Exchange, defer_digests: bool = False) -> tuple:
    """The exchange as a plain tuple (what the gateway ships to the writer process with
    ``marshal``, and what :func:`encode_packed` encodes): ``(request_id, time_us, client_id,
    service_id, operation, operator_id, caller_province, method, path, status, latency_ms,
    [(operator_id, outcome, status, latency_ms), ...], gateway_error, request_digest,
    response_digest, request_body, response_body, digest_input)``.

    With ``defer_digests`` and an exchange whose digests are not computed yet, both digests are
    None and ``digest_input`` (see :class:`~zistboom.gateway.events.Exchange`) is carried instead,
    for :func:`encode_packed` to hash in the writer; otherwise the digests are computed here and
    ``digest_input`` is None. Bodies larger than :data:`DEFER_BODY_MAX` bytes together are hashed
    here even with ``defer_digests``: shipping them to the writer would cost more than hashing
    (``hashlib`` hashes large buffers without the GIL). Raises ``ValueError`` for a naive time."""
    t = ex.time
    if t.tzinfo is None:
        raise ValueError("exchange time must be timezone-aware UTC")
    d_in = ex.digest_input
    if defer_digests and d_in is not None and len(d_in[3]) + len(d_in[6]) <= DEFER_BODY_MAX:
        req_d = resp_d = None
    else:
        req_d, resp_d = ex.digests()
        d_in = None
    return (ex.request_id, to_us(t), ex.client_id, ex.service_id, ex.operation, ex.operator_id,
            ex.caller_province, ex.method, ex.path, ex.status, ex.latency_ms,
            [(a.operator_id, a.outcome, a.status, a.latency_ms) for a in ex.attempts],
            ex.gateway_error, req_d, resp_d, ex.request_body, ex.response_body, d_in)


_iso_second: tuple[int, str] = (0, "1970-01-01T00:00:00")


def iso_from_us(us: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ`` of ``us`` microseconds since the Unix epoch (same string as
    :func:`time_fields`). The date-and-second prefix is cached: records arrive in time order, so
    it is formatted once per second instead of once per record (datetime's isoformat was the
    largest single cost of encoding)."""
    global _iso_second
    sec, frac = divmod(us, 1_000_000)
    cached = _iso_second
    if cached[0] != sec:
        cached = _iso_second = (sec, (_EPOCH + timedelta(seconds=sec)).isoformat(timespec="seconds")[:19])
    return f"{cached[1]}.{frac:06d}Z"


def encode_exchange(ex: Exchange) -> Encoded:
    """Encode one gateway :class:`Exchange` (see module docstring for the record shape)."""
    return encode_packed(pack_exchange(ex))


try:  # the native encoder (setup.py; optional): same bytes, ~10x less CPU in the writer
    from zistboom.exchange_log import _fastrecord
except ImportError:  # pragma: no cover - built by `pip install -e .` wherever a C compiler exists
    _fastrecord = None
    _encode_fast = _encode_native = None
    #: ``pack_native(exchange) -> bytes | None``: the exchange in native form (``_fastrecord.c``),
    #: or None when it is outside its common case (then use :func:`pack_exchange`).
    pack_native = None
else:
    _fastrecord.configure(Encoded, DEFER_BODY_MAX)
    _encode_fast = _fastrecord.encode_packed
    _encode_native = _fastrecord.encode_native
    pack_native = _fastrecord.pack_native

_NATIVE_TIME = struct.Struct("=q")  # the C side writes in the machine's byte order


def encode_queued(x) -> Encoded:
    """Encode a queued exchange in any of its forms: the native form (:data:`pack_native`, bytes
    starting with 0x01), the ``marshal`` bytes of a :func:`pack_exchange` tuple, such a tuple, or
    an :class:`Exchange`. Raises ``ValueError`` (damaged native data or unencodable exchange),
    ``TypeError`` or ``orjson.JSONEncodeError``."""
    t = type(x)
    if t is bytes:
        if x[:1] == b"\x01":  # marshal data never starts with 0x01 (no such type code)
            if _encode_native is None:
                raise ValueError("native form but the native encoder is not built")
            return _encode_native(x)
        return encode_packed(marshal.loads(x))
    if t is tuple:
        return encode_packed(x)
    return encode_exchange(x)


def queued_time_us(x) -> int:
    """Microseconds since the epoch of a queued exchange in any form of :func:`encode_queued`."""
    if type(x) is bytes:
        if x[:1] == b"\x01":
            return _NATIVE_TIME.unpack_from(x, 2)[0]
        x = marshal.loads(x)
    return x[1] if type(x) is tuple else to_us(x.time)


def queued_request_id(x) -> str:
    """The request id of a queued exchange in any form of :func:`encode_queued` (for error
    messages); ``"?"`` when it cannot be read."""
    try:
        if type(x) is bytes:
            if x[:1] == b"\x01":
                return _encode_native(x).request_id
            x = marshal.loads(x)
        return str(x[0]) if type(x) is tuple else str(getattr(x, "request_id", "?"))
    except Exception:
        return "?"


def encode_packed(t: tuple) -> Encoded:
    """Encode an exchange in its :func:`pack_exchange` form (module docstring: record shape).

    Uses the native encoder (``_fastrecord.c``) when it is built and the tuple is in its common
    case, else :func:`encode_packed_py`; both give the same bytes (tested). Raises ``ValueError``,
    ``TypeError`` or ``orjson.JSONEncodeError`` for a tuple that cannot be a record."""
    if _encode_fast is not None:
        enc = _encode_fast(t)
        if enc is not None:
            return enc
    return encode_packed_py(t)


def encode_packed_py(t: tuple) -> Encoded:
    """:func:`encode_packed` in Python: the definition of the record bytes."""
    (request_id, us, client_id, service_id, operation, operator_id, caller_province, method, path, status,
     latency_ms, attempts_t, gateway_error, request_digest, response_digest, request_body, response_body,
     digest_input) = t
    if request_digest is None:
        request_digest, response_digest = digests_of(digest_input)
    q = path.find("?")
    if q >= 0:  # the log never keeps query values
        path = path[:q]
    attempts = [
        {"operator_id": a[0], "outcome": a[1], "status": a[2], "latency_us": _us(a[3])}
        for a in attempts_t
    ]
    n_att = len(attempts)
    rec = {
        "v": RECORD_VERSION,
        "kind": "exchange",
        "request_id": request_id,
        "time": iso_from_us(us),
        "client_id": client_id,
        "service_id": service_id,
        "operation": operation,
        "operator_id": operator_id,
        "caller_province": caller_province,
        "method": method,
        "path": path,
        "status": int(status),
        "latency_us": _us(latency_ms),
        "attempts": attempts,
        "retries": n_att - 1 if n_att > 1 else 0,
        "failovers": len({a[0] for a in attempts_t}) - 1 if n_att > 1 else 0,
        "gateway_error": gateway_error,
        "request_digest": request_digest,
        "response_digest": response_digest,
    }
    if request_body is not None:
        rec["request_body_sha256"] = sha256(request_body).hexdigest()
    if response_body is not None:
        rec["response_body_sha256"] = sha256(response_body).hexdigest()
    data = orjson.dumps(rec, option=_OPTS)
    return Encoded(data, sha256(b"\x00" + data).digest(), request_id, client_id, us, "exchange",
                   request_body, response_body)


def encode_gap(dropped: int, first: datetime, last: datetime, reasons: dict[str, int], now: datetime) -> Encoded:
    """Encode a signed gap event: ``dropped`` records lost between ``first`` and ``last``;
    ``reasons`` counts them by cause (``queue_full``, ``spill_full``)."""
    iso, us = time_fields(now)
    rid = f"gap-{uuid.uuid4().hex}"
    rec = {
        "v": RECORD_VERSION,
        "kind": "gap",
        "request_id": rid,
        "time": iso,
        "client_id": None,
        "dropped": int(dropped),
        "first_dropped": time_fields(first)[0],
        "last_dropped": time_fields(last)[0],
        "reasons": {k: int(v) for k, v in sorted(reasons.items())},
    }
    data = orjson.dumps(rec, option=_OPTS)
    return Encoded(data, sha256(b"\x00" + data).digest(), rid, None, us, "gap")


def iso_to_us(iso: str) -> int:
    """Microseconds since the epoch of a record's ``time`` string; ``ValueError`` if malformed."""
    if len(iso) != 27 or iso[-1] != "Z" or iso[19] != ".":
        raise ValueError(f"bad record time {iso!r}")
    t = datetime.fromisoformat(iso[:-1]).replace(tzinfo=timezone.utc)
    return time_fields(t)[1]

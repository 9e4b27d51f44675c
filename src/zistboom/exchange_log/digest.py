"""Request and response digests recorded in the exchange log, in the spirit of X-Road's
``X-Road-Request-Hash``: SHA-256 over a canonical form of the message, so either party can later
show which message was exchanged without the log storing bodies.

Canonical form (UTF-8)::

    request:  "REQ\\n" METHOD "\\n" path "\\n" header-lines "\\n" body
    response: "RES\\n" status "\\n" header-lines "\\n" body

``header-lines`` are the headers named in :data:`SIGNED_HEADERS` that are present, lower-cased
names, values with surrounding white space stripped, sorted by name then value, one ``name:value\\n``
each. Volatile and hop-by-hop headers are left out on purpose so the digest depends on content only.
"""

from __future__ import annotations

from collections.abc import Iterable
from hashlib import sha256 as _sha256

SIGNED_HEADERS = frozenset({"content-type", "content-encoding", "idempotency-key", "x-request-id"})
_SIGNED_B = frozenset(n.encode("ascii") for n in SIGNED_HEADERS)
_SIGNED_LEN = frozenset(len(n) for n in SIGNED_HEADERS)
# what str.strip() removes among ASCII characters (str.isspace: also the \x1c-\x1f separators)
_ASCII_WS = bytes(c for c in range(128) if chr(c).isspace())


def _header_lines_reference(headers: Iterable[tuple[str | bytes, str | bytes]]) -> bytes:
    """The definition of ``header-lines`` (module docstring), written for clarity: latin-1 for
    bytes, lower-cased names, stripped values, sorted, UTF-8. :func:`_header_lines` must give the
    same bytes (tested)."""
    picked = []
    for name, value in headers:
        n = (name.decode("latin-1") if isinstance(name, bytes) else name).lower()
        if n in SIGNED_HEADERS:
            v = (value.decode("latin-1") if isinstance(value, bytes) else value).strip()
            picked.append((n, v))
    picked.sort()
    return "".join(f"{n}:{v}\n" for n, v in picked).encode("utf-8")


def _header_lines(headers: Iterable[tuple[str | bytes, str | bytes]]) -> bytes:
    """Same bytes as :func:`_header_lines_reference`, computed on bytes where that is exact: the
    gateway hashes every request and response, and decoding every header to ``str`` to pick two of
    them cost more than the rest of its logging. The bytes path is exact for ASCII values (latin-1
    and UTF-8 agree there, and stripping :data:`_ASCII_WS` removes what ``str.strip`` removes on
    ASCII); anything else falls back to the reference."""
    picked = None
    signed, lens = _SIGNED_B, _SIGNED_LEN
    for name, value in headers:
        if name in signed:
            n = name
        elif type(name) is not bytes:
            return _header_lines_reference(headers)
        elif len(name) in lens and name.lower() in signed:
            n = name.lower()
        else:
            continue
        if type(value) is not bytes or not value.isascii():
            return _header_lines_reference(headers)
        if picked is None:
            picked = [(n, value.strip(_ASCII_WS))]
        else:
            picked.append((n, value.strip(_ASCII_WS)))
    if picked is None:
        return b""
    if len(picked) > 1:
        picked.sort()
    return b"".join([n + b":" + v + b"\n" for n, v in picked])


def request_digest(method: str, path: str, headers: Iterable[tuple[str | bytes, str | bytes]], body: bytes) -> str:
    """Lowercase hex SHA-256 of the canonical request (see module docstring)."""
    # one-shot hashing of the joined form: a hash object fed piecemeal costs more than the copy
    return _sha256(b"".join((b"REQ\n", method.upper().encode("ascii"), b"\n", path.encode("utf-8"), b"\n",
                             _header_lines(headers), b"\n", body))).hexdigest()


def response_digest(status: int, headers: Iterable[tuple[str | bytes, str | bytes]], body: bytes) -> str:
    """Lowercase hex SHA-256 of the canonical response (see module docstring)."""
    return _sha256(b"".join((b"RES\n", b"%d\n" % int(status), _header_lines(headers), b"\n", body))).hexdigest()


def digests_of(digest_input: tuple) -> tuple[str, str]:
    """``(request_digest, response_digest)`` of an exchange's ``digest_input`` tuple
    ``(method, path, request_headers, request_body, status, response_headers, response_body)``
    (see :class:`zistboom.gateway.events.Exchange`); lists may have been made tuples by ``marshal``
    round trips, which does not change the digests."""
    method, path, req_headers, req_body, status, resp_headers, resp_body = digest_input
    return (request_digest(method, path, req_headers, req_body),
            response_digest(status, resp_headers, resp_body))

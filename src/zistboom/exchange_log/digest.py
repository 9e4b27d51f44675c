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

import hashlib
from collections.abc import Iterable

SIGNED_HEADERS = frozenset({"content-type", "content-encoding", "idempotency-key", "x-request-id"})


def _header_lines(headers: Iterable[tuple[str | bytes, str | bytes]]) -> bytes:
    picked = []
    for name, value in headers:
        n = (name.decode("latin-1") if isinstance(name, bytes) else name).lower()
        if n in SIGNED_HEADERS:
            v = (value.decode("latin-1") if isinstance(value, bytes) else value).strip()
            picked.append((n, v))
    picked.sort()
    return "".join(f"{n}:{v}\n" for n, v in picked).encode("utf-8")


def request_digest(method: str, path: str, headers: Iterable[tuple[str | bytes, str | bytes]], body: bytes) -> str:
    """Lowercase hex SHA-256 of the canonical request (see module docstring)."""
    h = hashlib.sha256(b"REQ\n")
    h.update(method.upper().encode("ascii") + b"\n" + path.encode("utf-8") + b"\n")
    h.update(_header_lines(headers) + b"\n")
    h.update(body)
    return h.hexdigest()


def response_digest(status: int, headers: Iterable[tuple[str | bytes, str | bytes]], body: bytes) -> str:
    """Lowercase hex SHA-256 of the canonical response (see module docstring)."""
    h = hashlib.sha256(b"RES\n")
    h.update(str(int(status)).encode("ascii") + b"\n")
    h.update(_header_lines(headers) + b"\n")
    h.update(body)
    return h.hexdigest()

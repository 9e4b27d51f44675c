"""Dashboard login sessions: a small HMAC-signed cookie with an expiry, plus a CSRF token.

Why our own code instead of a library: Starlette's ``SessionMiddleware`` needs ``itsdangerous``,
which is not a dependency of zistboom, and a middleware would also have to be installed on the
admin app (owned elsewhere) rather than on this router. What we need is small and standard:
``base64url(json payload) "." hex(HMAC-SHA256(secret, payload))`` (the same construction as
itsdangerous' ``Signer``/RFC 2104 HMAC), checked with :func:`hmac.compare_digest`, with the expiry
inside the signed payload so a stolen old cookie stops working server-side too.

The secret is 32 random bytes kept at ``<var_dir>/dashboard-secret`` (0600), created on first use;
deleting it logs everybody out.

Payload fields: ``role`` (``admin``/``province``), ``province`` (ISO code or None), ``csrf``
(random token echoed in every form as a hidden field), ``exp`` (Unix seconds).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

COOKIE_NAME = "zb_dash"
SECRET_FILE = "dashboard-secret"
DEFAULT_TTL_S = 8 * 3600  # one working day


@dataclass(frozen=True)
class DashSession:
    """A valid, unexpired session read from the cookie."""

    role: str
    province: str | None
    csrf: str
    exp: int
    token_hash: str = ""  # SHA-256 hex of the token logged in with (TokenChecker.holds checks it again)

    @property
    def can_write(self) -> bool:
        return self.role == "admin"


def load_or_create_secret(var_dir: Path) -> bytes:
    """The 32-byte signing secret under ``var_dir`` (created with 0600 permissions if missing)."""
    path = Path(var_dir) / SECRET_FILE
    try:
        data = path.read_bytes()
        if len(data) >= 32:
            return data
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    data = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return data


class SessionSigner:
    """Encode/decode :class:`DashSession` cookies.

    ``decode`` returns ``(session, problem)`` where ``problem`` is ``None`` for a good cookie,
    ``"missing"``, ``"invalid"`` (bad signature or shape) or ``"expired"``.
    """

    def __init__(self, secret: bytes, ttl_s: int = DEFAULT_TTL_S):
        self.secret = secret
        self.ttl_s = ttl_s

    def _sig(self, body: bytes) -> str:
        return hmac.new(self.secret, body, hashlib.sha256).hexdigest()

    def new_session(self, role: str, province: str | None, now: float | None = None,
                    token_hash: str = "") -> DashSession:
        now = time.time() if now is None else now
        return DashSession(role=role, province=province, csrf=secrets.token_urlsafe(24), exp=int(now + self.ttl_s),
                           token_hash=token_hash)

    def encode(self, sess: DashSession) -> str:
        payload = json.dumps(
            {"role": sess.role, "province": sess.province, "csrf": sess.csrf, "exp": sess.exp, "tok": sess.token_hash},
            separators=(",", ":"),
        ).encode()
        body = base64.urlsafe_b64encode(payload).rstrip(b"=")
        return body.decode() + "." + self._sig(body)

    def decode(self, cookie: str | None, now: float | None = None) -> tuple[DashSession | None, str | None]:
        if not cookie:
            return None, "missing"
        body, _, sig = cookie.partition(".")
        # compared as bytes: compare_digest refuses str with non-ASCII characters (a TypeError, so a
        # cookie such as "abc.é" answered 500 on every page)
        if not body or not sig or not hmac.compare_digest(sig.encode("utf-8", "surrogateescape"),
                                                          self._sig(body.encode("utf-8", "surrogateescape")).encode()):
            return None, "invalid"
        try:
            raw = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            sess = DashSession(role=str(raw["role"]), province=raw.get("province"), csrf=str(raw["csrf"]),
                               exp=int(raw["exp"]), token_hash=str(raw.get("tok", "")))
        except (ValueError, KeyError, TypeError):
            return None, "invalid"
        if sess.role not in ("admin", "province"):
            return None, "invalid"
        if (time.time() if now is None else now) >= sess.exp:
            return None, "expired"
        return sess, None

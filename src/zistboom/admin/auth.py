"""Admin credentials: bearer tokens for the admin API and the dashboard login.

* The **admin token** (full rights) is generated on first run with :func:`secrets.token_urlsafe`,
  stored at ``<var_dir>/admin-token`` with 0600 permissions and printed once by ``zistboom run``.
  There is no built-in default.
* **Province tokens** (read-only views of one province) are kept in
  ``<var_dir>/province-tokens.json`` (0600) as ``{sha256(token): "IR-xx"}``; issue one with
  :func:`issue_province_token`.

Comparison is constant-time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

ADMIN_TOKEN_FILE = "admin-token"
PROVINCE_TOKENS_FILE = "province-tokens.json"


@dataclass(frozen=True)
class Role:
    """Who a token belongs to: ``kind`` is ``admin`` (read/write) or ``province`` (read-only,
    limited to ``province``)."""

    kind: str
    province: str | None = None

    @property
    def can_write(self) -> bool:
        return self.kind == "admin"


def _write_secret(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(path, 0o600)


def load_or_create_admin_token(var_dir: Path) -> tuple[str, bool]:
    """The admin token and whether it was just created (first run)."""
    path = Path(var_dir) / ADMIN_TOKEN_FILE
    if path.is_file():
        token = path.read_text(encoding="utf-8").strip()
        if token:
            return token, False
    token = "zbadmin_" + secrets.token_urlsafe(32)
    _write_secret(path, token + "\n")
    return token, True


def issue_province_token(var_dir: Path, province: str) -> str:
    """Create a read-only token for one province (ISO code) and store its hash."""
    path = Path(var_dir) / PROVINCE_TOKENS_FILE
    table = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    token = "zbprov_" + secrets.token_urlsafe(24)
    table[hashlib.sha256(token.encode()).hexdigest()] = province
    _write_secret(path, json.dumps(table, indent=2))
    return token


class TokenChecker:
    """Resolves bearer tokens to :class:`Role` objects (reads the token files once, then on change)."""

    def __init__(self, var_dir: Path):
        self.var_dir = Path(var_dir)
        self.admin_token, _ = load_or_create_admin_token(self.var_dir)
        self._prov_mtime: float | None = None
        self._prov: dict[str, str] = {}

    def _province_table(self) -> dict[str, str]:
        path = self.var_dir / PROVINCE_TOKENS_FILE
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return {}
        if mtime != self._prov_mtime:
            self._prov = json.loads(path.read_text(encoding="utf-8"))
            self._prov_mtime = mtime
        return self._prov

    @staticmethod
    def token_hash(token: str) -> str:
        """SHA-256 hex of a token: how the province table keys tokens, and what a dashboard session
        keeps to be checked again (:meth:`holds`)."""
        return hashlib.sha256(token.encode()).hexdigest()

    def holds(self, role: str, province: str | None, token_hash: str) -> bool:
        """True while the token a session was opened with (``token_hash``) still gives ``role``
        (and ``province``): a province token removed from the table ends its dashboard sessions at
        their next request, not at their 8-hour expiry."""
        if role == "admin":
            return hmac.compare_digest(token_hash.encode(), self.token_hash(self.admin_token).encode())
        return bool(token_hash) and self._province_table().get(token_hash) == province

    def resolve(self, token: str | None) -> Role | None:
        """The role of ``token``, or None for a missing/unknown token."""
        if not token:
            return None
        if hmac.compare_digest(token.encode(), self.admin_token.encode()):
            return Role("admin")
        province = self._province_table().get(hashlib.sha256(token.encode()).hexdigest())
        return Role("province", province) if province else None

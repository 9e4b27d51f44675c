"""The exchange log's Ed25519 signing key and signed tree heads (STH).

The key is made on first use and stored as unencrypted PKCS#8 PEM with mode 0600 (created with
``O_CREAT | O_EXCL`` so it is never world-readable, even briefly). Its public half is exported as
raw 32 bytes (hex) or SubjectPublicKeyInfo PEM. ``key_id`` is the lowercase hex SHA-256 of the raw
public key (as CT's LogID is the SHA-256 of the log's key, RFC 6962 §3.2).

The signed bytes of a tree head follow RFC 6962 §3.5 ``TreeHeadSignature``::

    version (1 byte, v1 = 0) || signature_type (1 byte, tree_hash = 1)
    || timestamp (uint64 big-endian, milliseconds since the Unix epoch)
    || tree_size (uint64 big-endian) || sha256_root_hash (32 bytes)
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

KEY_FILE = "ed25519.key"


class SignatureError(ValueError):
    """A tree head signature does not verify."""


def tree_head_bytes(tree_size: int, timestamp_ms: int, root_hash: bytes) -> bytes:
    """RFC 6962 §3.5 TreeHeadSignature input bytes."""
    if len(root_hash) != 32:
        raise ValueError("root hash must be 32 bytes")
    return struct.pack(">BBQQ", 0, 1, timestamp_ms, tree_size) + root_hash


def public_raw(pub: Ed25519PublicKey) -> bytes:
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_of(raw_public: bytes) -> str:
    return sha256(raw_public).hexdigest()


def load_public_key(data: bytes | str) -> Ed25519PublicKey:
    """A public key from raw 32 bytes, 64 hex chars, or PEM (SubjectPublicKeyInfo) text/bytes.

    Raises ``ValueError`` on anything else.
    """
    if isinstance(data, str):
        data = data.encode()
    s = data.strip()
    if s.startswith(b"-----BEGIN"):
        key = serialization.load_pem_public_key(s)
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("not an Ed25519 public key")
        return key
    if len(s) == 64:
        s = bytes.fromhex(s.decode())
    if len(s) != 32:
        raise ValueError("an Ed25519 public key is 32 raw bytes, 64 hex characters or PEM")
    return Ed25519PublicKey.from_public_bytes(s)


@dataclass(frozen=True)
class SignedTreeHead:
    """A signed tree head: ``tree_size`` leaves with ``root_hash`` at ``timestamp_ms``."""

    tree_size: int
    timestamp_ms: int
    root_hash: bytes
    signature: bytes
    key_id: str

    def to_json(self) -> dict:
        return {
            "tree_size": self.tree_size,
            "timestamp_ms": self.timestamp_ms,
            "root_hash": self.root_hash.hex(),
            "signature": self.signature.hex(),
            "key_id": self.key_id,
        }

    @classmethod
    def from_json(cls, d: dict) -> SignedTreeHead:
        """Parse :meth:`to_json` output strictly; ``ValueError`` on any malformed field."""
        if not isinstance(d, dict) or set(d) != {"tree_size", "timestamp_ms", "root_hash", "signature", "key_id"}:
            raise ValueError("signed tree head must have exactly tree_size, timestamp_ms, root_hash, signature, key_id")
        for f in ("tree_size", "timestamp_ms"):
            if type(d[f]) is not int or d[f] < 0:
                raise ValueError(f"{f} must be a non-negative integer")
        return cls(d["tree_size"], d["timestamp_ms"], strict_hex(d["root_hash"], 32), strict_hex(d["signature"], 64),
                   strict_hex(d["key_id"], 32).hex())

    def verify(self, pub: Ed25519PublicKey) -> None:
        """Raise :class:`SignatureError` unless the signature is valid under ``pub``."""
        if key_id_of(public_raw(pub)) != self.key_id:
            raise SignatureError("tree head was signed by a different key")
        try:
            pub.verify(self.signature, tree_head_bytes(self.tree_size, self.timestamp_ms, self.root_hash))
        except InvalidSignature:
            raise SignatureError(f"bad signature on tree head of size {self.tree_size}") from None


def strict_hex(s: object, nbytes: int) -> bytes:
    """Decode lowercase hex of exactly ``nbytes`` bytes; ``ValueError`` otherwise (so no two
    spellings of one value exist — upper case is rejected)."""
    if not isinstance(s, str) or len(s) != 2 * nbytes or s.strip("0123456789abcdef"):
        raise ValueError(f"expected {nbytes} bytes as lowercase hex")
    return bytes.fromhex(s)


class LogSigner:
    """Holds the private key; signs tree heads."""

    def __init__(self, key: Ed25519PrivateKey):
        self._key = key
        self.public_key = key.public_key()
        self.public_raw = public_raw(self.public_key)
        self.key_id = key_id_of(self.public_raw)

    def sign(self, tree_size: int, timestamp_ms: int, root_hash: bytes) -> SignedTreeHead:
        sig = self._key.sign(tree_head_bytes(tree_size, timestamp_ms, root_hash))
        return SignedTreeHead(tree_size, timestamp_ms, root_hash, sig, self.key_id)

    def public_pem(self) -> bytes:
        return self.public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_path(var_dir: Path) -> Path:
    """Where the signing key lives: ``<var_dir>/exchange-log/ed25519.key``."""
    return Path(var_dir) / "exchange-log" / KEY_FILE


def load_or_create_signer(path: Path) -> LogSigner:
    """Load the key at ``path`` or make a new one there (mode 0600, parent folder 0700).

    Raises ``ValueError`` if the file exists but is not an Ed25519 private key.
    """
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            return load_or_create_signer(path)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        return LogSigner(key)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return LogSigner(key)


def load_public_from_key_file(path: Path) -> Ed25519PublicKey:
    """The public half of the private key file at ``path`` (``FileNotFoundError`` if absent)."""
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key.public_key()

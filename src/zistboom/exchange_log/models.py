"""Exchange-log tables (on the product's shared :class:`zistboom.registry.db.Base`).

* ``exchange_log_records`` — one row per leaf: ``seq`` is the leaf index (0-based, gap-free),
  ``record`` the canonical record bytes (see :mod:`zistboom.exchange_log.record`), ``leaf_hash``
  SHA-256(0x00 || record). ``request_id``, ``client_id``, ``time_us`` and ``kind`` are copies of
  record fields for lookups; ``zistboom log verify`` checks they match the record. Bodies are only
  set for services configured to keep them; the record holds their SHA-256.
* ``exchange_log_tree_heads`` — signed tree heads (RFC 6962 §3.5); ``frontier`` (not signed) is
  the compact range at that size so the writer resumes without rereading every leaf.
* ``exchange_log_nodes`` — cached interior hashes of perfect subtrees of 2**8 leaves or more
  (``level`` >= 8, covering leaves ``[idx * 2**level, (idx + 1) * 2**level)``), so an inclusion
  proof needs O(log n) lookups. A cache only: proofs are checked against the signed root.
* ``exchange_log_keys`` — public keys that signed tree heads (``key_id`` = SHA-256 of the raw key).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, LargeBinary, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from zistboom.registry.db import Base, UTCDateTime, utcnow

# INTEGER (not BIGINT) on SQLite so the primary key is the rowid (SQLite integers are 64-bit).
_SEQ = BigInteger().with_variant(Integer(), "sqlite")

NODE_MIN_LEVEL = 8


class LogRecord(Base):
    __tablename__ = "exchange_log_records"

    seq: Mapped[int] = mapped_column(_SEQ, primary_key=True, autoincrement=False)
    request_id: Mapped[str] = mapped_column(String(128), index=True)
    client_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    time_us: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))
    record: Mapped[bytes] = mapped_column(LargeBinary)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    request_body: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class LogTreeHead(Base):
    __tablename__ = "exchange_log_tree_heads"

    tree_size: Mapped[int] = mapped_column(_SEQ, primary_key=True, autoincrement=False)
    timestamp_ms: Mapped[int] = mapped_column(BigInteger)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    signature: Mapped[bytes] = mapped_column(LargeBinary(64))
    key_id: Mapped[str] = mapped_column(String(64))
    frontier: Mapped[bytes] = mapped_column(LargeBinary)


class LogNode(Base):
    __tablename__ = "exchange_log_nodes"

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class LogKey(Base):
    __tablename__ = "exchange_log_keys"

    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


TABLES = (LogRecord.__table__, LogTreeHead.__table__, LogNode.__table__, LogKey.__table__)

"""Read side of the exchange log: records, inclusion and consistency proofs, receipts and full
verification of the store (``zistboom log verify``).

The write side (batched appends, spill file, signing) is :mod:`zistboom.exchange_log.sink`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from hashlib import sha256

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Engine, text

from zistboom.exchange_log import merkle
from zistboom.exchange_log.keys import SignatureError, SignedTreeHead, key_id_of, public_raw
from zistboom.exchange_log.models import NODE_MIN_LEVEL
from zistboom.exchange_log.receipt import RECEIPT_FORMAT
from zistboom.exchange_log.record import iso_to_us
from zistboom.registry.db import make_engine

R = "exchange_log_records"
H = "exchange_log_tree_heads"
N = "exchange_log_nodes"
K = "exchange_log_keys"


class ReceiptPending(Exception):
    """The record exists but no signed tree head covers it yet; retry after ``retry_after_s``."""

    def __init__(self, retry_after_s: float = 1.0):
        super().__init__("record not yet covered by a signed tree head")
        self.retry_after_s = retry_after_s


@dataclass
class VerifyReport:
    """Outcome of :meth:`ExchangeLogStore.verify`.

    ``problems`` are dicts ``{"code", "message", ["seq" | "tree_size"]}``; codes:
    ``record_changed`` (record bytes no longer match their stored leaf hash), ``column_mismatch``
    (an indexed column differs from the record), ``bad_record`` (not a canonical record),
    ``seq_gap`` (leaf indexes not contiguous: a row deleted or inserted), ``root_mismatch`` (the
    records no longer hash to a signed root: changed, inserted, deleted or reordered records),
    ``truncated`` (fewer records than a signed tree head covers: a cut-off tail),
    ``bad_signature``, ``sth_order`` (tree heads' times go backwards), ``node_mismatch`` (a cached
    interior node is wrong; proofs would fail), ``no_key``, ``unsigned_tail`` (strict mode only).
    """

    ok: bool = True
    records: int = 0
    tree_heads: int = 0
    trusted_heads: int = 0
    latest_signed_size: int = 0
    unsigned_tail: int = 0
    root_hash: str = ""
    elapsed_s: float = 0.0
    problems: list[dict] = field(default_factory=list)

    def add(self, code: str, message: str, **where) -> None:
        self.ok = False
        if len(self.problems) < 1000:
            self.problems.append({"code": code, "message": message, **where})

    def to_json(self) -> dict:
        return self.__dict__.copy()


class ExchangeLogStore:
    """Queries over the exchange-log tables in the database at ``db_url`` (or ``engine``).

    ``public_key`` pins the key that tree heads must be signed with; without it the keys listed in
    ``exchange_log_keys`` are used (which only proves internal consistency).
    """

    def __init__(self, db_url: str | None = None, *, engine: Engine | None = None,
                 public_key: Ed25519PublicKey | None = None, sth_every_seconds: float = 1.0):
        if engine is None:
            if db_url is None:
                raise ValueError("give db_url or engine")
            engine = make_engine(db_url)
        self.engine = engine
        self.public_key = public_key
        self.sth_every_seconds = sth_every_seconds

    # -- simple queries ---------------------------------------------------------------------

    def size(self) -> int:
        """Number of records (leaves) in the store."""
        with self.engine.connect() as c:
            return int(c.execute(text(f"SELECT COUNT(*) FROM {R}")).scalar_one())

    def latest_sth(self) -> SignedTreeHead | None:
        with self.engine.connect() as c:
            row = c.execute(text(f"SELECT tree_size, timestamp_ms, root_hash, signature, key_id FROM {H} "
                                 "ORDER BY tree_size DESC LIMIT 1")).first()
        return _sth(row) if row else None

    def sth_covering(self, seq: int) -> SignedTreeHead | None:
        """The first signed tree head whose tree contains leaf ``seq``."""
        with self.engine.connect() as c:
            row = c.execute(text(f"SELECT tree_size, timestamp_ms, root_hash, signature, key_id FROM {H} "
                                 "WHERE tree_size > :s ORDER BY tree_size LIMIT 1"), {"s": seq}).first()
        return _sth(row) if row else None

    def sth_at(self, tree_size: int) -> SignedTreeHead | None:
        with self.engine.connect() as c:
            row = c.execute(text(f"SELECT tree_size, timestamp_ms, root_hash, signature, key_id FROM {H} "
                                 "WHERE tree_size = :s"), {"s": tree_size}).first()
        return _sth(row) if row else None

    def public_keys(self) -> dict[str, Ed25519PublicKey]:
        """Keys in force: the pinned one, or all listed in the database, by key id."""
        if self.public_key is not None:
            return {key_id_of(public_raw(self.public_key)): self.public_key}
        with self.engine.connect() as c:
            rows = c.execute(text(f"SELECT key_id, public_key FROM {K}")).all()
        return {r[0]: Ed25519PublicKey.from_public_bytes(bytes(r[1])) for r in rows}

    def find(self, request_id: str, client_id: str | None = None) -> dict | None:
        """``{"seq", "record" (bytes), "client_id", "kind"}`` of the first record with
        ``request_id`` (and ``client_id`` when given: request ids supplied by clients may repeat)."""
        q = f"SELECT seq, record, client_id, kind FROM {R} WHERE request_id = :r"
        params = {"r": request_id}
        if client_id is not None:
            q += " AND client_id = :c"
            params["c"] = client_id
        with self.engine.connect() as c:
            row = c.execute(text(q + " ORDER BY seq LIMIT 1"), params).first()
        if row is None:
            return None
        return {"seq": int(row[0]), "record": bytes(row[1]), "client_id": row[2], "kind": row[3]}

    # -- proofs -----------------------------------------------------------------------------

    def _mth_fn(self, conn):
        """A ``mth(start, end)`` backed by cached nodes (level >= 8) and leaf hashes."""
        node_q = text(f"SELECT hash FROM {N} WHERE level = :l AND idx = :i")
        leaf_q = text(f"SELECT leaf_hash FROM {R} WHERE seq >= :a AND seq < :b ORDER BY seq")

        def mth(a: int, b: int) -> bytes:
            n = b - a
            if n & (n - 1) == 0 and a % n == 0 and n >= (1 << NODE_MIN_LEVEL):
                h = conn.execute(node_q, {"l": n.bit_length() - 1, "i": a // n}).scalar()
                if h is not None:
                    return bytes(h)
            if n <= 1 << (NODE_MIN_LEVEL + 1):
                leaves = [bytes(x) for x in conn.execute(leaf_q, {"a": a, "b": b}).scalars()]
                if len(leaves) != n:
                    raise LookupError(f"leaves {a}..{b} missing from the store")
                return merkle.root_from_leaves(leaves)
            k = merkle.largest_pow2_below(n)
            return merkle.node_hash(mth(a, a + k), mth(a + k, b))

        return mth

    def inclusion_proof(self, seq: int, tree_size: int) -> list[bytes]:
        """Audit path of leaf ``seq`` in the tree of the first ``tree_size`` leaves."""
        with self.engine.connect() as c:
            return merkle.inclusion_path(seq, tree_size, self._mth_fn(c))

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """RFC 9162 consistency proof between the trees of ``old_size`` and ``new_size`` leaves."""
        with self.engine.connect() as c:
            return merkle.consistency_path(old_size, new_size, self._mth_fn(c))

    def root_at(self, tree_size: int) -> bytes:
        """Merkle Tree Hash of the first ``tree_size`` leaves, from the store."""
        if tree_size == 0:
            return merkle.EMPTY_ROOT
        with self.engine.connect() as c:
            return self._mth_fn(c)(0, tree_size)

    # -- receipts ---------------------------------------------------------------------------

    def receipt(self, request_id: str) -> dict | None:
        """The JSON receipt (see :mod:`zistboom.exchange_log.receipt`) of ``request_id``.

        Returns None when no such record is stored; raises :class:`ReceiptPending` when the record
        is stored but not yet under a signed tree head.
        """
        found = self.find(request_id)
        if found is None:
            return None
        return self._receipt(found)

    def receipt_for_client(self, request_id: str, client_id: str) -> dict | None:
        """The receipt of ``request_id`` only if that exchange was made by ``client_id``.

        Another client's request id, or an unknown one, gives None (shown as 404, so a client
        cannot even learn whether someone else's request id exists). Raises
        :class:`ReceiptPending` like :meth:`receipt`.
        """
        if not client_id:
            return None
        found = self.find(request_id, client_id)
        if found is None:
            return None
        rec = orjson.loads(found["record"])
        if rec.get("client_id") != client_id:  # trust the signed bytes, not only the column
            return None
        return self._receipt(found)

    def _receipt(self, found: dict) -> dict:
        seq = found["seq"]
        sth = self.sth_covering(seq)
        if sth is None:
            raise ReceiptPending(self.sth_every_seconds)
        keys = self.public_keys()
        pub = keys.get(sth.key_id)
        if pub is None:
            raise LookupError(f"public key {sth.key_id} of the tree head is unknown")
        path = self.inclusion_proof(seq, sth.tree_size)
        return {
            "format": RECEIPT_FORMAT,
            "record": orjson.loads(found["record"]),
            "leaf_index": seq,
            "inclusion_proof": [p.hex() for p in path],
            "sth": sth.to_json(),
            "public_key": {"algorithm": "Ed25519", "raw": public_raw(pub).hex()},
        }

    # -- whole-store verification -----------------------------------------------------------

    def verify(self, trusted: list[SignedTreeHead] | None = None, *, check_columns: bool = True,
               strict: bool = False, batch: int = 20000) -> VerifyReport:
        """Recompute every leaf hash from the stored record bytes, rebuild the tree and check it
        against every stored signed tree head and every ``trusted`` one (e.g. an older head kept
        by a client or auditor — this is how a cut-off tail with its tree heads is found).

        Finds changed, inserted, deleted and reordered records, a cut-off tail, bad signatures
        and wrong cached nodes. Records after the newest signed tree head (the ``unsigned_tail``:
        normal for up to ``sth_every_seconds`` while the writer runs) are checked for shape only;
        with ``strict`` an unsigned tail is a problem (``unsigned_tail``), which is how a record
        appended after the writer stopped is caught. Returns a :class:`VerifyReport`; never raises
        for bad data.
        """
        t0 = time.perf_counter()
        rep = VerifyReport()
        keys = self.public_keys()
        if not keys:
            rep.add("no_key", "no public key to check tree heads with")
        with self.engine.connect() as c:
            heads = [_sth(r) for r in c.execute(text(
                f"SELECT tree_size, timestamp_ms, root_hash, signature, key_id FROM {H} ORDER BY tree_size")).all()]
            nodes = {(int(lv), int(ix)): bytes(h) for lv, ix, h in
                     c.execute(text(f"SELECT level, idx, hash FROM {N}")).all()}
        rep.tree_heads = len(heads)
        checkpoints: dict[int, list[tuple[str, bytes]]] = {}
        last_ts = -1
        for sth in heads:
            self._check_sig(sth, keys, rep, "stored")
            if sth.timestamp_ms < last_ts:
                rep.add("sth_order", f"tree head of size {sth.tree_size} is older than the one before it",
                        tree_size=sth.tree_size)
            last_ts = sth.timestamp_ms
            checkpoints.setdefault(sth.tree_size, []).append(("stored", sth.root_hash))
        for sth in trusted or []:
            rep.trusted_heads += 1
            self._check_sig(sth, keys, rep, "trusted")
            checkpoints.setdefault(sth.tree_size, []).append(("trusted", sth.root_hash))
        if heads:
            rep.latest_signed_size = heads[-1].tree_size
        for size, expect in checkpoints.get(0, []):
            if expect != merkle.EMPTY_ROOT:
                rep.add("root_mismatch", f"{size} tree head of size 0 has a non-empty root", tree_size=0)

        # The loop below is the hot path (1M records in a few seconds): locals only.
        stack: list[bytes] = []
        size = 0
        expected_seq = 0
        dumps = orjson.dumps
        cp_sizes = set(checkpoints)
        sql = f"SELECT seq, record, leaf_hash, request_id, client_id, time_us, kind FROM {R} ORDER BY seq"
        sec_cache: dict[str, int] = {}
        raw = self.engine.raw_connection()
        try:
            if self.engine.dialect.name == "postgresql":
                cur = raw.driver_connection.cursor(name="zistboom_log_verify")  # server-side: streams
            else:
                cur = raw.cursor()
            cur.execute(sql)
            while True:
                part = cur.fetchmany(batch)
                if not part:
                    break
                for seq, rec, stored_leaf, rid, cid, tus, kind in part:
                    if seq != expected_seq:
                        rep.add("seq_gap", f"expected leaf {expected_seq}, found {seq} (record deleted or inserted)",
                                seq=seq)
                        expected_seq = seq
                    expected_seq += 1
                    h = sha256(b"\x00" + rec).digest()
                    if h != stored_leaf:
                        rep.add("record_changed", f"record {seq} does not match its leaf hash", seq=seq)
                    if check_columns:
                        # The lookup columns must equal the record's fields. Canonical JSON is
                        # searched as bytes (faster than parsing): an unescaped `"key":` can only
                        # be a key, since quotes inside strings are escaped, and nested objects
                        # have no such keys.
                        try:
                            ti = rec.find(b'"time":"')
                            iso = rec[ti + 8: ti + 35]
                            sec = sec_cache.get(iso[:19])
                            if sec is None:
                                sec = iso_to_us(iso[:19].decode() + ".000000Z") // 1_000_000
                                sec_cache[iso[:19]] = sec
                            if (ti < 0 or iso[26:27] != b"Z" or iso[19:20] != b"."
                                    or sec * 1_000_000 + int(iso[20:26]) != tus
                                    or (b'"request_id":' + dumps(rid)) not in rec
                                    or (b'"client_id":' + dumps(cid)) not in rec
                                    or (b'"kind":' + dumps(kind)) not in rec):
                                rep.add("column_mismatch", f"indexed columns of record {seq} differ from the record",
                                        seq=seq)
                        except (KeyError, TypeError, ValueError, UnicodeDecodeError):
                            rep.add("bad_record", f"record {seq} is not a canonical exchange-log record", seq=seq)
                    # Frontier append (inlined merkle.Frontier.append: this loop is the hot path).
                    stack.append(h)
                    size += 1
                    s = size
                    lvl = 0
                    while not s & 1:
                        r = stack.pop()
                        stack[-1] = sha256(b"\x01" + stack[-1] + r).digest()
                        s >>= 1
                        lvl += 1
                        if lvl >= NODE_MIN_LEVEL:
                            cached = nodes.pop((lvl, s - 1), None)
                            if cached is not None and cached != stack[-1]:
                                rep.add("node_mismatch", f"cached node level {lvl} index {s - 1} is wrong",
                                        seq=size - 1)
                    if size in cp_sizes:
                        root = merkle.Frontier(size, stack).root()
                        for label, expect in checkpoints[size]:
                            if root != expect:
                                rep.add("root_mismatch", f"records 0..{size - 1} do not hash to the {label} signed "
                                        f"root of size {size} (a record was changed, inserted, deleted or reordered)",
                                        tree_size=size)
            cur.close()
        finally:
            raw.close()
        rep.records = size
        rep.root_hash = merkle.Frontier(size, stack).root().hex() if size else merkle.EMPTY_ROOT.hex()
        for tsize in sorted(checkpoints):
            if tsize > size:
                labels = ",".join(sorted({lab for lab, _ in checkpoints[tsize]}))
                rep.add("truncated", f"a {labels} signed tree head covers {tsize} records but the store holds "
                        f"{size}: the tail was cut off", tree_size=tsize)
        if nodes and size:
            stray = [k for k in nodes if (k[1] + 1) << k[0] <= size]
            if stray:
                rep.add("node_mismatch", f"{len(stray)} cached nodes do not belong to the tree")
        rep.unsigned_tail = max(0, size - rep.latest_signed_size)
        if strict and rep.unsigned_tail:
            rep.add("unsigned_tail", f"{rep.unsigned_tail} records after the newest signed tree head")
        rep.elapsed_s = round(time.perf_counter() - t0, 3)
        return rep

    @staticmethod
    def _check_sig(sth: SignedTreeHead, keys: dict, rep: VerifyReport, label: str) -> None:
        pub = keys.get(sth.key_id)
        if pub is None:
            rep.add("bad_signature", f"{label} tree head of size {sth.tree_size} is signed by unknown key "
                    f"{sth.key_id[:16]}…", tree_size=sth.tree_size)
            return
        try:
            sth.verify(pub)
        except SignatureError as e:
            rep.add("bad_signature", f"{label}: {e}", tree_size=sth.tree_size)


def _sth(row) -> SignedTreeHead:
    return SignedTreeHead(int(row[0]), int(row[1]), bytes(row[2]), bytes(row[3]), row[4])

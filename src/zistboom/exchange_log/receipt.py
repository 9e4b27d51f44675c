"""Offline receipt verification: no database, no settings, only the receipt file (and optionally a
pinned public key).

A receipt is canonical JSON (sorted keys, compact — the same encoding as records)::

    {"format": "zistboom-exchange-receipt/1",
     "record": {...},                         # the exchange-log record itself
     "leaf_index": int,
     "inclusion_proof": [hex, ...],           # RFC 9162 §2.1.3 audit path, 32-byte hashes
     "sth": {"tree_size", "timestamp_ms", "root_hash", "signature", "key_id"},   # RFC 6962 §3.5
     "public_key": {"algorithm": "Ed25519", "raw": hex}}

Checks, in order: the file is exactly the canonical encoding of its content (so no byte can change
without changing a value); every field is present, typed and strict (lowercase hex of the right
length, no extra keys); the leaf hash SHA-256(0x00 || canonical(record)) with the inclusion proof
leads to the signed root; the tree head's Ed25519 signature verifies under the receipt's key, which
must equal the pinned key when one is given.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from zistboom.exchange_log import merkle
from zistboom.exchange_log.keys import SignedTreeHead, key_id_of, public_raw, strict_hex

RECEIPT_FORMAT = "zistboom-exchange-receipt/1"
_KEYS = {"format", "record", "leaf_index", "inclusion_proof", "sth", "public_key"}


class ReceiptError(ValueError):
    """The receipt is malformed or does not verify; the message says why."""


def dumps_receipt(receipt: dict) -> bytes:
    """The receipt's file bytes (canonical JSON)."""
    return orjson.dumps(receipt, option=orjson.OPT_SORT_KEYS)


def verify_receipt_bytes(data: bytes, pinned_key: Ed25519PublicKey | None = None) -> dict:
    """Verify a receipt file's bytes; return the record on success, raise :class:`ReceiptError`."""
    if data.endswith(b"\r\n"):  # a receipt saved with `> file` or by an editor gains a line end
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise ReceiptError(f"not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise ReceiptError("receipt must be a JSON object")
    if dumps_receipt(obj) != data:
        raise ReceiptError("receipt is not in canonical form (bytes were changed or re-formatted)")
    return verify_receipt(obj, pinned_key)


def verify_receipt(obj: dict, pinned_key: Ed25519PublicKey | None = None) -> dict:
    """Verify a parsed receipt (see module docstring); return the record or raise ReceiptError."""
    if not isinstance(obj, dict) or set(obj) != _KEYS:
        raise ReceiptError(f"receipt must have exactly the keys {sorted(_KEYS)}")
    if obj["format"] != RECEIPT_FORMAT:
        raise ReceiptError(f"unknown receipt format {obj['format']!r}")
    record = obj["record"]
    if not isinstance(record, dict) or not isinstance(record.get("request_id"), str):
        raise ReceiptError("record must be an object with a request_id")
    index = obj["leaf_index"]
    if type(index) is not int or index < 0:
        raise ReceiptError("leaf_index must be a non-negative integer")
    proof = obj["inclusion_proof"]
    if not isinstance(proof, list):
        raise ReceiptError("inclusion_proof must be a list")
    pk = obj["public_key"]
    try:
        path = [strict_hex(p, 32) for p in proof]
        sth = SignedTreeHead.from_json(obj["sth"])
        if not isinstance(pk, dict) or set(pk) != {"algorithm", "raw"} or pk["algorithm"] != "Ed25519":
            raise ValueError("public_key must be {'algorithm': 'Ed25519', 'raw': hex}")
        pub = Ed25519PublicKey.from_public_bytes(strict_hex(pk["raw"], 32))
    except ValueError as e:
        raise ReceiptError(str(e)) from None
    if pinned_key is not None and public_raw(pinned_key) != public_raw(pub):
        raise ReceiptError("receipt is signed with a different key than the pinned one")
    if sth.key_id != key_id_of(public_raw(pub)):
        raise ReceiptError("tree head key id does not match the public key")
    try:
        sth.verify(pub)
    except ValueError as e:
        raise ReceiptError(str(e)) from None
    leaf = merkle.leaf_hash(orjson.dumps(record, option=orjson.OPT_SORT_KEYS))
    try:
        merkle.verify_inclusion(index, sth.tree_size, leaf, path, sth.root_hash)
    except merkle.ProofError as e:
        raise ReceiptError(f"inclusion proof: {e}") from None
    return record


def verify_receipt_file(path: str | Path, pinned_key: Ed25519PublicKey | None = None) -> dict:
    """Read and verify the receipt at ``path``; return the record or raise ReceiptError/OSError."""
    return verify_receipt_bytes(Path(path).read_bytes(), pinned_key)


def main(argv: list[str] | None = None) -> int:
    """``python -m zistboom.exchange_log.receipt FILE [--public-key KEY]`` (same as
    ``zistboom log verify-receipt``); exit 0 when valid, 1 when not, 2 on unreadable input."""
    ap = argparse.ArgumentParser(prog="zistboom log verify-receipt")
    ap.add_argument("file")
    ap.add_argument("--public-key", help="pin the log's public key (PEM, hex or raw file)")
    args = ap.parse_args(argv)
    return run_verify(args.file, args.public_key)


def run_verify(file: str, public_key_file: str | None) -> int:
    from zistboom.exchange_log.keys import load_public_key

    try:
        pinned = load_public_key(Path(public_key_file).read_bytes()) if public_key_file else None
        record = verify_receipt_file(file, pinned)
    except ReceiptError as e:
        print(f"INVALID receipt: {e}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:
        print(f"cannot read: {e}", file=sys.stderr)
        return 2
    print(f"OK receipt for request {record['request_id']} (client {record.get('client_id')}, "
          f"time {record.get('time')})" + ("" if public_key_file else " — key not pinned; pass --public-key"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``zistboom log`` commands.

* ``log verify [--sth FILE ...] [--public-key FILE] [--json]`` — check the whole store; exit 0 when
  it verifies, 1 when any problem is found.
* ``log receipt REQUEST_ID [-o FILE]`` — write the JSON receipt of one exchange.
* ``log verify-receipt FILE [--public-key FILE]`` — check a receipt offline (no database).
* ``log sth [-o FILE]`` — the latest signed tree head as JSON (keep it: it is how a later cut-off
  tail is proven with ``log verify --sth``).
* ``log public-key [-o FILE] [--raw]`` — export the public key (PEM, or hex with ``--raw``).
* ``log consistency OLD_STH NEW_STH`` — check that the newer head extends the older one
  (RFC 9162 consistency proof from the store).

Imports of the database layer are kept inside the handlers so ``verify-receipt`` runs without it.
"""

from __future__ import annotations

import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("log", help="signed exchange log: verify, receipts, tree heads")
    sub = p.add_subparsers(dest="log_command", metavar="LOG_COMMAND")

    def common(sp):
        sp.add_argument("--database-url", help="store URL (default: the configured database)")
        sp.add_argument("--public-key", help="pin the log's public key (PEM or hex); default: from the key file")

    v = sub.add_parser("verify", help="verify every record, tree head and signature in the store")
    common(v)
    v.add_argument("--sth", action="append", default=[], metavar="FILE",
                   help="an older signed tree head (JSON from 'log sth') that must still be covered")
    v.add_argument("--json", action="store_true", help="print the report as JSON")
    v.add_argument("--strict", action="store_true",
                   help="also fail on records after the newest signed tree head (use when the gateway is stopped)")
    v.set_defaults(func=_one_line_errors(_verify))

    r = sub.add_parser("receipt", help="write the JSON receipt of one exchange")
    common(r)
    r.add_argument("request_id")
    r.add_argument("-o", "--output", help="file to write (default: stdout)")
    r.set_defaults(func=_one_line_errors(_receipt))

    vr = sub.add_parser("verify-receipt", help="check a receipt offline, without the database")
    vr.add_argument("file")
    vr.add_argument("--public-key", help="pin the log's public key (PEM or hex)")
    vr.set_defaults(func=_verify_receipt)

    s = sub.add_parser("sth", help="print the latest signed tree head")
    common(s)
    s.add_argument("-o", "--output")
    s.set_defaults(func=_one_line_errors(_sth))

    k = sub.add_parser("public-key", help="export the log's public key")
    k.add_argument("-o", "--output")
    k.add_argument("--raw", action="store_true", help="64 hex characters instead of PEM")
    k.set_defaults(func=_one_line_errors(_public_key))

    c = sub.add_parser("consistency", help="prove a newer signed tree head extends an older one")
    common(c)
    c.add_argument("old_sth")
    c.add_argument("new_sth")
    c.set_defaults(func=_one_line_errors(_consistency))

    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _one_line_errors(fn):
    """Turn an unreachable or unmigrated database into a one-line message and exit code 2; the same
    for a file that cannot be read or parsed (``--public-key``, a signed tree head, a damaged key
    file under var/), which used to end in a traceback."""

    def run(args) -> int:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            return fn(args)
        except SQLAlchemyError as e:
            msg = str(e).splitlines()[0]
            print(f"database error: {msg}\n(is the database reachable and migrated? `zistboom migrate`)",
                  file=sys.stderr)
            return 2
        except (OSError, ValueError) as e:  # orjson.JSONDecodeError and cryptography's key errors are ValueErrors
            msg = (str(e).splitlines() or [type(e).__name__])[0]
            print(f"error: {msg}", file=sys.stderr)
            return 2

    return run


def _settings():
    from zistboom.config import get_settings

    return get_settings()


def _store(args):
    from zistboom.exchange_log.keys import key_path, load_public_from_key_file, load_public_key
    from zistboom.exchange_log.store import ExchangeLogStore

    url = args.database_url or _settings().resolved_database_url()
    pub = None
    if getattr(args, "public_key", None):
        pub = load_public_key(Path(args.public_key).read_bytes())
    else:
        kp = key_path(_settings().var_dir)
        if kp.exists():
            pub = load_public_from_key_file(kp)
    return ExchangeLogStore(url, public_key=pub)


def _write(data: bytes, output: str | None) -> None:
    if output:
        Path(output).write_bytes(data)
    else:
        sys.stdout.buffer.write(data + (b"" if data.endswith(b"\n") else b"\n"))
        sys.stdout.flush()


def _load_sth(path: str):
    import orjson

    from zistboom.exchange_log.keys import SignedTreeHead

    return SignedTreeHead.from_json(orjson.loads(Path(path).read_bytes()))


def _verify(args) -> int:
    import orjson

    try:
        trusted = [_load_sth(f) for f in args.sth]
    except (OSError, ValueError) as e:
        print(f"cannot read signed tree head: {e}", file=sys.stderr)
        return 2
    store = _store(args)
    if store.public_key is None:
        print("warning: no key file and no --public-key; checking signatures against keys in the database",
              file=sys.stderr)
    rep = store.verify(trusted, strict=args.strict)
    if args.json:
        _write(orjson.dumps(rep.to_json(), option=orjson.OPT_INDENT_2), None)
    else:
        state = "OK" if rep.ok else "FAILED"
        print(f"{state}: {rep.records} records, {rep.tree_heads} signed tree heads (+{rep.trusted_heads} given), "
              f"latest signed size {rep.latest_signed_size}, unsigned tail {rep.unsigned_tail}, "
              f"root {rep.root_hash[:16]}…, {rep.elapsed_s} s")
        for p in rep.problems[:50]:
            where = f" seq={p['seq']}" if "seq" in p else (f" size={p['tree_size']}" if "tree_size" in p else "")
            print(f"  [{p['code']}]{where} {p['message']}")
        if len(rep.problems) > 50:
            print(f"  … {len(rep.problems) - 50} more")
    return 0 if rep.ok else 1


def _receipt(args) -> int:
    from zistboom.exchange_log.receipt import dumps_receipt
    from zistboom.exchange_log.store import ReceiptPending

    store = _store(args)
    try:
        r = store.receipt(args.request_id)
    except ReceiptPending:
        print("the record is not yet covered by a signed tree head; retry in a second", file=sys.stderr)
        return 3
    if r is None:
        print(f"no record with request id {args.request_id!r}", file=sys.stderr)
        return 1
    _write(dumps_receipt(r), args.output)
    return 0


def _verify_receipt(args) -> int:
    from zistboom.exchange_log.receipt import run_verify

    return run_verify(args.file, args.public_key)


def _sth(args) -> int:
    import orjson

    sth = _store(args).latest_sth()
    if sth is None:
        print("no signed tree head yet", file=sys.stderr)
        return 1
    _write(orjson.dumps(sth.to_json(), option=orjson.OPT_SORT_KEYS), args.output)
    return 0


def _public_key(args) -> int:
    from zistboom.exchange_log.keys import key_path, load_or_create_signer

    signer = load_or_create_signer(key_path(_settings().var_dir))
    data = signer.public_raw.hex().encode() if args.raw else signer.public_pem()
    _write(data, args.output)
    return 0


def _consistency(args) -> int:
    from zistboom.exchange_log import merkle

    store = _store(args)
    old, new = _load_sth(args.old_sth), _load_sth(args.new_sth)
    keys = store.public_keys()
    try:
        for sth in (old, new):
            pub = keys.get(sth.key_id)
            if pub is None:
                raise ValueError(f"unknown key {sth.key_id}")
            sth.verify(pub)
        if old.tree_size == 0:
            print("OK: the empty tree is a prefix of every tree")
            return 0
        proof = store.consistency_proof(old.tree_size, new.tree_size)
        merkle.verify_consistency(old.tree_size, new.tree_size, old.root_hash, new.root_hash, proof)
    except (ValueError, LookupError) as e:
        print(f"NOT consistent: {e}", file=sys.stderr)
        return 1
    print(f"OK: tree of {new.tree_size} extends tree of {old.tree_size} ({len(proof)} proof hashes)")
    return 0

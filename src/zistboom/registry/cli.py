"""``zistboom migrate`` and ``zistboom seed``."""

from __future__ import annotations

import argparse
import sys


def _db_url(args) -> str:
    from zistboom.config import get_settings

    return args.database_url or get_settings().resolved_database_url()


def cmd_migrate(args) -> int:
    from zistboom.registry.migrate import upgrade

    url = _db_url(args)
    upgrade(url)
    print(f"migrated: {url}")
    return 0


def cmd_seed(args) -> int:
    from zistboom.config import get_settings
    from zistboom.registry.catalog import SharedDataMissing
    from zistboom.registry.db import make_engine, make_sessionmaker, session_scope
    from zistboom.registry.migrate import upgrade
    from zistboom.registry.seed import is_seeded, seed, write_client_keys

    settings = get_settings()
    url = _db_url(args)
    upgrade(url)
    engine = make_engine(url)
    try:
        with session_scope(make_sessionmaker(engine)) as s:
            if is_seeded(s):
                print("already seeded; nothing to do")
                return 0
            try:
                keys = seed(s, operators_base_port=settings.operators_base_port)
            except SharedDataMissing as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
    finally:
        engine.dispose()
    path = settings.ensure_var_dir() / "demo-clients.json"
    write_client_keys(path, keys)
    print(f"seeded the demo ecosystem; client API keys written to {path} (0600)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("migrate", help="apply database migrations")
    p.add_argument("--database-url", help="SQLAlchemy URL (default: ZISTBOOM_DATABASE_URL or SQLite under ./var)")
    p.set_defaults(func=cmd_migrate)
    p = sub.add_parser("seed", help="migrate and seed the demo ecosystem (once)")
    p.add_argument("--database-url")
    p.set_defaults(func=cmd_seed)

"""``zistboom admin`` (serve the admin API + dashboard), ``zistboom admin token`` and
``zistboom admin province-token IR-xx``."""

from __future__ import annotations

import argparse
import re
import sys


def _settings():
    from zistboom.config import get_settings

    return get_settings()


def cmd_serve(args) -> int:
    """Migrate (no-op when up to date) and serve ``create_admin_app`` with uvicorn."""
    import uvicorn

    from zistboom.admin.app import create_admin_app
    from zistboom.admin.auth import load_or_create_admin_token
    from zistboom.registry.migrate import upgrade

    settings = _settings()
    var_dir = settings.ensure_var_dir()
    url = args.database_url or settings.resolved_database_url()
    upgrade(url)
    _token, created = load_or_create_admin_token(var_dir)
    if created:
        print(f"admin token created at {var_dir / 'admin-token'} (print it with: zistboom admin token)")
    host = args.host or settings.admin_host
    port = args.port or settings.admin_port
    print(f"admin API: http://{host}:{port}/admin/v1  docs: http://{host}:{port}/admin/docs")
    uvicorn.run(create_admin_app(url, var_dir=var_dir), host=host, port=port, log_level=args.log_level)
    return 0


def cmd_token(_args) -> int:
    """Print the admin token (created on first use)."""
    from zistboom.admin.auth import load_or_create_admin_token

    token, _ = load_or_create_admin_token(_settings().ensure_var_dir())
    print(token)
    return 0


def cmd_province_token(args) -> int:
    """Issue and print a token for the dashboard's read-only view of one province (ISO 3166-2 code
    ``IR-00``..``IR-30``); the admin API refuses it (403)."""
    from zistboom.admin.auth import issue_province_token
    from zistboom.text.digits import to_ascii_digits

    code = to_ascii_digits(args.province.strip()).upper()
    if not re.fullmatch(r"IR-\d{2}", code) or not 0 <= int(code[3:]) <= 30:
        print(f"error: {args.province!r} is not a province code (IR-00 .. IR-30)", file=sys.stderr)
        return 2
    print(issue_province_token(_settings().ensure_var_dir(), code))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("admin", help="serve the admin API and dashboard; manage admin tokens")
    p.add_argument("--host", help="listen address (default: ZISTBOOM_ADMIN_HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, help="listen port (default: ZISTBOOM_ADMIN_PORT or 8081)")
    p.add_argument("--database-url", help="SQLAlchemy URL (default: ZISTBOOM_DATABASE_URL or SQLite under ./var)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=cmd_serve)
    admin_sub = p.add_subparsers(dest="admin_command", metavar="ACTION")
    t = admin_sub.add_parser("token", help="print the admin token (creates it on first use)")
    t.set_defaults(func=cmd_token)
    pt = admin_sub.add_parser("province-token", help="issue a dashboard token for the read-only view of one province (not valid on the admin API)")
    pt.add_argument("province", help="ISO 3166-2 code, e.g. IR-01")
    pt.set_defaults(func=cmd_province_token)

"""``zistboom status`` (cluster and province health as a Persian/English table) and ``zistboom
monitor`` (standalone monitor: own prober + sink + evaluator, for when no gateway probes)."""

from __future__ import annotations

import argparse
import asyncio
import math
import signal
import sys

from zistboom.config import get_settings
from zistboom.monitoring.settings import MonitorSettings
from zistboom.text.digits import to_persian_digits

_STYLE = {"operational": "green", "degraded": "yellow", "partial_outage": "dark_orange", "major_outage": "red",
          "unknown": "grey50"}


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x * 100:.3f}% ({to_persian_digits(f'{x * 100:.3f}').replace('.', '٫')}٪)"


def _both(n: int) -> str:
    """A count for the bilingual tables: Persian digits, then ASCII (``۱۲ / 12``)."""
    return f"{to_persian_digits(n)} / {n}"


def _status(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table
    from sqlalchemy import select

    from zistboom.monitoring.status import StatusBuilder
    from zistboom.registry import models as m
    from zistboom.registry.db import make_engine, make_sessionmaker, utcnow
    from zistboom.registry.snapshot import load_snapshot

    console = Console()
    url = args.db_url or get_settings().resolved_database_url()
    try:
        engine = make_engine(url)
    except Exception as exc:  # a malformed URL (sqlalchemy ArgumentError), an unknown driver...
        console.print(f"[red]نشانی پایگاه داده نامعتبر است — bad database URL: {exc}[/red]")
        return 2
    try:
        with make_sessionmaker(engine)() as s:
            try:
                snap = load_snapshot(s)
                b = StatusBuilder(s, snap, utcnow(), MonitorSettings.from_any(None))
                names = {c.id: (c.name_fa, c.name_en) for c in s.scalars(select(m.Cluster))}
            except Exception as exc:  # not migrated / unreachable
                console.print(f"[red]پایگاه داده در دسترس نیست یا مهاجرت نشده است — database not ready: {exc}[/red]")
                return 1
            if args.province and args.province not in snap.provinces:  # was an empty table and exit 0
                console.print(f"[red]استان ناشناخته — unknown province: {args.province} (e.g. IR-23)[/red]")
                return 2
            t = Table(title="وضعیت خوشه‌ها — Cluster health", show_lines=False)
            for col in ("خوشه / Cluster", "وضعیت / Status", "خدمات / Services", "رخداد باز / Open incidents"):
                t.add_column(col)
            for cid in sorted(names):
                doc = b.cluster(cid)
                if doc is None:
                    continue
                st = doc["status"]
                t.add_row(f"{names[cid][0]} / {names[cid][1]}", f"[{_STYLE[st]}]{doc['status_fa']} / {st}[/]",
                          _both(len(doc["services"])), _both(sum(1 for i in doc["incidents"] if i["state"] != "resolved")))
            console.print(t)
            p = Table(title="وضعیت استان‌ها — Province health")
            for col in ("استان / Province", "وضعیت / Status", "خدمات / Services", "قطع / Out", "رخداد باز / Open incidents"):
                p.add_column(col)
            for code in sorted(snap.provinces):
                if args.province and code != args.province:
                    continue
                doc = b.province(code)
                st = doc["status"]
                out = [x["service_id"] for x in doc["services"] if x["status"] == "major_outage"]
                p.add_row(f"{doc['name_fa']} / {doc['name_en']} ({code})", f"[{_STYLE[st]}]{doc['status_fa']} / {st}[/]",
                          _both(len(doc["services"])), ", ".join(out) or "—",
                          _both(sum(1 for i in doc["incidents"] if i["state"] != "resolved")))
            console.print(p)
    finally:
        engine.dispose()
    return 0


def _monitor(args: argparse.Namespace) -> int:
    from zistboom.monitoring.prober import Prober
    from zistboom.monitoring.sink import make_sink

    url = args.db_url or get_settings().resolved_database_url()
    for name, value in (("--interval", args.interval), ("--timeout", args.timeout)):
        if value is not None and not (math.isfinite(value) and value > 0):  # 0 was silently the default
            print(f"zistboom monitor: {name} must be a positive number of seconds, not {value}", file=sys.stderr)
            return 2
    try:
        settings = MonitorSettings.from_any(None, role="standalone",
                                            **({"probe_interval": args.interval} if args.interval is not None else {}),
                                            **({"probe_timeout": args.timeout} if args.timeout is not None else {}))
    except ValueError as exc:  # e.g. a timeout not below the interval, or a bad ZISTBOOM_MONITOR_* variable
        print(f"zistboom monitor: {exc}", file=sys.stderr)
        return 2
    sink = make_sink(url, settings)
    sink.start()
    prober = Prober(sink.evaluator.session_factory, sink.on_probe, settings, instance_id=sink.instance_id)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, prober.stop)
            except NotImplementedError:  # pragma: no cover - non-Unix
                pass
        await prober.run()

    print(f"zistboom monitor: probing every {settings.probe_interval}s (timeout {settings.probe_timeout}s); Ctrl-C to stop")
    try:
        asyncio.run(main())
    finally:
        sink.close()
    return 0


def register(subparsers) -> None:
    """Add ``status`` and ``monitor`` to the ``zistboom`` command."""
    p = subparsers.add_parser("status", help="cluster and province health (وضعیت خدمات)")
    p.add_argument("--db-url", help="database URL (default: settings)")
    p.add_argument("--province", help="only this province (ISO 3166-2 code, e.g. IR-23)")
    p.set_defaults(func=_status)
    q = subparsers.add_parser("monitor", help="standalone monitor: probe operators, measure, open incidents, sanction")
    q.add_argument("--db-url", help="database URL (default: settings)")
    q.add_argument("--interval", type=float, help="probe interval in seconds (default 5)")
    q.add_argument("--timeout", type=float, help="probe timeout in seconds (default 2)")
    q.set_defaults(func=_monitor)

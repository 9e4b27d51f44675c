"""``zistboom operators`` (the demo operators) and ``zistboom run`` (the whole demo ecosystem)."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from urllib.parse import urlsplit


def _operators_from_db(url: str) -> list[tuple[str, str, int]]:
    """``(operator_id, host, port)`` of every operator whose endpoint is on this machine."""
    from sqlalchemy import select

    from zistboom.registry import models as m
    from zistboom.registry.db import make_engine, make_sessionmaker, session_scope

    engine = make_engine(url)
    try:
        with session_scope(make_sessionmaker(engine)) as s:
            out = []
            for op in s.scalars(select(m.Operator).order_by(m.Operator.id)):
                for ep in op.endpoints:
                    parts = urlsplit(ep)
                    if parts.hostname in ("127.0.0.1", "localhost") and parts.port:
                        out.append((op.id, parts.hostname, parts.port))
                        break
            return out
    finally:
        engine.dispose()


def _start_operators(group, operators, latency_ms: float, failure_rate: float) -> None:
    for op_id, host, port in operators:
        group.python_module(
            f"operator-{op_id}", "zistboom.demo.operator_server", "--id", op_id, "--host", host,
            "--port", str(port), "--latency-ms", str(latency_ms), "--failure-rate", str(failure_rate),
            ready_url=f"http://{host}:{port}/healthz",
        )


def _wait_forever(group) -> None:
    """Block until SIGINT (Ctrl-C) or SIGTERM. Both handlers are installed explicitly: a process
    started in the background by a non-interactive shell inherits SIGINT as *ignored*, and Python
    then never raises KeyboardInterrupt. Children that die meanwhile are reaped (no zombies)."""
    stop = {"flag": False}

    def _handler(_sig, _frm):
        stop["flag"] = True

    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)
    while not stop["flag"]:
        group.reap()
        time.sleep(0.5)


def cmd_operators(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from zistboom.config import get_settings
    from zistboom.demo.processes import ProcessGroup, port_free

    settings = get_settings()
    console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 140)
    operators = _operators_from_db(args.database_url or settings.resolved_database_url())
    if not operators:
        console.print("[red]no operators with a local endpoint in the registry; run `zistboom seed` first[/red]")
        return 2
    busy = [f"{h}:{p}" for _, h, p in operators if not port_free(h, p)]
    if busy:
        console.print(f"[red]ports already in use: {', '.join(busy)}[/red]")
        return 2
    with ProcessGroup(settings.var_dir / "logs") as group:
        _start_operators(group, operators, args.latency_ms, args.failure_rate)
        failed = group.wait_ready(30)
        table = Table(title="Demo operators / اپراتورهای نمایشی")
        for col in ("operator", "pid", "endpoint", "up"):
            table.add_column(col)
        for op_id, host, port in operators:
            child = group.children[f"operator-{op_id}"]
            table.add_row(op_id, str(child.pid), f"http://{host}:{port}", "no" if child in failed else "yes")
        console.print(table)
        console.print("Ctrl-C stops them all.")
        _wait_forever(group)
    return 0


def _load_demo_keys(settings, url: str) -> dict[str, str]:
    """Plain API keys of the demo clients: from var/demo-clients.json, or new keys added to each
    demo client when that file is gone (plain keys are never stored in the database)."""
    from zistboom.registry import models as m
    from zistboom.registry.db import make_engine, make_sessionmaker, session_scope
    from zistboom.registry.seed import CLIENTS, write_client_keys
    from zistboom.registry.snapshot import bump_version, hash_api_key

    path = settings.var_dir / "demo-clients.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    import secrets

    keys = {}
    engine = make_engine(url)
    try:
        with session_scope(make_sessionmaker(engine)) as s:
            for cid in CLIENTS:
                if s.get(m.ClientSystem, cid) is None:
                    continue
                key = "zb_" + secrets.token_urlsafe(32)
                s.add(m.ApiKey(client_id=cid, key_hash=hash_api_key(key), prefix=key[:10]))
                keys[cid] = key
            bump_version(s)
    finally:
        engine.dispose()
    write_client_keys(path, keys)
    return keys


def _one_call(gateway: str, key: str, province: str, path: str) -> tuple[int, str | None, dict]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(f"{gateway}{path}", headers={"X-Api-Key": key, "X-Caller-Province": province})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - 127.0.0.1 only
            return resp.status, resp.headers.get("X-Zistboom-Operator"), json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("X-Zistboom-Operator"), {}
    except (urllib.error.URLError, OSError):
        return 0, None, {}


def _failovers(gateway: str) -> float:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"{gateway}/metrics", timeout=5) as resp:  # noqa: S310
            text = resp.read().decode()
    except OSError:
        return float("nan")
    return sum(s.value for fam in text_string_to_metric_families(text) if fam.name == "zistboom_gateway_failovers"
               for s in fam.samples if s.name.endswith("_total"))


def cmd_run(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from zistboom.admin.auth import load_or_create_admin_token
    from zistboom.config import get_settings
    from zistboom.demo.processes import ProcessGroup, port_free
    from zistboom.demo.traffic import drive, percentile
    from zistboom.registry.catalog import SharedDataMissing
    from zistboom.registry.db import make_engine, make_sessionmaker, session_scope
    from zistboom.registry.migrate import upgrade
    from zistboom.registry.seed import CLIENTS, is_seeded, seed, write_client_keys

    console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 140)
    settings = get_settings()
    var = settings.ensure_var_dir()
    url = settings.resolved_database_url()
    console.rule("[bold]zistboom — زیست‌بوم")
    console.print(f"database: {url}")
    upgrade(url)
    engine = make_engine(url)
    try:
        with session_scope(make_sessionmaker(engine)) as s:
            if not is_seeded(s):
                try:
                    keys = seed(s, operators_base_port=settings.operators_base_port)
                except SharedDataMissing as exc:
                    console.print(f"[red]{exc}[/red]")
                    return 2
                write_client_keys(var / "demo-clients.json", keys)
                from sqlalchemy import func, select  # noqa: PLC0415

                from zistboom.registry import models as m  # noqa: PLC0415

                n = {k: s.scalar(select(func.count()).select_from(t)) for k, t in (
                    ("provinces", m.Province), ("clusters", m.Cluster), ("services", m.Service),
                    ("operators", m.Operator), ("licences", m.Licence), ("client systems", m.ClientSystem))}
                console.print("seeded the demo ecosystem (" + ", ".join(f"{v} {k}" for k, v in n.items()) + ")")
    finally:
        engine.dispose()
    keys = _load_demo_keys(settings, url)
    token, created = load_or_create_admin_token(var)
    operators = _operators_from_db(url)
    gw = f"http://{settings.gateway_host}:{settings.gateway_port}"
    admin = f"http://{settings.admin_host}:{settings.admin_port}"
    wanted = [(settings.gateway_host, settings.gateway_port), (settings.admin_host, settings.admin_port)]
    wanted += [(h, p) for _, h, p in operators]
    busy = [f"{h}:{p}" for h, p in wanted if not port_free(h, p)]
    if busy:
        console.print(f"[red]ports already in use: {', '.join(busy)} — stop what holds them or set "
                      "ZISTBOOM_GATEWAY_PORT / ZISTBOOM_ADMIN_PORT / ZISTBOOM_OPERATORS_BASE_PORT "
                      "(the last one before the first seed)[/red]")
        return 2
    with ProcessGroup(var / "logs") as group:
        _start_operators(group, operators, args.latency_ms, args.failure_rate)
        # one BLAS/ONNX thread: the gateway's event loop shares 2 cores with everything else, and
        # the front door's encoder measured p50 ~2x and p99 ~10x better that way under load
        group.python_module("gateway", "zistboom", "gateway", "--host", settings.gateway_host,
                            "--port", str(settings.gateway_port), "--database-url", url, ready_url=f"{gw}/healthz",
                            env={"OMP_NUM_THREADS": "1"})
        group.python_module("admin", "zistboom", "admin", ready_url=f"{admin}/admin/v1/openapi.json")
        failed = group.wait_ready(90)
        if failed:
            for child in failed:
                console.print(f"[red]{child.name} did not come up; see {child.log_path}[/red]")
            return 1
        rasht_key = keys.get("bank-melli-rasht", "")
        curl = (f'curl -si -H "X-Api-Key: {rasht_key}" -H "X-Caller-Province: IR-01" '
                f'"{gw}/v1/services/transport.traffic-fines/fines?q=12B345-67"')
        console.print(f"gateway:   {gw}   (metrics {gw}/metrics)")
        console.print(f"admin API: {admin}/admin/v1   docs {admin}/admin/docs")
        console.print(f"dashboard: {admin}/   (sign in with the admin token below)")
        console.print(f"admin token{' (new)' if created else ''}: {token}   (also in {var / 'admin-token'})")
        console.print("\n[bold]Try it[/bold] — traffic fines for a car, asked by a bank in Rasht (Gilan); the "
                      "x-zistboom-operator header names the operator that answered:")
        console.print(curl, soft_wrap=True)
        console.print(f'curl -s -H "Authorization: Bearer {token}" "{admin}/admin/v1/licences?status=active&limit=5"',
                      soft_wrap=True)
        console.print(f"""curl -s -X POST "{gw}/v1/ask" -H "Content-Type: application/json" -H "X-Caller-Province: IR-01" -d '{{"text": "میخوام خلافی ماشینم رو ببینم"}}'""",
                      soft_wrap=True)
        # The call the README talks about, and the operator that answered it.
        status, first_op, _ = _one_call(gw, rasht_key, "IR-01", "/v1/services/transport.traffic-fines/fines?q=12B345-67")
        console.print(f"\ntraffic fines from Gilan: HTTP {status}, answered by [bold]{first_op}[/bold]")
        clients = {cid: (keys[cid], CLIENTS[cid][1]) for cid in CLIENTS if cid in keys}
        victim = f"operator-{first_op}" if first_op and f"operator-{first_op}" in group.children else None
        kill_at = args.requests * 2 // 5
        killed = {"done": False}

        def on_progress(n: int) -> None:
            if victim and not killed["done"] and n >= kill_at:
                group.kill(victim)
                killed["done"] = True
                console.print(f"[yellow]… killed {first_op} (SIGKILL) after {n} requests[/yellow]")

        before = _failovers(gw)
        console.print(f"driving {args.requests} requests from {len(clients)} client systems "
                      f"({args.concurrency} connections)…")
        t0 = time.perf_counter()
        result = asyncio.run(drive(gw, clients, total=args.requests, concurrency=args.concurrency,
                                   on_progress=on_progress))
        elapsed = time.perf_counter() - t0
        failovers = _failovers(gw) - before
        status2, second_op, _ = _one_call(gw, rasht_key, "IR-01", "/v1/services/transport.traffic-fines/fines?q=12B345-67")
        table = Table(title="Demo traffic summary / خلاصهٔ ترافیک نمایشی")
        table.add_column("measure")
        table.add_column("value", justify="right")
        for name, value in (
            ("requests", result.requests), ("successes (2xx)", result.successes),
            ("failed", result.failures), ("failovers (gateway metric)", f"{failovers:.0f}"),
            ("p50 latency (ms)", f"{percentile(result.latencies_ms, 50):.1f}"),
            ("p99 latency (ms)", f"{percentile(result.latencies_ms, 99):.1f}"),
            ("requests/s", f"{result.requests / elapsed:.0f}"),
            ("statuses", ", ".join(f"{k}: {v}" for k, v in sorted(result.statuses.items()))),
        ):
            table.add_row(name, str(value))
        console.print(table)
        per_op = Table(title="answers per operator")
        per_op.add_column("operator")
        per_op.add_column("answers", justify="right")
        for op, n in result.by_operator.most_common():
            per_op.add_row(op + (" (killed)" if op == first_op else ""), str(n))
        console.print(per_op)
        per_prov = Table(title="requests per caller province")
        per_prov.add_column("province")
        per_prov.add_column("requests", justify="right")
        for prov, n in sorted(result.by_province.items()):
            per_prov.add_row(prov, str(n))
        console.print(per_prov)
        console.print(f"after the kill, traffic fines from Gilan: HTTP {status2}, answered by [bold]{second_op}[/bold]")
        if victim:
            group.restart(victim)
            console.print(f"{first_op} restarted; kill any operator yourself (pids below; logs in {var / 'logs'}) and "
                          "the curl above keeps answering.")
        pids = ", ".join(f"{c.name}={c.pid}" for c in group.children.values())
        console.print(f"processes: {pids}", soft_wrap=True)
        ok = result.failures == 0 and status == 200 and status2 == 200
        if args.no_wait:
            return 0 if ok else 1
        console.print("\n[bold]Up.[/bold] Ctrl-C stops every process this command started.")
        _wait_forever(group)
    console.print("stopped.")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("operators", help="start the seeded demo operators (one process each)")
    p.add_argument("--database-url")
    p.add_argument("--latency-ms", type=float, default=5.0, help="mean added latency per request (ms)")
    p.add_argument("--failure-rate", type=float, default=0.0, help="fraction of requests answered 503")
    p.set_defaults(func=cmd_operators)
    p = sub.add_parser("run", help="the demo: migrate, seed, start everything, drive traffic, stay up")
    p.add_argument("--requests", type=int, default=600)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--latency-ms", type=float, default=5.0)
    p.add_argument("--failure-rate", type=float, default=0.0)
    p.add_argument("--no-wait", action="store_true", help="exit after the summary (exit code 1 if any request failed)")
    p.set_defaults(func=cmd_run)

"""Gateway throughput benchmark: requests/s and p50/p99 latency at 1, 32 and 128 connections,
side by side, for

* ``direct``  — straight to one operator (the upper bound),
* ``gateway`` — through the zistboom gateway (auth + access check + contract match + routing on,
  its own server — :mod:`zistboom.gateway.server` — on uvloop/httptools, one process, no sinks),
* ``gw-uvicorn`` — with ``--uvicorn`` only: the same gateway app under uvicorn's httptools protocol,
* ``nginx``   — through Debian's nginx as a plain reverse proxy (one worker, upstream keep-alive),
  skipped with a note when nginx is not installed,
* ``gw+redis`` — with ``--redis URL`` only: the gateway with the client rate limit shared through
  Redis (one GCRA script call per request; :mod:`zistboom.gateway.shared_state`),

to the same operator, with ratios. The operator is an nginx ``return 200`` server when nginx is
installed (so the operator is not the bottleneck), else a small uvloop/httptools Python server.
Load comes from ``wrk`` when installed, else from a Python keep-alive loader in a separate process.
Everything listens on 127.0.0.1 only and every run is bounded in time (``--duration``).

    .venv/bin/python bench/gateway.py [--duration 5] [--connections 1,32,128]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
KEY = "bench-key-0123456789abcdef"
BODY = '{"fines":[],"total":0,"plate":"12ب345-67"}'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port}")


# ------------------------------------------------------------------------------ servers

PY_OPERATOR = textwrap.dedent(r'''
    import asyncio, sys, uvloop, httptools
    BODY = sys.argv[2].encode()
    RESP = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)
    class P(asyncio.Protocol):
        def connection_made(self, t):
            self.t = t; self.p = httptools.HttpRequestParser(self)
        def data_received(self, d):
            try: self.p.feed_data(d)
            except Exception: self.t.close()
        def on_message_complete(self):
            self.t.write(RESP)
    async def main():
        srv = await asyncio.get_running_loop().create_server(P, "127.0.0.1", int(sys.argv[1]), backlog=1024)
        await srv.serve_forever()
    uvloop.run(main())
''')


def start_nginx(conf: str, workdir: Path, name: str) -> subprocess.Popen:
    path = workdir / f"{name}.conf"
    path.write_text(conf)
    return subprocess.Popen(["nginx", "-c", str(path), "-p", str(workdir), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def nginx_conf(workdir: Path, name: str, server_block: str, upstream: str = "") -> str:
    return textwrap.dedent(f"""
        worker_processes 1;
        error_log {workdir}/{name}-error.log warn;
        pid {workdir}/{name}.pid;
        events {{ worker_connections 4096; }}
        http {{
            access_log off;
            client_body_temp_path {workdir}/{name}-body;
            proxy_temp_path {workdir}/{name}-proxy;
            fastcgi_temp_path {workdir}/{name}-fcgi;
            uwsgi_temp_path {workdir}/{name}-uwsgi;
            scgi_temp_path {workdir}/{name}-scgi;
            keepalive_requests 1000000;
            {upstream}
            server {{ {server_block} }}
        }}
    """)


def make_registry(db_url: str, operator_url: str) -> None:
    sys.path.insert(0, str(ROOT / "src"))
    from zistboom.registry import models as m
    from zistboom.registry.db import Base, make_engine, make_sessionmaker, session_scope
    from zistboom.registry.snapshot import bump_version, hash_api_key

    engine = make_engine(db_url)
    Base.metadata.create_all(engine)
    now = datetime.now(timezone.utc)
    with session_scope(make_sessionmaker(engine)) as s:
        s.add(m.Province(code="IR-01", sci_code=1, name_fa="تهران", name_en="Tehran", capital_fa="تهران",
                         capital_en="Tehran"))
        s.add(m.Cluster(id="transport", name_fa="حمل‌ونقل", name_en="Transport"))
        s.flush()
        s.add(m.Service(id="traffic-fines", cluster_id="transport", name_fa="خلافی", name_en="Traffic fines",
                        agency_fa="پلیس", agency_en="Police", service_type="G2C", level="national",
                        current_contract_version="1"))
        s.flush()
        s.add(m.ServiceContract(service_id="traffic-fines", version="1", openapi={
            "openapi": "3.0.3", "info": {"title": "fines", "version": "1"},
            "paths": {"/fines/{plate}": {"get": {"operationId": "getFines"}}}}))
        s.add(m.Operator(id="op1", name_fa="اپراتور", name_en="Operator", national_id="10000000001",
                         home_province="IR-01", endpoints=[operator_url], health_url=operator_url + "/health"))
        s.flush()
        lic = m.Licence(operator_id="op1", service_id="traffic-fines", status="active",
                        valid_from=now - timedelta(days=1), valid_until=now + timedelta(days=365))
        lic.province_links = [m.LicenceProvince(province_code="IR-01")]
        s.add(lic)
        c = m.ClientSystem(id="bench", name="bench", province="IR-01")
        c.keys = [m.ApiKey(key_hash=hash_api_key(KEY), prefix=KEY[:8])]
        c.access = [m.ClientAccess(service_id="traffic-fines")]
        s.add(c)
        bump_version(s)
    engine.dispose()


GATEWAY_RUNNER = textwrap.dedent('''
    import sys
    sys.path.insert(0, sys.argv[3])
    from zistboom.gateway.app import create_gateway
    from zistboom.gateway.config import GatewayConfig
    # rate limiting stays on, with a bucket the benchmark cannot empty; argv[4]: server ("own" or
    # "uvicorn"); argv[5]: optional shared Redis
    redis_url = sys.argv[5] if len(sys.argv) > 5 else None
    cfg = GatewayConfig(client_rate=1e7, client_burst=1e7, redis_url=redis_url,
                        redis_prefix=f"zistboom:bench:{sys.argv[2]}:")
    app = create_gateway(sys.argv[1], config=cfg)
    if sys.argv[4] == "uvicorn":  # the same app under uvicorn's httptools protocol, for comparison
        import uvicorn
        uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), loop="uvloop", http="httptools",
                    access_log=False, lifespan="on", proxy_headers=False, server_header=False,
                    log_level="warning", timeout_keep_alive=cfg.keep_alive_timeout)
    else:
        from zistboom.gateway.server import GatewayServer
        GatewayServer(app, "127.0.0.1", int(sys.argv[2]), config=cfg).run()
''')

# ------------------------------------------------------------------------------ load

PY_LOADER = textwrap.dedent(r'''
    import asyncio, json, sys, time, uvloop
    sys.path.insert(0, sys.argv[5])
    from zistboom.gateway.upstream import UpstreamClient
    port, path, conns, duration = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    hdrs = [(b"x-api-key", sys.argv[6].encode())]
    async def main():
        c = UpstreamClient(max_idle=conns, max_conns=conns)
        lat, errors = [], 0
        stop = time.monotonic() + duration
        async def worker():
            nonlocal errors
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                try:
                    r = await c.request("127.0.0.1", port, "GET", path, hdrs, b"", 10.0)
                    if r.status != 200: errors += 1
                except Exception:
                    errors += 1
                lat.append(time.perf_counter() - t0)
        t0 = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(conns)))
        el = time.monotonic() - t0
        lat.sort()
        q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")
        print(json.dumps({"rps": len(lat) / el, "requests": len(lat), "p50": q(0.5), "p99": q(0.99), "errors": errors}))
    uvloop.run(main())
''')


def _ms(v: str, unit: str) -> float:
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its direct children (nginx workers), in seconds (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(d.name) == pid or int(fields[1]) == pid:
            total += int(fields[11]) + int(fields[12])
    return total / tick


def run_load(port: int, path: str, conns: int, duration: float, pid: int | None = None, key: str = KEY) -> dict:
    """One load run (wrk, else the Python loader) → ``{"rps", "requests", "p50", "p99", "errors"}``
    (ms for p50/p99), plus ``cpu_us`` per request of ``pid`` and its direct children."""
    cpu0 = cpu_seconds(pid) if pid else 0.0
    res = _run_load(port, path, conns, duration, key)
    if pid and res.get("requests"):
        res["cpu_us"] = (cpu_seconds(pid) - cpu0) / res["requests"] * 1e6
    return res


USE_WRK = shutil.which("wrk") is not None


def _run_load(port: int, path: str, conns: int, duration: float, key: str = KEY) -> dict:
    if USE_WRK:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{conns}", f"-d{duration:g}s", "--latency", "--timeout", "10s", "-H", f"X-Api-Key: {key}",
             f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, timeout=duration + 30).stdout
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
        p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
        non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
        errs = re.search(r"Socket errors:.*", out)
        total = re.search(r"(\d+) requests in", out)
        return {"rps": rps, "requests": int(total.group(1)) if total else 0, "p50": _ms(*p50.groups()), "p99": _ms(*p99.groups()),
                "errors": int(non2xx.group(1)) if non2xx else 0, "socket_errors": errs.group(0) if errs else ""}
    import json

    out = subprocess.run([PY, "-c", PY_LOADER, str(port), path, str(conns), str(duration), str(ROOT / "src"), key],
                         capture_output=True, text=True, timeout=duration + 60)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------ main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per measurement (default 5)")
    ap.add_argument("--connections", default="1,32,128")
    ap.add_argument("--loader", choices=("auto", "python"), default="auto",
                    help="auto: wrk when installed, else the Python loader; python: always the Python loader")
    ap.add_argument("--rounds", type=int, default=3,
                    help="measure every cell this many times, targets interleaved, and report the median "
                         "(damps noise from other work on the machine; default 3)")
    ap.add_argument("--redis", default=None, metavar="URL",
                    help="also measure a gateway whose rate limits are shared through this Redis (e.g. redis://127.0.0.1:6379/0)")
    ap.add_argument("--uvicorn", action="store_true",
                    help="also measure the same gateway app under uvicorn's httptools protocol (the server it "
                         "had before zistboom.gateway.server)")
    args = ap.parse_args()
    conn_levels = [int(x) for x in args.connections.split(",")]
    global USE_WRK
    USE_WRK = USE_WRK and args.loader == "auto"
    have_nginx = shutil.which("nginx") is not None
    procs: list[subprocess.Popen] = []
    work = Path(tempfile.mkdtemp(prefix="zistboom-bench-"))
    try:
        op_port = free_port()
        if have_nginx:
            procs.append(start_nginx(nginx_conf(work, "operator", f"""
                listen 127.0.0.1:{op_port} backlog=4096;
                location / {{ default_type application/json; return 200 '{BODY}'; }}"""), work, "operator"))
            operator_kind = "nginx return-200"
        else:
            procs.append(subprocess.Popen([PY, "-c", PY_OPERATOR, str(op_port), BODY]))
            operator_kind = "python uvloop+httptools"
        wait_port(op_port)
        op_url = f"http://127.0.0.1:{op_port}"
        db_url = f"sqlite:///{work / 'registry.db'}"
        make_registry(db_url, op_url)
        gw_port = free_port()
        procs.append(subprocess.Popen([PY, "-c", GATEWAY_RUNNER, db_url, str(gw_port), str(ROOT / "src"), "own"]))
        wait_port(gw_port)
        targets = {"direct": op_port, "gateway": gw_port}
        pids = {"gateway": procs[-1].pid}
        if args.uvicorn:
            gu_port = free_port()
            procs.append(subprocess.Popen([PY, "-c", GATEWAY_RUNNER, db_url, str(gu_port), str(ROOT / "src"), "uvicorn"]))
            wait_port(gu_port)
            targets["gw-uvicorn"] = gu_port
            pids["gw-uvicorn"] = procs[-1].pid
        if args.redis:
            gr_port = free_port()
            procs.append(subprocess.Popen([PY, "-c", GATEWAY_RUNNER, db_url, str(gr_port), str(ROOT / "src"), "own",
                                           args.redis]))
            wait_port(gr_port)
            targets["gw+redis"] = gr_port
            pids["gw+redis"] = procs[-1].pid
        if have_nginx:
            ng_port = free_port()
            procs.append(start_nginx(nginx_conf(work, "proxy", f"""
                listen 127.0.0.1:{ng_port} backlog=4096;
                location / {{ proxy_pass http://op; proxy_http_version 1.1; proxy_set_header Connection "";
                             proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; }}""",
                upstream=f"upstream op {{ server 127.0.0.1:{op_port}; keepalive 256; }}"), work, "proxy"))
            wait_port(ng_port)
            targets["nginx"] = ng_port
            pids["nginx"] = procs[-1].pid
        path = "/v1/services/traffic-fines/fines/12345"
        loader = "wrk (1 thread)" if USE_WRK else "python keep-alive loader (separate process)"
        print(f"operator: {operator_kind}; load: {loader}; {args.duration:g}s per run, median of {args.rounds} "
              f"interleaved rounds; cores: {os.cpu_count()}; load average before: {os.getloadavg()[0]:.2f}")
        if not have_nginx:
            print("note: nginx not installed (apt-get install -y nginx) — nginx baseline skipped")
        # sanity + warm-up
        for name, port in targets.items():
            run_load(port, path, 8, 1.0)
        runs: dict[tuple[str, int], list[dict]] = {}
        for _ in range(args.rounds):
            for c in conn_levels:
                for name, port in targets.items():
                    runs.setdefault((name, c), []).append(run_load(port, path, c, args.duration, pids.get(name)))
        results: dict[tuple[str, int], dict] = {}
        for key, rs in runs.items():
            med = sorted(rs, key=lambda r: r["rps"])[len(rs) // 2]
            cpu = sorted(r["cpu_us"] for r in rs if "cpu_us" in r)
            results[key] = dict(med, errors=sum(r.get("errors", 0) for r in rs),
                                all_rps=[round(r["rps"]) for r in rs],
                                cpu_us=cpu[len(cpu) // 2] if cpu else None)
        print()
        hdr = f"{'conns':>5}  " + "  ".join(f"{n + ' req/s':>14} {'p50 ms':>7} {'p99 ms':>7}" for n in targets)
        hdr += "  gw/direct" + ("  gw/nginx" if "nginx" in targets else "")
        print(hdr)
        for c in conn_levels:
            row = f"{c:>5}  " + "  ".join(
                f"{results[(n, c)]['rps']:>14.0f} {results[(n, c)]['p50']:>7.2f} {results[(n, c)]['p99']:>7.2f}"
                for n in targets)
            gw = results[("gateway", c)]["rps"]
            row += f"  {gw / results[('direct', c)]['rps']:>9.2f}"
            if "nginx" in targets:
                row += f"  {gw / results[('nginx', c)]['rps']:>8.2f}"
            print(row)
        if "nginx" in targets:
            print("\nCPU per request (median, µs; less sensitive to other load than req/s):")
            for c in conn_levels:
                g, n = results[("gateway", c)]["cpu_us"], results[("nginx", c)]["cpu_us"]
                if g and n:
                    u = results.get(("gw-uvicorn", c), {}).get("cpu_us")
                    print(f"  @{c:<4} gateway {g:7.1f}   nginx {n:6.1f}   nginx/gateway {n / g:5.2f}"
                          + (f"   gw-uvicorn {u:7.1f}" if u else ""))
        print("\nall rounds (req/s):")
        for (n, c), r in results.items():
            print(f"  {n:>8} @{c:<4} {r['all_rps']}")
        errs = {f"{n}@{c}": r.get("errors") for (n, c), r in results.items() if r.get("errors")}
        print("\nerrors (non-2xx):", errs or "none")
        return 0
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

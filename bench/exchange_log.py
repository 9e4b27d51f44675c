"""Exchange-log benchmark: prints measured figures (no assertions).

1. Writer: records/s appended, hashed and signed (canonical JSON, leaf hash, Merkle frontier,
   batched INSERT, signed tree head every ``--sth-every`` records) with the process pinned to one
   core; plus the Ed25519 tree-head signing rate and the encode+hash-only rate.
2. Verify: seconds to verify the whole store of ``--records`` records (default 1,000,000).
3. Gateway: requests/s through the real gateway (subprocess, its own server on uvloop/httptools)
   with the exchange log off, on a do-nothing sink and on, side by side in alternating rounds
   (wrk and an nginx operator in their own processes, as in ``bench/gateway.py``), median of
   ``--rounds`` rounds each; CPU per request of the gateway and of the writer process.
4. With ``--instructions``: the gateway process's instructions per request (off / null / on) under
   valgrind's callgrind, which repeat within ~3 % where req/s on a noisy VM does not.

Targets from the issue: >= 20,000 records/s; 1M-record verify <= 10 s; logging costs <= 10 % of
gateway throughput.

Run: ``.venv/bin/python bench/exchange_log.py`` (``--quick`` for a short run, ``--skip-gateway``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests" / "exchange_log"
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(REPO / "src"))

from logutil import make_exchange  # noqa: E402  (tests/exchange_log/conftest.py: Exchange factory)


def migrated_sqlite(tmp: Path) -> str:
    from zistboom.registry.migrate import upgrade

    url = f"sqlite:///{tmp / 'zistboom.db'}"
    upgrade(url)
    return url


def gateway_like(i: int):
    """:func:`make_exchange` as the gateway emits it: digests not computed, ``digest_input`` set
    (forwarded request headers as the gateway sends them to an operator, an operator's JSON answer)."""
    ex = make_exchange(i)
    rid = ex.request_id.encode()
    req_h = [(b"host", b"127.0.0.1:8080"), (b"user-agent", b"wrk"), (b"accept", b"*/*"),
             (b"x-forwarded-for", b"127.0.0.1"), (b"x-request-id", rid), (b"x-zistboom-client", b"client-1"),
             (b"x-zistboom-caller-province", b"IR-23")]
    resp_h = [(b"content-type", b"application/json"), (b"content-length", b"41"), (b"x-zistboom-operator", b"op-a"),
              (b"x-request-id", rid)]
    ex.request_digest = ex.response_digest = ""
    ex.digest_input = (ex.method, ex.path, req_h, b"", 200, resp_h, b'{"ok": true, "amount": 1250000, "n": %d}' % i)
    return ex


def bench_writer(tmp: Path, n: int, sth_every: int) -> tuple[float, str]:
    """Queue ``n`` exchanges in the packed form the writer process receives from the gateway
    (:func:`~zistboom.exchange_log.record.pack_exchange` with deferred digests), then time the writer
    storing all of them (request/response digests, encode, leaf hash, Merkle frontier, batched
    INSERT, signed tree heads) on one core."""
    from zistboom.exchange_log.record import pack_exchange
    from zistboom.exchange_log.sink import make_sink

    url = migrated_sqlite(tmp)
    packed = [pack_exchange(gateway_like(i), defer_digests=True) for i in range(n)]
    sink = make_sink(url, SimpleNamespace(var_dir=tmp / "var"), queue_max=n + 1, batch_max=5000,
                     sth_every_records=sth_every, high_water=1.0, mode="thread")
    sink.on_packed(packed)
    t0 = time.perf_counter()
    sink.start()
    sink.flush(600)
    sink.close()
    dt = time.perf_counter() - t0
    st = sink.stats()
    assert st["records_stored"] == n, st
    return n / dt, url


def bench_encode_and_sign(n: int) -> tuple[float, float]:
    from zistboom.exchange_log.keys import load_or_create_signer
    from zistboom.exchange_log.record import encode_exchange

    exs = [make_exchange(i) for i in range(n)]
    t0 = time.perf_counter()
    for ex in exs:
        encode_exchange(ex)
    enc = n / (time.perf_counter() - t0)
    with tempfile.TemporaryDirectory() as d:
        signer = load_or_create_signer(Path(d) / "k")
        t0 = time.perf_counter()
        for i in range(2000):
            signer.sign(i, 1, b"\0" * 32)
        sig = 2000 / (time.perf_counter() - t0)
    return enc, sig


def bench_native_vs_python(n: int) -> dict[str, float] | None:
    """µs per record of the native encoder paths against the Python ones they replace, on the same
    gateway-like exchanges, interleaved (best of 5 each): the gateway's packing (``pack_native`` vs
    ``pack_exchange`` + ``marshal``) and the writer's decoding + encoding (``encode_native`` vs
    ``marshal.loads`` + ``encode_packed_py``). None when the native encoder is not built."""
    import gc
    import marshal

    from zistboom.exchange_log import record
    from zistboom.exchange_log.writer_proc import _marshal_packed

    if record.pack_native is None:
        return None
    exs = [gateway_like(i) for i in range(n)]
    natives = [record.pack_native(ex) for ex in exs]
    marshalled = [_marshal_packed(record.pack_exchange(ex, defer_digests=True)) for ex in exs]
    assert all(x is not None for x in natives)
    loads, py, enc_native = marshal.loads, record.encode_packed_py, record._fastrecord.encode_native
    cases = {
        "gateway: pack_exchange + marshal": lambda: [_marshal_packed(record.pack_exchange(ex, defer_digests=True))
                                                     for ex in exs],
        "gateway: pack_native": lambda: [record.pack_native(ex) for ex in exs],
        "writer: marshal.loads + encode_packed_py": lambda: [py(loads(b)) for b in marshalled],
        "writer: encode_native": lambda: [enc_native(b) for b in natives],
    }
    best = {k: float("inf") for k in cases}
    gc.disable()
    try:
        for _ in range(5):
            for k, f in cases.items():
                t0 = time.perf_counter()
                f()
                best[k] = min(best[k], time.perf_counter() - t0)
    finally:
        gc.enable()
    return {k: v / n * 1e6 for k, v in best.items()}


def bench_gateway_side(tmp: Path, n: int) -> tuple[float, float]:
    """CPU the gateway process spends per record in process mode (on_exchange + feeder thread
    packing and shipping to the writer process), measured with thread CPU clocks."""
    from zistboom.exchange_log.sink import make_sink

    url = migrated_sqlite(tmp)
    exs = [gateway_like(i) for i in range(n)]
    sink = make_sink(url, SimpleNamespace(var_dir=tmp / "var"), queue_max=n + 1)
    sink.start()
    sink.wait_ready(60)
    t0 = time.thread_time()
    for ex in exs:
        sink.on_exchange(ex)
    enq = (time.thread_time() - t0) / n * 1e6
    sink.flush(120)
    feeder = sink.stats()["feeder_cpu_s"] / n * 1e6
    sink.close()
    return enq, feeder


def fast_exchange(i: int):
    """A cheap Exchange for filling a big store (the tests' factory seeds a PRNG per record)."""
    from datetime import datetime, timedelta, timezone

    from zistboom.gateway.events import Attempt, Exchange

    return Exchange(f"fill-{i:08d}", datetime(2026, 3, 20, tzinfo=timezone.utc) + timedelta(microseconds=i * 731),
                    f"client-{i % 7}", "tax.income", "getAssessment", "op-a", "IR-23", "GET",
                    f"/v1/tax/assessments/{i}", 200, 12.5, [Attempt("op-a", "ok", 200, 12.0)],
                    None, f"{i:064x}", f"{i * 3:064x}")


def fill_fast(url: str, tmp: Path, n: int) -> None:
    """Fill the store with ``n`` records through the real writer, in chunks."""
    from zistboom.exchange_log.sink import make_sink

    sink = make_sink(url, SimpleNamespace(var_dir=tmp / "var"), queue_max=200_001, batch_max=5000,
                     sth_every_records=10_000, high_water=1.0, mode="thread")
    sink.start()
    sink.wait_ready()
    done = sink.stats()["tree_size"]
    chunk = 100_000
    i = done
    while i < n:
        k = min(chunk, n - i)
        for j in range(i, i + k):
            sink.on_exchange(fast_exchange(j))
        i += k
        while len(sink._q) > chunk:
            time.sleep(0.05)
    sink.flush(1200)
    sink.close()


def bench_verify(url: str, var: Path) -> tuple[float, int, bool]:
    from zistboom.exchange_log.keys import key_path, load_public_from_key_file
    from zistboom.exchange_log.store import ExchangeLogStore

    store = ExchangeLogStore(url, public_key=load_public_from_key_file(key_path(var)))
    t0 = time.perf_counter()
    rep = store.verify(strict=True)
    dt = time.perf_counter() - t0
    store.engine.dispose()
    return dt, rep.records, rep.ok


def _spawn(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{TESTS}"}
    return subprocess.Popen([sys.executable, str(TESTS / "gwharness.py"), *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)


def _cpu_s(pid: int) -> float:
    """user + system CPU seconds of process ``pid`` (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu_s(pid: int) -> float:
    """user + system CPU seconds of the direct children of ``pid`` (the log writer process)."""
    total = 0.0
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _stored_records(url: str) -> int:
    import sqlite3

    with sqlite3.connect(url.removeprefix("sqlite:///")) as c:
        return c.execute("SELECT count(*) FROM exchange_log_records").fetchone()[0]


def bench_gateway(tmp: Path, seconds: float, rounds: int, concurrency: int) -> dict:
    """Gateway req/s with the exchange log off / on a do-nothing sink ("null") / on, side by side in
    alternating rounds. Load and operator as in ``bench/gateway.py``: wrk (1 thread) and an nginx
    ``return 200`` operator when installed (else the Python loader and an aiohttp operator), so the
    gateway, not the load generator, is the bottleneck. CPU is read from /proc for the gateway
    process and, separately, for its writer child process."""
    import importlib.util

    import gwharness as h

    spec = importlib.util.spec_from_file_location("bench_gateway_mod", REPO / "bench" / "gateway.py")
    gb = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gb)
    url = migrated_sqlite(tmp / "gw")
    op, op_port, kind = _start_operator(gb, h, tmp)
    print(f"  operator: {kind}; load: {'wrk, 1 thread' if gb.USE_WRK else 'python loader (wrk not installed)'}; "
          f"load average before: {os.getloadavg()[0]:.2f}")
    h.seed_registry(url, f"http://127.0.0.1:{op_port}")
    modes = ("off", "null", "on")
    res: dict[str, list[float]] = {m: [] for m in modes}
    cpu: dict[str, list[float]] = {m: [] for m in modes}
    wcpu: list[float] = []
    lag: list[int] = []
    path = "/v1/services/fines/fines/P-12345"
    try:
        for r in range(rounds):
            for mode in (modes if r % 2 == 0 else modes[::-1]):
                port = h.free_port()
                var = {"off": "-", "null": "null"}.get(mode, str(tmp / "gw" / "var"))
                gw = _spawn(["gateway", url, var, str(port)])
                gurl = f"http://127.0.0.1:{port}"
                h.wait_ready(gurl, lambda: gw.poll() is None, timeout=30)
                gb.run_load(port, path, 8, 1.0, key=h.API_KEY)  # warm-up
                before = _stored_records(url) if mode == "on" else 0
                c0, w0 = _cpu_s(gw.pid), _children_cpu_s(gw.pid)
                out = gb.run_load(port, path, concurrency, seconds, key=h.API_KEY)
                ok = out["requests"] - out.get("errors", 0)
                c1 = _cpu_s(gw.pid)
                per_req = (c1 - c0) / max(ok, 1) * 1e6
                res[mode].append(out["rps"])
                cpu[mode].append(per_req)
                extra = ""
                if mode == "on":
                    behind = ok - (_stored_records(url) - before)  # not yet stored when the load stopped
                    time.sleep(1.0)
                    w2 = _children_cpu_s(gw.pid)
                    wcpu.append((w2 - w0) / max(ok, 1) * 1e6)
                    lag.append(behind)
                    extra = (f", writer process CPU {wcpu[-1]:5.1f} µs/record (incl. 1 s after), not yet stored "
                             f"at the end of the load: {max(behind, 0)}")
                gw.terminate()
                gw.wait(60)
                print(f"  round {r + 1} logging {mode:4}: {out['rps']:8.0f} req/s, gateway CPU "
                      f"{per_req:6.1f} µs/request{extra}", flush=True)
    finally:
        op.terminate()
        op.wait(10)
    out = {m: statistics.median(v) for m, v in res.items()}
    # paired per round: each round's "on" against the same round's "off" (runs seconds apart), which
    # a machine whose speed drifts over minutes disturbs less than the ratio of the two medians
    out["paired_costs"] = sorted((1 - on / off) * 100 for on, off in zip(res["on"], res["off"]))
    out.update({f"cpu_{m}": statistics.median(v) for m, v in cpu.items()})
    out["writer_cpu"] = statistics.median(wcpu) if wcpu else float("nan")
    return out


def bench_gateway_instructions(tmp: Path, seconds: float, concurrency: int) -> dict | None:
    """Instructions per request of the gateway process with the exchange log off / on a do-nothing
    sink ("null") / on: each mode once under valgrind's callgrind (user-space instructions, all
    threads; kernel work and the writer process are not counted), with
    instrumentation switched on only during the load (``callgrind_control -i``). Why: on a noisy
    2-core VM the req/s of two runs of the same build differed by up to 15 % (2026-11-30, session
    11), while these counts repeat within ~3 %. Periodic work (the feeder's 20 wake-ups and the
    writer's 10 stats lines a second) is overstated here, since valgrind serves ~30x fewer requests
    per second. Returns ``{"off": n, "null": n, "on": n}``; None when valgrind is not installed."""
    import glob
    import importlib.util

    import gwharness as h

    if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        return None
    spec = importlib.util.spec_from_file_location("bench_gateway_mod", REPO / "bench" / "gateway.py")
    gb = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gb)
    url = migrated_sqlite(tmp / "gwi")
    op, op_port, _ = _start_operator(gb, h, tmp)
    h.seed_registry(url, f"http://127.0.0.1:{op_port}")
    path = "/v1/services/fines/fines/P-12345"
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{TESTS}"}
    out: dict = {}
    try:
        for mode in ("off", "null", "on"):
            port = h.free_port()
            var = {"off": "-", "null": "null"}.get(mode, str(tmp / "gwi" / "var"))
            prefix = tmp / f"callgrind-{mode}"
            gw = subprocess.Popen(["valgrind", "--tool=callgrind", "--instr-atstart=no",
                                   f"--callgrind-out-file={prefix}.%p", sys.executable, str(TESTS / "gwharness.py"),
                                   "gateway", url, var, str(port)],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                h.wait_ready(f"http://127.0.0.1:{port}", lambda: gw.poll() is None, timeout=600)
                gb.run_load(port, path, 8, 3.0, key=h.API_KEY)  # warm-up
                subprocess.run(["callgrind_control", "-i", "on", str(gw.pid)], capture_output=True, timeout=60)
                res = gb.run_load(port, path, concurrency, seconds, key=h.API_KEY)
                subprocess.run(["callgrind_control", "-i", "off", str(gw.pid)], capture_output=True, timeout=60)
            finally:
                gw.terminate()
                gw.wait(300)
            total = 0
            for f in glob.glob(f"{prefix}.{gw.pid}*"):
                for line in Path(f).read_text(errors="replace").splitlines():
                    if line.startswith(("summary:", "totals:")):
                        total = max(total, int(line.split()[1]))
            out[mode] = total / max(res["requests"], 1)
    finally:
        op.terminate()
        op.wait(10)
    return out


def _start_operator(gb, h, tmp: Path):
    """The operator the gateway forwards to: nginx ``return 200`` when installed, else the aiohttp
    one. Returns ``(process, port, description)``."""
    op_port = h.free_port()
    if shutil.which("nginx"):
        op = gb.start_nginx(gb.nginx_conf(tmp, f"operator-{op_port}", f"""
            listen 127.0.0.1:{op_port} backlog=4096;
            location / {{ default_type application/json; return 200 '{gb.BODY}'; }}"""), tmp, f"operator-{op_port}")
        kind = "nginx return-200 operator"
    else:
        op = _spawn(["operator", str(op_port)])
        kind = "aiohttp operator (nginx not installed)"
    gb.wait_port(op_port)
    return op, op_port, kind


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000, help="store size for the verify figure")
    ap.add_argument("--writer-records", type=int, default=200_000)
    ap.add_argument("--sth-every", type=int, default=1_000)
    ap.add_argument("--seconds", type=float, default=4.0, help="gateway load per round")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--quick", action="store_true", help="100k-record verify, 50k writer, 2 s rounds")
    ap.add_argument("--skip-gateway", action="store_true")
    ap.add_argument("--only-gateway", action="store_true")
    ap.add_argument("--instructions", action="store_true",
                    help="also count instructions per request under valgrind (off / null / on; repeatable on a "
                         "noisy machine, where req/s is not)")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    if args.quick:
        args.records, args.writer_records, args.seconds, args.rounds = 100_000, 50_000, 2.0, 2
    print(f"cores available: {os.cpu_count()}; python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="zb-log-bench-") as d:
        tmp = Path(d)
        if args.only_gateway:
            args.writer_records = args.records = 0
        enc, sig = bench_encode_and_sign(50_000)
        print(f"encode + leaf hash only:      {enc:10,.0f} records/s")
        print(f"Ed25519 tree-head signatures: {sig:10,.0f} /s")
        nat = bench_native_vs_python(20_000)
        if nat is None:
            print("native record encoder: not built (the Python encoder is used)")
        else:
            print("native record encoder vs the Python path it replaces (µs per record, one thread, best of 5):")
            for a, b in (("gateway: pack_exchange + marshal", "gateway: pack_native"),
                         ("writer: marshal.loads + encode_packed_py", "writer: encode_native")):
                print(f"  {a:42} {nat[a]:6.2f}  vs  {b.split(': ')[1]:14} {nat[b]:6.2f}  ({nat[a] / nat[b]:.1f}x)")
        (tmp / "g").mkdir()
        enq, feeder = bench_gateway_side(tmp / "g", 50_000)
        print(f"gateway-side cost per record (process mode): on_exchange {enq:.2f} µs + feeder thread "
              f"{feeder:.2f} µs of CPU")
        if args.writer_records:
            (tmp / "w").mkdir()
            affinity = os.sched_getaffinity(0)
            os.sched_setaffinity(0, {min(affinity)})  # "on one core"
            try:
                rate, _ = bench_writer(tmp / "w", args.writer_records, args.sth_every)
            finally:
                os.sched_setaffinity(0, affinity)
            print(f"writer, one core (append + hash + sign every {args.sth_every}): {rate:10,.0f} records/s "
                  f"({args.writer_records:,} records, SQLite)  [target >= 20,000]")
        if args.records:
            (tmp / "v").mkdir()
            url = migrated_sqlite(tmp / "v")
            t0 = time.perf_counter()
            fill_fast(url, tmp / "v", args.records)
            fill = time.perf_counter() - t0
            print(f"filled {args.records:,} records in {fill:.1f} s ({args.records / fill:,.0f} records/s, "
                  "both cores)")
            dt, n, ok = bench_verify(url, tmp / "v" / "var")
            size = os.path.getsize(url.removeprefix("sqlite:///")) / 1e6
            print(f"verify {n:,} records: {dt:.2f} s ({'OK' if ok else 'FAILED'}; database {size:,.0f} MB; "
                  f"{n / dt:,.0f} records/s)  [target: 1M in <= 10 s]")
        if not args.skip_gateway:
            (tmp / "gw").mkdir()
            print(f"gateway, {args.concurrency} concurrent clients, {args.seconds:.0f} s rounds (median of "
                  f"{args.rounds}):")
            med = bench_gateway(tmp, args.seconds, args.rounds, args.concurrency)
            cost = (1 - med["on"] / med["off"]) * 100
            print(f"gateway req/s: logging off {med['off']:,.0f}, on {med['on']:,.0f} → cost {cost:.1f} % "
                  f"[target <= 10 %]")
            pc = med["paired_costs"]
            print(f"  cost per round (on vs the same round's off), sorted: {', '.join(f'{c:.1f}' for c in pc)} % "
                  f"(median {statistics.median(pc):.1f} %). Two runs of the same build differed by up to 15 % on a "
                  "noisy VM: trust many rounds, or --instructions")
            print(f"  ('null' = the gateway with a do-nothing sink: its own cost of building Exchange events and "
                  f"digests.) Gateway process CPU per request: off {med['cpu_off']:.1f} / null {med['cpu_null']:.1f} / "
                  f"on {med['cpu_on']:.1f} µs; writer process {med['writer_cpu']:.1f} µs per record")
            ccost = (med["cpu_on"] / med["cpu_off"] - 1) * 100
            print(f"gateway process CPU per request: +{ccost:.1f} % with logging on (a CPU-bound gateway with the "
                  f"writer on another core loses {(1 - med['cpu_off'] / med['cpu_on']) * 100:.1f} % throughput)")
        if args.instructions:
            (tmp / "gwi").mkdir()
            print(f"instructions per request under callgrind ({args.seconds:.0f} s of load per mode):")
            ins = bench_gateway_instructions(tmp, args.seconds, args.concurrency)
            if ins is None:
                print("  valgrind / callgrind_control not installed: skipped")
            else:
                off = ins["off"]
                print(f"  gateway process: off {off:,.0f} / null {ins['null']:,.0f} ({(ins['null'] / off - 1) * 100:+.1f} %) / "
                      f"on {ins['on']:,.0f} ({(ins['on'] / off - 1) * 100:+.1f} %)")


if __name__ == "__main__":
    main()

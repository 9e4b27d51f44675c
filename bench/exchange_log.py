"""Exchange-log benchmark: prints measured figures (no assertions).

1. Writer: records/s appended, hashed and signed (canonical JSON, leaf hash, Merkle frontier,
   batched INSERT, signed tree head every ``--sth-every`` records) with the process pinned to one
   core; plus the Ed25519 tree-head signing rate and the encode+hash-only rate.
2. Verify: seconds to verify the whole store of ``--records`` records (default 1,000,000).
3. Gateway: requests/s through the real gateway (subprocess, uvicorn + httptools) with the exchange
   log on and off, measured side by side in alternating rounds (operator and load generator in their
   own processes), median of ``--rounds`` rounds each.

Targets from the issue: >= 20,000 records/s; 1M-record verify <= 10 s; logging costs <= 10 % of
gateway throughput.

Run: ``.venv/bin/python bench/exchange_log.py`` (``--quick`` for a short run, ``--skip-gateway``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
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


def bench_writer(tmp: Path, n: int, sth_every: int) -> tuple[float, str]:
    """Queue ``n`` exchanges, then time the writer thread storing all of them (one core)."""
    from zistboom.exchange_log.sink import make_sink

    url = migrated_sqlite(tmp)
    exs = [make_exchange(i) for i in range(n)]
    sink = make_sink(url, SimpleNamespace(var_dir=tmp / "var"), queue_max=n + 1, batch_max=5000,
                     sth_every_records=sth_every, high_water=1.0, mode="thread")
    for ex in exs:
        sink.on_exchange(ex)
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


def bench_gateway_side(tmp: Path, n: int) -> tuple[float, float]:
    """CPU the gateway process spends per record in process mode (on_exchange + feeder thread
    packing and shipping to the writer process), measured with thread CPU clocks."""
    from zistboom.exchange_log.sink import make_sink

    url = migrated_sqlite(tmp)
    exs = [make_exchange(i) for i in range(n)]
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


def bench_gateway(tmp: Path, seconds: float, rounds: int, concurrency: int) -> dict:
    import gwharness as h

    url = migrated_sqlite(tmp / "gw")
    op_port = h.free_port()
    op = _spawn(["operator", str(op_port)])
    time.sleep(1.0)
    h.seed_registry(url, f"http://127.0.0.1:{op_port}")
    res: dict[str, list[float]] = {"off": [], "null": [], "on": []}
    cpu: dict[str, list[float]] = {"off": [], "null": [], "on": []}
    try:
        for r in range(rounds):
            for mode in (("off", "null", "on") if r % 2 == 0 else ("on", "null", "off")):
                port = h.free_port()
                var = {"off": "-", "null": "null"}.get(mode, str(tmp / "gw" / "var"))
                gw = _spawn(["gateway", url, var, str(port)])
                gurl = f"http://127.0.0.1:{port}"
                h.wait_ready(gurl, lambda: gw.poll() is None, timeout=30)
                asyncio.run(h.load(gurl, 1.0, concurrency))  # warm-up
                c0 = _cpu_s(gw.pid)
                out = asyncio.run(h.load(gurl, seconds, concurrency))
                ok = sum(1 for _, s, _ in out if s == 200)
                # CPU is read after the writer had time to store the round's records.
                time.sleep(0.3)
                per_req = (_cpu_s(gw.pid) - c0) / max(ok, 1) * 1e6
                res[mode].append(ok / seconds)
                cpu[mode].append(per_req)
                gw.terminate()
                gw.wait(30)
                print(f"  round {r + 1} logging {mode:4}: {ok / seconds:8.0f} req/s, gateway CPU "
                      f"{per_req:6.0f} µs/request", flush=True)
    finally:
        op.terminate()
        op.wait(10)
    out = {m: statistics.median(v) for m, v in res.items()}
    out.update({f"cpu_{m}": statistics.median(v) for m, v in cpu.items()})
    return out


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
    args = ap.parse_args()
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
            print(f"  ('null' = the gateway with a do-nothing sink: its own cost of building Exchange events and "
                  f"digests; CPU off {med['cpu_off']:,.0f} / null {med['cpu_null']:,.0f} / on {med['cpu_on']:,.0f} "
                  "µs per request)")
            ccost = (med["cpu_on"] / med["cpu_off"] - 1) * 100
            print(f"gateway CPU per request (all threads, incl. the log writer): off {med['cpu_off']:,.0f} µs, "
                  f"on {med['cpu_on']:,.0f} µs → +{ccost:.1f} % (a CPU-bound gateway loses "
                  f"{(1 - med['cpu_off'] / med['cpu_on']) * 100:.1f} % throughput)")


if __name__ == "__main__":
    main()

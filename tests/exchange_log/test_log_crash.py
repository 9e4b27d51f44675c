"""kill -9 of the real gateway (``zistboom gateway`` in a subprocess, with the exchange-log sink)
under load, then a restart: the log verifies, and every request answered more than the documented
durability window before the kill is in the log."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from gwharness import OperatorServer, free_port, load, seed_registry, wait_ready
from sqlalchemy import text

from zistboom.exchange_log.keys import key_path, load_public_from_key_file
from zistboom.exchange_log.sink import DURABILITY_WINDOW_MS
from zistboom.exchange_log.store import ExchangeLogStore

REPO = Path(__file__).resolve().parents[2]


def start_gateway(db_url: str, var_dir: Path, port: int) -> subprocess.Popen:
    """The real ``zistboom gateway`` command (it loads ``zistboom.exchange_log.sink.make_sink``)."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "ZISTBOOM_VAR_DIR": str(var_dir)}
    p = subprocess.Popen([sys.executable, "-m", "zistboom", "gateway", "--port", str(port), "--database-url", db_url,
                          "--log-level", "warning"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_ready(f"http://127.0.0.1:{port}", lambda: p.poll() is None, timeout=30)
    return p


def test_sigkill_under_load_then_restart(log_db_url, settings):
    op = OperatorServer().start()
    try:
        seed_registry(log_db_url, op.url)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        gw = start_gateway(log_db_url, settings.var_dir, port)
        results: list = []
        stop = threading.Event()

        def run():
            asyncio.run(load(url, 30, concurrency=16, stop=stop, results=results))

        t = threading.Thread(target=run)
        t.start()
        deadline = time.monotonic() + 15
        while (len(results) < 1000 and time.monotonic() < deadline) or time.monotonic() < deadline - 13:
            time.sleep(0.05)  # under load for at least 2 s and 1000 answers (or 15 s)
        answered_before_kill = len(results)
        kill_time = time.time()
        os.kill(gw.pid, signal.SIGKILL)
        gw.wait(10)
        stop.set()
        t.join(30)
        assert answered_before_kill > 300, "the load generator did not get going"

        # Restart (the writer resumes the tree and signs the tail), then stop it gracefully.
        gw2 = start_gateway(log_db_url, settings.var_dir, port)
        gw2.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully (lifespan → sink.close()) and then re-raises the signal.
        assert gw2.wait(30) in (0, -signal.SIGTERM), gw2.stderr.read().decode()[-2000:]

        store = ExchangeLogStore(log_db_url, public_key=load_public_from_key_file(key_path(settings.var_dir)))
        rep = store.verify(strict=True)
        assert rep.ok, rep.problems[:5]
        with store.engine.connect() as c:
            logged = {r[0] for r in c.execute(text("SELECT request_id FROM exchange_log_records"))}
        store.engine.dispose()
        answered = [(rid, ts) for rid, status, ts in results if status == 200 and ts <= kill_time]
        missing = [(rid, ts) for rid, ts in answered if rid not in logged]
        window_s = DURABILITY_WINDOW_MS / 1000
        late = [(rid, round(kill_time - ts, 3)) for rid, ts in missing if kill_time - ts > window_s]
        print(f"answered before kill: {len(answered)}, logged: {len(logged)}, missing: {len(missing)}, "
              f"oldest missing: {max((kill_time - ts for _, ts in missing), default=0) * 1000:.0f} ms before kill")
        assert not late, f"records lost outside the {DURABILITY_WINDOW_MS} ms window: {late[:5]}"
    finally:
        op.stop()

"""End to end: `zistboom run --no-wait` on a fresh var dir — migrate, seed, start 14 operators, the
gateway and the admin API as real processes, drive traffic, kill the operator that answered the
Gilan traffic-fines call part-way through, and finish with zero failed requests."""

from __future__ import annotations

import os
import random
import re
import socket
import subprocess
import sys

from tests.conftest import SHARED


def _free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _free_block(n: int) -> int:
    # below Linux's ephemeral range (32768-60999): a port in it can be taken by any outgoing
    # connection (another test's client) between this check and the demo's bind (seen once)
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 32700 - n)
        if all(_free(base + i) for i in range(n)):
            return base
    raise RuntimeError("no free port block")


def test_run_demo_survives_killed_operator(tmp_path):
    base = _free_block(16)
    env = {
        **os.environ,
        "ZISTBOOM_VAR_DIR": str(tmp_path / "var"),
        "ZISTBOOM_SHARED_DIR": str(SHARED),
        "ZISTBOOM_GATEWAY_PORT": str(base),
        "ZISTBOOM_ADMIN_PORT": str(base + 1),
        "ZISTBOOM_OPERATORS_BASE_PORT": str(base + 2),
        "COLUMNS": "200",
    }
    env.pop("ZISTBOOM_DATABASE_URL", None)
    proc = subprocess.run(
        [sys.executable, "-m", "zistboom", "run", "--no-wait", "--requests", "200", "--concurrency", "8"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    first = re.search(r"traffic fines from Gilan: HTTP 200, answered by (\S+)", out)
    second = re.search(r"after the kill, traffic fines from Gilan: HTTP 200, answered by\s+(\S+)", out)
    assert first and second, out[-3000:]
    assert first.group(1) != second.group(1)
    assert re.search(r"failed\s*│\s*0\s*│", out), out[-3000:]
    assert "killed" in out
    assert re.search(r"seeded the demo ecosystem \(31 provinces, 10 clusters, 42 services, 14 operators, \d+ licences, "
                     r"6 client systems\)", out), out[:3000]
    # every process the demo started is gone
    for pid in re.findall(r"=(\d+)", out.split("processes:")[-1]):
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"

"""Fixtures for gateway tests: a registry database, real aiohttp operators on 127.0.0.1 and the
gateway on its real server, each on an ephemeral port in its own thread and event loop."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for `import gwutil` (works in any import mode)

from gwutil import GatewayServer, LoopThread, Operator, Registry  # noqa: E402

from zistboom.gateway.app import create_gateway
from zistboom.gateway.config import GatewayConfig
from zistboom.registry.db import Base, make_engine

# ---------------------------------------------------------------------------------- database


@pytest.fixture
def gw_db_url(request, tmp_path: Path) -> str:
    """The lead's migrated ``db_url`` fixture when it exists, else a fresh SQLite file with tables."""
    try:
        return request.getfixturevalue("db_url")
    except pytest.FixtureLookupError:
        url = f"sqlite:///{tmp_path / 'registry.db'}"
        engine = make_engine(url)
        Base.metadata.create_all(engine)
        engine.dispose()
        return url


@pytest.fixture
def registry(gw_db_url) -> Iterator[Registry]:
    r = Registry(gw_db_url)
    r.base()
    r.client("app1", "key-app1-secret")
    yield r
    r.close()


# ---------------------------------------------------------------------------------- servers


@pytest.fixture
def operators() -> Iterator:
    lt = LoopThread()
    made: list[Operator] = []

    def make(oid: str) -> Operator:
        op = Operator(lt, oid).start()
        made.append(op)
        return op

    yield make
    for op in made:
        try:
            op.stop()
        except Exception:
            pass
    lt.stop()


@pytest.fixture
def gateway(gw_db_url) -> Iterator:
    made: list[GatewayServer] = []

    def make(config: GatewayConfig | None = None, sinks=()) -> GatewayServer:
        cfg = config or GatewayConfig(refresh_interval=0.2, health_interval=60, try_timeout=1.0)
        gs = GatewayServer(create_gateway(gw_db_url, sinks=sinks, config=cfg)).start()
        made.append(gs)
        return gs

    yield make
    for gs in made:
        gs.stop()



# ---------------------------------------------------------------------------------- redis


@pytest.fixture
def redis_url() -> str:
    """A reachable Redis (``ZISTBOOM_TEST_REDIS_URL``, default redis://127.0.0.1:6379/0). Unreachable:
    the test fails in CI (``CI=true``), else it is skipped."""
    import os

    import redis

    url = os.environ.get("ZISTBOOM_TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"
    try:
        c = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        c.ping()
        c.close()
    except redis.RedisError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis at {url} is unreachable in CI: {exc}")
        pytest.skip(f"Redis at {url} is unreachable: {exc}")
    return url


@pytest.fixture
def redis_prefix(redis_url) -> Iterator[str]:
    """A key prefix private to this test; its keys are deleted afterwards."""
    import uuid

    import redis

    prefix = f"zbtest:{uuid.uuid4().hex[:12]}:"
    yield prefix
    c = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        keys = list(c.scan_iter(match=prefix + "*", count=1000))
        if keys:
            c.delete(*keys)
    finally:
        c.close()

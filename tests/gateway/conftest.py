"""Fixtures for gateway tests: a registry database, real aiohttp operators on 127.0.0.1 and the
gateway under real uvicorn, each on an ephemeral port in its own thread and event loop."""

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



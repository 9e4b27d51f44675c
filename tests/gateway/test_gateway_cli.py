"""``zistboom gateway`` wiring: sinks get what they need, config comes from the environment."""

from __future__ import annotations

import pytest

from zistboom.gateway.cli import load_sinks
from zistboom.gateway.config import GatewayConfig


def test_load_sinks_passes_probe_interval_to_monitoring_only(gw_db_url, tmp_path):
    import zistboom.monitoring.sink  # noqa: F401 - the sink this test wires
    from zistboom.config import Settings

    sinks = load_sinks(gw_db_url, Settings(var_dir=tmp_path), GatewayConfig(health_interval=2.5))
    try:
        mon = [s for s in sinks if type(s).__module__.startswith("zistboom.monitoring")]
        assert len(mon) == 1
        assert mon[0].settings.probe_interval == 2.5
        # the exchange log's sink was built without the keyword (it would take it as a config field)
        assert any(type(s).__module__.startswith("zistboom.exchange_log") for s in sinks)
    finally:
        for s in sinks:
            close = getattr(s, "close", None)
            if close is not None:
                close()


def test_config_from_env():
    cfg = GatewayConfig.from_env({"ZISTBOOM_REDIS_URL": "redis://127.0.0.1:6379/3"}, health_interval=3.0)
    assert cfg.redis_url == "redis://127.0.0.1:6379/3" and cfg.health_interval == 3.0
    assert GatewayConfig.from_env({}).redis_url is None
    assert GatewayConfig.from_env({"ZISTBOOM_REDIS_URL": "redis://x/0"}, redis_url="redis://y/1").redis_url == "redis://y/1"
    with pytest.raises(TypeError):
        GatewayConfig.from_env({}, no_such_field=1)

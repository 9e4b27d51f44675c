"""``zistboom gateway``: run the data-plane gateway on its own HTTP/1.1 server (uvloop, httptools, with
request-head and body limits — :mod:`zistboom.gateway.server` — no access log).

Sinks are attached when their parts are installed: ``zistboom.exchange_log.sink.make_sink`` and
``zistboom.monitoring.sink.make_sink`` (each ``make_sink(db_url, settings) -> ExchangeSink``). A part
whose sink module does not exist is skipped; any other import error is raised. Monitoring's sink is
also told the gateway's real health-check period (``probe_interval_s=config.health_interval``), on
which its sample-and-hold availability accounting depends; no other sink gets that keyword (the
exchange log's ``make_sink`` takes extra keywords as its own config fields).

Shared state: ``--redis-url`` (or env ``ZISTBOOM_REDIS_URL``) makes idempotency records and client
rate limits common to every gateway replica using that Redis (see
:mod:`zistboom.gateway.shared_state`); run several replicas behind any TCP/HTTP balancer.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import threading

SINK_MODULES = ("zistboom.exchange_log.sink", "zistboom.monitoring.sink")

log = logging.getLogger("zistboom.gateway")


MONITORING_SINK = "zistboom.monitoring.sink"


def load_sinks(db_url: str, settings, config=None) -> list:
    """Build the sinks of the parts that are present (see module docstring). ``config`` is the
    gateway's :class:`~zistboom.gateway.config.GatewayConfig` (its ``health_interval`` goes to
    monitoring's sink as ``probe_interval_s``); None leaves monitoring's own default."""
    sinks = []
    for name in SINK_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                log.info("sink %s not installed; skipped", name)
                continue
            raise
        if name == MONITORING_SINK and config is not None:
            sinks.append(module.make_sink(db_url, settings, probe_interval_s=config.health_interval))
        else:
            sinks.append(module.make_sink(db_url, settings))
    return sinks


def _warm_front_door() -> None:
    """Load the Persian front door's model in the background so the first ``/v1/ask`` does not
    pay for it (in a fresh ``var/`` this trains the default model once)."""
    try:
        from zistboom.nlp.frontdoor import get_front_door

        get_front_door()
    except Exception:  # the gateway serves without it; /v1/ask then answers 503 and logs why
        log.exception("front door warm-up failed")


def _run(args: argparse.Namespace) -> int:
    from zistboom.config import get_settings
    from zistboom.gateway.app import create_gateway
    from zistboom.gateway.config import GatewayConfig
    from zistboom.gateway.server import GatewayServer

    settings = get_settings()
    db_url = args.database_url or settings.resolved_database_url()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = GatewayConfig.from_env(redis_url=args.redis_url)
    app = create_gateway(db_url, sinks=load_sinks(db_url, settings, config), config=config)
    if not args.no_warm:
        threading.Thread(target=_warm_front_door, name="zistboom-warm-front-door", daemon=True).start()
    logging.getLogger("zistboom").setLevel(args.log_level.upper())
    GatewayServer(app, args.host or settings.gateway_host, args.port or settings.gateway_port, config=config).run()
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("gateway", help="run the gateway (data plane) that routes calls to licensed operators")
    p.add_argument("--host", default=None, help="listen address (default ZISTBOOM_GATEWAY_HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="listen port (default ZISTBOOM_GATEWAY_PORT or 8080)")
    p.add_argument("--database-url", default=None, help="registry database URL (default from settings)")
    p.add_argument("--redis-url", default=None,
                   help="Redis shared by gateway replicas (default ZISTBOOM_REDIS_URL; none: per-replica state)")
    p.add_argument("--no-warm", action="store_true", help="do not load the front door's model at start")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    p.set_defaults(func=_run)

"""``zistboom gateway``: run the data-plane gateway under uvicorn (uvloop, httptools, no access log).

Sinks are attached when their parts are installed: ``zistboom.exchange_log.sink.make_sink`` and
``zistboom.monitoring.sink.make_sink`` (each ``make_sink(db_url, settings) -> ExchangeSink``). A part
whose sink module does not exist is skipped; any other import error is raised.
"""

from __future__ import annotations

import argparse
import importlib
import logging

SINK_MODULES = ("zistboom.exchange_log.sink", "zistboom.monitoring.sink")

log = logging.getLogger("zistboom.gateway")


def load_sinks(db_url: str, settings) -> list:
    """Build the sinks of the parts that are present (see module docstring)."""
    sinks = []
    for name in SINK_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                log.info("sink %s not installed; skipped", name)
                continue
            raise
        sinks.append(module.make_sink(db_url, settings))
    return sinks


def _run(args: argparse.Namespace) -> int:
    import uvicorn

    from zistboom.config import get_settings
    from zistboom.gateway.app import create_gateway

    settings = get_settings()
    db_url = args.database_url or settings.resolved_database_url()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_gateway(db_url, sinks=load_sinks(db_url, settings))
    uvicorn.run(app, host=args.host or settings.gateway_host, port=args.port or settings.gateway_port,
                loop="uvloop", http="httptools", access_log=False, lifespan="on", proxy_headers=False,
                server_header=False, log_level=args.log_level)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("gateway", help="run the gateway (data plane) that routes calls to licensed operators")
    p.add_argument("--host", default=None, help="listen address (default ZISTBOOM_GATEWAY_HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="listen port (default ZISTBOOM_GATEWAY_PORT or 8080)")
    p.add_argument("--database-url", default=None, help="registry database URL (default from settings)")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    p.set_defaults(func=_run)

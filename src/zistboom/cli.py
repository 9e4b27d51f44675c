"""The ``zistboom`` command: a thin dispatcher.

Each part that has commands exposes ``register(subparsers)`` in its own ``cli`` module; this file
only collects them. A sub-command's handler is stored as ``func`` on the parsed namespace and
returns a process exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Parts with commands, in the order ``--help`` shows them. A part whose module is not there yet
# is skipped, so the CLI keeps working while parts are added.
_PARTS = (
    "zistboom.registry.cli",      # migrate, seed
    "zistboom.admin.cli",         # admin (serve the admin API + dashboard)
    "zistboom.gateway.cli",       # gateway
    "zistboom.demo.cli",          # operators, run (the main demo job)
    "zistboom.exchange_log.cli",  # log verify | receipt | verify-receipt
    "zistboom.monitoring.cli",    # status
    "zistboom.nlp.cli",           # nlp train | evaluate | predict
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zistboom", description="zistboom (زیست‌بوم) smart-government ecosystem")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _PARTS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())

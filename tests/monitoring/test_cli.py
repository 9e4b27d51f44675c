"""``zistboom status`` prints the cluster and province tables from a real database."""

from __future__ import annotations

from datetime import timedelta

from zistboom.cli import main
from zistboom.gateway.events import ProbeResult
from zistboom.monitoring.evaluator import Evaluator
from zistboom.monitoring.settings import MonitorSettings
from zistboom.monitoring.sink import MonitoringSink
from zistboom.registry.db import utcnow


def test_status_command(db_url, factory, world, capsys):
    s = MonitorSettings(probe_interval=10.0, sanctions=False)
    sink = MonitoringSink(factory, s)
    now = utcnow()
    for op, ok in (("op-a", True), ("op-b", True), ("op-c", False)):
        sink.on_probe(ProbeResult(op, now - timedelta(seconds=1), ok, 1.0))
    sink.flush(now=now)
    Evaluator(factory, s).evaluate(now, slo=False)
    assert main(["status", "--db-url", db_url]) == 0
    out = capsys.readouterr().out
    assert "Cluster health" in out and "Province health" in out
    assert "سلامت" in out and "Health" in out
    assert "فارس" in out and "birth-cert" in out  # Fars has its only service out
    assert "major_outage" in out and "operational" in out
    assert "۱ / 1" in out  # counts in Persian digits, then ASCII


def test_status_command_bad_db(tmp_path, capsys):
    assert main(["status", "--db-url", f"sqlite:///{tmp_path / 'empty.db'}"]) == 1
    assert "database not ready" in capsys.readouterr().out


def test_bad_arguments_get_one_line_errors(db_url, factory, world, capsys):
    assert main(["status", "--db-url", "notaurl"]) == 2  # was a sqlalchemy ArgumentError traceback
    assert "bad database URL" in capsys.readouterr().out
    assert main(["status", "--db-url", db_url, "--province", "XX"]) == 2  # was an empty table, exit 0
    assert "unknown province" in capsys.readouterr().out
    for flag, value in (("--interval", "-5"), ("--interval", "nan"), ("--timeout", "0")):  # 0 was ignored
        assert main(["monitor", "--db-url", db_url, flag, value]) == 2
        assert f"{flag} must be a positive number" in capsys.readouterr().err

"""Migration 0003_monitoring creates exactly the tables of zistboom.monitoring.models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import zistboom.monitoring.models as mm
from zistboom.registry.db import Base, make_engine

TABLES = {"monitor_request_minutes", "monitor_probe_minutes", "monitor_operator_health", "monitor_instances",
          "monitor_heartbeats", "incidents", "incident_notes"}


def test_models_match_migration(db_url):
    assert {t for t in Base.metadata.tables if t.startswith(("monitor_", "incident"))} == TABLES
    assert mm.Incident.__tablename__ in TABLES
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    mine = [d for d in diff if any(t in repr(d) for t in TABLES)]
    assert mine == []

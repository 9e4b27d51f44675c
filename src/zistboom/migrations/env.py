"""Alembic environment: one migration history for every part's tables (see zistboom.registry.db)."""

from __future__ import annotations

import importlib

from alembic import context

from zistboom.registry.db import Base, make_engine

# Import every part's models so Base.metadata is complete (a part without tables is skipped).
for _name in ("zistboom.registry.models", "zistboom.exchange_log.models", "zistboom.monitoring.models"):
    try:
        importlib.import_module(_name)
    except ModuleNotFoundError as exc:  # pragma: no cover - only while a part is absent
        if exc.name != _name:
            raise

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is not None:
        context.configure(connection=connectable, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()

"""Settings read from the environment (prefix ``ZISTBOOM_``).

Every path defaults to a folder under ``./var`` (the working directory), so a fresh clone runs
with no configuration: an embedded SQLite database, keys and caches all live there.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Runtime settings.

    Attributes:
        var_dir: folder for state (database file, keys, caches, spill files).
        database_url: SQLAlchemy URL; default ``sqlite:///<var_dir>/zistboom.db``. PostgreSQL is
            selected with e.g. ``postgresql+psycopg://user@127.0.0.1:5432/db``.
        gateway_host / gateway_port: where the data-plane gateway listens (default 127.0.0.1:8080).
        admin_host / admin_port: where the admin API and dashboard listen (default 127.0.0.1:8081).
        operators_base_port: first port of the demo operators' HTTP servers.
    """

    model_config = SettingsConfigDict(env_prefix="ZISTBOOM_", extra="ignore")

    var_dir: Path = Path("var")
    database_url: str | None = None
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8080
    admin_host: str = "127.0.0.1"
    admin_port: int = 8081
    operators_base_port: int = 18100

    def resolved_database_url(self) -> str:
        """The database URL in force: the configured one or the SQLite file under ``var_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.var_dir / 'zistboom.db').resolve()}"

    def ensure_var_dir(self) -> Path:
        """Create ``var_dir`` if missing and return it."""
        self.var_dir.mkdir(parents=True, exist_ok=True)
        return self.var_dir


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once from the environment)."""
    return Settings()

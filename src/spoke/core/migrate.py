"""Alembic, driven from code: `spoke db upgrade` and the start-up check.

The migration scripts ship inside the package (`spoke/migrations`), so an installed Spoke
can migrate its database without a checkout or an alembic.ini.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from spoke.core.db import normalise_url
from spoke.core.errors import AppError

SCRIPTS = Path(__file__).resolve().parent.parent / "migrations"


class DatabaseNotMigrated(AppError):
    code = "database_not_migrated"
    status_code = 503
    title = "Database not migrated"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPTS))
    config.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    config.set_main_option(
        "file_template", "%%(year)d-%%(month).2d-%%(day).2d-%%(hour).2d%%(minute).2d_%%(slug)s"
    )
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def head_revision(url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def ensure_migrated(engine: Engine) -> None:
    """Refuse to run against a database that is not at the newest migration."""
    head = head_revision(str(engine.url))
    current = current_revision(engine)
    if current != head:
        raise DatabaseNotMigrated(
            f"The database at {engine.url.render_as_string(hide_password=True)} is at "
            f"revision {current or 'none'}, this Spoke needs {head}. "
            "Run `spoke db upgrade` first."
        )

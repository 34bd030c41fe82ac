"""Alembic, driven from code: `serve` and `migrate` upgrade to head at start-up.

Several replicas may start at once; on Postgres the migration runs under an
advisory lock (see migrations/env.py), so one upgrades and the others wait and
find nothing left to do.
"""

from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncConnection

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
# Any constant shared by every replica; "tsf-migr" as a 64-bit integer.
MIGRATION_LOCK_KEY = 0x7473662D6D696772


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Blocking: call it before the event loop starts, or in a thread."""
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


@lru_cache(maxsize=1)
def head_revision() -> str | None:
    script = ScriptDirectory.from_config(alembic_config(""))
    return script.get_current_head()


async def current_revision(connection: AsyncConnection) -> str | None:
    """The database's migration, or None before the first one has run."""
    try:
        result = await connection.execute(
            text("SELECT version_num FROM alembic_version")
        )
    except ProgrammingError:
        return None
    except OperationalError as error:
        # SQLite reports a missing table as an operational error.
        if "no such table" in str(error):
            return None
        raise
    return result.scalar_one_or_none()

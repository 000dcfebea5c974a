"""Alembic environment for Patchbay's store, driven by ``patchbay.store.migrate`` (no alembic.ini).

``upgrade()`` hands over an open connection already inside a locked transaction; migrations run in it, so
an upgrade is all-or-nothing. Offline (``--sql``) mode is supported for reviewing the DDL.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from patchbay.store.models import Base

config = context.config
VERSION_TABLE = config.get_main_option("version_table") or "patchbay_schema_version"


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        from patchbay.store.engine import create_engine

        engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
        with engine.connect() as own:
            _configure(own)
            with context.begin_transaction():
                context.run_migrations()
        engine.dispose()
        return
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()

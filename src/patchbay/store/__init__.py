"""Patchbay's embedded state store: SQLAlchemy models, engines and Alembic migrations.

SQLite file by default, PostgreSQL by URL. ``create_engine`` makes an engine with the right settings,
``upgrade`` brings a database's schema up to date (safe under concurrent starts), every write goes through the
database's one ``WritePath`` (``writer(engine)`` for sessions, ``write_path(engine).run`` for jobs), and every
table is a model on the one ``Base`` in ``patchbay.store.models``.
"""

from patchbay.store.engine import create_engine, resolve_url, writer
from patchbay.store.migrate import alembic_config, current_heads, upgrade
from patchbay.store.models import Base
from patchbay.store.writes import WritePath, write_path

__all__ = [
    "Base",
    "WritePath",
    "alembic_config",
    "create_engine",
    "current_heads",
    "resolve_url",
    "upgrade",
    "write_path",
    "writer",
]

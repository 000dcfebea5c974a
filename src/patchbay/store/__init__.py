"""Patchbay's embedded state store: SQLAlchemy models, engines and Alembic migrations.

SQLite file by default, PostgreSQL by URL. ``create_engine`` makes an engine with the right settings,
``upgrade`` brings a database's schema up to date (safe under concurrent starts), and every table is a model
on the one ``Base`` in ``patchbay.store.models``.
"""

from patchbay.store.engine import create_engine, resolve_url, writer
from patchbay.store.migrate import alembic_config, current_heads, upgrade
from patchbay.store.models import Base

__all__ = ["Base", "alembic_config", "create_engine", "current_heads", "resolve_url", "upgrade", "writer"]

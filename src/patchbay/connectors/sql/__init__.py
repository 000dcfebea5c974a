"""The SQL connector (``type = "sql"``): SQLite, PostgreSQL and MySQL/MariaDB as read-only query tools plus
operator-declared write actions. See docs/sql.md."""

from patchbay.connectors.sql.connector import SqlConnector
from patchbay.connectors.sql.options import SqlOptions

__all__ = ["SqlConnector", "SqlOptions"]

"""The kanban demo connector (``type = "kanban"``)."""

from patchbay.connectors.kanban.connector import KanbanConnector, KanbanOptions

__all__ = ["KanbanConnector", "KanbanOptions"]

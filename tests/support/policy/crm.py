"""A small CRM: customers to read, tickets to close."""

from __future__ import annotations

from patchbay import tool


@tool(read_only=True, open_world=False)
async def list_customers(region: str = "all") -> list[str]:
    """List customers, optionally of one region."""
    return [f"customer in {region}"]


@tool(open_world=False, destructive=False)
async def close_ticket(id: int, priority: str = "normal") -> str:
    """Close a ticket."""
    return f"closed ticket {id} ({priority})"

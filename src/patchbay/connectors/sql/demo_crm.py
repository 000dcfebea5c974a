"""The sample CRM the demo serves through the sql connector: customers, orders and support tickets in SQLite.

``ensure_crm(path)`` (run by the connector when ``sample_data = true``) creates the file once and never touches
an existing one, so closing a ticket in the demo sticks across restarts. Dates are relative to the day the file is made.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE customers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE,
    country TEXT NOT NULL,
    plan TEXT NOT NULL CHECK (plan IN ('free', 'team', 'enterprise')),
    created_on DATE NOT NULL
);
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    ordered_on DATE NOT NULL,
    amount_eur NUMERIC NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('paid', 'pending', 'refunded'))
);
CREATE TABLE tickets (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    priority TEXT NOT NULL CHECK (priority IN ('low', 'normal', 'high')),
    status TEXT NOT NULL CHECK (status IN ('open', 'pending', 'closed')),
    opened_on DATE NOT NULL,
    closed_on DATE,
    resolution TEXT
);
"""

CUSTOMERS = (
    ("Ana Souza", "ana@lumen.example", "Brazil", "enterprise", 400),
    ("Björn Lindqvist", "bjorn@fjord.example", "Sweden", "team", 320),
    ("Chen Wei", "chen@jade.example", "Singapore", "team", 250),
    ("Dana Okafor", "dana@baobab.example", "Nigeria", "free", 90),
    ("Émile Laurent", "emile@atelier.example", "France", "enterprise", 510),
    ("Farah Haddad", "farah@cedar.example", "Lebanon", "team", 60),
)
# (customer index, days ago, amount, status)
ORDERS = (
    (0, 380, "12000.00", "paid"), (0, 15, "12500.00", "pending"), (1, 300, "1800.00", "paid"),
    (1, 30, "1800.00", "paid"), (2, 200, "2400.00", "paid"), (2, 20, "240.00", "refunded"),
    (4, 480, "30000.00", "paid"), (4, 110, "4200.50", "paid"), (5, 40, "960.00", "pending"),
)  # fmt: skip
# (customer index, subject, body, priority, status, days ago)
TICKETS = (
    (0, "SSO login loops back to the sign-in page", "Since Monday our Okta users land on the login page again "
     "after signing in. Affects about 40 people.", "high", "open", 2),
    (1, "Invoice shows the wrong VAT number", "The March invoice lists our old VAT number SE5560000001.",
     "normal", "open", 6),
    (2, "Export to CSV drops non-ASCII names", "Customer names like 'Zoë' come out as 'Zo?' in the CSV export.",
     "normal", "pending", 12),
    (3, "How do I invite a teammate?", "Could not find the invite button on the free plan.", "low", "open", 1),
    (4, "Dashboard slow for large projects", "Loading the projects dashboard takes 20 s for our 3,000 projects.",
     "high", "open", 4),
    (5, "Refund for duplicate order", "We were charged twice for order 9; please refund one.", "normal", "closed", 35),
)  # fmt: skip


def ensure_crm(path: Path, today: dt.date | None = None) -> bool:
    """Create the sample CRM at ``path`` unless it exists; True when it was created."""
    if path.exists():
        return False
    today = today or dt.date.today()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    with sqlite3.connect(partial) as conn:
        conn.executescript(SCHEMA)
        conn.executemany(
            "INSERT INTO customers (name, email, country, plan, created_on) VALUES (?, ?, ?, ?, ?)",
            [(n, e, c, p, _ago(today, d)) for n, e, c, p, d in CUSTOMERS],
        )
        conn.executemany(
            "INSERT INTO orders (customer_id, ordered_on, amount_eur, status) VALUES (?, ?, ?, ?)",
            [(c + 1, _ago(today, d), a, s) for c, d, a, s in ORDERS],
        )
        conn.executemany(
            "INSERT INTO tickets (customer_id, subject, body, priority, status, opened_on, closed_on, resolution) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [_ticket(today, *t) for t in TICKETS],
        )
    conn.close()
    partial.replace(path)  # atomic: a crash mid-seed never leaves a half-made CRM behind
    return True


def _ticket(today: dt.date, customer: int, subject: str, body: str, priority: str, status: str, days: int) -> Any:
    closed = status == "closed"
    resolution = "Refunded the duplicate charge." if closed else None
    return (customer + 1, subject, body, priority, status, _ago(today, days), _ago(today, 30) if closed else None,
            resolution)  # fmt: skip


def _ago(today: dt.date, days: int) -> str:
    return (today - dt.timedelta(days=days)).isoformat()


def demo_connector(path: str = "crm.db") -> dict[str, Any]:
    """The demo's ``[[connectors]]`` entry: the CRM at ``path`` (relative to the demo folder), made on first start."""
    return {
        "name": "crm",
        "type": "sql",
        "prefix": "crm_",
        "url": f"sqlite:///{path}",
        "sample_data": True,
        "actions": [
            {
                "name": "close_ticket",
                "title": "Close ticket",
                "description": (
                    "Close a support ticket with a short resolution note; use it when the person says a ticket "
                    "is solved. Ticket ids come from crm_query on the tickets table."
                ),
                "sql": (
                    "UPDATE tickets SET status = 'closed', closed_on = date('now'), resolution = :resolution "
                    "WHERE id = :id AND status <> 'closed'"
                ),
                "params": {
                    "id": {"type": "integer", "description": "The ticket id.", "minimum": 1},
                    "resolution": {"type": "string", "description": "What solved it.", "max_length": 500},
                },
                "idempotent": True,
            },
            {
                "name": "reopen_ticket",
                "title": "Reopen ticket",
                "description": "Reopen a closed support ticket, e.g. when the customer reports the problem again.",
                "sql": "UPDATE tickets SET status = 'open', closed_on = NULL WHERE id = :id AND status = 'closed'",
                "params": {"id": {"type": "integer", "description": "The ticket id.", "minimum": 1}},
                "idempotent": True,
            },
        ],
    }

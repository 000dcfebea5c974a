"""The approvals repository: create, find, decide and consume held calls in the ``gate_approvals`` table.

Blocking SQLAlchemy calls (run them in a worker thread from async code). Every write goes through the store's
single writer path (``patchbay.store.writer``). Deciding and consuming are conditional UPDATEs: of two
concurrent redeems of one approval exactly one changes the row, so a granted call runs at most once.

The arguments are stored sealed with the vault, bound to the approval's id; only redeeming a granted approval
opens them. What the page and the CLI show is a copy redacted when the call is held, the way the audit trail
redacts (``patchbay.gate.audit_redact``: ``format: password``, ``writeOnly``, ``[audit] redact_fields``), with the
number of fields it hides.
"""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from sqlalchemy import Engine, and_, or_, select, update
from sqlalchemy.orm import sessionmaker

from patchbay.gate.approval_models import GateApproval
from patchbay.gate.audit_redact import REDACTED, Redactor
from patchbay.settings import AuditSettings
from patchbay.store import writer
from patchbay.vault import Vault

Status = Literal["pending", "approved", "denied", "used", "void", "expired"]


class ApprovalRefused(Exception):
    """A decision that cannot be recorded; ``str(error)`` is a sentence for the approver."""


@dataclass(frozen=True, slots=True)
class HeldCall:
    """What is recorded when a call is held: who called, which tool (and its definition digest), with what."""

    subject: str
    username: str | None
    client_id: str
    client_name: str | None
    tool: str
    tool_digest: str
    args_digest: str
    arguments: dict[str, Any]
    rule: str
    reason: str
    # The tool's input schema, for redacting what the approver is shown (format: password, writeOnly).
    schema: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ApprovalView:
    id: str
    status: Status
    """The stored status, or ``expired`` for a pending or approved row past ``expires_at``."""
    subject: str
    username: str | None
    client_id: str
    client_name: str | None
    tool: str
    tool_digest: str
    args_digest: str
    shown: dict[str, Any]
    """The arguments as an approver sees them: secrets replaced by ``"[redacted]"``, everything else in full."""
    hidden: int
    """How many fields ``shown`` hides."""
    rule: str
    reason: str
    approved_by: tuple[str, ...]
    decided_by: str | None
    created_at: float
    expires_at: float
    decided_at: float | None
    used_at: float | None


def effective_status(status: str, expires_at: float, now: float) -> Status:
    if status in ("pending", "approved") and expires_at <= now:
        return "expired"
    return status  # type: ignore[return-value]


def redactor(fields: Iterable[str] = AuditSettings().redact_fields) -> Redactor:
    """The audit trail's redaction, never cutting what an approver is shown."""
    return Redactor(fields, sys.maxsize)


def redacted(redact: Redactor, arguments: dict[str, Any], schema: Mapping[str, Any] | None) -> tuple[Any, int]:
    """``arguments`` as an approver is shown them, and how many fields that hides."""
    shown = redact(arguments, schema)
    return shown, _count_hidden(arguments, shown)


def hidden_note(hidden: int) -> str:
    """What the approver is told about the fields the page does not show."""
    fields = "1 field is" if hidden == 1 else f"{hidden} fields are"
    return (
        f"{fields} hidden as [redacted] (secrets: format password, writeOnly, or named in [audit] redact_fields). "
        "They run exactly as the caller sent them."
    )


def _count_hidden(original: Any, shown: Any) -> int:
    if isinstance(shown, str) and shown == REDACTED:
        return 0 if original == REDACTED else 1
    if isinstance(shown, dict) and isinstance(original, dict):
        return sum(_count_hidden(original.get(k), v) for k, v in shown.items())
    if isinstance(shown, list) and isinstance(original, list):
        return sum(_count_hidden(o, v) for o, v in zip(original, shown, strict=False))
    return 0


def _view(row: GateApproval, now: float, redact: Redactor) -> ApprovalView:
    if row.shown is not None:
        shown, hidden = orjson.loads(row.shown), row.hidden
    else:  # held before gate_0003, in clear: redacted now, by field name (the schema is not stored)
        clear = orjson.loads(row.arguments)
        shown, hidden = redacted(redact, clear if isinstance(clear, dict) else {}, None)
    return ApprovalView(
        id=row.id,
        status=effective_status(row.status, row.expires_at, now),
        subject=row.subject,
        username=row.username,
        client_id=row.client_id,
        client_name=row.client_name,
        tool=row.tool,
        tool_digest=row.tool_digest,
        args_digest=row.args_digest,
        shown=shown if isinstance(shown, dict) else {},
        hidden=hidden,
        rule=row.rule,
        reason=row.reason,
        approved_by=tuple(row.approved_by.split()),
        decided_by=row.decided_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
        decided_at=row.decided_at,
        used_at=row.used_at,
    )


def context(approval_id: str) -> str:
    """The vault context of an approval's arguments: a sealed value copied to another row does not open."""
    return f"approval:{approval_id}"


class ApprovalStore:
    def __init__(
        self,
        engine: Engine,
        clock: Callable[[], float] = time.time,
        *,
        vault: Vault | None = None,
        redact: Redactor | None = None,
    ) -> None:
        """``vault`` seals and opens held arguments (holding or redeeming a call needs one; listing, showing and
        deciding do not); ``redact`` redacts rows held before arguments were sealed."""
        self.engine = engine
        self._read = sessionmaker(engine, expire_on_commit=False)
        self._write = sessionmaker(writer(engine), expire_on_commit=False)
        self.clock = clock
        self.vault = vault
        self.redact = redact or redactor()

    def _vault(self) -> Vault:
        if self.vault is None:
            raise RuntimeError("this approval store was opened without a vault: it cannot hold or redeem calls")
        return self.vault

    def create(self, call: HeldCall, ttl_seconds: float) -> ApprovalView:
        now = self.clock()
        approval_id = secrets.token_urlsafe(16)  # 128 random bits: the approval link cannot be guessed
        while approval_id.startswith("-"):  # `patchbay approvals approve <id>` would take it for an option
            approval_id = secrets.token_urlsafe(16)
        shown, hidden = redacted(self.redact, call.arguments, call.schema)
        row = GateApproval(
            id=approval_id,
            status="pending",
            subject=call.subject,
            username=call.username,
            client_id=call.client_id,
            client_name=call.client_name,
            tool=call.tool,
            tool_digest=call.tool_digest,
            args_digest=call.args_digest,
            arguments=self._vault().seal(orjson.dumps(call.arguments), context=context(approval_id)),
            sealed=True,
            shown=orjson.dumps(shown).decode(),
            hidden=hidden,
            rule=call.rule[:200],
            reason=call.reason,
            approved_by="",
            created_at=now,
            expires_at=now + ttl_seconds,
        )
        with self._write() as session, session.begin():
            session.add(row)
        return _view(row, now, self.redact)

    def get(self, approval_id: str) -> ApprovalView | None:
        with self._read() as session:
            row = session.get(GateApproval, approval_id)
            return _view(row, self.clock(), self.redact) if row is not None else None

    def latest(self, subject: str, client_id: str, tool: str, args_digest: str) -> ApprovalView | None:
        """The newest approval for this caller, client, tool and argument digest (any tool digest)."""
        query = (
            select(GateApproval)
            .where(
                GateApproval.subject == subject,
                GateApproval.client_id == client_id,
                GateApproval.tool == tool,
                GateApproval.args_digest == args_digest,
            )
            .order_by(GateApproval.created_at.desc(), GateApproval.id.desc())  # one answer even for a tie
            .limit(1)
        )
        with self._read() as session:
            row = session.scalar(query)
            return _view(row, self.clock(), self.redact) if row is not None else None

    def list(
        self, *, include_all: bool = False, limit: int = 200, before: tuple[float, str] | None = None
    ) -> list[ApprovalView]:
        """Pending, unexpired approvals (every approval with ``include_all``), newest first; with ``before`` (the
        ``created_at`` and ``id`` of the last one of the previous page) only those listed after it."""
        order = (GateApproval.created_at.desc(), GateApproval.id.desc())
        query = select(GateApproval).order_by(*order).limit(limit)
        if before is not None:
            at, approval_id = before
            query = query.where(
                or_(
                    GateApproval.created_at < at,
                    and_(GateApproval.created_at == at, GateApproval.id < approval_id),
                )
            )
        if not include_all:
            query = query.where(GateApproval.status == "pending", GateApproval.expires_at > self.clock())
        now = self.clock()
        with self._read() as session:
            return [_view(row, now, self.redact) for row in session.scalars(query)]

    def statuses(self, approval_ids: Sequence[str]) -> dict[str, Status]:
        """The effective status of each stored approval of ``approval_ids`` (ids not stored are left out)."""
        query = select(GateApproval.id, GateApproval.status, GateApproval.expires_at).where(
            GateApproval.id.in_(approval_ids)
        )
        now = self.clock()
        with self._read() as session:
            return {row.id: effective_status(row.status, row.expires_at, now) for row in session.execute(query)}

    def consume(self, approval_id: str, tool_digest: str) -> dict[str, Any] | None:
        """Mark a granted, unexpired approval of this tool definition used and return its stored arguments; None
        when it is not (any more) redeemable: used by a concurrent call, expired, or for another definition.

        Raises:
            VaultError: the sealed arguments do not open with the vault's keys; the approval stays granted.
        """
        now = self.clock()
        statement = (
            update(GateApproval)
            .where(
                GateApproval.id == approval_id,
                GateApproval.status == "approved",
                GateApproval.expires_at > now,
                GateApproval.tool_digest == tool_digest,
            )
            .values(status="used", used_at=now)
            .returning(GateApproval.arguments, GateApproval.sealed)
        )
        with self._write() as session, session.begin():
            stored = session.execute(statement).first()
            if stored is None:
                return None
            text, sealed = stored
            # Opened inside the transaction: arguments that do not open leave the approval granted (rolled back).
            raw = self._vault().open(text, context=context(approval_id)) if sealed else text.encode()
        arguments = orjson.loads(raw)
        return arguments if isinstance(arguments, dict) else {}

    def void(self, approval_id: str) -> bool:
        """Retire a pending or granted approval whose tool changed or disappeared: it can never run."""
        statement = (
            update(GateApproval)
            .where(GateApproval.id == approval_id, GateApproval.status.in_(("pending", "approved")))
            .values(status="void", decided_at=self.clock(), decided_by="patchbay (the tool changed)")
            .returning(GateApproval.id)
        )
        with self._write() as session, session.begin():
            return session.execute(statement).first() is not None

    def approve(self, approval_id: str, approver: str, required: int = 1) -> ApprovalView:
        """Record ``approver``'s approval; the call is granted once ``required`` distinct people approved.

        Raises:
            ApprovalRefused: unknown, expired, already decided, or already approved by this person.
        """
        now = self.clock()
        with self._write() as session, session.begin():
            row = self._open_row(session.get(GateApproval, approval_id), now)
            names = row.approved_by.split()
            if approver in names:
                raise ApprovalRefused(f"You approved this call already; it needs {required} different approvers.")
            names.append(approver)
            values: dict[str, Any] = {"approved_by": " ".join(names)}
            if len(names) >= required:
                values.update(status="approved", decided_by=approver, decided_at=now)
            done = session.execute(
                update(GateApproval)
                .where(
                    GateApproval.id == approval_id,
                    GateApproval.status == "pending",
                    GateApproval.approved_by == row.approved_by,  # a concurrent approver's write wins; retry
                )
                .values(**values)
                .returning(GateApproval.id)
            )
            if done.first() is None:
                raise ApprovalRefused("Someone else decided this call at the same moment. Reload the page.")
            session.refresh(row)
            return _view(row, now, self.redact)

    def deny(self, approval_id: str, approver: str) -> ApprovalView:
        """Raises ApprovalRefused: unknown, expired or already decided."""
        now = self.clock()
        with self._write() as session, session.begin():
            row = self._open_row(session.get(GateApproval, approval_id), now)
            done = session.execute(
                update(GateApproval)
                .where(GateApproval.id == approval_id, GateApproval.status == "pending")
                .values(status="denied", decided_by=approver, decided_at=now)
                .returning(GateApproval.id)
            )
            if done.first() is None:
                raise ApprovalRefused("Someone else decided this call at the same moment. Reload the page.")
            session.refresh(row)
            return _view(row, now, self.redact)

    def reseal(self) -> int:
        """Seal every held call's arguments again under the vault's first key (``patchbay vault rotate``); the
        number re-sealed. Decided and used rows too: once the old key is dropped, nothing sealed under it remains.

        Raises:
            VaultError: arguments sealed under a key no longer configured, or altered (nothing is changed).
        """
        vault, count = self._vault(), 0
        with self._write() as session, session.begin():
            for row in session.scalars(select(GateApproval).where(GateApproval.sealed.is_(True))).all():
                if vault.needs_reseal(row.arguments):
                    row.arguments = vault.reseal(row.arguments, context=context(row.id))
                    count += 1
        return count

    @staticmethod
    def _open_row(row: GateApproval | None, now: float) -> GateApproval:
        if row is None:
            raise ApprovalRefused("There is no such approval request.")
        status = effective_status(row.status, row.expires_at, now)
        if status != "pending":
            raise ApprovalRefused(f"This approval request is {status}; nothing was changed.")
        return row

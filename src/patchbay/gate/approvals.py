"""Human approval of chosen calls: the gate's ``approve`` effect.

A call the gate answers ``approve`` for is held: it is recorded (caller, client, tool, the tool's definition
digest and the RFC 8785 digest of its arguments) and the caller is told where a person approves it. Once granted,
the same call (same caller, client, tool definition and argument digest) runs the *stored* arguments, once. How the
caller is told depends on what its client supports (docs/approvals.md):

- a 2025-11-25 session that declared URL-mode elicitation: the error -32042 (URLElicitationRequiredError,
  MCP 2025-11-25 client/elicitation "URL Elicitation Required Error") carrying the approval URL;
- a 2026-07-28 request that declared URL-mode elicitation: an ``input_required`` result whose input request is a
  URL-mode ``elicitation/create`` (MCP 2026-07-28 basic/patterns/mrtr);
- any other client (claude.ai, ChatGPT): an ordinary tool result (not an error, so the model reads it) giving the
  link and asking to call again with the same arguments once approved.

The 2025-11-25 session that got the URL elicitation is sent ``notifications/elicitation/complete`` once the
approval is decided (``patchbay.gate.approval_notify``). The held arguments are stored sealed with the vault.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
import rfc8785
from sqlalchemy import Engine

from patchbay.errors import RpcError
from patchbay.gate import Decision
from patchbay.gate.approval_notify import ElicitationWaits
from patchbay.gate.approval_store import ApprovalStore, ApprovalView, HeldCall, redactor
from patchbay.gate.audit_redact import Redactor
from patchbay.protocol import jsonrpc
from patchbay.protocol.scope import CallScope, InputRequired
from patchbay.settings import ApprovalsSettings
from patchbay.vault import Vault, VaultError

log = logging.getLogger("patchbay.gate")

URL_ELICITATION_REQUIRED = -32042  # MCP 2025-11-25 client/elicitation
META_KEY = "patchbay/approval"
INPUT_KEY = "patchbay_approval"  # the MRTR input request's key
ANONYMOUS = "anonymous"


def arguments_digest(arguments: dict[str, Any]) -> str:
    """Hex SHA-256 of the arguments' RFC 8785 (JCS) canonical JSON: the same for every client and key order.

    Raises:
        RpcError: -32602 when the arguments cannot be canonicalised (an integer beyond ±2**53, NaN, ...).
    """
    try:
        canonical = rfc8785.dumps(arguments)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise jsonrpc.invalid_params(
            f"These arguments cannot be approved: {exc} (RFC 8785 JSON allows integers up to 2**53 and no NaN)"
        ) from None
    return hashlib.sha256(canonical).hexdigest()


def _when(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _declares_url_elicitation(scope: CallScope) -> bool:
    elicitation = scope.client_caps.get("elicitation")
    return isinstance(elicitation, dict) and "url" in elicitation


@dataclass
class Approvals:
    """The dispatcher's ``approvals``: holds calls the gate marks ``approve`` and admits granted ones."""

    engine: Engine
    settings: ApprovalsSettings
    public_url: str
    clock: Callable[[], float] = time.time
    owns_engine: bool = False
    # Records an audit event: audit(method, **fields) (patchbay.gate.audit.AuditRecorder.event); no-op when off.
    audit: Callable[..., None] = field(default=lambda method, **fields: None)
    # Seals held arguments at rest (Vault.from_settings for a server; a process-lifetime key when not given).
    vault: Vault | None = None
    # Redacts what approvers are shown ([audit] redact_fields; the audit trail's defaults when not given).
    redact: Redactor | None = None
    # name -> the tool's input schema, for redacting format: password and writeOnly fields (None: names only).
    schemas: Callable[[str], Any] | None = None
    store: ApprovalStore = field(init=False)
    elicitations: ElicitationWaits = field(init=False)
    _migrated: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        vault = self.vault or Vault.ephemeral()
        self.store = ApprovalStore(self.engine, self.now, vault=vault, redact=self.redact or redactor())
        self.elicitations = ElicitationWaits(lambda ids: self.run(self.store.statuses, ids))

    def now(self) -> float:
        return self.clock()  # indirect, so tests can move time by replacing ``clock``

    def close(self) -> None:
        self.elicitations.close()
        if self.owns_engine:
            self.engine.dispose()

    def decided(self, approval_id: str) -> None:
        """An approval was decided in this process: the session that got its URL elicitation is told now."""
        self.elicitations.decided(approval_id)

    def link(self, approval_id: str) -> str:
        return f"{self.public_url}/approvals/{approval_id}"

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking store call in a worker thread, migrating the approvals table on first use."""
        if not self._migrated:
            from patchbay.store import upgrade

            # Every branch, not only this table's: the approval page signs people in from auth_users, which a
            # store used without sign-in may not have yet.
            await anyio.to_thread.run_sync(upgrade, self.engine)
            self._migrated = True
        return await anyio.to_thread.run_sync(lambda: fn(*args))

    async def admit(
        self, name: str, tool_digest: str, arguments: dict[str, Any], scope: CallScope, decision: Decision
    ) -> dict[str, Any] | None:
        """None when this exact call holds a granted approval (consumed now; ``scope.approved_arguments`` is set
        to the stored arguments); otherwise the finished tools/call result that tells the caller why it did not
        run and where to approve it.

        Raises:
            RpcError: -32042 for a 2025-11-25 client that declared URL-mode elicitation; -32602 for arguments
                that cannot be canonicalised.
            InputRequired: for a 2026-07-28 client that declared URL-mode elicitation.
        """
        principal = scope.principal
        subject = str(principal.subject) if principal is not None else ANONYMOUS
        client_id = (getattr(principal, "client_id", None) or "") if principal is not None else ""
        digest = arguments_digest(arguments)
        found: ApprovalView | None = await self.run(self.store.latest, subject, client_id, name, digest)
        note = ""
        if found is not None:
            if found.status == "approved":
                if found.tool_digest != tool_digest:
                    await self.run(self.store.void, found.id)
                    log.warning("approval %s of %s voided: the tool changed after approval", found.id, name)
                    return _refusal(
                        f"Not run: the tool '{name}' changed after this call was approved (approval {found.id}), "
                        "so that approval no longer applies. Call it again to ask for a new approval.",
                        found.id,
                        "void",
                    )
                try:
                    stored = await self.run(self.store.consume, found.id, tool_digest)
                except VaultError:
                    log.error("approval %s: its sealed arguments do not open with this server's vault keys", found.id)
                    return _refusal(
                        f"Not run: the approved arguments of approval {found.id} cannot be opened with this server's "
                        "[vault] keys. Ask the operator to restore the key it was sealed with.",
                        found.id,
                        "approved",
                    )
                if stored is not None:
                    log.info("approval %s used: running %s for %s", found.id, name, subject)
                    scope.approved_arguments = stored
                    return None
                note = "This exact call was approved once and has already run. "
            elif found.status == "pending" and found.tool_digest == tool_digest:
                return self._held(name, found, scope, decision)
            elif found.status == "denied" and found.expires_at > self.now():
                who = found.decided_by or "an approver"
                return _refusal(
                    f"Not run: {who} denied this call of '{name}' on {_when(found.decided_at or found.created_at)} "
                    f"(approval {found.id}). The same call can be asked for again after "
                    f"{_when(found.expires_at)}.",
                    found.id,
                    "denied",
                )
            else:
                if found.status == "pending":  # held for an older definition of the tool: it can never run
                    await self.run(self.store.void, found.id)
                note = _why_new(found)
        call = HeldCall(
            subject=subject,
            username=getattr(principal, "username", None),
            client_id=client_id,
            client_name=_client_name(scope),
            tool=name,
            tool_digest=tool_digest,
            args_digest=digest,
            arguments=arguments,
            rule=decision.rule,
            reason=decision.reason,
            schema=self.schemas(name) if self.schemas is not None else None,
        )
        created: ApprovalView = await self.run(self.store.create, call, float(self.settings.ttl_seconds))
        log.info("approval %s requested: %s by %s (%s)", created.id, name, subject, decision.rule)
        self.audit(
            "approval.requested",
            approval_id=created.id,
            name=name,
            subject=subject,
            client_id=client_id or None,
            rule=decision.rule,
            outcome="pending",
        )
        return self._held(name, created, scope, decision, note)

    def _held(
        self, name: str, held: ApprovalView, scope: CallScope, decision: Decision, note: str = ""
    ) -> dict[str, Any]:
        url = self.link(held.id)
        message = (
            f"{note}Approval needed ({decision.reason}): a person with an approver role must approve this exact call "
            f"of '{name}' at {url} before {_when(held.expires_at)}."
        )
        if scope.era == "legacy" and scope.version >= "2025-11-25" and _declares_url_elicitation(scope):
            elicitation = {"mode": "url", "elicitationId": held.id, "url": url, "message": message}
            if scope.session is not None:
                self.elicitations.add(held.id, scope.session)
            raise RpcError(URL_ELICITATION_REQUIRED, "This call needs approval", {"elicitations": [elicitation]})
        if scope.era == "modern" and _declares_url_elicitation(scope):
            answer = scope.input_responses.get(INPUT_KEY)
            if answer is None:
                request = {"method": "elicitation/create", "params": {"mode": "url", "message": message, "url": url}}
                raise InputRequired({INPUT_KEY: request})
            if isinstance(answer, dict) and answer.get("action") in ("decline", "cancel"):
                return _refusal(
                    f"Not run: the approval link was {'declined' if answer['action'] == 'decline' else 'cancelled'} "
                    f"in the client. The request stays open at {url}.",
                    held.id,
                    held.status,
                )
        text = f"{message} Once it is approved, call {name} again with exactly the same arguments."
        return {
            "content": [{"type": "text", "text": text}],
            "isError": False,
            "_meta": {META_KEY: {"approval_id": held.id, "status": held.status, "url": url}},
        }


def _why_new(found: ApprovalView) -> str:
    if found.status == "used":
        return "This exact call was approved once and has already run; running it again needs a new approval. "
    if found.status == "expired":
        return "The earlier approval request for this call expired. "
    if found.status in ("void", "pending", "approved"):
        return "The tool changed since this call was last held, so it needs a new approval. "
    return "The earlier denial of this call has lapsed. "


def _client_name(scope: CallScope) -> str | None:
    info = scope.client_info
    name = info.get("name") if isinstance(info, dict) else None
    return name[:200] if isinstance(name, str) else None


def _refusal(text: str, approval_id: str, status: str) -> dict[str, Any]:
    return {
        "content": [{"type": "text", "text": text}],
        "isError": True,
        "_meta": {META_KEY: {"approval_id": approval_id, "status": status}},
    }

"""Tool names and titles for operations: what every client accepts, the same whatever order the spec lists them in.

Clients enforce 1-64 of ``A-Z a-z 0-9 _ -`` on the *final* name, the catalog's prefix included (Claude's API and
ChatGPT refuse longer names or dots; Cursor cuts at 60, which a short prefix keeps us under for most APIs). A name
is derived from the operationId (snake_cased), else from the method and path; a name too long is abbreviated word by
word, then cut and given a short hash of the operation key. Two operations deriving one name are told apart by a
suffix hashed from their keys, never by their position, so reordering the spec changes no name (a policy rule or an
approval names a tool: it must not silently point at another operation).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Mapping

from patchbay.connectors.openapi.models import Operation
from patchbay.errors import ConfigError

MAX_NAME = 64
CLIENT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# The shortest room a name may have after the prefix: a word and a hash suffix.
MIN_ROOM = 12
HASH_CHARS = 6

# Words shortened first when a name is too long; common in REST paths and operationIds.
ABBREVIATIONS = {
    "administration": "admin",
    "application": "app",
    "applications": "apps",
    "attachment": "attach",
    "attachments": "attachs",
    "authentication": "authn",
    "authorization": "authz",
    "configuration": "config",
    "configurations": "configs",
    "dependency": "dep",
    "dependencies": "deps",
    "deployment": "deploy",
    "deployments": "deploys",
    "description": "desc",
    "environment": "env",
    "environments": "envs",
    "information": "info",
    "installation": "install",
    "installations": "installs",
    "management": "mgmt",
    "notification": "notif",
    "notifications": "notifs",
    "organization": "org",
    "organizations": "orgs",
    "organisation": "org",
    "organisations": "orgs",
    "permission": "perm",
    "permissions": "perms",
    "repository": "repo",
    "repositories": "repos",
    "specification": "spec",
    "subscription": "sub",
    "subscriptions": "subs",
    "statistics": "stats",
    "vulnerability": "vuln",
    "vulnerabilities": "vulns",
}

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NOT_WORD = re.compile(r"[^A-Za-z0-9]+")
_PARAM = re.compile(r"^\{(.+)\}$")


def snake(text: str) -> str:
    """``listTickets`` → ``list_tickets``, ``tickets.list`` → ``tickets_list``, ``Über-Größe`` → ``uber_grosse``."""
    folded = unicodedata.normalize("NFKD", text.replace("ß", "ss")).encode("ascii", "ignore").decode()
    spaced = _CAMEL.sub("_", folded)
    return "_".join(word for word in _NOT_WORD.split(spaced) if word).lower()


def derived_name(operation: Operation) -> str:
    """The name before any length or collision rule: the snake_cased operationId, else method + path words."""
    if operation.operation_id:
        name = snake(operation.operation_id)
        if name:
            return name
    words = [operation.method.lower()]
    for segment in operation.path.split("/"):
        param = _PARAM.match(segment)
        words.append(f"by_{snake(param.group(1))}" if param else snake(segment))
    return "_".join(word for word in words if word) or operation.method.lower()


def short_hash(key: str, chars: int = HASH_CHARS) -> str:
    """A stable short digest of an operation key (hex, so it never forms a word clients refuse)."""
    return hashlib.sha256(key.encode()).hexdigest()[:chars]


def fit(name: str, key: str, room: int) -> str:
    """``name`` within ``room`` characters: whole words abbreviated first, then cut and given a hash of ``key``."""
    if len(name) <= room:
        return name
    shorter = "_".join(ABBREVIATIONS.get(word, word) for word in name.split("_"))
    if len(shorter) <= room:
        return shorter
    head = shorter[: room - HASH_CHARS - 1].rstrip("_-")
    return f"{head}_{short_hash(key)}"


def assign_names(
    operations: Iterable[Operation], prefix: str, chosen: Mapping[str, tuple[str, str]] | None = None
) -> dict[str, str]:
    """Operation key → connector-local tool name, each ``prefix + name`` a name every client accepts.

    ``chosen`` maps an operation key to ``(name, config key)`` for names given in config or by the spec's
    ``x-mcp``/``x-patchbay`` extension: they are used as given and checked, and derived names make way for them.

    Raises:
        ConfigError: the prefix leaves no room for names, or a chosen name is too long with the prefix, has
            characters clients refuse, or is chosen for two operations (key ``operations.<key>``).
    """
    room = MAX_NAME - len(prefix)
    if room < MIN_ROOM:
        raise ConfigError(
            f"the prefix '{prefix}' leaves {room} characters for tool names (clients accept {MAX_NAME} in all); "
            f"use a prefix of at most {MAX_NAME - MIN_ROOM} characters",
            key="prefix",
        )
    ops = sorted(operations, key=lambda op: op.key)
    names: dict[str, str] = {}
    owners: dict[str, str] = {}  # name -> operation key
    for op in ops:
        if chosen and op.key in chosen:
            name, config_key = chosen[op.key]
            _check_chosen(name, config_key, prefix)
            if name in owners:
                raise ConfigError(
                    f"operations '{owners[name]}' and '{op.key}' are both named '{name}'; give one another name",
                    key=config_key,
                )
            names[op.key] = owners[name] = name
    derived = {op.key: fit(derived_name(op), op.key, room) for op in ops if op.key not in names}
    groups: dict[str, list[str]] = {}
    for key, name in derived.items():
        groups.setdefault(name, []).append(key)
    for name, keys in groups.items():
        # The group's smallest key keeps the plain name unless a chosen name took it; keys are sorted, so the
        # winner depends on the set of operations only, never on their order in the spec.
        plain = keys[0] if name not in owners else None
        for key in keys:
            final = name if key == plain else _suffixed(name, key, room, owners)
            names[key] = owners[final] = final
    return names


def _suffixed(name: str, key: str, room: int, taken: Mapping[str, str]) -> str:
    for chars in range(HASH_CHARS, 41):
        suffix = f"_{short_hash(key, chars)}"
        candidate = name[: room - len(suffix)].rstrip("_-") + suffix
        if candidate not in taken:
            return candidate
    raise AssertionError(f"no free name for {key}")  # 160 bits of SHA-256 collide only for equal keys


def _check_chosen(name: str, config_key: str, prefix: str) -> None:
    final = prefix + name
    if not CLIENT_NAME.match(final):
        why = f"is {len(final)} characters, over {MAX_NAME}" if len(final) > MAX_NAME else "has characters"
        raise ConfigError(
            f"the name '{name}' would be published as '{final}', which {why} clients refuse "
            f"(1-{MAX_NAME} of A-Z a-z 0-9 _ - including the prefix '{prefix}')",
            key=config_key,
        )


def humanise(identifier: str) -> str:
    """``listOpenTickets`` → ``List open tickets``: a title for an operation without a summary."""
    words = snake(identifier).split("_")
    text = " ".join(word for word in words if word)
    return text[:1].upper() + text[1:]


def title_of(operation: Operation) -> str:
    """The summary's first line, else a humanised operationId, else ``GET /tickets/{id}``."""
    summary = operation.summary.strip().splitlines()[0].strip() if operation.summary.strip() else ""
    if summary:
        return summary if len(summary) <= 120 else summary[:119].rstrip() + "…"
    if operation.operation_id and snake(operation.operation_id):
        return humanise(operation.operation_id)
    return operation.key

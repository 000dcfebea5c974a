"""``patchbay.toml`` plus ``PATCHBAY_*`` environment overrides, validated into one typed settings object.

Environment overrides name a section and a key joined by a double underscore, e.g.
``PATCHBAY_SERVER__PORT=9000`` or ``PATCHBAY_SERVER__PUBLIC_URL=https://mcp.example.com``; values are parsed as
TOML values when they parse (numbers, booleans, arrays) and taken as strings otherwise.

Every error names the file (or variable), the key, the bad value and what is allowed; unknown keys are errors
with a "did you mean".
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tomllib
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from patchbay.errors import ConfigError
from patchbay.gate.config import RULE_KEYS, GateSettings, PolicyRule, WritesMode, check_policy
from patchbay.gate.limits_config import LimitRule, check_limits, check_limits_shape
from patchbay.observe.config import MetricsSettings, OtelSettings

ENV_PREFIX = "PATCHBAY_"
CONNECTOR_COMMON = {
    "name",
    "type",
    "prefix",
    "enabled",
    "scopes",
    "tool_scopes",
    "public_tools",
    "writes",
    "timeout_seconds",
    "tool_timeouts",
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Section):
    name: str = "Patchbay"
    """Shown to clients as serverInfo.name."""
    title: str | None = None
    instructions: str | None = None
    """Guidance for the model using this server; keep the key facts in the first 512 characters (ChatGPT)."""
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    public_url: str | None = None
    """The URL users paste into ChatGPT or Claude, without /mcp; defaults to http://host:port."""
    secret: SecretStr | None = None
    """Signs multi round-trip request states. Give every replica the same value (PATCHBAY_SERVER__SECRET);
    unset, each process makes a random one and a restart ends round trips in progress. A fleet ([redis] url)
    requires it: it also seals 2025-era session ids."""
    previous_secrets: list[SecretStr] = []
    """Former values of secret, still accepted to open session ids and round-trip states (rotation)."""
    allowed_hosts: list[str] = []
    """Extra Host header values to accept besides public_url's host and loopback; "*" turns the Host check off."""
    allowed_origins: list[str] = []
    """Extra browser origins (scheme://host[:port]) allowed to call /mcp."""
    probe_hosts: list[str] = []
    """Host values accepted on /healthz and /readyz only, for load-balancer and Kubernetes probes that send the
    target's own address: host names, IP addresses or networks such as "10.0.0.0/8" (any port)."""
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    """Largest request body any route reads (413 beyond), declared or chunked."""
    max_batch_size: int = Field(100, ge=1)
    """Most messages in one JSON-RPC batch (2025-03-26 sessions)."""
    max_batch_response_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    """Largest answer to one batch; requests past it are answered with an error instead of being run."""
    session_idle_seconds: float = Field(1800, gt=0)
    max_sessions: int = Field(10_000, ge=1)
    max_sessions_per_principal: int = Field(1000, ge=1)
    """Most 2025-era sessions one signed-in principal (or all anonymous callers together) may hold."""
    sse_keepalive_seconds: float = Field(15, gt=0)
    list_ttl_ms: int = Field(60_000, ge=0)
    shutdown_grace_seconds: float = Field(30, ge=0)
    connector_retry_max_seconds: float = Field(60, ge=0.1, le=3600)
    """A connector whose system is down is retried after 1 s, then 2, 4 … seconds, never more than this."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"

    @field_validator("probe_hosts")
    @classmethod
    def _probe_hosts(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry.strip("[]"), strict=False)
            except ValueError:
                if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})", entry):
                    raise ValueError(
                        f"{entry!r} is not a host name, IP address or network such as '10.0.0.0/8'"
                    ) from None
        return value

    @field_validator("public_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http(s) URL such as https://mcp.example.com")
        if parts.query or parts.fragment or parts.username:
            raise ValueError("must not carry a query, fragment or credentials")
        base = value.rstrip("/")
        endpoint = next((e for e in ("/mcp", "/sse") if base.endswith(e)), None)
        if endpoint is not None:
            # Patchbay adds /mcp (and /sse) itself; keeping it here would advertise …/mcp/mcp.
            raise ValueError(
                f"must be the server's base URL, without {endpoint}: Patchbay serves MCP at public_url + /mcp "
                f"(use {base[: -len(endpoint)]!r})"
            )
        return base


class StoreSettings(_Section):
    url: str = "sqlite:///patchbay.db"
    """A SQLAlchemy URL. Relative SQLite paths are relative to the config file's folder."""


class OutboundSettings(_Section):
    """``[outbound]``: what every fetch the server makes may reach (client metadata documents, IdPs, APIs)."""

    allowed_networks: list[str] = []
    """Networks (CIDR) reachable besides public addresses, e.g. ["10.20.0.0/16"] for an internal IdP."""
    allow_private_network: bool = False
    """Tests and local development only: any address, and plain http://."""

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=True)
            except ValueError as exc:
                raise ValueError(f"{cidr!r} is not a network in CIDR form such as '10.20.0.0/16' ({exc})") from None
        return value


_SCOPE = r"^[\x21\x23-\x5b\x5d-\x7e]+$"  # RFC 6749 §3.3 scope-token


class OAuthClientSettings(_Section):
    """One ``[[auth.clients]]`` table: a client registered by the operator (ChatGPT "predefined client",
    Claude "custom client ID/secret")."""

    client_id: str = Field(min_length=1, max_length=255)
    name: str
    redirect_uris: list[str] = Field(min_length=1)
    client_secret_env: str | None = None
    """Name of the environment variable holding the secret; none for a public client."""
    token_endpoint_auth_method: Literal["none", "client_secret_basic", "client_secret_post"] | None = None
    """Defaults to client_secret_basic when a secret is configured, else none."""
    scopes: list[str] | None = None
    """Scopes this client may get; all of scopes_supported when unset."""


class UpstreamOIDCSettings(_Section):
    """``[auth.upstream]``: people sign in at the company's OpenID provider (Okta, Entra ID, Google, Keycloak)."""

    issuer: str
    client_id: str
    client_secret_env: str | None = None
    scopes: list[str] = ["openid", "email", "profile"]
    username_claim: str = "email"
    roles_claim: str = "groups"
    role_map: dict[str, list[str]] = {}
    """Claim value (e.g. a group) → Patchbay roles."""
    default_roles: list[str] = []
    allowed_domains: list[str] = []
    """When set, only e-mail addresses in these domains may sign in."""
    display_name: str = "your organisation"
    allow_private_network: bool = False
    """Tests only: let Patchbay reach an IdP on a loopback or private address."""


class ExternalIdPSettings(_Section):
    """``[auth.external]``: Patchbay is only a resource server for an existing authorization server."""

    issuer: str
    jwks_uri: str | None = None
    """Defaults to the one in the issuer's metadata document."""
    introspection_endpoint: str | None = None
    """RFC 7662: used for tokens that are not JWTs (or for all tokens when jwks_uri is unset and none is found)."""
    introspection_client_id: str | None = None
    introspection_client_secret_env: str | None = None
    audience: str | None = None
    """Defaults to the exact MCP URL (public_url + /mcp)."""
    algorithms: list[str] = ["RS256", "ES256", "PS256", "EdDSA"]
    scopes_claim: str = "scope"
    roles_claim: str = "roles"
    clock_skew_seconds: int = Field(60, ge=0, le=300)
    """Tolerance for clock differences with the IdP when checking exp/nbf."""
    allow_private_network: bool = False
    """Tests only: let Patchbay reach an IdP on a loopback or private address."""


class AuthSettings(_Section):
    mode: Literal["none", "api_key", "oauth", "external"] = "none"
    """none (local work) · api_key (static bearer keys) · oauth (built-in authorization server; API keys work
    too) · external (resource server for an existing IdP)."""
    scopes_supported: list[str] = ["mcp"]
    """Scopes clients may ask for; the scopes tools declare are added to these."""
    default_scopes: list[str] = ["mcp"]
    """Granted when an authorization request names no scope (ChatGPT reconnects send none)."""
    required_scopes: list[str] = []
    """Every request must carry these; a token without them gets 403 insufficient_scope."""
    access_token_seconds: int = Field(3600, ge=10, le=86_400)
    refresh_token_seconds: int = Field(30 * 86_400, ge=60)
    code_seconds: int = Field(120, ge=10, le=600)
    registration: bool = True
    """RFC 7591 dynamic client registration."""
    registration_per_minute: int = Field(20, ge=1)
    """Registrations one address may make per minute."""
    unused_client_days: int = Field(7, ge=1)
    """Dynamically registered clients that never got a token are deleted after this many days."""
    client_metadata_documents: bool = True
    """Accept HTTPS client_id URLs (client ID metadata documents)."""
    allow_private_network: bool = False
    """Tests only: fetch client metadata documents from loopback or private addresses."""
    login_attempts: int = Field(5, ge=1)
    """Failed password attempts in a row before an account is locked."""
    lockout_seconds: int = Field(900, ge=1)
    """How long a lock lasts; attempts during it neither count nor extend it."""
    login_attempts_per_address: int = Field(20, ge=1)
    """Failed sign-ins one client address may make per lockout_seconds, whatever the accounts."""
    max_form_bytes: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)
    """Largest body of /token, /revoke, /introspect and the sign-in and consent forms (413 beyond)."""
    max_registration_bytes: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)
    """Largest body of /register (413 beyond)."""
    clients: list[OAuthClientSettings] = []
    upstream: UpstreamOIDCSettings | None = None
    external: ExternalIdPSettings | None = None

    @field_validator("scopes_supported", "default_scopes", "required_scopes")
    @classmethod
    def _scopes(cls, value: list[str]) -> list[str]:
        for scope in value:
            if not re.match(_SCOPE, scope):
                raise ValueError(f'{scope!r} is not a valid scope (RFC 6749 §3.3: printable ASCII, no space, " or \\)')
        return value

    @model_validator(mode="after")
    def _consistent(self) -> AuthSettings:
        if self.mode == "external" and self.external is None:
            raise ValueError('mode = "external" needs an [auth.external] table with at least issuer = "https://…"')
        missing = [s for s in self.default_scopes if s not in self.scopes_supported]
        if missing:
            raise ValueError(f"default_scopes {missing} must also be in scopes_supported {self.scopes_supported}")
        return self


class ApprovalsSettings(_Section):
    """Human approval of held tool calls (docs/approvals.md)."""

    # How long an approval request waits for a decision, and how long a granted call may then be run.
    ttl_seconds: int = Field(900, ge=30, le=7 * 86_400)
    # Local users with one of these roles may approve or deny on the approval page and with the CLI.
    approver_roles: list[str] = Field(["approver"], min_length=1)
    # Whether the person who made the call may approve it themselves.
    allow_self_approval: bool = False
    # Distinct approvers needed before the call may run (2: four eyes).
    required_approvals: int = Field(1, ge=1, le=5)
    # How long an approver stays signed in on the approval page.
    session_seconds: int = Field(900, ge=60, le=86_400)


class ConsoleSettings(_Section):
    """``[console]``: the operator console at ``/admin`` (docs/console.md)."""

    enabled: bool = True
    """Serve the console. With [auth] mode = "none" it is served only when [server] host is a loopback address."""
    session_minutes: int = Field(60, ge=5, le=24 * 60)
    """How long a sign-in to the console lasts."""
    reauth_minutes: int = Field(10, ge=1, le=24 * 60)
    """Dangerous actions (revoking, approving changes, disabling users) need a sign-in at most this long ago."""
    export_max_rows: int = Field(100_000, ge=1, le=10_000_000)
    """An audit export (CSV or JSONL) holds at most this many records, the newest first."""
    live_minutes: int = Field(10, ge=1, le=24 * 60)
    """The audit page's live tail closes after this long (the browser reconnects, signed in again)."""


class RedisSettings(_Section):
    """``[redis]``: the shared store that makes several replicas one fleet (docs/deploy.md); unset, a single node."""

    url: SecretStr | None = None
    """redis://[:password@]host[:port][/db], rediss:// for TLS or unix:///path; unset: single node, no Redis."""
    key_prefix: str = Field("pb:", min_length=1, max_length=64)
    """Every key and channel starts with it, so several fleets can share one Redis."""
    timeout_ms: int = Field(500, ge=10, le=60_000)
    """Longest wait for one Redis command; while Redis is unreachable calls fail at once instead."""
    session_lifetime_seconds: int = Field(30 * 24 * 3600, ge=60)
    """Absolute lifetime of a 2025-era session id (sealed, so any replica opens it)."""
    event_ttl_seconds: int = Field(600, ge=1)
    """How long a stream's events stay resumable with Last-Event-ID."""
    event_max: int = Field(1000, ge=1)
    """Events kept per stream for resumption (the oldest go first)."""
    event_queue_bytes: int = Field(64 * 1024 * 1024, ge=64 * 1024, le=4 * 1024**3)
    """Events waiting to be written to Redis, at most, in bytes; a stream whose event does not fit cannot be resumed."""


class VaultSettings(_Section):
    """``[vault]``: the keys that seal secrets at rest, such as linked accounts' upstream tokens (docs/links.md)."""

    keys: list[SecretStr] = []
    """Base64 keys of 32 random bytes; the first seals, every one opens (rotation). PATCHBAY_VAULT__KEYS='["…"]'."""
    key_file: str | None = None
    """A file holding one key (relative to the config folder); default: patchbay.key beside a SQLite store file."""


class ManifestSettings(_Section):
    """``[manifest]``: whether tool changes go live at once or wait for review (docs/manifest.md)."""

    mode: Literal["open", "review"] = "open"
    """open (changes go live and are recorded as versions) · review (changes wait for `patchbay manifest approve`;
    clients keep the last approved definitions)."""
    poll_seconds: float = Field(1.0, ge=0.1, le=60)
    """How often a server looks for an approval made by the CLI or another replica (one indexed query)."""


class AuditSettings(_Section):
    """``[audit]``: the audit trail (docs/audit.md)."""

    enabled: bool = True
    """Record every tools/call, resources/read, prompts/get and the auth, approval, manifest and admin events."""
    redact_fields: list[str] = [
        "password",
        "passwd",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "refresh_token",
        "api_key",
        "apikey",
        "authorization",
        "cookie",
        "private_key",
    ]
    """Argument names (any depth, case-insensitive) recorded as "[redacted]", besides format: password and
    writeOnly properties of the tool's input schema."""
    max_argument_bytes: int = Field(4096, ge=0, le=1_048_576)
    """The recorded arguments (after redaction) are cut to this many bytes of JSON, with a marker."""
    read_window_ms: int = Field(50, ge=0, le=1000)
    """How long a read's record may trail its response: while the writer keeps up, reads are answered once their
    record is queued, else they wait for its commit at most this long. 0: every read waits for its commit."""
    timeout_ms: int = Field(5000, ge=10, le=60_000)
    """How long a write waits for its intent record before it is refused without running."""
    queue_size: int = Field(10_000, ge=10, le=1_000_000)
    """Records waiting for the writer at most; beyond it writes are refused and reads follow on_failure."""
    on_failure: Literal["serve_reads", "refuse_all"] = "serve_reads"
    """When records cannot be stored: serve_reads (reads go on, their lost records are counted and /readyz says
    degraded) or refuse_all. Writes are always refused."""
    synchronous: Literal["normal", "full"] = "normal"
    """full: an audit commit reaches the disk before it counts, so it survives a power loss (SQLite: PRAGMA
    synchronous=FULL on the writer's connection; PostgreSQL: synchronous_commit on for the recorder's sessions)."""

    keep_days: int = Field(400, ge=0, le=36_500)
    """Days records are kept before background pruning deletes them; 0 keeps them forever. The default covers a
    12-month retention requirement (PCI DSS 10.5.1) with a month to spare for the yearly review."""
    prune_interval_seconds: float = Field(3600, ge=10, le=7 * 86_400)
    """How often the server looks for records past keep_days."""
    checkpoint_every: int = Field(1000, ge=1, le=10_000_000)
    """A signed checkpoint of the chain head after this many records ..."""
    checkpoint_seconds: float = Field(300, ge=1, le=86_400)
    """... or this many seconds after the last one, whichever comes first (when records were written)."""
    checkpoint_file: str | None = None
    """Append-only JSON Lines file for checkpoints; default: next to the SQLite store (``<db>.checkpoints.jsonl``)
    or ``audit-checkpoints.jsonl`` in the config folder; "" writes none (then keep checkpoint_log on)."""
    checkpoint_log: bool = True
    """Also write each checkpoint as one INFO log line, so log shipping carries it off the machine."""
    checkpoint_key_env: str = Field("PATCHBAY_AUDIT_KEY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Environment variable holding the checkpoint signing key (HMAC-SHA256); unset: checkpoints are unsigned."""
    checkpoint_key_file: str | None = None
    """A file holding the key instead (relative to the config folder); wins over checkpoint_key_env."""


class ConnectorSettings(BaseModel):
    """One ``[[connectors]]`` table; its type-specific keys are checked by the connector type's Options."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    type: str
    prefix: str | None = None
    enabled: bool = True
    scopes: list[str] | None = None
    """Scopes every tool of this connector needs (unless the tool names its own)."""
    tool_scopes: dict[str, list[str]] = {}
    """Tool name (without prefix) → the scopes it needs; overrides the tool's own and the connector's."""
    public_tools: list[str] = []
    """Tools anyone may call without signing in (ChatGPT "noauth"); the rest need a token."""
    writes: WritesMode | None = None
    """This connector's write tools: on, off or approve; wins over [gate] writes (docs/policy.md)."""
    timeout_seconds: float | None = Field(None, gt=0, le=86_400)
    """Seconds this connector's calls may run; wins over [gate] call_timeout_seconds (docs/limits.md)."""
    tool_timeouts: dict[str, Annotated[float, Field(gt=0, le=86_400)]] = {}
    """Tool name (without prefix) → seconds that tool's calls may run; wins over timeout_seconds."""

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @property
    def tool_prefix(self) -> str:
        return f"{self.name}_" if self.prefix is None else self.prefix


class Settings(_Section):
    server: ServerSettings = ServerSettings()
    store: StoreSettings = StoreSettings()
    auth: AuthSettings = AuthSettings()
    outbound: OutboundSettings = OutboundSettings()
    approvals: ApprovalsSettings = ApprovalsSettings()
    console: ConsoleSettings = ConsoleSettings()
    manifest: ManifestSettings = ManifestSettings()
    audit: AuditSettings = AuditSettings()
    vault: VaultSettings = VaultSettings()
    redis: RedisSettings = RedisSettings()
    metrics: MetricsSettings = MetricsSettings()
    otel: OtelSettings = OtelSettings()
    connectors: list[ConnectorSettings] = []
    gate: GateSettings = GateSettings()
    policy: list[PolicyRule] = []
    """The [[policy]] rules, in order; docs/policy.md."""
    limits: list[LimitRule] = []
    """The [[limits]] rate limits, quotas and concurrency caps; docs/limits.md."""
    source: str = Field("<defaults>", exclude=True)
    """Where these settings came from, for messages."""
    base_dir: Path = Field(default_factory=Path.cwd, exclude=True)

    @property
    def public_url(self) -> str:
        if self.server.public_url:
            return self.server.public_url
        host = self.server.host
        if host in ("0.0.0.0", "::"):  # noqa: S104 - naming the wildcard, not binding to it
            host = "127.0.0.1"
        return f"http://{host}:{self.server.port}"

    @property
    def mcp_url(self) -> str:
        return f"{self.public_url}/mcp"

    @property
    def store_url(self) -> str:
        url = self.store.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            return prefix + str((self.base_dir / url[len(prefix) :]).resolve())
        return url


def load(path: str | Path | None, env: Mapping[str, str] | None = None) -> Settings:
    """Read ``path`` (or only defaults when None), apply ``PATCHBAY_*`` overrides, and validate.

    Raises:
        ConfigError: with the file, the key, the bad value and what is allowed.
    """
    data: dict[str, Any] = {}
    source = "<defaults>"
    base_dir = Path.cwd()
    if path is not None:
        file = Path(path)
        source = str(file)
        base_dir = file.resolve().parent
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{file}: no such config file (create one with `patchbay init`)", file=source) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: not valid TOML: {exc}", file=source) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{file}: cannot read: {exc}", file=source) from None
    env_sources = _apply_env(data, os.environ if env is None else env)
    return from_dict(data, source=source, base_dir=base_dir, env_sources=env_sources)


def from_dict(
    data: dict[str, Any],
    *,
    source: str = "<config>",
    base_dir: Path | None = None,
    env_sources: dict[str, str] | None = None,
) -> Settings:
    """Validate already-parsed config data. Raises ConfigError like :func:`load`."""
    _check_unknown(data, source, env_sources or {})
    try:
        settings = Settings.model_validate({**data, "source": source, "base_dir": base_dir or Path.cwd()})
    except ValidationError as exc:
        raise ConfigError(_explain(exc, data, source, env_sources or {}), file=source) from None
    names = [c.name for c in settings.connectors]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(
                f"{source}: connectors: two connectors are named '{name}'; names must be unique",
                file=source,
                key="connectors.name",
            )
    _check_redis(settings, source)
    check_policy(settings.policy, names, source, declared_roles(settings))
    check_limits(settings.limits, names, source, declared_roles(settings))
    return settings


REDIS_SCHEMES = ("redis", "rediss", "unix")


def _check_redis(settings: Settings, source: str) -> None:
    """A fleet needs a usable Redis URL and one shared secret; the URL is never echoed (it may hold a password)."""
    if settings.redis.url is None:
        return
    url = settings.redis.url.get_secret_value()
    scheme = urlsplit(url).scheme if "://" in url else ""
    if scheme not in REDIS_SCHEMES:
        raise ConfigError(
            f"{source}: redis.url: the scheme must be redis://, rediss:// (TLS) or unix://, "
            f"got {scheme + '://' if scheme else 'no scheme'}",
            file=source,
            key="redis.url",
        )
    if settings.server.secret is None:
        raise ConfigError(
            f"{source}: server.secret: [redis] url makes this server one replica of a fleet, which needs "
            "server.secret set to the same value on every replica (PATCHBAY_SERVER__SECRET); "
            "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'",
            file=source,
            key="server.secret",
        )


def declared_roles(settings: Settings) -> set[str]:
    """Every role the config knows: ``[gate] roles``, what an IdP role map hands out, and the approver roles."""
    roles = {*settings.gate.roles, *settings.approvals.approver_roles}
    upstream = settings.auth.upstream
    if upstream is not None:
        roles |= {*upstream.default_roles, *(r for mapped in upstream.role_map.values() for r in mapped)}
    return roles


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    applied: dict[str, str] = {}
    for variable, raw in env.items():
        if not variable.startswith(ENV_PREFIX) or "__" not in variable:
            continue
        section, _, key = variable[len(ENV_PREFIX) :].lower().partition("__")
        if section == "connectors":
            continue
        value: Any = raw
        if not _takes_text(section, key):  # a name such as "2024" stays a string where a string is expected
            try:
                value = tomllib.loads(f"v = {raw}")["v"]
            except tomllib.TOMLDecodeError:
                value = raw
        target = data.setdefault(section, {})
        if isinstance(target, dict):
            target[key] = value
            applied[f"{section}.{key}"] = variable
    return applied


def _takes_text(section: str, key: str) -> bool:
    """Whether ``[section] key`` is a text setting (str, optional str, or a choice of strings)."""
    section_field = Settings.model_fields.get(section)
    model = section_field.annotation if section_field is not None else None
    fields = getattr(model, "model_fields", {})
    if key not in fields:
        return False
    annotation = fields[key].annotation
    origin = get_origin(annotation)
    if origin is not None and origin is not Literal and origin not in (Union, types.UnionType):
        return False  # list[str], dict[...]: parsed as TOML arrays/tables
    members = get_args(annotation) or (annotation,)
    return all(m is str or m is type(None) or isinstance(m, str) for m in members)


def _check_unknown(data: dict[str, Any], source: str, env_sources: dict[str, str]) -> None:
    sections: dict[str, type[BaseModel]] = {
        "server": ServerSettings,
        "store": StoreSettings,
        "auth": AuthSettings,
        "outbound": OutboundSettings,
        "approvals": ApprovalsSettings,
        "console": ConsoleSettings,
        "manifest": ManifestSettings,
        "audit": AuditSettings,
        "vault": VaultSettings,
        "redis": RedisSettings,
        "metrics": MetricsSettings,
        "otel": OtelSettings,
        "gate": GateSettings,
    }
    for key, value in data.items():
        if key == "connectors":
            _check_connectors_shape(value, source)
            continue
        if key == "policy":
            _check_policy_shape(value, source)
            continue
        if key == "limits":
            check_limits_shape(value, source)
            continue
        if key not in sections:
            variable = next((v for k, v in env_sources.items() if k.startswith(f"{key}.")), None)
            origin = f"environment variable {variable}" if variable else source
            allowed = [*sections, "connectors", "policy", "limits"]
            raise ConfigError(_unknown(origin, key, allowed, "top-level table"), file=source, key=key)
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: [{key}] must be a table, got {value!r}", file=source, key=key)
        fields = list(sections[key].model_fields)
        for sub in value:
            if sub not in fields:
                where = env_sources.get(f"{key}.{sub}")
                origin = f"environment variable {where}" if where else source
                raise ConfigError(
                    _unknown(origin, f"{key}.{sub}", fields, f"key in [{key}]"),
                    file=source,
                    key=f"{key}.{sub}",
                )


def _check_connectors_shape(value: Any, source: str) -> None:
    if isinstance(value, list):
        return
    if isinstance(value, dict):
        # TOML: [connectors] is one table, [[connectors]] appends one entry to the array of connectors.
        raise ConfigError(
            f"{source}: connectors: write each connector as its own [[connectors]] table (double brackets), "
            'not [connectors]; e.g.\n  [[connectors]]\n  name = "crm"\n  type = "sql"',
            file=source,
            key="connectors",
        )
    raise ConfigError(
        f"{source}: connectors: must be a list of [[connectors]] tables, got {value!r}", file=source, key="connectors"
    )


def _check_policy_shape(value: Any, source: str) -> None:
    if not isinstance(value, list):
        message = f"{source}: policy: write each rule as its own [[policy]] table (double brackets)"
        raise ConfigError(message, file=source, key="policy")
    for index, rule in enumerate(value):
        if not isinstance(rule, dict):
            raise ConfigError(f"{source}: policy[{index}]: must be a table", file=source, key=f"policy[{index}]")
        for sub in rule:
            if sub not in RULE_KEYS:
                key = f"policy[{index}].{sub}"
                raise ConfigError(_unknown(source, key, list(RULE_KEYS), "key in [[policy]]"), file=source, key=key)


def _unknown(source: str, key: str, allowed: list[str], what: str) -> str:
    leaf = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(leaf, allowed, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return f"{source}: unknown {what} '{key}'.{hint} Allowed: {', '.join(allowed)}."


def _explain(exc: ValidationError, data: dict[str, Any], source: str, env_sources: dict[str, str]) -> str:
    lines = []
    for error in exc.errors(include_url=False):
        loc = error["loc"]
        key = _dotted(loc, data)
        origin = env_sources.get(key)
        where = f"environment variable {origin}" if origin else source
        value = _value_at(data, loc)
        shown = f" (got {value!r})" if value is not _NOTHING else ""
        lines.append(f"{where}: {key}: {error['msg']}{shown}")
    return "\n".join(lines)


_NOTHING = object()


def _dotted(loc: tuple[Any, ...], data: dict[str, Any]) -> str:
    parts: list[str] = []
    node: Any = data
    for part in loc:
        if isinstance(part, int) and isinstance(node, list) and part < len(node):
            name = node[part].get("name") if isinstance(node[part], dict) else None
            parts[-1] = f"{parts[-1]}[{name or part}]"
            node = node[part]
            continue
        parts.append(str(part))
        node = node.get(part) if isinstance(node, dict) else None
    return ".".join(parts)


def _value_at(data: Any, loc: tuple[Any, ...]) -> Any:
    node = data
    for part in loc:
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and part < len(node)
        ):
            node = node[part]
        else:
            return _NOTHING
    return node

"""Which credentials an operation's calls carry, from its security requirements and the connector's ``auth`` and
``security`` keys, and the configuration errors that name the key to fix (never a secret's value)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from patchbay.connectors.base import ConnectorEnv
from patchbay.connectors.openapi.auth import ApiCredentials, build_credentials
from patchbay.connectors.openapi.models import ApiSpec, Operation, Requirement, SecurityScheme
from patchbay.connectors.openapi.options import OpenApiOptions
from patchbay.connectors.openapi.request import HttpRequest
from patchbay.errors import ConfigError

SCHEMES = {
    "key": SecurityScheme("key", "apiKey", name="X-Key", location="header"),
    "qkey": SecurityScheme("qkey", "apiKey", name="k", location="query"),
    "basic": SecurityScheme("basic", "http", scheme="basic"),
    "bearer": SecurityScheme("bearer", "http", scheme="bearer"),
    "oauth": SecurityScheme("oauth", "oauth2", token_url="https://auth.example.com/token"),
}


def api(*security: tuple[Requirement, ...], schemes: dict[str, SecurityScheme] | None = None) -> ApiSpec:
    operations = tuple(Operation("GET", f"/op{i}", f"op{i}", security=s) for i, s in enumerate(security))
    return ApiSpec("3.1.0", "t", "", (), operations, {}, SCHEMES if schemes is None else schemes)


def credentials(spec: ApiSpec, tmp_path: Path, **options: Any) -> ApiCredentials:
    env = ConnectorEnv(base_dir=tmp_path, store_url="sqlite://")
    return build_credentials("t", spec, OpenApiOptions(spec="x", **options), env, base_url="https://api.example.com")


async def sent(creds: ApiCredentials, spec: ApiSpec, index: int) -> HttpRequest:
    request = HttpRequest("GET", f"/op{index}?a=1", {"Accept": "application/json"})
    await creds.for_operation(spec.operations[index]).apply(request, None)
    return request


@pytest.mark.anyio
async def test_the_first_requirement_whose_schemes_all_have_credentials_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEY", "k-secret")
    monkeypatch.setenv("QKEY", "q secret&")
    spec = api(({"basic": ()}, {"key": (), "qkey": ()}))
    creds = credentials(
        spec,
        tmp_path,
        security={"key": {"type": "api_key", "value_env": "KEY"}, "qkey": {"type": "api_key", "value_env": "QKEY"}},
    )
    request = await sent(creds, spec, 0)
    assert request.headers == {"Accept": "application/json", "X-Key": "k-secret"}
    assert request.target == "/op0?a=1&k=q%20secret%26"
    assert creds.lacking == []


@pytest.mark.anyio
async def test_auth_fits_every_scheme_of_its_kind_and_anonymous_requirements_get_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKEN", "tok-123")
    spec = api(({"bearer": ()},), ({"oauth": ()},), ({},), ({"key": ()}, {}), ())
    creds = credentials(spec, tmp_path, auth={"type": "bearer", "token_env": "TOKEN"})
    assert (await sent(creds, spec, 0)).headers["Authorization"] == "Bearer tok-123"
    assert (await sent(creds, spec, 1)).headers["Authorization"] == "Bearer tok-123"  # a static token for oauth2
    assert "Authorization" not in (await sent(creds, spec, 2)).headers
    assert "Authorization" not in (await sent(creds, spec, 3)).headers  # an API key would be needed: anonymous
    assert "Authorization" not in (await sent(creds, spec, 4)).headers  # security: [] in a spec that uses security
    assert creds.secrets == ("Bearer tok-123", "tok-123")
    silent = api((), ())  # a spec that says nothing about auth: every call carries it
    creds = credentials(silent, tmp_path, auth={"type": "bearer", "token_env": "TOKEN"})
    assert (await sent(creds, silent, 1)).headers["Authorization"] == "Bearer tok-123"


def test_operations_no_credential_fits_are_listed(tmp_path: Path) -> None:
    spec = api(({"key": ()},), ({"basic": ()}, {"bearer": ()}), ({},))
    creds = credentials(spec, tmp_path, auth={"type": "basic", "username": "u", "password": "p"})
    assert creds.lacking == ["GET /op0"]


@pytest.mark.anyio
async def test_cookie_api_key_joins_a_cookie_already_there(tmp_path: Path) -> None:
    schemes = {"c": SecurityScheme("c", "apiKey", name="sid", location="cookie")}
    spec = api(({"c": ()},), schemes=schemes)
    creds = credentials(spec, tmp_path, auth={"type": "api_key", "value": "v=1"})
    request = HttpRequest("GET", "/op0", {"Cookie": "theme=dark"})
    await creds.for_operation(spec.operations[0]).apply(request, None)
    assert request.headers["Cookie"] == "theme=dark; sid=v%3D1"


def test_a_missing_secret_names_the_key_and_not_the_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_TOKEN", raising=False)
    with pytest.raises(ConfigError, match=r"^auth\.token_env: environment variable NOPE_TOKEN is not set") as error:
        credentials(api(), tmp_path, auth={"type": "bearer", "token_env": "NOPE_TOKEN"})
    assert error.value.key == "auth.token_env"
    with pytest.raises(ConfigError, match=r"^security\.basic\.password_env: environment variable NOPE_TOKEN"):
        credentials(
            api(), tmp_path, security={"basic": {"type": "basic", "username": "u", "password_env": "NOPE_TOKEN"}}
        )


def test_security_must_name_a_scheme_of_the_spec_with_a_credential_that_fits(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"security\.nope: the spec has no security scheme 'nope' \(it has: basic"):
        credentials(api(), tmp_path, security={"nope": {"type": "bearer", "token": "x"}})
    with pytest.raises(
        ConfigError, match=r'security\.key: type "basic" cannot satisfy the spec\'s API key \(header X-Key\)'
    ):
        credentials(api(), tmp_path, security={"key": {"type": "basic", "username": "u"}})


def test_an_api_key_with_nowhere_to_go_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"auth: an api_key needs name and in"):
        credentials(api((), schemes={}), tmp_path, auth={"type": "api_key", "value": "v"})


def test_only_one_credential_links_accounts(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match='only one credential of a connector can be "user_oauth"'):
        credentials(api(), tmp_path, auth="user_oauth", security={"oauth": {"type": "user_oauth"}})

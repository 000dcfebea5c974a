"""patchbay.toml plus PATCHBAY_* overrides: every error names the file or variable, the key and the bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from patchbay.errors import ConfigError
from patchbay.settings import Settings, from_dict, load


def write(folder: Path, text: str, name: str = "patchbay.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_load_without_a_file() -> None:
    settings = load(None, env={})
    assert isinstance(settings, Settings)
    assert settings.server.host == "127.0.0.1"
    assert settings.mcp_url == "http://127.0.0.1:8000/mcp"


def test_an_unknown_key_suggests_the_closest_one(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nprot = 9000\n")
    with pytest.raises(ConfigError) as raised:
        load(path, env={})
    message = str(raised.value)
    assert str(path) in message
    assert "server.prot" in message
    assert "Did you mean 'port'?" in message
    assert raised.value.key == "server.prot"


def test_an_unknown_section_suggests_the_closest_one(tmp_path: Path) -> None:
    path = write(tmp_path, "[sever]\nport = 9000\n")
    with pytest.raises(ConfigError, match=r"unknown top-level table 'sever'\. Did you mean 'server'\?"):
        load(path, env={})


def test_a_wrong_type_names_file_key_and_value(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nport = "eighty"\n')
    with pytest.raises(ConfigError) as raised:
        load(path, env={})
    message = str(raised.value)
    assert str(path) in message
    assert "server.port" in message
    assert "'eighty'" in message


def test_an_out_of_range_value_names_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 70000\n")
    with pytest.raises(ConfigError, match=r"server\.port.*70000"):
        load(path, env={})


def test_an_env_var_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 8000\nname = 'from-file'\n")
    settings = load(path, env={"PATCHBAY_SERVER__PORT": "9001", "PATCHBAY_SERVER__PUBLIC_URL": "https://mcp.example"})
    assert settings.server.port == 9001
    assert settings.server.public_url == "https://mcp.example"
    assert settings.server.name == "from-file"


def test_env_values_are_parsed_as_toml_when_they_parse(tmp_path: Path) -> None:
    settings = load(None, env={"PATCHBAY_SERVER__ALLOWED_HOSTS": '["a.example", "b.example"]'})
    assert settings.server.allowed_hosts == ["a.example", "b.example"]


def test_an_env_var_with_an_unknown_key_names_the_variable() -> None:
    with pytest.raises(ConfigError) as raised:
        load(None, env={"PATCHBAY_SERVER__PROT": "9000"})
    message = str(raised.value)
    assert "PATCHBAY_SERVER__PROT" in message
    assert "Did you mean 'port'?" in message


def test_an_env_var_with_an_unknown_section_names_the_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 8000\n")
    with pytest.raises(ConfigError) as raised:
        load(path, env={"PATCHBAY_SERVR__PORT": "9000"})
    assert "PATCHBAY_SERVR__PORT" in str(raised.value)


def test_an_env_var_with_a_bad_value_names_the_variable() -> None:
    with pytest.raises(ConfigError) as raised:
        load(None, env={"PATCHBAY_SERVER__PORT": "lots"})
    message = str(raised.value)
    assert "environment variable PATCHBAY_SERVER__PORT" in message
    assert "'lots'" in message


def test_unrelated_env_vars_are_ignored() -> None:
    settings = load(None, env={"PATCHBAY_DEBUG": "1", "PATH": "/bin", "OTHER__X": "y", "PATCHBAY_CONNECTORS__X": "1"})
    assert settings.server.port == 8000


def test_duplicate_connector_names_are_refused() -> None:
    data = {
        "connectors": [
            {"name": "tools", "type": "python", "path": "a.py"},
            {"name": "tools", "type": "python", "path": "b.py"},
        ]
    }
    with pytest.raises(ConfigError, match="two connectors are named 'tools'"):
        from_dict(data, source="x.toml")


@pytest.mark.parametrize("name", ["Tools", "my tools", "-x", ""])
def test_a_connector_name_outside_the_pattern_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match=r"connectors"):
        from_dict({"connectors": [{"name": name, "type": "python", "path": "a.py"}]})


def test_a_relative_sqlite_path_is_resolved_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "deploy"
    path = write(folder, '[store]\nurl = "sqlite:///data/patchbay.db"\n')
    monkeypatch.chdir(tmp_path)  # the working directory must not matter
    settings = load(path, env={})
    assert settings.store_url == f"sqlite:///{(folder / 'data' / 'patchbay.db').resolve()}"


@pytest.mark.parametrize(
    "url", ["sqlite:////var/lib/patchbay.db", "sqlite:///:memory:", "postgresql://u@h/db"], ids=["abs", "mem", "pg"]
)
def test_absolute_memory_and_server_urls_are_kept(tmp_path: Path, url: str) -> None:
    settings = load(write(tmp_path, f'[store]\nurl = "{url}"\n'), env={})
    assert settings.store_url == url


@pytest.mark.parametrize(
    "url",
    ["ftp://mcp.example.com", "mcp.example.com", "https://", "https://u:p@mcp.example.com", "https://x.example/?a=1"],
    ids=["scheme", "no-scheme", "no-host", "credentials", "query"],
)
def test_a_bad_public_url_is_refused(tmp_path: Path, url: str) -> None:
    path = write(tmp_path, f'[server]\npublic_url = "{url}"\n')
    with pytest.raises(ConfigError) as raised:
        load(path, env={})
    assert "server.public_url" in str(raised.value)
    assert str(path) in str(raised.value)


def test_a_public_url_loses_its_trailing_slash() -> None:
    settings = from_dict({"server": {"public_url": "https://mcp.example.com/"}})
    assert settings.mcp_url == "https://mcp.example.com/mcp"


def test_a_missing_file_says_so_and_how_to_make_one(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as raised:
        load(missing, env={})
    assert str(missing) in str(raised.value)
    assert "patchbay init" in str(raised.value)


def test_invalid_toml_names_the_file_and_the_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "[server\nport = 1\n")
    with pytest.raises(ConfigError) as raised:
        load(path, env={})
    assert str(path) in str(raised.value)
    assert "not valid TOML" in str(raised.value)


def test_a_section_that_is_not_a_table_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[server\] must be a table"):
        load(write(tmp_path, 'server = "yes"\n'), env={})


def test_a_wildcard_bind_address_gives_a_loopback_public_url() -> None:
    settings = from_dict({"server": {"host": "0.0.0.0", "port": 9000}})
    assert settings.public_url == "http://127.0.0.1:9000"


def test_connector_specific_keys_pass_through_as_options() -> None:
    settings = from_dict({"connectors": [{"name": "fx", "type": "python", "path": "a.py", "prefix": ""}]})
    connector = settings.connectors[0]
    assert connector.options == {"path": "a.py"}
    assert connector.tool_prefix == ""
    default = from_dict({"connectors": [{"name": "fx", "type": "python", "path": "a.py"}]}).connectors[0]
    assert default.tool_prefix == "fx_"


def test_a_single_connectors_table_explains_double_brackets(tmp_path: Path) -> None:
    path = write(tmp_path, '[connectors]\nname = "crm"\ntype = "sql"\n')
    with pytest.raises(ConfigError) as raised:
        load(path, env={})
    message = str(raised.value)
    assert str(path) in message and "[[connectors]]" in message and "not [connectors]" in message
    assert "valid list" not in message
    assert raised.value.key == "connectors"


def test_connectors_that_are_not_tables_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, 'connectors = "crm"\n')
    with pytest.raises(ConfigError, match=r"connectors: must be a list of \[\[connectors\]\] tables, got 'crm'"):
        load(path, env={})


@pytest.mark.parametrize(
    ("url", "endpoint", "base"),
    [
        ("https://mcp.example.com/mcp", "/mcp", "https://mcp.example.com"),
        ("https://mcp.example.com/mcp/", "/mcp", "https://mcp.example.com"),
        ("https://example.com/tools/sse", "/sse", "https://example.com/tools"),
    ],
)
def test_a_public_url_ending_in_the_endpoint_is_refused_with_the_base_to_use(
    tmp_path: Path, url: str, endpoint: str, base: str
) -> None:
    path = write(tmp_path, f'[server]\npublic_url = "{url}"\n')
    with pytest.raises(ConfigError) as raised:
        load(path, env={})
    message = str(raised.value)
    assert str(path) in message and "server.public_url" in message
    assert f"without {endpoint}" in message and repr(base) in message


def test_a_public_url_with_a_path_prefix_keeps_it() -> None:
    settings = from_dict({"server": {"public_url": "https://example.com/mcp-gateway/"}})
    assert settings.mcp_url == "https://example.com/mcp-gateway/mcp"

"""[redis] settings: a fleet needs a shared server.secret and a redis URL; a single node imports no redis at all."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from patchbay.errors import ConfigError
from patchbay.fleet import build_fleet
from patchbay.settings import from_dict, load

SECRET = "a-shared-secret-of-32-characters-x"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "patchbay.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_fleet_without_server_secret_names_the_file_and_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, '[redis]\nurl = "redis://127.0.0.1:6379/0"\n')

    with pytest.raises(ConfigError) as raised:
        load(path, env={})

    assert raised.value.key == "server.secret" and raised.value.file == str(path)
    assert str(raised.value).startswith(f"{path}: server.secret:")
    assert "same value on every replica" in str(raised.value)


@pytest.mark.parametrize("url", ["http://:hunter2@cache:6379/0", "cache:6379", "memcached://cache"])
def test_a_redis_url_with_another_scheme_is_refused_without_echoing_it(url: str) -> None:
    with pytest.raises(ConfigError) as raised:
        from_dict({"server": {"secret": SECRET}, "redis": {"url": url}}, source="fleet.toml")

    message = str(raised.value)
    assert raised.value.key == "redis.url"
    assert message.startswith("fleet.toml: redis.url:")
    assert "redis://, rediss:// (TLS) or unix://" in message
    assert "hunter2" not in message


def test_the_redis_url_and_previous_secrets_come_from_the_file_or_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nprevious_secrets = ["old-one"]\n\n[redis]\nkey_prefix = "acme:"\n')

    settings = load(path, env={"PATCHBAY_REDIS__URL": "rediss://:pw@cache:6380/2", "PATCHBAY_SERVER__SECRET": SECRET})

    assert settings.redis.url is not None and settings.redis.url.get_secret_value() == "rediss://:pw@cache:6380/2"
    assert settings.redis.key_prefix == "acme:"
    assert [s.get_secret_value() for s in settings.server.previous_secrets] == ["old-one"]
    assert "pw" not in repr(settings.redis)  # a SecretStr: never printed with the settings


def test_defaults_describe_a_single_node() -> None:
    settings = from_dict({})
    assert settings.redis.url is None and build_fleet(settings) is None
    assert (settings.redis.key_prefix, settings.redis.timeout_ms) == ("pb:", 500)
    assert (settings.redis.event_ttl_seconds, settings.redis.event_max) == (600, 1000)
    assert settings.redis.session_lifetime_seconds == 30 * 24 * 3600


def test_an_unknown_redis_key_suggests_the_right_one() -> None:
    with pytest.raises(ConfigError, match=r"unknown key in \[redis\] 'redis.timeout'. Did you mean 'timeout_ms'"):
        from_dict({"redis": {"timeout": 5}})


def test_a_fleet_without_the_redis_package_says_which_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = from_dict({"server": {"secret": SECRET}, "redis": {"url": "unix:///run/redis.sock"}}, source="p.toml")
    monkeypatch.setitem(sys.modules, "redis", None)  # what a missing package looks like to `import`
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)

    with pytest.raises(ConfigError) as raised:
        build_fleet(settings)

    assert raised.value.key == "redis.url"
    assert "needs the redis package" in str(raised.value) and "fleet" in str(raised.value)


def test_a_single_node_server_never_imports_redis(tmp_path: Path) -> None:
    # The fleet's modules load without redis too: single-node code catches FleetUnavailable without the extra.
    program = (
        "import sys\n"
        "import patchbay.fleet.bus, patchbay.fleet.link, patchbay.fleet.replicas\n"
        "from patchbay.app import create_app\n"
        "from patchbay.settings import from_dict\n"
        "app = create_app(from_dict({'store': {'url': 'sqlite:///:memory:'}}))\n"
        "assert app.runtime.fleet is None\n"
        "print(sorted(m for m in sys.modules if m == 'redis' or m.startswith('redis.')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"

"""compose.yaml, checked without Docker: its services, profiles, health checks and start order, its PATCHBAY_*
variables loaded through patchbay.settings (so each names a real key), and its HAProxy config by `haproxy -c`."""

from __future__ import annotations

import base64
import re
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from patchbay import settings as settings_mod
from patchbay.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
ENV_EXAMPLE = ROOT / "deploy" / "compose" / "fleet.env.example"
HAPROXY_CFG = ROOT / "deploy" / "compose" / "haproxy.cfg"
IMAGE_CONFIG = ROOT / "deploy" / "docker" / "patchbay.toml"
PATCHBAY_SERVICES = {"patchbay", "migrate", "replica-1", "replica-2", "replica-3"}


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def _services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _compose()["services"]
    return services


def _filled_env_file() -> dict[str, str]:
    """fleet.env.example as a user fills it in: each placeholder replaced by a fresh value (one per name)."""
    values: dict[str, str] = {}

    def fill(match: re.Match[str]) -> str:
        name = match.group(0)
        if name not in values:
            raw = secrets.token_bytes(32)
            values[name] = base64.b64encode(raw).decode() if "vault" in name else secrets.token_urlsafe(24)
        return values[name]

    env: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = re.sub(r"replace-me-[a-z-]+", fill, value)
    return env


def test_single_profile_is_one_patchbay_with_a_volume_for_its_sqlite_store() -> None:
    services = _services()
    single = [name for name, s in services.items() if "single" in s.get("profiles", [])]
    assert single == ["patchbay"]
    patchbay = services["patchbay"]
    assert patchbay["volumes"] == ["patchbay-data:/data"] and "patchbay-data" in _compose()["volumes"]
    assert settings_mod.load(IMAGE_CONFIG, env={}).store_url.startswith("sqlite:////data/")
    assert patchbay["ports"] == ["8000:8000"]


def test_every_service_belongs_to_a_profile_so_plain_up_mixes_nothing() -> None:
    services = _services()
    assert all(s.get("profiles") in (["single"], ["fleet"]) for s in services.values()), services
    fleet = {name for name, s in services.items() if s["profiles"] == ["fleet"]}
    assert fleet == {"migrate", "replica-1", "replica-2", "replica-3", "haproxy", "postgres", "valkey"}


def test_every_service_has_an_image_and_patchbay_services_build_this_checkout() -> None:
    services = _services()
    for name, service in services.items():
        assert service.get("image"), name
        if name in PATCHBAY_SERVICES:
            assert service["build"] == "." and (ROOT / "Dockerfile").is_file()
            assert service["read_only"] is True and service["tmpfs"] == ["/tmp"]
    assert services["postgres"]["image"] == "postgres:17"
    assert services["valkey"]["image"].startswith("valkey/valkey:8")


def test_long_running_services_have_health_checks_that_ask_patchbay_over_loopback() -> None:
    services = _services()
    for name, service in services.items():
        if name == "migrate":
            assert service["restart"] == "no"
            continue
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD", name
        if name in PATCHBAY_SERVICES:
            assert "http://127.0.0.1:8000/" in test[-1]
    assert "/readyz?degraded=ok" in services["replica-1"]["healthcheck"]["test"][-1]
    assert "/healthz" in services["patchbay"]["healthcheck"]["test"][-1]


def test_start_order_migrates_once_before_the_replicas_and_waits_for_healthy_stores() -> None:
    services = _services()
    allowed = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services and condition["condition"] in allowed, (name, dependency)
            wanted = "service_healthy" if "healthcheck" in services[dependency] else "service_completed_successfully"
            if condition["condition"] != "service_started":
                assert condition["condition"] == wanted, (name, dependency)
    for replica in ("replica-1", "replica-2", "replica-3"):
        assert services[replica]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert services["migrate"]["entrypoint"] == ["patchbay", "store", "upgrade"]
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}


def test_valkey_keeps_an_append_only_file_so_the_session_denylist_survives_a_restart() -> None:
    command = _services()["valkey"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert _services()["valkey"]["volumes"] == ["valkey-data:/data"]


def test_compose_file_holds_no_secret_and_reads_them_from_the_env_file() -> None:
    services = _services()
    for name in ("migrate", "replica-1", "postgres"):
        assert services[name]["env_file"] == ["deploy/compose/fleet.env"]
    text = COMPOSE.read_text()
    for variable in ("SECRET", "PASSWORD", "STORE__URL", "REDIS__URL", "VAULT__KEYS"):
        assert not re.search(rf"{variable}\w*\s*:", text), variable
    assert "deploy/compose/fleet.env" in (ROOT / ".gitignore").read_text().splitlines()


@pytest.mark.parametrize("service", sorted(PATCHBAY_SERVICES))
def test_each_patchbay_service_environment_loads_through_the_settings(service: str) -> None:
    definition = _services()[service]
    env = {**(_filled_env_file() if definition.get("env_file") else {}), **definition.get("environment", {})}
    loaded = settings_mod.load(IMAGE_CONFIG, env=env)
    if service == "patchbay":
        assert loaded.store_url == "sqlite:////data/patchbay.db" and loaded.redis.url is None
        assert loaded.public_url == "http://localhost:8000"
        return
    # A fleet member: every PATCHBAY_* name reached its key, and one key in the env file reaches every replica.
    assert (
        loaded.store_url.startswith("postgresql+psycopg://patchbay:") and "@postgres:5432/patchbay" in loaded.store_url
    )
    assert loaded.redis.url is not None and loaded.redis.url.get_secret_value() == "redis://valkey:6379/0"
    assert loaded.server.secret is not None and len(loaded.vault.keys) == 1
    assert loaded.public_url == "http://localhost:8080"
    password = env["POSTGRES_PASSWORD"]
    assert f":{password}@" in loaded.store_url
    # A replica may be killed outright: every read waits for its audit record's commit (docs/deploy.md).
    assert loaded.audit.read_window_ms == 0


def test_a_misspelled_variable_in_the_env_file_would_be_refused() -> None:
    env = _filled_env_file()
    env["PATCHBAY_REDIS__URI"] = env.pop("PATCHBAY_REDIS__URL")
    with pytest.raises(ConfigError, match=r"redis\.uri"):
        settings_mod.load(IMAGE_CONFIG, env=env)


def _haproxy_check(config: Path) -> subprocess.CompletedProcess[str]:
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    assert Path(haproxy).exists(), "haproxy is missing: `make haproxy` installs Debian's"
    return subprocess.run([haproxy, "-c", "-f", str(config)], capture_output=True, text=True, check=False, timeout=30)


def test_haproxy_config_is_valid_round_robin_over_the_three_replicas() -> None:
    checked = _haproxy_check(HAPROXY_CFG)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    text = HAPROXY_CFG.read_text()
    assert re.search(r"^\s*balance roundrobin$", text, re.M)
    assert not re.search(r"\b(cookie|stick|balance (source|hdr|uri))\b", text)
    servers = re.findall(r"^\s*server (\S+) (\S+):8000$", text, re.M)
    assert servers == [(f"replica-{i}", f"replica-{i}") for i in (1, 2, 3)]
    assert "uri /readyz?degraded=ok hdr Host localhost" in text
    mounted = _services()["haproxy"]["volumes"][0].split(":")[0]
    assert (ROOT / mounted).resolve() == HAPROXY_CFG


def test_haproxy_check_refuses_a_broken_config(tmp_path: Path) -> None:
    broken = tmp_path / "haproxy.cfg"
    broken.write_text(HAPROXY_CFG.read_text().replace("balance roundrobin", "balance roundrobbin"))
    assert _haproxy_check(broken).returncode != 0

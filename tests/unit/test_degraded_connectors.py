"""A connector whose system is down: left out, reported, retried with backoff, published when it comes up."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from tests.support.waiting import until
from tests.unit.fixtures.wire import client_for

from patchbay.app import Runtime
from patchbay.connectors.base import ConnectorOptions, Health
from patchbay.connectors.lifecycle import Backoff, Supervisor, redact
from patchbay.definitions import Prompt, Resource, ResourceTemplate, Tool
from patchbay.errors import ConfigError, ConnectorError
from patchbay.settings import from_dict

pytestmark = pytest.mark.anyio
URL_TEMPLATE = "https://intranet.example.com/{path_noext}"
DEADLINE = 20.0


def settings_data(tmp_path: Path, *, folder: str = "handbook", **server: Any) -> dict[str, Any]:
    """A good connector (kanban) and a documents connector whose folder may not exist yet."""
    return {
        "server": {"connector_retry_max_seconds": 0.2, **server},
        "store": {"url": f"sqlite:///{tmp_path / 'patchbay.db'}"},
        "connectors": [
            {"name": "kanban", "type": "kanban", "prefix": ""},
            {
                "name": "docs",
                "type": "documents",
                "prefix": "",
                "url_template": URL_TEMPLATE,
                "sources": [{"name": "kb", "folder": folder}],
            },
        ],
    }


def runtime_for(tmp_path: Path, **server: Any) -> Runtime:
    return Runtime(from_dict(settings_data(tmp_path, **server), source="patchbay.toml", base_dir=tmp_path))


def bring_up(tmp_path: Path) -> None:
    folder = tmp_path / "handbook"
    folder.mkdir()
    (folder / "leave.md").write_text("# Leave\n\nEveryone gets thirty days of paid leave.")


def retry_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("patchbay-retry-") and not t.done()]


# -- the backoff schedule ------------------------------------------------------------------------------------


def test_backoff_doubles_from_one_second_and_never_passes_the_cap() -> None:
    backoff = Backoff(initial=1.0, cap=60.0, jitter=0.2)
    assert [backoff.delay(n, 0.0) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    # Jitter only shortens a delay, by at most its fraction: replicas spread out, and the cap still holds.
    assert backoff.delay(3, 0.999) == pytest.approx(4 * (1 - 0.2 * 0.999))
    assert all(0.8 * 60 <= backoff.delay(n, 0.5) <= 60 for n in (7, 50, 10_000))


class FakeClock:
    """Time that moves only when the retry loop sleeps; every sleep is recorded."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds
        await asyncio.sleep(0)


async def _never(arguments: dict[str, Any], ctx: Any) -> Any:
    raise AssertionError("not called")


class Flaky:
    """A connector whose system answers only after ``failures`` attempts."""

    Options = ConnectorOptions

    def __init__(self, name: str, failures: int, error: Exception | None = None) -> None:
        self.name = name
        self.left = failures
        self.error = error or ConnectorError(f"connector '{name}': the server is not answering")
        self.opened = 0
        self.closed = 0

    async def open(self) -> None:
        if self.left > 0:
            self.left -= 1
            raise self.error
        self.opened += 1

    def tools(self) -> Sequence[Tool]:
        # Like some third-party connectors, it lists its tools whether or not it is open.
        return [Tool("lookup", "Look a customer up.", {"type": "object"}, handler=_never)]

    def resources(self) -> Sequence[Resource]:
        return ()

    def resource_templates(self) -> Sequence[ResourceTemplate]:
        return ()

    def prompts(self) -> Sequence[Prompt]:
        return ()

    async def health(self) -> Health:
        return Health(True)

    async def close(self) -> None:
        self.closed += 1


async def test_retries_follow_the_backoff_schedule_on_the_clock_until_the_connector_opens() -> None:
    clock = FakeClock()
    flaky = Flaky("crm", failures=5)
    came_up: list[str] = []
    supervisor = Supervisor(
        [flaky],
        source="patchbay.toml",
        keys={"crm": "connectors[0]"},
        on_up=lambda c: came_up.append(c.name),
        backoff=Backoff(initial=1.0, cap=5.0, jitter=0.5),
        clock=clock,
        rand=lambda: 0.0,
    )
    await supervisor.open_all("retry")
    assert supervisor.down == ["crm"] and supervisor.retry_in("crm") == 1.0
    assert supervisor.status["crm"].detail == "the server is not answering"
    await until(lambda: bool(came_up), "crm up")
    assert clock.sleeps == [1.0, 2.0, 4.0, 5.0, 5.0]  # doubling, then capped
    assert came_up == ["crm"] and flaky.opened == 1 and supervisor.down == []
    assert supervisor.retry_in("crm") is None
    await supervisor.close_all()


async def test_a_config_error_on_a_retry_stops_retrying_and_says_why() -> None:
    clock = FakeClock()
    flaky = Flaky("crm", failures=2)
    supervisor = Supervisor([flaky], source="patchbay.toml", keys={"crm": "connectors[3]"}, clock=clock)
    await supervisor.open_all("retry")
    flaky.error = ConfigError("url: environment variable CRM_URL is not set", key="url")
    await until(lambda: supervisor.retry_in("crm") is None, "gave up")
    detail = supervisor.status["crm"].detail
    assert detail.startswith("patchbay.toml: connectors[crm]: url: environment variable CRM_URL is not set")
    assert "not retried" in detail and supervisor.down == ["crm"]
    assert retry_tasks() == []
    await supervisor.close_all()


async def test_passwords_in_a_connectors_message_never_reach_readyz_or_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failing = Flaky("crm", failures=1, error=OSError("cannot reach postgresql://reader:hunter2@db.internal/crm"))
    supervisor = Supervisor([failing], source="patchbay.toml", keys={}, clock=FakeClock())
    with caplog.at_level(logging.WARNING, logger="patchbay"):
        await supervisor.open_all("report")
    detail = supervisor.status["crm"].detail
    assert detail == "OSError: cannot reach postgresql://reader:***@db.internal/crm"
    assert "hunter2" not in caplog.text and "reader:***@db.internal" in caplog.text
    assert (
        redact("mysql+pymysql://u:p%40ss@h:3306/x and https://a:b@c/")
        == "mysql+pymysql://u:***@h:3306/x and https://a:***@c/"
    )


def test_the_catalog_leaves_out_a_down_connectors_tools_but_keeps_its_configured_scopes() -> None:
    from patchbay.catalog import Catalog, Mounted

    up: set[str] = set()
    catalog = Catalog([Mounted(Flaky("crm", 0), "crm_", scopes=["crm:read"])], is_up=lambda name: name in up)
    catalog.rebuild()
    assert catalog.tools == {} and catalog.tools_wire == []
    assert catalog.tool_scopes == ("crm:read",)  # advertised before the tools exist, so sign-in can grant it
    up.add("crm")
    catalog.rebuild()
    assert list(catalog.tools) == ["crm_lookup"] and catalog.tool_scopes == ("crm:read",)


# -- a runtime with a source that is down ---------------------------------------------------------------------


async def test_a_down_connector_is_left_out_then_published_with_list_changed_when_it_comes_up(tmp_path: Path) -> None:
    runtime = runtime_for(tmp_path)
    published: list[str] = []
    runtime.hub.add(lambda method, params: published.append(method))
    await runtime.start(on_failure="retry")
    try:
        assert "list_boards" in runtime.catalog.tools
        assert "search" not in runtime.catalog.tools and "fetch" not in runtime.catalog.tools
        assert runtime.supervisor.down == ["docs"]
        assert "folder" in runtime.supervisor.status["docs"].detail
        assert "does not exist" in runtime.supervisor.status["docs"].detail
        assert published == []
        bring_up(tmp_path)
        await until(lambda: "search" in runtime.catalog.tools, "docs tools")
        assert "notifications/tools/list_changed" in published
        assert runtime.supervisor.down == [] and retry_tasks() == []
    finally:
        await runtime.stop()


async def test_stopping_ends_every_retry(tmp_path: Path) -> None:
    runtime = runtime_for(tmp_path)
    await runtime.start(on_failure="retry")
    assert len(retry_tasks()) == 1
    await runtime.stop()
    assert retry_tasks() == []
    assert runtime.supervisor.retry_in("docs") is None


async def test_strict_start_refuses_naming_the_connector_and_the_reason(tmp_path: Path) -> None:
    runtime = runtime_for(tmp_path)
    with pytest.raises(ConnectorError) as failed:
        await runtime.start(on_failure="raise")
    assert str(failed.value).startswith("documents connector 'docs', source 'kb': folder ")
    assert "handbook does not exist" in str(failed.value)
    assert retry_tasks() == [] and not runtime.ready


async def test_a_config_error_refuses_to_start_even_when_retrying(tmp_path: Path) -> None:
    data = settings_data(tmp_path)
    data["connectors"].append({"name": "fx", "type": "python", "path": "missing_tools.py"})
    runtime = Runtime(from_dict(data, source="patchbay.toml", base_dir=tmp_path))
    with pytest.raises(ConfigError) as failed:
        await runtime.start(on_failure="retry")
    assert str(failed.value).startswith("patchbay.toml: connectors[fx]: path: 'missing_tools.py' is not a file")
    assert failed.value.file == "patchbay.toml" and failed.value.key == "connectors[2].path"
    assert retry_tasks() == []


async def test_a_config_error_that_already_names_its_connector_names_it_once(tmp_path: Path) -> None:
    # The upstream credentials code says where itself ("patchbay.toml: connectors[up].auth: ..."); the start-up
    # error must not put the location in front a second time.
    data = settings_data(tmp_path)
    data["connectors"].append({"name": "up", "type": "mcp", "url": "http://127.0.0.1:9/mcp", "auth": "user_oauth"})
    runtime = Runtime(from_dict(data, source="patchbay.toml", base_dir=tmp_path))
    with pytest.raises(ConfigError) as failed:
        await runtime.start(on_failure="retry")
    message = str(failed.value)
    assert message.startswith('patchbay.toml: connectors[up].auth: "user_oauth" needs people signed in'), message
    assert message.count("connectors[up]") == 1
    assert failed.value.key == "connectors[2].auth"


async def test_readyz_answers_503_degraded_with_the_reason_until_the_source_is_back(tmp_path: Path) -> None:
    from patchbay.app import create_app

    app = create_app(from_dict(settings_data(tmp_path), source="patchbay.toml", base_dir=tmp_path))
    await app.runtime.start()  # as the lifespan does: create_app's runtime retries
    try:
        async with client_for(app) as client:
            degraded = await client.get("/readyz")
            assert degraded.status_code == 503
            body = degraded.json()
            assert body["status"] == "degraded"
            assert body["connectors"]["kanban"] == {"ok": True, "detail": ""}
            docs = body["connectors"]["docs"]
            assert docs["ok"] is False and "does not exist" in docs["detail"]
            assert isinstance(docs["retry_in"], float) and 0 <= docs["retry_in"] <= 0.2
            assert body["tools"] == len(app.runtime.catalog.tools) > 0
            # A load balancer's probe keeps routing to a replica that serves the other tools.
            assert (await client.get("/readyz?degraded=ok")).status_code == 200
            bring_up(tmp_path)

            async def ready() -> bool:
                return (await client.get("/readyz")).status_code == 200

            await until(ready, "/readyz ok")
            body = (await client.get("/readyz")).json()
            assert body["status"] == "ok" and body["connectors"]["docs"]["ok"] is True
            assert "retry_in" not in body["connectors"]["docs"]
    finally:
        await app.runtime.stop()

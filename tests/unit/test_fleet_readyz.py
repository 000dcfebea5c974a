"""/readyz of a replica (a real server with its lifespan, on loopback) reports Redis, and is degraded while it is
down: 503 for monitoring, 200 with ?degraded=ok for a load balancer, and never the Redis password."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from tests.support.redis_server import PASSWORD, TIMEOUT_MS, RedisServer
from tests.support.waiting import until
from tests.unit.fixtures.wire import live_server, settings_for

from patchbay.settings import from_dict

pytestmark = pytest.mark.anyio


def fleet_settings(tmp_path: Path, url: str) -> Any:
    data = settings_for(tmp_path).model_dump(mode="json", exclude_unset=True)
    data["server"]["secret"] = "readyz-shared-secret-0123456789abcdef"
    data["redis"] = {"url": url, "timeout_ms": TIMEOUT_MS}
    return from_dict(data, base_dir=tmp_path)


async def test_readyz_reports_redis_and_is_degraded_while_it_is_down(tmp_path: Path, own_redis: RedisServer) -> None:
    with live_server(fleet_settings(tmp_path, own_redis.url)) as server:
        base = f"http://127.0.0.1:{server.port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            up = await http.get("/readyz")
            assert up.status_code == 200, up.text
            assert up.json()["redis"]["ok"] is True and up.json()["redis"]["replicas"] == 1
            replica = server.app.runtime.fleet.replica_id
            assert replica in up.json()["redis"]["detail"]

            own_redis.stop()
            down: list[httpx.Response] = []

            async def degraded() -> bool:
                down[:] = [await http.get("/readyz")]
                return down[0].status_code == 503

            await until(degraded, "/readyz to report Redis down")
            body = down[0].json()
            assert body["status"] == "degraded" and body["redis"]["ok"] is False
            assert (await http.get("/readyz?degraded=ok")).status_code == 200
            assert PASSWORD not in down[0].text

            own_redis.start()

            async def ready() -> bool:
                return (await http.get("/readyz")).status_code == 200

            await until(ready, "/readyz to report Redis back")


async def test_a_single_node_readyz_has_no_redis_part(tmp_path: Path) -> None:
    with live_server(settings_for(tmp_path)) as server:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=10) as http:
            reply = await http.get("/readyz")
    assert reply.status_code == 200 and "redis" not in reply.json()

"""Fixtures every suite (unit, integration, e2e) may use: a real redis-server for the fleet's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.redis_server import RedisMissing, RedisServer, unique_prefix
from tests.support.redis_server import redis_server as start_redis


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the whole run (`make redis` installs it); tests keep apart by ``redis_prefix``.
    A test that stops it must start it again; outage tests usually start their own with
    ``tests.support.redis_server.redis_server()``."""
    try:
        with start_redis(tmp_path_factory.mktemp("redis")) as server:
            yield server
    except RedisMissing as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    """``redis://:password@127.0.0.1:port/0`` of the shared redis-server."""
    return redis_server.url


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix of this test's own (``[redis] key_prefix``), so tests sharing the server never meet."""
    return unique_prefix()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, for outage tests: the test may stop and start it at will."""
    try:
        with start_redis(tmp_path / "redis") as server:
            yield server
    except RedisMissing as exc:
        pytest.fail(str(exc))

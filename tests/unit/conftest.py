"""Unit-test fixtures: a running Patchbay app serving tests/unit/fixtures/tools.py and a client bound to it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from fixtures.wire import client_for, running, settings_for


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[Any]:
    async with running(settings_for(tmp_path)) as started:
        yield started


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as http:
        yield http

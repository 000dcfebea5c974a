"""The lean HTTP/1.1 client for an upstream's URL (``OriginClient``) against a hand-written origin on loopback
that counts TCP connections and answers each request as the test scripts it: chunked bodies, keep-alive reuse, a
server closing idle connections, ``Connection: close``, 1xx, size caps, a trickling server against a call's
deadline, the pool bound and TLS with a throwaway CA."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from tests.support.waiting import until
from tests.unit.test_outbound_fetch import tls_contexts

from patchbay.outbound.origin import ConnectionFailed, OriginClient, TooLarge
from patchbay.outbound.transport import Refused
from patchbay.upstream import Target, UpstreamPool, UpstreamTimeout, UpstreamUnavailable

pytestmark = pytest.mark.anyio
CLIENT = {"name": "patchbay-test", "version": "0"}
TRICKLE_LIMIT = 200  # bytes a trickling answer sends at most, so a client that never hangs up still ends


@dataclass
class Seen:
    method: str
    headers: dict[str, str]
    body: bytes
    connection: int


Script = Callable[["Origin", Seen, asyncio.StreamWriter], Awaitable[bool]]  # False: close after answering


def reply(status: str, body: bytes = b"", *headers: str) -> bytes:
    head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def answer_ok(origin: Origin, seen: Seen, writer: asyncio.StreamWriter) -> bool:
    writer.write(reply("200 OK", b"ok:" + seen.body))
    return True


@dataclass
class Origin:
    script: Script = answer_ok
    connections: int = 0
    seen: list[Seen] = field(default_factory=list)
    hung_up: list[int] = field(default_factory=list)  # connections whose client hung up or that we closed
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                seen = Seen(head[0].split(" ")[0], headers, body, number)
                self.seen.append(seen)
                keep = await self.script(self, seen, writer)
                await writer.drain()
                if not keep:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.hung_up.append(number)
            writer.close()


@contextlib.asynccontextmanager
async def serving(origin: Origin, tls: ssl.SSLContext | None = None) -> AsyncIterator[Origin]:
    server = await asyncio.start_server(origin.handle, "127.0.0.1", 0, ssl=tls)
    origin.port = server.sockets[0].getsockname()[1]
    async with server:
        yield origin


async def post(client: OriginClient, body: bytes = b"x", cap: int = 1 << 20) -> bytes:
    _, answer = await client.fetch("POST", {"Content-Type": "application/json"}, body, cap)
    return answer


async def test_keep_alive_reuses_one_connection_for_sequential_requests() -> None:
    async with serving(Origin()) as origin:
        client = OriginClient(origin.url)
        try:
            for n in range(5):
                assert await post(client, str(n).encode()) == f"ok:{n}".encode()
            assert origin.connections == 1 and client.connections_opened == 1
            assert [seen.connection for seen in origin.seen] == [1] * 5
            assert origin.seen[0].headers["host"] == f"127.0.0.1:{origin.port}"
        finally:
            await client.aclose()


async def test_a_chunked_body_is_read_whole() -> None:
    async def chunked(origin: Origin, seen: Seen, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for part in (b"hello", b" ", b"world"):
            writer.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        return True

    async with serving(Origin(chunked)) as origin:
        client = OriginClient(origin.url)
        try:
            assert await post(client) == b"hello world"
            assert await post(client) == b"hello world"
            assert origin.connections == 1  # the terminating chunk ended the body: the connection was kept
        finally:
            await client.aclose()


async def test_a_connection_the_server_closed_while_idle_is_replaced_and_nothing_is_sent_twice() -> None:
    async def once(origin: Origin, seen: Seen, writer: asyncio.StreamWriter) -> bool:
        writer.write(reply("200 OK", b"ok"))
        return False  # close after answering, without saying so (as a keep-alive timeout does)

    async with serving(Origin(once)) as origin:
        client = OriginClient(origin.url)
        try:
            assert await post(client) == b"ok"
            await until(lambda: origin.hung_up == [1] and client.idle == 0, "the client saw the close")
            assert await post(client) == b"ok"
            assert [seen.connection for seen in origin.seen] == [1, 2]
        finally:
            await client.aclose()


async def test_connection_close_is_honoured_and_interim_responses_are_skipped() -> None:
    async def closing(origin: Origin, seen: Seen, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n")
        writer.write(reply("200 OK", b"final", "Connection: close"))
        await writer.drain()
        await asyncio.sleep(0)
        return True  # the server would keep it: only the header says close

    async with serving(Origin(closing)) as origin:
        client = OriginClient(origin.url)
        try:
            response, body = await client.fetch("POST", {}, b"x", 100)
            assert (response.status_code, body, response.headers.get("link")) == (200, b"final", None)
            assert await post(client) == b"final"
            assert client.connections_opened == 2 and [s.connection for s in origin.seen] == [1, 2]
        finally:
            await client.aclose()


async def test_a_body_over_the_cap_is_refused_declared_or_chunked_and_the_connection_dropped() -> None:
    async def big(origin: Origin, seen: Seen, writer: asyncio.StreamWriter) -> bool:
        if seen.body == b"declared":
            writer.write(reply("200 OK", b"y" * 5000))
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(5):
                writer.write(b"3e8\r\n" + b"z" * 1000 + b"\r\n")
            writer.write(b"0\r\n\r\n")
        return True

    async with serving(Origin(big)) as origin:
        client = OriginClient(origin.url)
        try:
            with pytest.raises(TooLarge, match="larger than 4096 bytes"):
                await post(client, b"declared", cap=4096)
            with pytest.raises(TooLarge, match="larger than 4096 bytes"):
                await post(client, b"chunked", cap=4096)
            assert client.idle == 0
            assert len(await post(client, b"declared", cap=8192)) == 5000
        finally:
            await client.aclose()


async def test_the_pool_bound_makes_concurrent_requests_wait_for_a_connection() -> None:
    gate = asyncio.Event()

    async def held(origin: Origin, seen: Seen, writer: asyncio.StreamWriter) -> bool:
        await gate.wait()
        writer.write(reply("200 OK", seen.body))
        return True

    async with serving(Origin(held)) as origin:
        client = OriginClient(origin.url, max_connections=1)
        try:
            calls = [asyncio.ensure_future(post(client, str(n).encode())) for n in range(3)]
            await until(lambda: len(origin.seen) == 1, "the first request arrived")
            assert client.connections_opened == 1 and not any(call.done() for call in calls)
            gate.set()
            assert await asyncio.gather(*calls) == [b"0", b"1", b"2"]
            assert origin.connections == 1
        finally:
            await client.aclose()


async def test_header_values_with_line_breaks_are_refused_without_showing_the_value() -> None:
    client = OriginClient("http://127.0.0.1:9/mcp")
    with pytest.raises(Refused) as refused:
        await client.fetch("POST", {"Authorization": "Bearer s3cret\r\nX-Evil: 1"}, b"x", 100)
    assert "Authorization" in str(refused.value) and "s3cret" not in str(refused.value)
    await client.aclose()


async def test_an_event_stream_is_delivered_as_it_arrives() -> None:
    second = asyncio.Event()

    async def stream(origin: Origin, seen: Seen, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(b"d\r\ndata: first\n\n\r\n")
        await writer.drain()
        await second.wait()
        writer.write(b"e\r\ndata: second\n\n\r\n0\r\n\r\n")
        return True

    async with serving(Origin(stream)) as origin:
        client = OriginClient(origin.url)
        try:
            response = await client.request("GET", {"Accept": "text/event-stream"})
            chunks = response.aiter_bytes()
            assert await anext(chunks) == b"data: first\n\n"  # before the server has sent the second event
            second.set()
            assert [chunk async for chunk in chunks] == [b"data: second\n\n"]
            await response.aclose()
            assert client.idle == 1
        finally:
            await client.aclose()


async def test_https_checks_the_certificate_for_the_configured_name(tmp_path: Path) -> None:
    server_tls, client_tls = tls_contexts(tmp_path, "upstream.test")
    names: list[str | None] = []
    server_tls.sni_callback = lambda _socket, name, _context: names.append(name)  # type: ignore[assignment,misc]

    async def resolve(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    async with serving(Origin(), tls=server_tls) as origin:
        client = OriginClient(f"https://upstream.test:{origin.port}/mcp", resolve=resolve, tls=client_tls)
        try:
            assert await post(client, b"tls") == b"ok:tls"
            assert await post(client, b"again") == b"ok:again"
            assert names == ["upstream.test"] and origin.connections == 1
            assert origin.seen[0].headers["host"] == f"upstream.test:{origin.port}"
        finally:
            await client.aclose()
        impostor = OriginClient(f"https://other.test:{origin.port}/mcp", resolve=resolve, tls=client_tls)
        with pytest.raises(ConnectionFailed, match=r"TLS with other\.test failed"):
            await post(impostor)
        untrusted = OriginClient(f"https://upstream.test:{origin.port}/mcp", resolve=resolve)
        with pytest.raises(ConnectionFailed, match=r"TLS with upstream\.test failed"):
            await post(untrusted)  # the default trust store does not know the throwaway CA
        assert len(origin.seen) == 2


# -- through the upstream pool ---------------------------------------------------------------------------------


def modern(tools_call: Script) -> Script:
    """A 2026-07-28 upstream: answers server/discover itself and hands tools/call to ``tools_call``."""

    async def script(origin: Origin, seen: Seen, writer: asyncio.StreamWriter) -> bool:
        message: dict[str, Any] = orjson.loads(seen.body)
        if message.get("method") == "server/discover":
            result = {"supportedVersions": ["2026-07-28"], "capabilities": {"tools": {}}, "serverInfo": {"name": "o"}}
            answer = orjson.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result})
            writer.write(reply("200 OK", answer, "Content-Type: application/json"))
            return True
        return await tools_call(origin, seen, writer)

    return script


def pool_for(url: str, max_bytes: int = 16 * 1024 * 1024) -> UpstreamPool:
    async def ignore(method: str, params: dict[str, Any]) -> None:
        pass

    target = Target("http", url=url, protocol="2026-07-28", max_message_bytes=max_bytes)
    return UpstreamPool("origin", target, client_info=CLIENT, capabilities={}, on_notification=ignore)


async def test_a_trickling_upstream_is_cut_at_the_call_deadline_and_its_connection_closed() -> None:
    async def trickle(origin: Origin, seen: Seen, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(TRICKLE_LIMIT):
            writer.write(b"2\r\n:\n\r\n")  # an SSE comment: bytes keep coming, no answer ever does
            await writer.drain()
            await asyncio.sleep(0.05)
        return False

    async with serving(Origin(modern(trickle))) as origin:
        pool = pool_for(origin.url)
        try:
            with pytest.raises(UpstreamTimeout):
                await pool.call("tools/call", {"name": "slow"}, timeout=0.5)
            # Closing the response stream is how 2026-07-28 cancels; a client that does not never ends the trickle.
            await until(lambda: 1 in origin.hung_up, "the connection was closed")
        finally:
            await pool.close()


async def test_an_answer_over_the_message_cap_fails_the_call_with_the_cap() -> None:
    async def huge(origin: Origin, seen: Seen, writer: asyncio.StreamWriter) -> bool:
        writer.write(reply("200 OK", b'{"jsonrpc":"2.0","id":2,"result":{"x":"' + b"y" * 3000 + b'"}}'))
        return True

    async with serving(Origin(modern(huge))) as origin:
        pool = pool_for(origin.url, max_bytes=1000)
        try:
            with pytest.raises(UpstreamUnavailable, match="larger than 1000 bytes"):
                await pool.call("tools/call", {"name": "big"}, timeout=5)
        finally:
            await pool.close()


async def test_a_prepared_header_block_replaces_a_fixed_header_and_refuses_a_line_break() -> None:
    async with serving(Origin()) as origin:
        client = OriginClient(origin.url, headers={"X-Api-Key": "fixed"})
        try:
            block = client.prepare({"x-api-key": "mine", "Content-Type": "application/json"})
            for n in range(2):
                _, body = await client.fetch("POST", block, str(n).encode(), 100)
                assert body == f"ok:{n}".encode()
            assert [seen.headers["x-api-key"] for seen in origin.seen] == ["mine", "mine"]
            with pytest.raises(Refused) as refused:
                client.prepare({"Authorization": "Bearer s3cret\nX-Evil: 1"})
            assert "s3cret" not in str(refused.value)
        finally:
            await client.aclose()


async def test_each_tool_call_carries_its_own_name_and_the_credentials_of_the_moment() -> None:
    async def echo(origin: Origin, seen: Seen, writer: asyncio.StreamWriter) -> bool:
        message = orjson.loads(seen.body)
        answer = {"jsonrpc": "2.0", "id": message["id"], "result": {"content": []}}
        writer.write(reply("200 OK", orjson.dumps(answer), "Content-Type: application/json"))
        return True

    async with serving(Origin(modern(echo))) as origin:
        pool = pool_for(origin.url)
        try:
            for token, name in [("one", "a"), ("one", "b"), ("one", "a"), ("two", "a")]:
                headers = {"Authorization": f"Bearer {token}"}
                await pool.call("tools/call", {"name": name}, headers=headers, timeout=5)
            calls = [seen.headers for seen in origin.seen if seen.headers.get("mcp-method") == "tools/call"]
            assert [(h["mcp-name"], h["authorization"]) for h in calls] == [
                ("a", "Bearer one"),
                ("b", "Bearer one"),
                ("a", "Bearer one"),
                ("a", "Bearer two"),
            ]
        finally:
            await pool.close()

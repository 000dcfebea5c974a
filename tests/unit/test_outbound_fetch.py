"""The real outbound fetcher against a real HTTP server on loopback, standing in for a client's metadata host.

The resolver is injected (no DNS here) and a test-only policy admits 127.0.0.1/32, so the guard's own pinning,
size cap, redirect rule and deadline are what each test exercises, over real sockets.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx
import pytest
from anyio.abc import ByteStream, SocketAttribute, TaskGroup
from anyio.streams.tls import TLSListener
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from patchbay.auth.cimd import MetadataDocuments
from patchbay.outbound import AddressPolicy, Fetcher, FetchError, Refused

pytestmark = pytest.mark.anyio
LOOPBACK_ONLY = AddressPolicy((ipaddress.ip_network("127.0.0.1/32"),))
NAME = "metadata.test"
# Bounds on what the server sends, so a guard that fails open still ends (and the test fails).
ENDLESS_CHUNKS = 2000
TRICKLE_BYTES = 200


@dataclass
class Seen:
    path: str
    host_header: str
    local_address: str


@dataclass
class MetadataHost:
    """A minimal HTTP/1.1 origin. It records every request (path, Host header, the address it was reached on)."""

    port: int = 0
    seen: list[Seen] = field(default_factory=list)

    @property
    def origin(self) -> str:
        return f"http://{NAME}:{self.port}"

    async def serve(self, group: TaskGroup, tls: ssl.SSLContext | None = None) -> None:
        tcp = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        self.port = tcp.extra(SocketAttribute.local_port)
        listener = TLSListener(tcp, tls, standard_compatible=False) if tls is not None else tcp
        group.start_soon(listener.serve, self._handle)

    async def _handle(self, stream: ByteStream) -> None:
        async with stream:
            head = b""
            while b"\r\n\r\n" not in head:
                head += await stream.receive()
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            local = str(stream.extra(SocketAttribute.local_address)[0])
            self.seen.append(Seen(path, headers.get("host", ""), local))
            # The client may hang up mid-answer: that is what the size cap and the deadline are for.
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, ConnectionError):
                await ROUTES.get(path, _not_found)(self, stream)


def _response(status: str, body: bytes, *extra: str) -> bytes:
    head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", "Connection: close", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _document(host: MetadataHost, stream: ByteStream) -> None:
    url = f"{host.origin}/client.json"
    body = f'{{"client_id": "{url}", "client_name": "Loopback", "redirect_uris": ["https://c.example/cb"]}}'
    await stream.send(_response("200 OK", body.encode(), "Content-Type: application/json"))


async def _declared_huge(host: MetadataHost, stream: ByteStream) -> None:
    await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\nConnection: close\r\n\r\n{")
    for _ in range(ENDLESS_CHUNKS):
        await stream.send(b" " * 1024)


async def _endless_chunked(host: MetadataHost, stream: ByteStream) -> None:
    await stream.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    for _ in range(ENDLESS_CHUNKS):
        await stream.send(b"400\r\n" + b" " * 1024 + b"\r\n")
    await stream.send(b"0\r\n\r\n")


async def _redirect(host: MetadataHost, stream: ByteStream) -> None:
    await stream.send(_response("302 Found", b"", f"Location: {host.origin}/client.json"))


async def _redirect_inside(host: MetadataHost, stream: ByteStream) -> None:
    await stream.send(_response("302 Found", b"", "Location: http://10.0.0.7/latest/meta-data"))


async def _trickle(host: MetadataHost, stream: ByteStream) -> None:
    await stream.send(f"HTTP/1.1 200 OK\r\nContent-Length: {TRICKLE_BYTES}\r\nConnection: close\r\n\r\n".encode())
    for _ in range(TRICKLE_BYTES):
        await stream.send(b" ")
        await anyio.sleep(0.1)  # the slow server being simulated, not the test waiting


async def _not_found(host: MetadataHost, stream: ByteStream) -> None:
    await stream.send(_response("404 Not Found", b""))


ROUTES: dict[str, Callable[[MetadataHost, ByteStream], Awaitable[None]]] = {
    "/client.json": _document,
    "/huge": _declared_huge,
    "/endless": _endless_chunked,
    "/redirect": _redirect,
    "/redirect-inside": _redirect_inside,
    "/trickle": _trickle,
}


class Resolver:
    """Answers from a script, one answer per call, and counts the calls (a DNS-rebinding attacker's zone)."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        return [self.answers[min(len(self.calls), len(self.answers)) - 1]]


@pytest.fixture
async def metadata_host() -> AsyncIterator[MetadataHost]:
    async with anyio.create_task_group() as group:
        host = MetadataHost()
        await host.serve(group)
        yield host
        group.cancel_scope.cancel()


def fetcher(resolve: Resolver, *, max_bytes: int = 64 * 1024, timeout: float = 5.0, deadline: float = 10.0) -> Fetcher:
    return Fetcher(
        policy=LOOPBACK_ONLY, allow_http=True, resolve=resolve, max_bytes=max_bytes, timeout=timeout, deadline=deadline
    )


async def test_the_connection_goes_to_the_vetted_address_not_a_second_dns_answer(metadata_host: MetadataHost) -> None:
    # The first answer passes the policy; any later lookup would rebind the name to an internal address.
    dns = Resolver("127.0.0.1", "10.0.0.7")
    documents = MetadataDocuments(fetcher(dns))
    client = await documents.resolve(f"{metadata_host.origin}/client.json")
    assert client.name == "Loopback"
    assert dns.calls == [NAME]  # resolved once; the connection did not look the name up again
    (seen,) = metadata_host.seen
    assert seen.local_address == "127.0.0.1"
    assert seen.host_header == f"{NAME}:{metadata_host.port}"  # the name travels in Host, the address is pinned


async def test_each_request_vets_its_own_dns_answer(metadata_host: MetadataHost) -> None:
    dns = Resolver("127.0.0.1", "10.0.0.7")
    guarded = fetcher(dns)
    assert (await guarded.request("GET", f"{metadata_host.origin}/client.json")).status == 200
    with pytest.raises(Refused, match="private"):
        await guarded.request("GET", f"{metadata_host.origin}/client.json")
    assert len(metadata_host.seen) == 1  # the refused request never connected


@pytest.mark.parametrize("path", ["/huge", "/endless"])
async def test_the_size_cap_stops_a_large_or_endless_body(metadata_host: MetadataHost, path: str) -> None:
    with pytest.raises(FetchError, match="larger than 4096 bytes"):
        await fetcher(Resolver("127.0.0.1"), max_bytes=4096).request("GET", metadata_host.origin + path)


async def test_the_size_cap_applies_while_streaming(metadata_host: MetadataHost) -> None:
    received = 0
    with pytest.raises(FetchError, match="larger than 8192 bytes"):
        async with fetcher(Resolver("127.0.0.1"), max_bytes=8192).stream("GET", metadata_host.origin + "/endless") as s:
            async for chunk in s.chunks():
                received += len(chunk)
    assert received <= 8192


async def test_redirects_are_not_followed(metadata_host: MetadataHost) -> None:
    with pytest.raises(FetchError, match="redirect"):
        await fetcher(Resolver("127.0.0.1")).request("GET", f"{metadata_host.origin}/redirect")
    assert [s.path for s in metadata_host.seen] == ["/redirect"]


async def test_an_allowed_redirect_is_followed_and_each_hop_vetted(metadata_host: MetadataHost) -> None:
    guarded = fetcher(Resolver("127.0.0.1"))
    followed = await guarded.request("GET", f"{metadata_host.origin}/redirect", max_redirects=1)
    assert followed.status == 200 and followed.json()["client_name"] == "Loopback"
    with pytest.raises(Refused, match=r"10\.0\.0\.7 is a private"):
        await guarded.request("GET", f"{metadata_host.origin}/redirect-inside", max_redirects=1)
    assert [s.path for s in metadata_host.seen] == ["/redirect", "/client.json", "/redirect-inside"]


async def test_a_deadline_ends_a_server_that_trickles(metadata_host: MetadataHost) -> None:
    # Each byte comes well within the per-read timeout; only the deadline for the whole exchange ends it.
    trickling = fetcher(Resolver("127.0.0.1"), timeout=5.0, deadline=0.5)
    with pytest.raises(FetchError, match="did not answer in time"):
        await trickling.request("GET", f"{metadata_host.origin}/trickle")


async def test_a_refused_address_never_reaches_the_server(metadata_host: MetadataHost) -> None:
    public_only = Fetcher(allow_http=True, resolve=Resolver("127.0.0.1"))
    with pytest.raises(Refused, match="loopback"):
        await public_only.request("GET", f"{metadata_host.origin}/client.json")
    assert metadata_host.seen == []


# -- TLS: the address is pinned, the certificate is still checked against the name -----------------------------


def _certificate(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None, signer: ec.EllipticCurvePrivateKey
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer is not None else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
    return builder.sign(signer, hashes.SHA256())


def tls_contexts(tmp_path: Path, name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for ``name`` only (no IP address in it) and a client context that
    trusts only the throwaway CA that signed it."""
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("Test CA", ca_key, None, ca_key)
    leaf = _certificate(name, leaf_key, ca, ca_key)
    chain, key = tmp_path / "leaf.pem", tmp_path / "leaf.key"
    chain.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(chain, key)
    client = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    return server, client


async def test_https_connects_to_the_vetted_address_and_checks_the_certificate_for_the_name(tmp_path: Path) -> None:
    server_tls, client_tls = tls_contexts(tmp_path, NAME)
    names: list[str | None] = []
    server_tls.sni_callback = lambda _socket, name, _context: names.append(name)  # type: ignore[assignment,misc]
    async with anyio.create_task_group() as group:
        host = MetadataHost()
        await host.serve(group, server_tls)
        pool = httpx.AsyncHTTPTransport(verify=client_tls, trust_env=False)
        guarded = Fetcher(policy=LOOPBACK_ONLY, resolve=Resolver("127.0.0.1"), transport=pool)
        fetched = await guarded.request("GET", f"https://{NAME}:{host.port}/client.json")
        assert fetched.status == 200
        assert names == [NAME]  # SNI carried the name although the connection went to 127.0.0.1
        assert [(s.host_header, s.local_address) for s in host.seen] == [(f"{NAME}:{host.port}", "127.0.0.1")]
        # The same server, address and trust, under a name its certificate does not carry: the handshake fails.
        pool = httpx.AsyncHTTPTransport(verify=client_tls, trust_env=False)
        impostor = Fetcher(policy=LOOPBACK_ONLY, resolve=Resolver("127.0.0.1"), transport=pool)
        with pytest.raises(FetchError, match=r"could not reach other\.test: ConnectError"):
            await impostor.request("GET", f"https://other.test:{host.port}/client.json")
        group.cancel_scope.cancel()

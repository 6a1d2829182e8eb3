"""The pooled provider client against raw-socket servers on loopback: framing, decoding, reuse,
and every way a provider's connection can misbehave."""

from __future__ import annotations

import asyncio
import datetime
import gzip
import ipaddress
import ssl
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from e2e.fakes import closed_port

from ccswitch_addon.upstream.client import (
    BadAnswer,
    ConnectFailed,
    Disconnected,
    ProviderClient,
    ProviderResponse,
)
from ccswitch_addon.upstream.connection import WRITE_HIGH, WRITE_STEP

LIMIT = 10.0
Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Raw:
    """A loopback server whose every connection runs ``serve``; counts connections."""

    def __init__(self, serve: Serve) -> None:
        self.serve = serve
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        body = await reader.readexactly(length)
        self.requests.append(head + body)
        return head + body


@pytest.fixture
async def raw() -> AsyncIterator[Callable[[Serve], Awaitable[Raw]]]:
    servers: list[Raw] = []

    async def make(serve: Serve) -> Raw:
        server = Raw(serve)
        await server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        assert server.server is not None
        server.server.close()


@pytest.fixture
async def client() -> AsyncIterator[ProviderClient]:
    made = ProviderClient()
    yield made
    await made.close()


async def read_all(response: ProviderResponse) -> bytes:
    body = b""
    while chunk := await asyncio.wait_for(response.readany(), LIMIT):
        body += chunk
    return body


def answering(*answers: bytes, then_close: bool = False) -> Callable[[Raw], Serve]:
    """Each request on a connection gets the next answer (the last one repeats)."""

    def bind(server_ref: Raw) -> Serve:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            for index in range(100):
                await server_ref.read_request(reader)
                writer.write(answers[min(index, len(answers) - 1)])
                await writer.drain()
                if then_close:
                    return

        return serve

    return bind


async def serving(raw: Callable[[Serve], Awaitable[Raw]], bind: Callable[[Raw], Serve]) -> Raw:
    holder: list[Raw] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await bind(holder[0])(reader, writer)

    server = await raw(serve)
    holder.append(server)
    return server


OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


def one_then_drop(hold: float = 0.0) -> Callable[[Raw], Serve]:
    """Answer a connection's first request; read its second, hold it ``hold`` seconds (the
    provider's own pace), then close the connection without a word."""

    def bind(server_ref: Raw) -> Serve:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server_ref.read_request(reader)
            writer.write(OK)
            await writer.drain()
            await server_ref.read_request(reader)
            if hold:
                await asyncio.sleep(hold)

        return serve

    return bind


async def post(client: ProviderClient, url: str, body: bytes = b"{}") -> ProviderResponse:
    headers = [("content-type", "application/json"), ("x-api-key", "k")]
    return await asyncio.wait_for(
        client.request("POST", url + "/v1/messages?beta=true", headers, body, 5.0), LIMIT
    )


async def test_the_request_goes_as_one_piece_with_host_and_length(
    raw: Callable[[Serve], Awaitable[Raw]], client: ProviderClient
) -> None:
    server = await serving(raw, answering(OK))
    response = await post(client, server.url, b'{"model":"m"}')
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json"
    assert await read_all(response) == b"{}"
    sent = server.requests[0]
    assert sent.startswith(b"POST /v1/messages?beta=true HTTP/1.1\r\n")
    assert f"host: 127.0.0.1:{server.port}\r\n".encode() in sent
    assert b"content-length: 13\r\n" in sent
    assert b"x-api-key: k\r\n" in sent
    assert sent.endswith(b'\r\n\r\n{"model":"m"}')


async def test_a_connection_is_reused_after_an_answer_read_whole(
    raw: Callable[[Serve], Awaitable[Raw]], client: ProviderClient
) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nx-trailer: t\r\n\r\n"
    )
    server = await serving(raw, answering(OK, chunked, OK))
    for expected in (b"{}", b"abcde", b"{}"):
        response = await post(client, server.url)
        assert await read_all(response) == expected
        response.release()
    assert server.connections == 1


async def test_an_answer_not_read_whole_is_not_reused(
    raw: Callable[[Serve], Awaitable[Raw]], client: ProviderClient
) -> None:
    big = b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n" + b"x" * 100000
    server = await serving(raw, answering(big))
    response = await post(client, server.url)
    await response.readany()
    response.close()
    response = await post(client, server.url)
    assert len(await read_all(response)) == 100000
    assert server.connections == 2


@pytest.mark.parametrize(
    ("coding", "encode"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("GZip", gzip.compress),
    ],
)
async def test_gzip_and_deflate_are_decoded_and_the_header_dropped(
    raw: Callable[[Serve], Awaitable[Raw]],
    client: ProviderClient,
    coding: str,
    encode: Callable[[bytes], bytes],
) -> None:
    plain = b'{"type":"message","content":[' + b'{"text":"hello"},' * 2000 + b"{}]}"
    packed = encode(plain)
    answer = b"HTTP/1.1 200 OK\r\ncontent-encoding: %s\r\ncontent-length: %d\r\n\r\n%s" % (
        coding.encode(),
        len(packed),
        packed,
    )
    server = await serving(raw, answering(answer))
    response = await post(client, server.url)
    assert "content-encoding" not in response.headers
    assert await read_all(response) == plain
    assert b"accept-encoding" not in server.requests[0]  # offered by the caller, not here


async def test_a_decompression_bomb_comes_out_in_bounded_pieces(
    raw: Callable[[Serve], Awaitable[Raw]], client: ProviderClient
) -> None:
    packed = gzip.compress(b"\0" * (64 * 1024 * 1024), 9)
    answer = b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n" % len(
        packed
    )
    server = await serving(raw, answering(answer + packed))
    response = await post(client, server.url)
    sizes = []
    for _ in range(8):
        sizes.append(len(await asyncio.wait_for(response.readany(), LIMIT)))
    response.close()
    assert max(sizes) <= 256 * 1024
    assert sum(sizes) > 0


async def test_an_unknown_encoding_passes_through_with_its_header(
    raw: Callable[[Serve], Awaitable[Raw]], client: ProviderClient
) -> None:
    answer = b"HTTP/1.1 200 OK\r\ncontent-encoding: br\r\ncontent-length: 3\r\n\r\n\x01\x02\x03"
    server = await serving(raw, answering(answer))
    response = await post(client, server.url)
    assert response.headers["content-encoding"] == "br"
    assert await read_all(response) == b"\x01\x02\x03"


async def test_informational_answers_are_skipped(
    raw: Callable[[Serve], Awaitable[Raw]], client: ProviderClient
) -> None:
    early = b"HTTP/1.1 103 Early Hints\r\nlink: </x>; rel=preload\r\n\r\n"
    server = await serving(raw, answering(early + OK))
    response = await post(client, server.url)
    assert response.status == 200
    assert "link" not in response.headers
    assert await read_all(response) == b"{}"


async def test_a_body_to_the_end_of_the_connection_is_complete_not_broken(
    raw: Callable[[Serve], Awaitable[Raw]], client: ProviderClient
) -> None:
    answer = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end"
    server = await serving(raw, answering(answer, then_close=True))
    response = await post(client, server.url)
    assert await read_all(response) == b"until the end"
    response = await post(client, server.url)  # never reused: a new connection
    assert await read_all(response) == b"until the end"
    assert server.connections == 2


async def test_an_idempotent_request_crossing_an_idle_close_is_retried_once_anew(
    raw: Callable[[Serve], Awaitable[Raw]], client: ProviderClient
) -> None:
    # The second request on a connection is read and the connection closed without a word,
    # as when a provider's idle timeout and the request cross: a GET goes again on a new one.
    server = await serving(raw, one_then_drop())
    for _ in range(2):
        response = await asyncio.wait_for(client.request("GET", server.url + "/", [], None, 5), 5)
        assert await read_all(response) == b"{}"
    assert len(server.requests) == 3  # the second request twice
    assert server.connections == 2


async def test_a_post_read_whole_is_never_sent_again_however_soon_the_close(
    raw: Callable[[Serve], Awaitable[Raw]], client: ProviderClient
) -> None:
    server = await serving(raw, one_then_drop())  # the second is read, then dropped at once
    assert await read_all(await post(client, server.url)) == b"{}"
    with pytest.raises(Disconnected):
        await post(client, server.url)
    assert len(server.requests) == 2
    assert server.connections == 1


async def test_a_fresh_connection_that_closes_is_not_retried(
    raw: Callable[[Serve], Awaitable[Raw]], client: ProviderClient
) -> None:
    async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")

    server = await raw(close_at_once)
    with pytest.raises(Disconnected):
        await post(client, server.url)
    assert server.connections == 1


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort", Disconnected),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nabcde\r\n", Disconnected),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n", BadAnswer),
    ],
)
async def test_a_body_that_breaks_raises_after_what_came(
    raw: Callable[[Serve], Awaitable[Raw]],
    client: ProviderClient,
    answer: bytes,
    error: type[Exception],
) -> None:
    server = await serving(raw, answering(answer, then_close=True))
    response = await post(client, server.url)
    assert response.status == 200
    with pytest.raises(error):
        await read_all(response)


@pytest.mark.parametrize(
    "answer",
    [
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * (70 * 1024) + b"\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nx-endless: " + b"a" * (200 * 1024),  # a head that never ends
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\nconnection: upgrade\r\n\r\n",
    ],
    ids=["not-http", "huge-head", "endless-head", "upgrade"],
)
async def test_an_answer_that_is_not_http_fails_the_request(
    raw: Callable[[Serve], Awaitable[Raw]], client: ProviderClient, answer: bytes
) -> None:
    server = await serving(raw, answering(answer, then_close=True))
    with pytest.raises(BadAnswer):
        await post(client, server.url)


async def test_refused_and_unresolvable_hosts_fail_to_connect(client: ProviderClient) -> None:
    with pytest.raises(ConnectFailed) as refused:
        await post(client, f"http://127.0.0.1:{closed_port()}")
    assert isinstance(refused.value.os_error, ConnectionRefusedError)
    with pytest.raises(ConnectFailed):
        await post(client, "http://no-such-host.invalid")


async def test_tls_failure_is_a_connect_failure(
    raw: Callable[[Serve], Awaitable[Raw]], client: ProviderClient
) -> None:
    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(OK)  # plain HTTP where the handshake's answer belongs
        await writer.drain()
        await reader.read()

    server = await raw(plain)
    with pytest.raises(ConnectFailed) as failed:
        await post(client, f"https://127.0.0.1:{server.port}")
    assert isinstance(failed.value.os_error, ssl.SSLError | ConnectionError)


async def test_a_line_break_in_a_header_never_reaches_the_wire(
    raw: Callable[[Serve], Awaitable[Raw]], client: ProviderClient
) -> None:
    server = await serving(raw, answering(OK))
    with pytest.raises(ValueError, match="line break"):
        await client.request("POST", server.url + "/", [("x-a", "1\r\nx-b: 2")], b"", 5.0)
    assert server.requests == []


async def test_a_cancelled_request_closes_its_connection(
    raw: Callable[[Serve], Awaitable[Raw]], client: ProviderClient
) -> None:
    closed = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.read()  # until the client hangs up
        closed.set()

    server = await raw(silent)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(post(client, server.url), 0.2)
    await asyncio.wait_for(closed.wait(), LIMIT)


async def test_the_pool_bounds_open_connections(
    raw: Callable[[Serve], Awaitable[Raw]],
) -> None:
    client = ProviderClient(limit=2)
    gate = asyncio.Event()

    def bind(server_ref: Raw) -> Serve:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                await server_ref.read_request(reader)
                await gate.wait()
                writer.write(OK)
                await writer.drain()

        return serve

    server = await serving(raw, bind)
    try:
        tasks = [asyncio.create_task(post(client, server.url)) for _ in range(5)]
        deadline = asyncio.get_running_loop().time() + LIMIT
        while len(server.requests) < 2 or len(client._waiting) < 3:
            assert asyncio.get_running_loop().time() < deadline, "never two sent, three held"
            await asyncio.sleep(0.01)
        assert len(server.requests) == 2  # the other three wait for a connection
        gate.set()
        for task in tasks:
            response = await task
            assert await read_all(response) == b"{}"
        assert server.connections == 2
    finally:
        await client.close()


# --- TLS ---------------------------------------------------------------------------------------


def _certificates(tmp: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate it signed for localhost and 127.0.0.1: (ca, cert, key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ccswitch test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = tmp / "ca.pem", tmp / "cert.pem", tmp / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[Raw, Path]]:
    """A TLS provider on loopback answering OK, and the CA that signed its certificate."""
    ca, cert, key = _certificates(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    holder: list[Raw] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await answering(OK)(holder[0])(reader, writer)

    server = Raw(serve)
    server.server = await asyncio.start_server(server._client, "127.0.0.1", 0, ssl=context)
    server.port = server.server.sockets[0].getsockname()[1]
    holder.append(server)
    yield server, ca
    server.server.close()


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
async def test_a_tls_provider_is_verified_against_the_trust_store(
    tls_server: tuple[Raw, Path], host: str
) -> None:
    server, ca = tls_server
    trusting = ProviderClient(ssl_context=ssl.create_default_context(cafile=str(ca)))
    try:
        for _ in range(2):
            response = await post(trusting, f"https://{host}:{server.port}")
            assert await read_all(response) == b"{}"
        assert server.connections == 1  # kept alive over TLS too
    finally:
        await trusting.close()
    sent = server.requests[0]
    assert f"host: {host}:{server.port}\r\n".encode() in sent


async def test_an_untrusted_certificate_is_a_connect_failure(
    tls_server: tuple[Raw, Path], client: ProviderClient
) -> None:
    server, _ = tls_server
    with pytest.raises(ConnectFailed) as failed:
        await post(client, f"https://localhost:{server.port}")
    assert isinstance(failed.value.os_error, ssl.SSLCertVerificationError)
    assert server.requests == []


async def test_ssl_cert_file_names_the_trust_store(
    tls_server: tuple[Raw, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A provider behind a company CA: the user points SSL_CERT_FILE at a bundle holding it, as
    # for any OpenSSL-based client.
    server, ca = tls_server
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    client = ProviderClient()
    try:
        response = await post(client, f"https://localhost:{server.port}")
        assert await read_all(response) == b"{}"
    finally:
        await client.close()


# --- what a review found ----------------------------------------------------------------------


async def test_a_head_answer_has_no_body_whatever_its_length_says(
    raw: Callable[[Serve], Awaitable[Raw]], client: ProviderClient
) -> None:
    answer = b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\ncontent-type: text/html\r\n\r\n"
    server = await serving(raw, answering(answer))
    response = await asyncio.wait_for(
        client.request("HEAD", server.url + "/", [], None, 5.0), LIMIT
    )
    assert response.status == 200
    assert await read_all(response) == b""
    assert server.requests[0].startswith(b"HEAD / HTTP/1.1\r\n")
    assert b"content-length" not in server.requests[0]


async def test_a_post_the_provider_held_then_dropped_is_not_sent_again(
    raw: Callable[[Serve], Awaitable[Raw]], client: ProviderClient
) -> None:
    server = await serving(raw, one_then_drop(hold=0.3))  # it works on it, then drops it
    assert await read_all(await post(client, server.url)) == b"{}"
    with pytest.raises(Disconnected):
        await post(client, server.url)
    assert len(server.requests) == 2  # the second request once, never again


async def test_bytes_after_a_complete_answer_are_not_part_of_it(
    raw: Callable[[Serve], Awaitable[Raw]], client: ProviderClient
) -> None:
    surplus = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 9\r\n\r\nINJECTED!"
    server = await serving(raw, answering(OK + surplus, OK))
    response = await post(client, server.url)
    assert response.status == 200
    assert await read_all(response) == b"{}"
    assert await read_all(await post(client, server.url)) == b"{}"
    assert server.connections == 2  # the talkative connection was not reused


async def test_a_pooled_connection_already_closing_is_not_used(
    raw: Callable[[Serve], Awaitable[Raw]], client: ProviderClient
) -> None:
    server = await serving(raw, answering(OK))
    assert await read_all(await post(client, server.url)) == b"{}"
    (pooled,) = next(iter(client._idle.values()))
    assert pooled.transport is not None
    pooled.transport.close()  # its close is under way; connection_lost has not run yet
    assert await read_all(await post(client, server.url)) == b"{}"
    assert server.connections == 2


def _answer_encoded(coding: bytes, body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-encoding: %s\r\ncontent-length: %d\r\n\r\n%s" % (
        coding,
        len(body),
        body,
    )


async def test_gzip_members_one_after_another_are_all_decoded(
    raw: Callable[[Serve], Awaitable[Raw]], client: ProviderClient
) -> None:
    body = gzip.compress(b"first ") + gzip.compress(b"second")
    server = await serving(raw, answering(_answer_encoded(b"gzip", body)))
    assert await read_all(await post(client, server.url)) == b"first second"


async def test_raw_deflate_is_decoded(
    raw: Callable[[Serve], Awaitable[Raw]], client: ProviderClient
) -> None:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    body = packer.compress(b'{"raw":"deflate"}') + packer.flush()
    server = await serving(raw, answering(_answer_encoded(b"deflate", body)))
    assert await read_all(await post(client, server.url)) == b'{"raw":"deflate"}'


async def test_a_body_cut_inside_its_gzip_stream_is_broken(
    raw: Callable[[Serve], Awaitable[Raw]], client: ProviderClient
) -> None:
    body = gzip.compress(b"x" * 5000 + bytes(range(256)) * 20)[:-20]
    server = await serving(raw, answering(_answer_encoded(b"gzip", body)))
    response = await post(client, server.url)
    with pytest.raises(BadAnswer, match="inside its compressed stream"):
        await read_all(response)


# --- what a hostile or broken provider must not be able to do ----------------------------------


async def test_a_provider_that_never_reads_holds_a_bounded_request_and_is_aborted(
    raw: Callable[[Serve], Awaitable[Raw]], client: ProviderClient
) -> None:
    release = asyncio.Event()

    async def never_read(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.transport.pause_reading()  # the window fills, the client's writes back up
        await release.wait()

    server = await raw(never_read)
    task = asyncio.ensure_future(post(client, server.url, b"x" * (32 * 1024 * 1024)))
    try:
        await _until(lambda: any(c.drained is not None for c in client._all), "writes to back up")
        (conn,) = client._all
        assert conn.transport is not None
        assert conn.transport.get_write_buffer_size() <= WRITE_HIGH + WRITE_STEP
        task.cancel()  # the attempt's first_byte_seconds ran out
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not client._all
        # Aborted: a close would wait for the provider to read what is left, forever.
        await _until(lambda: conn.lost, "the connection to end")
    finally:
        release.set()


async def _until(predicate: Callable[[], object], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + LIMIT
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize(
    "status_line", [b"HTTP/1.1 0 Unknown", b"HTTP/1.1 099 Low", b"HTTP/1.1 999 X"]
)
async def test_a_status_outside_100_to_599_is_not_an_answer(
    raw: Callable[[Serve], Awaitable[Raw]], client: ProviderClient, status_line: bytes
) -> None:
    server = await serving(raw, answering(status_line + b"\r\ncontent-length: 2\r\n\r\n{}"))
    with pytest.raises(BadAnswer, match=r"(?i)status"):  # ours, or llhttp's own refusal
        await post(client, server.url)


async def test_a_raw_deflate_body_cut_short_is_broken(
    raw: Callable[[Serve], Awaitable[Raw]], client: ProviderClient
) -> None:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    body = packer.compress(b'{"cut":"' + bytes(range(256)) * 40 + b'"}') + packer.flush()
    server = await serving(raw, answering(_answer_encoded(b"deflate", body[: len(body) // 2])))
    response = await post(client, server.url)
    with pytest.raises(BadAnswer, match="inside its compressed stream"):
        await read_all(response)


def _chunked(coding: bytes, body: bytes) -> bytes:
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: %s\r\n\r\n"
    return head % coding + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


async def test_a_gzip_transfer_coding_is_undone(
    raw: Callable[[Serve], Awaitable[Raw]], client: ProviderClient
) -> None:
    server = await serving(raw, answering(_chunked(b"gzip, chunked", gzip.compress(b'{"a":1}'))))
    response = await post(client, server.url)
    assert "transfer-encoding" in response.headers  # the exchange drops it; the body is plain
    assert await read_all(response) == b'{"a":1}'


async def test_a_transfer_coding_it_cannot_undo_is_not_an_answer(
    raw: Callable[[Serve], Awaitable[Raw]], client: ProviderClient
) -> None:
    server = await serving(raw, answering(_chunked(b"br, chunked", b"\x0b\x01\x80{}\x03")))
    with pytest.raises(BadAnswer, match="transfer coding"):
        await post(client, server.url)

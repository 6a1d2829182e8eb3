"""What a broken or hostile provider must not be able to do, each reproduced with a raw-socket
provider on loopback in front of a well-behaved backup: the relay and Upstream for real."""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from e2e.fakes import json_body

from ccswitch_addon.core.router import Router
from ccswitch_addon.upstream.admission import Admission

from .conftest import MakeHarness
from .providers import wait_until
from .test_exchange import CONFIG, served_by

Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK_JSON = json.dumps(json_body("anthropic", "m", text="hi", input_tokens=1, output_tokens=1))


class RawProvider:
    """A loopback provider that runs ``serve`` on each connection; counts requests read."""

    def __init__(self, serve: Serve) -> None:
        self.serve = serve
        self.requests: list[bytes] = []
        self.connections = 0
        self.closed = asyncio.Event()  # a connection of it ended
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        request = head + await reader.readexactly(length)
        self.requests.append(request)
        return request

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self.closed.set()


@pytest.fixture
async def rawp() -> AsyncIterator[Callable[[Serve], Awaitable[RawProvider]]]:
    made: list[RawProvider] = []

    async def make(serve: Serve) -> RawProvider:
        provider = RawProvider(serve)
        provider.server = await asyncio.start_server(provider._client, "127.0.0.1", 0)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        assert provider.server is not None
        provider.server.close()


MakeRaw = Callable[[Serve], Awaitable[RawProvider]]


def answers(data: bytes, then_close: bool = True) -> Callable[[RawProvider], Serve]:
    def bind(provider: RawProvider) -> Serve:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                await provider.read_request(reader)
                writer.write(data)
                await writer.drain()
                if then_close:
                    return

        return serve

    return bind


async def provider(rawp: MakeRaw, bind: Callable[[RawProvider], Serve]) -> RawProvider:
    holder: list[RawProvider] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await bind(holder[0])(reader, writer)

    made = await rawp(serve)
    holder.append(made)
    return made


def json_answer(body: bytes, headers: bytes = b"", status: bytes = b"200 OK") -> bytes:
    return b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s" % (
        status,
        len(body),
        headers,
        body,
    )


ONLY_PRIMARY = CONFIG.replace("queue: [primary, backup]", "queue: [primary]", 1)


# --- 1. a provider that never reads the request -------------------------------------------------


async def test_a_provider_that_never_reads_is_left_at_first_byte_seconds_and_aborted(
    harness: MakeHarness, rawp: MakeRaw
) -> None:
    release = asyncio.Event()

    async def never_read(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.transport.pause_reading()
        await release.wait()

    primary = await rawp(never_read)
    backup = await provider(rawp, answers(json_answer(OK_JSON.encode())))
    h = await harness(CONFIG.replace("<primary>", primary.url).replace("<backup>", backup.url))
    try:
        answer = await h.send(body={"model": "m", "pad": "x" * (8 * 1024 * 1024)})
        assert answer.status == 200
        assert served_by(answer.headers) == ("backup", "2")
        # Nothing of the attempt is kept: the connection was aborted, not left to drain.
        await wait_until(lambda: len(h.upstream.client._all) <= 1, what="the abort")
        assert all(c.key[2] != int(primary.url.rsplit(":", 1)[1]) for c in h.upstream.client._all)
    finally:
        release.set()


# --- 2. a compression bomb, and an answer that never ends -------------------------------------


async def test_a_compression_bomb_is_cut_at_the_held_limit_and_fails_over(
    harness: MakeHarness, rawp: MakeRaw
) -> None:
    bomb = gzip.compress(b'{"type":"message","content":"' + b" " * (200 * 1024 * 1024), 9)
    assert len(bomb) < 400 * 1024
    primary = await provider(rawp, answers(json_answer(bomb, b"content-encoding: gzip\r\n")))
    h = await harness(CONFIG.replace("<primary>", primary.url))
    answer = await h.send(body={"model": "m"})
    assert answer.status == 200
    assert served_by(answer.headers) == ("backup", "2")
    first = h.finished[0].attempts[0]
    assert first.failed
    assert "MB decoded" in (first.error or "")


async def test_request_seconds_holds_for_a_whole_answer_that_drips(
    harness: MakeHarness, rawp: MakeRaw
) -> None:
    release = asyncio.Event()

    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await primary.read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 99\r\n\r\n{"
        )
        await release.wait()

    primary = await rawp(drip)
    config = CONFIG.replace("open_seconds: 60", "open_seconds: 60\n      request_seconds: 1", 1)
    h = await harness(config.replace("<primary>", primary.url))
    try:
        answer = await h.send(body={"model": "m"})
    finally:
        release.set()
    assert served_by(answer.headers) == ("backup", "2")
    assert "not complete in 1s" in (h.finished[0].attempts[0].error or "")


# --- 3. a redirect --------------------------------------------------------------------------


@pytest.mark.parametrize("code", [301, 302, 307, 308])
async def test_a_redirect_is_a_failure_never_followed_nor_forwarded(
    harness: MakeHarness, rawp: MakeRaw, code: int
) -> None:
    redirect = (
        b"HTTP/1.1 %d Moved\r\nlocation: http://127.0.0.1:9/steal\r\ncontent-length: 0\r\n\r\n"
    )
    primary = await provider(rawp, answers(redirect % code))
    h = await harness(CONFIG.replace("<primary>", primary.url))
    answer = await h.send(body={"model": "m"})
    assert answer.status == 200
    assert served_by(answer.headers) == ("backup", "2")
    assert h.breaker("primary").consecutive_failures == 1
    # With nobody else to ask, the tool gets a 502 in its API's shape, no Location.
    h = await harness(ONLY_PRIMARY.replace("<primary>", primary.url))
    answer = await h.send(body={"model": "m"})
    assert answer.status == 502
    assert "location" not in answer.headers
    assert json.loads(answer.body)["error"]["type"] == "api_error"


# --- 4. a request that cannot be written ------------------------------------------------------


@pytest.mark.parametrize("value", ["a\r\n folded", "bare\rcr", "nul\0"])
async def test_a_request_that_cannot_be_written_is_a_400_and_no_breaker_moves(
    harness: MakeHarness, rawp: MakeRaw, value: str
) -> None:
    primary = await provider(rawp, answers(json_answer(OK_JSON.encode())))
    h = await harness(CONFIG.replace("<primary>", primary.url))
    for _ in range(3):
        answer = await h.send(body={"model": "m"}, headers={"x-folded": value})
        assert answer.status == 400
        error = json.loads(answer.body)
        assert error["error"]["type"] == "invalid_request_error"
    assert primary.requests == []
    assert h.providers["backup"].seen == []
    for pid in ("primary", "backup"):
        assert h.breaker(pid).label() == "closed"
        assert h.breaker(pid).consecutive_failures == 0
    assert h.finished[0].served is None
    answer = await h.send(body={"model": "m"})  # the next request is served as ever
    assert served_by(answer.headers) == ("primary", "1")


# --- 5. the stale-connection retry ------------------------------------------------------------


async def test_a_post_read_in_full_then_dropped_fails_over_and_is_not_sent_twice(
    harness: MakeHarness, rawp: MakeRaw
) -> None:
    async def one_then_drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await primary.read_request(reader)
        writer.write(json_answer(OK_JSON.encode()))
        await writer.drain()
        await primary.read_request(reader)
        await asyncio.sleep(0.3)  # the provider's own pace before it drops the request

    primary = await rawp(one_then_drop)
    h = await harness(CONFIG.replace("<primary>", primary.url))
    assert served_by((await h.send(body={"model": "m"})).headers) == ("primary", "1")
    answer = await h.send(body={"model": "m"})
    assert served_by(answer.headers) == ("backup", "2")
    assert len(primary.requests) == 2


# --- 6. a cancellation landing as the admission wait completes --------------------------------


async def test_a_cancel_landing_as_the_admission_wait_completes_is_not_lost() -> None:
    from ccswitch_addon.core.config import parse_config

    config = parse_config(
        ONLY_PRIMARY.replace("<primary>", "http://127.0.0.1:9").replace(
            "<backup>", "http://127.0.0.1:9"
        ),
        "providers.yaml",
        env={"K": "k"},
    )
    router = Router(config)
    admission = Admission(router)
    out = [await admission.acquire("claude", "primary") for _ in range(3)]  # the most unproven
    assert router.held("claude", "primary")
    first = out[0]
    waiter = asyncio.ensure_future(admission.acquire("claude", "primary"))
    await wait_until(lambda: ("claude", "primary") in admission._answered, what="the wait")
    # The first answer proves the provider and wakes the waiter; in the same turn of the loop
    # the waiter's client leaves. The wake must not swallow the cancellation.
    router.record_result("claude", "primary", _ok(), first)
    admission.wake("claude", "primary")
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert router.breaker("claude", "primary").label() == "closed"


def _ok():  # type: ignore[no-untyped-def]
    from ccswitch_addon.core.outcome import classify_status

    return classify_status(200)


# --- 7. broken answers --------------------------------------------------------------------------


def _cut_deflate() -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    body = packer.compress(OK_JSON.encode() + bytes(range(256)) * 64) + packer.flush()
    body = body[: len(body) // 2]
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: deflate\r\n"
    return head + b"content-length: %d\r\n\r\n%s" % (len(body), body)


BROKEN = {
    "empty": json_answer(b""),
    "empty object": json_answer(b"{}"),
    "cut mid-object": b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n"
    + OK_JSON.encode()[:20],
    "raw deflate cut short": _cut_deflate(),
    "status 0": b"HTTP/1.1 0 Unknown\r\ncontent-length: 2\r\n\r\n{}",
}


@pytest.mark.parametrize("kind", list(BROKEN))
async def test_a_broken_answer_fails_over_and_never_reaches_the_tool(
    harness: MakeHarness, rawp: MakeRaw, kind: str
) -> None:
    primary = await provider(rawp, answers(BROKEN[kind]))
    h = await harness(CONFIG.replace("<primary>", primary.url))
    answer = await h.send(body={"model": "m"})
    assert answer.status == 200
    assert served_by(answer.headers) == ("backup", "2")
    assert h.finished[0].attempts[0].failed
    h = await harness(ONLY_PRIMARY.replace("<primary>", primary.url))
    answer = await h.send(body={"model": "m"})
    assert answer.status == 502
    assert json.loads(answer.body)["error"]["message"].startswith("ccswitch: no provider")


# --- 9. headers of the provider's connection, and a transfer coding -----------------------------


async def test_headers_named_in_connection_are_not_forwarded(
    harness: MakeHarness, rawp: MakeRaw
) -> None:
    extra = b"connection: keep-alive, x-hop, X-Other\r\nx-hop: 1\r\nx-other: 2\r\nx-kept: 3\r\n"
    primary = await provider(rawp, answers(json_answer(OK_JSON.encode(), extra)))
    h = await harness(CONFIG.replace("<primary>", primary.url))
    answer = await h.send(body={"model": "m"})
    assert served_by(answer.headers) == ("primary", "1")
    assert answer.headers["x-kept"] == "3"
    assert "x-hop" not in answer.headers
    assert "x-other" not in answer.headers


async def test_a_gzip_transfer_coding_reaches_the_tool_decoded(
    harness: MakeHarness, rawp: MakeRaw
) -> None:
    packed = gzip.compress(OK_JSON.encode())
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
    chunked = head + b"transfer-encoding: gzip, chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (
        len(packed),
        packed,
    )
    primary = await provider(rawp, answers(chunked))
    h = await harness(CONFIG.replace("<primary>", primary.url))
    answer = await h.send(body={"model": "m"})
    assert served_by(answer.headers) == ("primary", "1")
    assert json.loads(answer.body)["content"][0]["text"] == "hi"

"""The relay's own HTTP/1.1 server, spoken to over raw sockets: what mitmproxy sends it, kept
alive across requests, and what it must refuse (anything else that reaches a loopback port)."""

from __future__ import annotations

import asyncio
import json

import pytest

from ccswitch_addon.upstream.answer import HEAD_HEADER, HEAD_LIMIT, fields, head
from ccswitch_addon.upstream.relay import JOB_HEADER, TOKEN_HEADER

from .conftest import MakeHarness
from .providers import SSE, Harness, hang, ok_json, status, stream, wait_until, whole
from .test_exchange import CONFIG

LIMIT = 10.0  # seconds any single read may take


async def connect(h: Harness) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", h.relay.port)


def pointed(h: Harness, job: str, *extra: str) -> bytes:
    """The request mitmproxy sends for a flow the request hook pointed at the relay."""
    lines = [
        "POST /v1/messages HTTP/1.1",
        f"host: 127.0.0.1:{h.relay.port}",
        f"{TOKEN_HEADER}: {h.relay.token}",
        f"{JOB_HEADER}: {job}",
        "content-length: 0",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 answer: by content-length, chunked, or to the end of the connection."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), LIMIT)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), LIMIT)
    elif headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            size = int(await asyncio.wait_for(reader.readuntil(b"\r\n"), LIMIT), 16)
            chunk = await asyncio.wait_for(reader.readexactly(size + 2), LIMIT)
            if size == 0:
                break
            body += chunk[:-2]
    else:
        body = await asyncio.wait_for(reader.read(), LIMIT)
    return status, headers, body


async def closed(reader: asyncio.StreamReader) -> bool:
    return await asyncio.wait_for(reader.read(), LIMIT) == b""


async def test_one_connection_serves_requests_one_after_another(harness: MakeHarness) -> None:
    h = await harness(CONFIG, primary=ok_json())
    reader, writer = await connect(h)
    try:
        for _ in range(3):
            job, _ = h.exchange(body={"model": "m"})
            writer.write(pointed(h, job))
            status, headers, body = await read_answer(reader)
            assert status == 200
            assert headers["x-ccswitch-provider"] == "primary"
            assert json.loads(body)["type"] == "message"
        assert len(h.providers["primary"].seen) == 3
    finally:
        writer.close()


async def test_a_stream_is_chunked_and_the_connection_serves_on(harness: MakeHarness) -> None:
    h = await harness(CONFIG, primary=stream(whole("anthropic")))
    reader, writer = await connect(h)
    try:
        job, _ = h.exchange()
        job2, _ = h.exchange(body={"model": "m"})
        writer.write(pointed(h, job) + pointed(h, job2))  # the second waits for the first
        status, headers, body = await read_answer(reader)
        assert status == 200
        assert headers["content-type"].startswith(SSE["content-type"])
        events = [e.split(b"\n", 1)[0] for e in body.split(b"\n\n") if e]
        sent = [e.split(b"\n", 1)[0] for e in whole("anthropic")]
        assert events == sent  # every event, in order, through the chunked framing
        status, _, _ = await read_answer(reader)
        assert status == 200
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"POST / HTTP/2.0\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nno colon here\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\n bad: folded\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\ncontent-length: 5\r\n\r\nhello", 400),
        (b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nx: " + b"a" * (HEAD_LIMIT + 10), 431),
    ],
)
async def test_anything_else_is_refused_and_the_connection_closed(
    harness: MakeHarness, request_bytes: bytes, status: int
) -> None:
    h = await harness(CONFIG, primary=ok_json())
    reader, writer = await connect(h)
    try:
        writer.write(request_bytes)
        got, _, body = await read_answer(reader)
        assert got == status
        assert body.startswith(b"ccswitch relay: ")
        assert await closed(reader)
    finally:
        writer.close()
    assert h.providers["primary"].seen == []
    # The relay still serves.
    job, _ = h.exchange(body={"model": "m"})
    reader, writer = await connect(h)
    try:
        writer.write(pointed(h, job))
        assert (await read_answer(reader))[0] == 200
    finally:
        writer.close()


async def test_http_1_0_and_connection_close_end_the_connection(harness: MakeHarness) -> None:
    h = await harness(CONFIG, primary=ok_json())
    for request in (b"HTTP/1.0", b"close"):
        job, _ = h.exchange(body={"model": "m"})
        raw = pointed(h, job, "connection: close")
        if request == b"HTTP/1.0":
            raw = pointed(h, job).replace(b"HTTP/1.1", b"HTTP/1.0", 1)
        reader, writer = await connect(h)
        try:
            writer.write(raw)
            assert (await read_answer(reader))[0] == 200
            assert await closed(reader)
        finally:
            writer.close()


@pytest.mark.parametrize("later", [False, True], ids=["head", "head-later"])
async def test_a_client_that_hangs_up_cancels_the_provider_request(
    harness: MakeHarness, later: bool
) -> None:
    """Asked for its head later, whoever waits for that head is told None: none will come."""
    h = await harness(
        CONFIG.replace("first_byte_seconds: 0.5", "first_byte_seconds: 30"), primary=hang()
    )
    reader, writer = await connect(h)
    job, exchange = h.exchange(body={"model": "m"})
    writer.write(pointed(h, job, *([f"{HEAD_HEADER}: later"] if later else [])))
    await wait_until(lambda: h.providers["primary"].seen, what="the request at the provider")
    if later:
        stand_in = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), LIMIT)
        assert stand_in.startswith(b"HTTP/1.1 200 OK\r\n")
        assert exchange.later_head is not None
        assert not exchange.later_head.done()  # the provider has not answered yet
    writer.close()
    await wait_until(lambda: exchange.finished is not None, what="the exchange finished")
    assert exchange.finished is not None
    assert exchange.finished.served is None
    assert [a.error for a in exchange.finished.attempts] == ["client_gone"]
    assert h.breaker("primary").window_counts() == (0, 0)  # not the provider's failure
    if later:
        assert exchange.later_head is not None
        assert exchange.later_head.done()
        assert exchange.later_head.result() is None


# --- a head told in-process ----------------------------------------------------------------

LATER = f"{HEAD_HEADER}: later"


@pytest.mark.parametrize("streamed", [True, False])
async def test_a_head_asked_for_later_comes_at_once_and_the_real_one_is_told(
    harness: MakeHarness, streamed: bool
) -> None:
    """mitmproxy reads the stand-in head while the exchange waits for its commit point; the
    exchange tells the real one (status, headers, streamed or whole) through the future."""
    if streamed:
        h = await harness(CONFIG, primary=stream(whole("anthropic")))
    else:
        h = await harness(CONFIG, primary=status(529), backup=status(529))
    reader, writer = await connect(h)
    try:
        job, exchange = h.exchange()
        writer.write(pointed(h, job, LATER))
        got, headers, body = await read_answer(reader)
        assert (got, headers[HEAD_HEADER]) == (200, "later")  # the stand-in, chunked
        assert exchange.later_head is not None
        assert exchange.later_head.done()
        verdict = exchange.later_head.result()
        assert verdict is not None
        told, told_fields, told_streamed = verdict
        assert told_streamed is streamed
        named = {k.decode(): v.decode() for k, v in told_fields}
        if streamed:
            assert named["x-ccswitch-provider"] == "primary"
            assert told == 200
            assert named["transfer-encoding"] == "chunked"
            assert b"message_stop" in body
        else:
            assert told == 529  # every provider failed: the tool gets the real status
            assert named["content-length"] == str(len(body))
        # The connection serves on, and a request that does not ask gets its head as before.
        job2, plain = h.exchange(body={"model": "m"})
        writer.write(pointed(h, job2))
        assert HEAD_HEADER not in (await read_answer(reader))[1]
        assert plain.later_head is None
    finally:
        writer.close()


def test_told_header_fields_cannot_split_a_line_either() -> None:
    assert fields([("x-a", "one\r\ntwo"), ("x-é", "café ✓")]) == [
        (b"x-a", b"onetwo"),
        (b"x-\xc3\xa9", "café ✓".encode()),
    ]


def test_a_header_value_cannot_split_the_answer() -> None:
    made = head(200, [("x-a", "one\r\nx-evil: 1"), ("x\nb", "two\0")], b"\r\n")
    assert made == b"HTTP/1.1 200 OK\r\nx-a: onex-evil: 1\r\nxb: two\r\n\r\n"


# --- begun before the relay request (early.py) -----------------------------------------------


async def begin(h: Harness, job: str) -> None:
    """What the addon's hook does: begin the job, and await what that returns."""
    going = h.relay.begin(job)
    if going is not None:
        await going


@pytest.mark.parametrize("eager", [False, True])
async def test_a_begun_exchange_has_set_off_once_the_hook_goes_on(
    harness: MakeHarness, eager: bool
) -> None:
    """Before mitmproxy goes on with the flow (opening the relay connection, writing the
    copy), the exchange has chosen its provider and is writing to it: at once where tasks
    start eagerly (mitmproxy 12 sets that on 3.12+), after one turn where they do not."""
    loop = asyncio.get_running_loop()
    factory = getattr(asyncio, "eager_task_factory", None)
    if eager and factory is None:
        pytest.skip("eager tasks are Python 3.12+ (3.11 runs the other case)")
    h = await harness(CONFIG, primary=stream(whole("anthropic")))
    job, exchange = h.exchange()
    loop.set_task_factory(factory if eager else None)
    try:
        going = h.relay.begin(job)
        assert (going is None) is eager
        if going is not None:
            assert exchange.order == ()  # not yet: the task starts at the next turn
            await going
    finally:
        loop.set_task_factory(None)
    assert exchange.order[0] == "primary"  # the providers chosen, the first attempt begun


async def test_a_begun_stream_is_at_the_provider_before_its_relay_request(
    harness: MakeHarness,
) -> None:
    h = await harness(CONFIG, primary=stream(whole("anthropic")))
    job, exchange = h.exchange()
    await begin(h, job)
    await wait_until(lambda: h.providers["primary"].seen, what="the request at the provider")
    await wait_until(lambda: exchange.watch is not None, what="the stream committed")
    assert exchange.finished is None  # its first events wait for the relay's answer
    reader, writer = await connect(h)
    try:
        writer.write(pointed(h, job))
        status, headers, body = await read_answer(reader)
        assert status == 200
        assert headers["x-ccswitch-provider"] == "primary"
        events = [e.split(b"\n", 1)[0] for e in body.split(b"\n\n") if e]
        assert events == [e.split(b"\n", 1)[0] for e in whole("anthropic")]
    finally:
        writer.close()
    assert exchange.finished is not None
    assert exchange.finished.served == "primary"
    assert len(h.providers["primary"].seen) == 1  # begun once, not again on arrival


async def test_a_begun_exchange_that_ends_whole_before_its_relay_request_is_kept(
    harness: MakeHarness,
) -> None:
    h = await harness(CONFIG, primary=status(400))
    job, exchange = h.exchange()
    await begin(h, job)
    await wait_until(lambda: exchange.finished is not None, what="the exchange finished")
    reader, writer = await connect(h)
    try:
        writer.write(pointed(h, job))
        answer_status, _, body = await read_answer(reader)
        assert answer_status == 400  # the tool's own mistake, as the provider said it
        assert b"error" in body
    finally:
        writer.close()


async def test_a_begun_exchange_whose_request_never_comes_is_cancelled_and_blames_no_one(
    harness: MakeHarness,
) -> None:
    h = await harness(
        CONFIG.replace("first_byte_seconds: 0.5", "first_byte_seconds: 30"), primary=hang()
    )
    job, exchange = h.exchange(body={"model": "m"})
    await begin(h, job)
    await wait_until(lambda: h.providers["primary"].seen, what="the request at the provider")
    h.relay.discard(job)  # the tool hung up before mitmproxy's copy reached the relay
    await wait_until(lambda: exchange.finished is not None, what="the exchange finished")
    assert exchange.finished is not None
    assert [a.error for a in exchange.finished.attempts] == ["client_gone"]
    assert h.breaker("primary").window_counts() == (0, 0)
    assert job not in h.relay.jobs


async def test_a_client_that_leaves_a_begun_stream_cancels_it(harness: MakeHarness) -> None:
    h = await harness(
        CONFIG.replace("first_byte_seconds: 0.5", "first_byte_seconds: 30"), primary=hang()
    )
    job, exchange = h.exchange(body={"model": "m"})
    await begin(h, job)
    _, writer = await connect(h)
    writer.write(pointed(h, job))
    await wait_until(lambda: job not in h.relay.jobs, what="the relay request taken")
    writer.close()
    await wait_until(lambda: exchange.finished is not None, what="the exchange finished")
    assert exchange.finished is not None
    assert [a.error for a in exchange.finished.attempts] == ["client_gone"]
    assert h.breaker("primary").window_counts() == (0, 0)

"""The relay and Upstream driven for real: fake providers and the relay on loopback, no mitmproxy.

Each test registers an Exchange as the request hook does and sends the relay the request
mitmproxy would send; the fakes answer like the real APIs (JSON, SSE) or fail.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from aiohttp import web
from e2e.fakes import closed_port, error_body, parse_sse

from ccswitch_addon.core.breaker import State
from ccswitch_addon.core.outcome import ErrorKind, classify_error, classify_status
from ccswitch_addon.upstream.relay import TOKEN_HEADER

from .conftest import SECRET, MakeHarness
from .providers import (
    SSE,
    Harness,
    Provider,
    held,
    ok_json,
    script,
    status,
    stream,
    wait_until,
    whole,
)
from .providers import hang as hanging

CONFIG = """\
apps:
  claude:
    queue: [primary, backup]
    breaker:
      failure_threshold: 3
      success_threshold: 1
      open_seconds: 60
      first_byte_seconds: 0.5
      stream_idle_seconds: 0.4
    providers:
      primary: {base_url: "<primary>", api_key: "${K}"}
      backup: {base_url: "<backup>", api_key: "${K}"}
  codex:
    queue: [primary, backup]
    breaker: {failure_threshold: 3, first_byte_seconds: 0.5, stream_idle_seconds: 0.4}
    providers:
      primary: {base_url: "<primary>", api_key: "${K}"}
      backup: {base_url: "<backup>", api_key: "${K}"}
  gemini:
    queue: [primary, backup]
    breaker: {failure_threshold: 3, first_byte_seconds: 0.5, stream_idle_seconds: 0.4}
    providers:
      primary: {base_url: "<primary>", api_key: "${K}"}
      backup: {base_url: "<backup>", api_key: "${K}"}
"""
# open_seconds 0: a tripped breaker is half-open at once, one probe at a time.
HALF_OPEN = CONFIG.replace("open_seconds: 60", "open_seconds: 0")

# (app, path, the fake's stream format)
STREAMS = {
    "anthropic": ("claude", "/v1/messages"),
    "openai_chat": ("codex", "/v1/chat/completions"),
    "openai_responses": ("codex", "/v1/responses"),
    "gemini": ("gemini", "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"),
}


def trip(h: Harness, pid: str) -> None:
    """Open a breaker the way a dead host does: one connection failure."""
    breaker = h.breaker(pid)
    permit = breaker.acquire()
    assert permit is not None
    breaker.release(permit, classify_error(ErrorKind.CONNECT, "refused"))
    assert breaker.consecutive_failures == 0  # counted as a trip, not a streak
    assert breaker.label() in ("open", "half_open")


def prove(h: Harness, pid: str) -> None:
    """One success recorded: the provider takes any number of requests at once."""
    breaker = h.breaker(pid)
    permit = breaker.acquire()
    assert permit is not None
    breaker.release(permit, classify_status(200))


def served_by(answer_headers: dict[str, str]) -> tuple[str, str]:
    return answer_headers["x-ccswitch-provider"], answer_headers["x-ccswitch-attempts"]


# --- failover before the client sees anything -------------------------------------------------


async def test_an_error_status_fails_over_to_the_backup(harness: MakeHarness) -> None:
    h = await harness(CONFIG, primary=status(529), backup=ok_json(text="from backup"))
    answer = await h.send(body={"model": "m"})
    assert answer.status == 200
    assert json.loads(answer.body)["content"][0]["text"] == "from backup"
    assert served_by(answer.headers) == ("backup", "2")
    assert h.breaker("primary").consecutive_failures == 1
    [finished] = h.finished
    assert finished.served == "backup"
    assert [(a.provider, a.status, a.failed) for a in finished.attempts] == [
        ("primary", 529, True),
        ("backup", 200, False),
    ]
    records = answer.exchange.records
    assert [(r.provider, r.status, r.failed) for r in records] == [
        ("primary", 529, True),
        ("backup", 200, False),
    ]
    assert json.loads(records[0].response_body) == error_body("anthropic", 529)


async def test_every_attempt_failing_gives_the_last_error(harness: MakeHarness) -> None:
    h = await harness(CONFIG, primary=status(529), backup=status(503))
    answer = await h.send(body={"model": "m"})
    assert answer.status == 503
    assert json.loads(answer.body) == error_body("anthropic", 503)
    assert served_by(answer.headers) == ("backup", "2")
    assert h.finished[0].served is None


async def test_a_refused_connection_fails_over_within_the_request(harness: MakeHarness) -> None:
    config = CONFIG.replace("<primary>", f"http://127.0.0.1:{closed_port()}")
    h = await harness(config, backup=ok_json())
    answer = await h.send(body={"model": "m"})
    assert answer.status == 200
    assert served_by(answer.headers) == ("backup", "2")
    assert h.breaker("primary").label() == "open"  # unreachable: open at once
    first = h.finished[0].attempts[0]
    assert first.provider == "primary"
    assert first.status is None
    assert first.error is not None
    assert first.error.startswith("connect")


async def test_no_provider_answering_at_all_is_a_502_in_the_apis_own_shape(
    harness: MakeHarness,
) -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    h = await harness(CONFIG.replace("<primary>", dead).replace("<backup>", dead))
    answer = await h.send(body={"model": "m"})
    assert answer.status == 502
    error = json.loads(answer.body)
    assert error["type"] == "error"
    assert error["error"]["type"] == "api_error"
    assert error["error"]["message"].startswith("ccswitch: no provider answered (primary: connect")
    assert served_by(answer.headers) == ("backup", "2")


async def test_no_first_byte_in_time_fails_over_and_abandons_the_attempt(
    harness: MakeHarness,
) -> None:
    h = await harness(CONFIG, primary=hanging(), backup=ok_json(text="in time"))
    answer = await h.send(body={"model": "m"})
    assert answer.status == 200
    assert json.loads(answer.body)["content"][0]["text"] == "in time"
    assert served_by(answer.headers) == ("backup", "2")
    first = h.finished[0].attempts[0]
    assert first.error == "timeout: no first byte in 0.5s"
    assert first.failed
    assert h.breaker("primary").consecutive_failures == 1
    # Its connection was closed, so the provider stops working on it.
    await wait_until(lambda: h.providers["primary"].cancelled == 1, what="primary cancelled")


async def test_headers_at_once_then_silence_fails_over_at_first_byte_seconds(
    harness: MakeHarness,
) -> None:
    # A relay that flushes its headers and message_start at once, then stalls: the limit to
    # the first token is first_byte_seconds (0.5 s here), not stream_idle_seconds (180 s).
    stalled = stream(script("anthropic").prelude, then="hang")
    config = CONFIG.replace("stream_idle_seconds: 0.4", "stream_idle_seconds: 30", 1)
    h = await harness(config, primary=stalled, backup=stream(whole("anthropic")))
    answer = await h.send(body={"model": "m", "stream": True})
    assert answer.status == 200
    assert served_by(answer.headers) == ("backup", "2")
    first = h.finished[0].attempts[0]
    assert first.error == "broken: no first token in 0.5s"
    assert first.failed
    await wait_until(lambda: h.providers["primary"].cancelled == 1, what="primary cancelled")


# A Gemini stream's last chunk carries a text part, which is content even when empty.
PRE_COMMIT_FAULTS = [
    (api, fault)
    for fault in ("error event", "early end", "dropped", "empty completion")
    for api in sorted(STREAMS)
    if (api, fault) != ("gemini", "empty completion")
]


@pytest.mark.parametrize(("api", "fault"), PRE_COMMIT_FAULTS)
async def test_a_stream_failing_before_its_first_content_fails_over(
    harness: MakeHarness, api: str, fault: str
) -> None:
    bad = script(api, deltas=0, output_tokens=0)
    if api == "openai_responses":  # a completed response with nothing in its output
        bad.finale = [
            b"event: response.completed\ndata: "
            + json.dumps(
                {
                    "type": "response.completed",
                    "response": {
                        "status": "completed",
                        "output": [],
                        "usage": {"input_tokens": 5, "output_tokens": 0},
                    },
                }
            ).encode()
            + b"\n\n"
        ]
    events = {
        "error event": ([*bad.prelude, bad.error], "hang"),  # judged at once, not at the end
        "early end": (bad.prelude, "end"),
        "dropped": (bad.prelude, "drop"),
        "empty completion": ([*bad.prelude, *bad.finale], "end"),
    }[fault]
    good = whole(api, deltas=4)
    app, path = STREAMS[api]
    h = await harness(CONFIG, primary=stream(*events), backup=stream(good))
    answer = await h.send(app, path=path)
    assert answer.status == 200
    assert answer.body == b"".join(good)  # exactly the backup's stream, nothing of the primary's
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert served_by(answer.headers) == ("backup", "2")
    first = h.finished[0].attempts[0]
    assert first.failed
    assert first.error is not None
    assert first.error.startswith("broken")
    assert "silent" not in first.error
    assert h.router.breaker(app, "primary").consecutive_failures == 1
    if events[1] == "hang":
        await wait_until(lambda: h.providers["primary"].cancelled == 1, what="primary let go")


@pytest.mark.parametrize("api", sorted(STREAMS))
@pytest.mark.parametrize("fault", ["error event", "early end", "dropped"])
async def test_a_stream_failing_after_its_commit_point_is_delivered_and_counted(
    harness: MakeHarness, api: str, fault: str
) -> None:
    s = script(api, deltas=3)
    started = [*s.prelude, s.deltas[0]]
    then, fault_events = {
        "error event": ("end", [s.error]),
        "early end": ("end", []),
        "dropped": ("drop", []),
    }[fault]
    app, path = STREAMS[api]
    primary = stream(started, gated=fault_events, then=then)
    h = await harness(CONFIG, primary=primary, backup=stream(whole(api)))
    job, _ = h.exchange(app, path=path)
    async with h.open(job) as response:
        got = await read_until_content(response, len(b"".join(started)))
        h.providers["primary"].gate.set()  # the fault comes once the client has content
        got += await response.content.read()
    assert got.startswith(b"".join([*started, *fault_events]))  # as it came
    if fault == "error event":
        assert got == b"".join([*started, *fault_events])
    else:  # cut before its end marker: the API's error event ends it (ERROR_EVENTS)
        [told] = parse_sse(got[len(b"".join(started)) :])
        assert told.event == ERROR_EVENTS[api][0]
        assert "primary's stream ended before its end" in told.data
    assert served_by({k.lower(): v for k, v in response.headers.items()}) == ("primary", "1")
    assert h.providers["backup"].seen == []
    await wait_until(lambda: h.finished, what="the request recorded")
    assert h.router.breaker(app, "primary").consecutive_failures == 1
    [attempt] = h.finished[0].attempts
    assert attempt.failed
    assert attempt.error is not None
    assert attempt.error.startswith("stream")


async def read_until_content(response: Any, size: int) -> bytes:
    """Read the relay's answer until ``size`` bytes came: what the provider sent so far."""
    got = b""
    while len(got) < size:
        chunk = await asyncio.wait_for(response.content.readany(), 10)
        assert chunk, got
        got += chunk
    return got


# The API's own error event, as the tool reads it: (event name, error kind).
ERROR_EVENTS = {
    "anthropic": ("error", "overloaded_error"),
    "openai_chat": (None, "server_error"),
    "openai_responses": ("response.failed", "server_error"),
    "gemini": (None, "UNAVAILABLE"),
}


@pytest.mark.parametrize(("api", "expected"), sorted(ERROR_EVENTS.items()))
async def test_a_silent_stream_ends_with_the_apis_own_error_event(
    harness: MakeHarness, api: str, expected: tuple[str | None, str]
) -> None:
    s = script(api, deltas=3)
    started = [*s.prelude, *s.deltas[:2]]
    app, path = STREAMS[api]
    h = await harness(CONFIG, primary=stream(started, then="hang"), backup=stream(whole(api)))
    answer = await h.send(app, path=path)
    assert answer.status == 200
    assert answer.body.startswith(b"".join(started))
    last = parse_sse(answer.body[len(b"".join(started)) :])
    assert len(last) == 1
    event, data = last[0].event, last[0].json()
    assert event == expected[0]
    if api == "anthropic" or api == "openai_chat":
        kind = data["error"]["type"]
    elif api == "openai_responses":
        kind = data["response"]["error"]["code"]
    else:
        kind = data["error"]["status"]
    assert kind == expected[1]
    assert "silent" in json.dumps(data)
    assert h.providers["backup"].seen == []
    assert h.router.breaker(app, "primary").consecutive_failures == 1
    await wait_until(lambda: h.providers["primary"].cancelled == 1, what="primary abandoned")


async def test_a_stream_is_delivered_as_it_arrives(harness: MakeHarness) -> None:
    """Its first events reach the client while the provider still holds back the rest."""
    s = script("anthropic", deltas=3)
    head = [*s.prelude, *s.deltas]
    h = await harness(CONFIG, primary=stream(head, gated=s.finale))
    job, _ = h.exchange()
    async with h.open(job) as response:
        assert response.status == 200
        got = b""
        while b"content_block_delta" not in got:
            got += await asyncio.wait_for(response.content.readany(), 10)
        assert b"message_stop" not in got
        h.providers["primary"].gate.set()
        got += await response.content.read()
    assert got == b"".join([*head, *s.finale])
    assert h.breaker("primary").consecutive_failures == 0
    assert h.finished[0].streaming


# --- the client goes away ---------------------------------------------------------------------


async def test_a_client_leaving_mid_stream_cancels_upstream_and_is_neutral(
    harness: MakeHarness,
) -> None:
    s = script("anthropic", deltas=3)
    h = await harness(HALF_OPEN, primary=stream([*s.prelude, s.deltas[0]], then="hang"))
    trip(h, "primary")
    breaker = h.breaker("primary")
    assert breaker.state is State.HALF_OPEN
    job, _ = h.exchange()
    async with h.open(job) as response:
        got = b""
        while b"content_block_delta" not in got:
            got += await asyncio.wait_for(response.content.readany(), 10)
        assert not breaker.available()  # the probe is out
        response.close()  # Esc in Claude Code
    await wait_until(lambda: h.providers["primary"].cancelled == 1, what="upstream cancelled")
    await wait_until(lambda: h.finished, what="the request recorded")
    [attempt] = h.finished[0].attempts
    assert not attempt.failed
    assert attempt.error == "client_gone"
    assert breaker.state is State.HALF_OPEN  # neither failed nor proven by it
    assert breaker.window_counts() == (1, 1)  # only the trip
    assert breaker.available()  # the probe permit came back: the next request may probe


async def test_a_client_leaving_before_any_answer_is_neutral(harness: MakeHarness) -> None:
    h = await harness(HALF_OPEN, primary=hanging())
    trip(h, "primary")
    breaker = h.breaker("primary")
    task = asyncio.create_task(h.send(body={"model": "m"}))
    await wait_until(lambda: h.providers["primary"].seen, what="the attempt sent")
    assert not breaker.available()
    task.cancel()  # the client hangs up while the provider has not answered
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_until(lambda: h.providers["primary"].cancelled == 1, what="upstream cancelled")
    await wait_until(lambda: h.finished, what="the request recorded")
    assert h.finished[0].attempts[0].error == "client_gone"
    assert h.finished[0].served is None
    assert breaker.state is State.HALF_OPEN
    assert breaker.available()
    assert h.providers["backup"].seen == []


# --- admission: bursts and probes -------------------------------------------------------------


async def burst(h: Harness, n: int) -> list[asyncio.Task]:  # type: ignore[type-arg]
    tasks = [asyncio.create_task(h.send(body={"model": "m"})) for _ in range(n)]
    # Every request has reached the relay (its job taken) and is sent or held.
    await wait_until(lambda: not h.relay.jobs, what="every request at the relay")
    return tasks


async def test_a_burst_at_a_dead_unproven_provider_reaches_it_failure_threshold_times(
    harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ccswitch_addon.upstream.admission.HOLD_SECONDS", 60.0)
    h = await harness(CONFIG, primary=held(status(503)), backup=ok_json())
    prove(h, "backup")
    tasks = await burst(h, 10)
    await wait_until(lambda: len(h.providers["primary"].seen) == 3, what="three at the primary")
    assert h.breaker("primary").held()
    assert h.providers["backup"].seen == []  # the rest wait for an answer, not fail over
    h.providers["primary"].gate.set()
    answers = await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert [a.status for a in answers] == [200] * 10
    assert len(h.providers["primary"].seen) == 3  # failure_threshold, not 10
    assert len(h.providers["backup"].seen) == 10
    assert h.breaker("primary").label() == "open"


async def test_a_burst_goes_to_a_fresh_provider_once_its_first_stream_starts(
    harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ccswitch_addon.upstream.admission.HOLD_SECONDS", 60.0)
    s = script("anthropic")
    finish = asyncio.Event()

    async def answering(provider: Provider, request: web.Request) -> web.StreamResponse:
        await provider.gate.wait()
        response = web.StreamResponse(headers=SSE)
        await response.prepare(request)
        for event in [*s.prelude, *s.deltas]:
            await response.write(event)
        await finish.wait()
        for event in s.finale:
            await response.write(event)
        await response.write_eof()
        return response

    h = await harness(CONFIG, primary=answering, backup=ok_json())
    tasks = await burst(h, 8)
    await wait_until(lambda: len(h.providers["primary"].seen) == 3, what="three at the primary")
    h.providers["primary"].gate.set()
    # The first streams' headers prove it: the held ones go before any stream has ended.
    await wait_until(lambda: len(h.providers["primary"].seen) == 8, what="all at the primary")
    finish.set()
    answers = await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert [served_by(a.headers) for a in answers] == [("primary", "1")] * 8  # no failover
    assert h.providers["backup"].seen == []


async def test_a_held_request_goes_after_hold_seconds(
    harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ccswitch_addon.upstream.admission.HOLD_SECONDS", 0.05)
    h = await harness(CONFIG, primary=held(ok_json()), backup=ok_json())
    tasks = await burst(h, 4)
    # Nobody answered: the fourth goes anyway after the hold, to the same provider.
    await wait_until(lambda: len(h.providers["primary"].seen) == 4, what="the fourth sent")
    assert h.breaker("primary").unconfirmed == 4
    h.providers["primary"].gate.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert h.providers["backup"].seen == []


async def test_half_open_admits_one_of_fifty_concurrent_requests(harness: MakeHarness) -> None:
    h = await harness(HALF_OPEN, primary=held(ok_json()), backup=ok_json())
    trip(h, "primary")
    prove(h, "backup")
    tasks = [asyncio.create_task(h.send(body={"model": "m"})) for _ in range(50)]
    await wait_until(lambda: len(h.providers["backup"].seen) == 49, what="49 at the backup")
    assert len(h.providers["primary"].seen) == 1
    h.providers["primary"].gate.set()
    answers = await asyncio.wait_for(asyncio.gather(*tasks), 10)
    providers = [served_by(a.headers)[0] for a in answers]
    assert providers.count("primary") == 1
    assert providers.count("backup") == 49
    assert h.breaker("primary").state is State.CLOSED  # success_threshold 1


# --- what the client gets as it is ------------------------------------------------------------


async def test_a_neutral_400_is_returned_as_it_is(harness: MakeHarness) -> None:
    h = await harness(
        CONFIG, primary=status(400, headers={"request-id": "req_1"}), backup=ok_json()
    )
    answer = await h.send(body={"model": "m"})
    assert answer.status == 400
    assert json.loads(answer.body) == error_body("anthropic", 400)
    assert answer.headers["request-id"] == "req_1"
    assert served_by(answer.headers) == ("primary", "1")
    assert h.providers["backup"].seen == []
    breaker = h.breaker("primary")
    assert breaker.window_counts() == (0, 0)
    assert breaker.consecutive_failures == 0
    assert h.finished[0].served == "primary"


async def test_the_providers_own_labels_and_hop_by_hop_headers_do_not_pass(
    harness: MakeHarness,
) -> None:
    async def spoofing(provider: Provider, request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {"type": "message", "content": [{"type": "text", "text": "x"}]},
            headers={"x-ccswitch-provider": "spoofed", "keep-alive": "timeout=5"},
        )

    h = await harness(CONFIG, primary=spoofing)
    answer = await h.send(body={"model": "m"})
    assert served_by(answer.headers) == ("primary", "1")
    assert "keep-alive" not in {k.lower() for k in answer.headers}


# --- connections --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["json", "sse"])
async def test_sequential_requests_reuse_one_connection(harness: MakeHarness, kind: str) -> None:
    behaviour = ok_json() if kind == "json" else stream(whole("anthropic"))
    h = await harness(CONFIG, primary=behaviour)
    body = {"model": "m", "stream": kind == "sse"}  # a JSON answer to a stream is a failure
    for _ in range(4):
        assert (await h.send(body=body)).status == 200
    assert len(h.providers["primary"].seen) == 4
    assert h.providers["primary"].connections == 1


async def test_failed_attempts_keep_their_connection_too(harness: MakeHarness) -> None:
    h = await harness(CONFIG.replace("failure_threshold: 3", "failure_threshold: 50", 1))
    h.providers["primary"].default = status(529)
    for _ in range(3):
        answer = await h.send(body={"model": "m"})
        assert served_by(answer.headers) == ("backup", "2")
    assert h.providers["primary"].connections == 1
    assert h.providers["backup"].connections == 1


# --- keys ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["529", "refused", "timeout", "sse error", "served"])
async def test_the_providers_key_stays_on_the_provider_leg(
    harness: MakeHarness, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bad = script("anthropic", deltas=0)
    primary = {
        "529": status(529),
        "refused": None,
        "timeout": hanging(),
        "sse error": stream([*bad.prelude, bad.error]),
        "served": stream(whole("anthropic")),
    }[fault]
    config = CONFIG
    if fault == "refused":
        config = CONFIG.replace("<primary>", f"http://127.0.0.1:{closed_port()}")
    backup = stream(whole("anthropic"))
    fakes = {"backup": backup} if primary is None else {"primary": primary, "backup": backup}
    h = await harness(config, **fakes)
    answer = await h.send(headers={"x-api-key": "the-tools-own-key-000000"})
    assert answer.status == 200
    # It reached the provider, with the provider's own key, and nothing else did.
    serving = h.providers[served_by(answer.headers)[0]]
    assert serving.seen[-1].headers["x-api-key"] == SECRET
    assert SECRET not in answer.body.decode() + json.dumps(answer.headers)
    assert SECRET not in repr(answer.exchange.records)
    assert SECRET not in repr(h.finished)
    assert SECRET not in caplog.text
    for record in answer.exchange.records:
        assert dict(record.headers)["x-api-key"] == "sk-p…6789"
    assert "the-tools-own-key" not in repr(serving.seen[-1].headers)


# --- count_tokens -------------------------------------------------------------------------------


async def test_count_tokens_404_marks_the_provider_lacking_it_and_leaves_the_breaker(
    harness: MakeHarness,
) -> None:
    async def counted(provider: Provider, request: web.Request) -> web.StreamResponse:
        return web.json_response({"input_tokens": 12})

    h = await harness(CONFIG, primary=status(404), backup=counted)
    path = "/v1/messages/count_tokens"
    answer = await h.send(path=path, body={"model": "m", "messages": []})
    assert answer.status == 200
    assert json.loads(answer.body) == {"input_tokens": 12}
    assert served_by(answer.headers) == ("backup", "2")
    assert h.router.lacks("claude", "primary", path)
    breaker = h.breaker("primary")
    assert breaker.window_counts() == (0, 0)
    assert breaker.consecutive_failures == 0
    again = await h.send(path=path, body={"model": "m", "messages": []})
    assert served_by(again.headers) == ("backup", "1")  # not asked again
    assert len(h.providers["primary"].seen) == 1
    h.providers["primary"].default = ok_json()
    assert served_by((await h.send(body={"model": "m"})).headers) == ("primary", "1")


async def test_count_tokens_errors_never_move_a_breaker(harness: MakeHarness) -> None:
    h = await harness(CONFIG, primary=status(529), backup=status(503))
    for _ in range(4):
        await h.send(path="/v1/messages/count_tokens", body={"model": "m"})
    for pid in ("primary", "backup"):
        assert h.breaker(pid).window_counts() == (0, 0)
        assert h.breaker(pid).label() == "closed"


# --- the relay itself ---------------------------------------------------------------------------


async def test_the_relay_refuses_requests_without_its_token(harness: MakeHarness) -> None:
    h = await harness(CONFIG, primary=ok_json())
    job, _ = h.exchange()
    url = f"http://127.0.0.1:{h.relay.port}/"
    async with h.client.post(url, headers={"x-ccswitch-job": job}) as response:
        assert response.status == 403
    async with h.client.post(
        url, headers={"x-ccswitch-job": job, TOKEN_HEADER: "x" * 43}
    ) as response:
        assert response.status == 403
    async with h.client.post(
        url, headers={"x-ccswitch-job": "no-such-job", TOKEN_HEADER: h.relay.token}
    ) as response:
        assert response.status == 410
    assert h.providers["primary"].seen == []
    assert job in h.relay.jobs  # a refused request takes nothing


@pytest.mark.parametrize(("app", "code"), [("claude", 529), ("codex", 503), ("gemini", 503)])
async def test_nothing_to_try_answers_in_the_apis_own_shape(
    harness: MakeHarness, app: str, code: int
) -> None:
    h = await harness(CONFIG)
    for pid in ("primary", "backup"):
        breaker = h.router.breaker(app, pid)
        permit = breaker.acquire()
        assert permit is not None
        breaker.release(permit, classify_error(ErrorKind.CONNECT, "refused"))
    answer = await h.send(app)
    assert answer.status == code
    assert 55 <= int(answer.headers["retry-after"]) <= 60
    error = json.loads(answer.body)
    if app == "claude":
        assert error["error"]["type"] == "overloaded_error"
    elif app == "codex":
        assert set(error["error"]) >= {"message", "type"}
    else:
        assert (error["error"]["status"], error["error"]["code"]) == ("UNAVAILABLE", 503)
    assert h.providers["primary"].seen == h.providers["backup"].seen == []
    assert h.finished[0].served is None

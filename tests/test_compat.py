"""compat: one form for mitmproxy 11 and 12 (CI runs this on both)."""

from __future__ import annotations

import asyncio
import gc
import logging

import mitmproxy.version
import pytest

from ccswitch_addon import compat


async def test_a_task_nobody_holds_still_runs_to_its_end() -> None:
    done = asyncio.Event()

    async def work() -> None:
        await asyncio.sleep(0)
        gc.collect()  # the loop holds tasks weakly: without compat's reference it could vanish
        await asyncio.sleep(0)
        done.set()

    compat.create_task(work(), name="ccswitch test task")
    gc.collect()
    await asyncio.wait_for(done.wait(), timeout=5)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while compat._RUNNING and loop.time() < deadline:  # done callbacks run a turn later
        await asyncio.sleep(0)
    assert not compat._RUNNING  # the reference goes with the task


async def test_the_task_carries_mitmproxys_debug_name() -> None:
    task = compat.create_task(asyncio.sleep(0), name="ccswitch named")
    assert "ccswitch named" in task.get_name()
    assert hasattr(task, "created")  # what mitmproxy's task dump reads, on 11 and 12
    await task


def test_the_installed_mitmproxy_is_a_supported_one() -> None:
    major = int(mitmproxy.version.VERSION.split(".")[0])
    assert major in (11, 12)


async def test_request_lines_stay_out_of_the_deprecated_add_log_event() -> None:
    from mitmproxy.test import taddons

    # async: the test master takes the running loop (a sync test would leave one unclosed)
    with taddons.context() as tctx:
        legacy = tctx.master._legacy_log_events  # present in 11 and 12
        assert compat.keep_out_of_add_log(tctx.master, "ccswitch_addon.requests")
        assert compat.keep_out_of_add_log(tctx.master, "ccswitch_addon.requests")  # once only
        assert len(legacy.filters) == 1

        def record(name: str) -> logging.LogRecord:
            return logging.LogRecord(name, logging.INFO, __file__, 1, "x", None, None)

        assert not legacy.filter(record("ccswitch_addon.requests"))
        assert legacy.filter(record("ccswitch_addon.addon"))  # switch events and the like
        assert legacy.filter(record("ccswitch_addon.requestsx"))


async def test_a_routed_streams_start_line_stays_out_of_add_log_once() -> None:
    """mitmproxy's "Streaming response from" record for a routed stream, and only that one."""
    from mitmproxy.test import taddons

    with taddons.context() as tctx:
        legacy = tctx.master._legacy_log_events
        assert compat.keep_out_of_add_log(tctx.master, "ccswitch_addon.requests")

        def record(client: tuple[str, int], message: str) -> logging.LogRecord:
            made = logging.LogRecord(
                "mitmproxy.proxy.server", logging.INFO, __file__, 1, message, None, None
            )
            made.client = client  # what mitmproxy's ConnectionHandler.log puts in `extra`
            return made

        ours, other = ("127.0.0.1", 50001), ("127.0.0.1", 50002)
        streaming = "Streaming response from api.anthropic.com."
        compat.quiet_stream_start(ours)
        assert legacy.filter(record(ours, "server connect 127.0.0.1:9"))  # not that line
        assert legacy.filter(record(other, streaming))  # another client's stream
        assert not legacy.filter(record(ours, streaming))
        assert legacy.filter(record(ours, streaming))  # once: the next stream is not ours
        compat.quiet_stream_start(ours)
        compat.forget_quiet(ours)  # the flow ended before mitmproxy logged it
        assert legacy.filter(record(ours, streaming))


def test_without_mitmproxys_legacy_handler_nothing_changes() -> None:
    assert not compat.keep_out_of_add_log(object(), "ccswitch_addon.requests")


def test_a_response_made_directly_is_the_one_mitmproxys_constructor_makes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mitmproxy import http

    headers = [(b"content-type", b"application/json"), (b"content-length", b"2")]
    at = 1700000000.5
    made = compat.response(529, b"Overloaded", http.Headers(headers), b"{}", at)
    public = http.Response(
        b"HTTP/1.1", 529, b"Overloaded", http.Headers(headers), b"{}", None, at, at
    )
    assert compat._SET_DIRECTLY  # the fields 11 and 12 have: else the test below is the path
    assert made.get_state() == public.get_state()
    assert made.text == "{}"
    assert made.headers["content-type"] == "application/json"
    assert made.stream is False
    made.content = b'{"a":1}'  # as any addon after ours may
    assert made.headers["content-length"] == "7"
    monkeypatch.setattr(compat, "_SET_DIRECTLY", False)  # a mitmproxy with other fields
    checked = compat.response(529, b"Overloaded", http.Headers(headers), b"{}", at)
    assert checked.get_state() == public.get_state()


def test_a_line_is_heard_only_where_a_handler_takes_its_level() -> None:
    parent = logging.getLogger("ccswitch_test_heard")
    child = logging.getLogger("ccswitch_test_heard.requests")
    console, everything = logging.Handler(logging.ERROR), logging.Handler(logging.NOTSET)
    parent.addHandler(console)
    parent.propagate = False  # pytest's own handlers on the root take everything
    try:
        assert not compat.heard(child, logging.INFO)  # as with mitmdump -q
        assert compat.heard(child, logging.ERROR)
        parent.addHandler(everything)
        assert compat.heard(child, logging.INFO)
        everything.addFilter(lambda record: record.name != child.name)
        assert compat.heard(child, logging.INFO)  # any other filter may pass it: asked
        keep_out = logging.Filter()
        keep_out.ccswitch_keeps_out = child.name  # type: ignore[attr-defined]
        everything.filters = [keep_out]  # the add_log event's, as keep_out_of_add_log adds
        assert not compat.heard(child, logging.INFO)
        child.propagate = False
        assert not compat.heard(child, logging.ERROR)
    finally:
        child.propagate = parent.propagate = True
        parent.removeHandler(console)
        parent.removeHandler(everything)

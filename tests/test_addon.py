"""Hook logic of the addon, driven through mitmproxy's test context: no network."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mitmproxy import connection, exceptions, http
from mitmproxy.addons import proxyserver
from mitmproxy.test import taddons, tflow

from ccswitch_addon.addon import ATTEMPT, CcSwitch
from ccswitch_addon.core.breaker import State
from ccswitch_addon.core.outcome import classify_status

CONFIG = """\
apps:
  claude:
    queue: [primary, backup]
    breaker: {failure_threshold: 2, open_seconds: 0, success_threshold: 1}
    providers:
      primary:
        base_url: http://127.0.0.1:9001
        auth: passthrough
      backup:
        base_url: https://backup.example/api
        auth: bearer
        api_key: ${BACKUP_KEY}
        models: {claude-sonnet-4-5: vendor/sonnet}
        headers: {X-Title: ccswitch}
      spare:
        base_url: http://127.0.0.1:9003
        auth: passthrough
  codex:
    queue: [solo]
    providers:
      solo: {base_url: "https://api.deepseek.com/v1", api_key: "${BACKUP_KEY}"}
  gemini:
    queue: [g1]
    providers:
      g1:
        base_url: http://127.0.0.1:9004
        api_key: ${BACKUP_KEY}
        models: {gemini-2.5-pro: gemini-2.5-flash}
"""
SECRET = "sk-backup-secret-0123456789"


@pytest.fixture
async def addon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[CcSwitch, Path]]:
    monkeypatch.setenv("BACKUP_KEY", SECRET)
    path = tmp_path / "providers.yaml"
    path.write_text(CONFIG)
    cc = CcSwitch()
    with taddons.context(proxyserver.Proxyserver(), cc) as tctx:
        tctx.configure(cc, ccswitch_config=str(path), ccswitch_state=str(tmp_path / "state.db"))
        cc.running()
        yield cc, path


def model_flow(
    url: str,
    body: object | None = None,
    headers: dict[str, str] | None = None,
    method: str = "POST",
    peer: str = "127.0.0.1",
) -> http.HTTPFlow:
    content = json.dumps(body if body is not None else {"model": "claude-sonnet-4-5"}).encode()
    request = http.Request.make(method, url, content, headers or {})
    client = tflow.tclient_conn()
    client.peername = (peer, 50000)
    return tflow.tflow(req=request, client_conn=client)


def prove(cc: CcSwitch, pid: str, app: str = "claude") -> None:
    """One success recorded: the provider takes any number of requests at once."""
    assert cc.engine is not None
    breaker = cc.engine.router.breaker(app, pid)
    permit = breaker.acquire()
    assert permit is not None
    breaker.release(permit, classify_status(200))


def breaker_state(cc: CcSwitch, app: str, pid: str) -> str:
    assert cc.engine is not None
    return cc.engine.router.breaker(app, pid).label()


async def test_connection_strategy_is_forced_lazy(addon: tuple[CcSwitch, Path]) -> None:
    from mitmproxy import ctx

    assert ctx.options.connection_strategy == "lazy"


async def test_routes_to_the_primary_keeping_passthrough_credentials(
    addon: tuple[CcSwitch, Path],
) -> None:
    cc, _ = addon
    f = model_flow("https://api.anthropic.com/v1/messages?beta=true", headers={"x-api-key": "mine"})
    await cc.request(f)
    assert (f.request.scheme, f.request.host, f.request.port) == ("http", "127.0.0.1", 9001)
    assert f.request.path == "/v1/messages?beta=true"
    assert f.request.host_header == "127.0.0.1:9001"
    assert f.request.headers["x-api-key"] == "mine"
    assert json.loads(f.request.content or b"")["model"] == "claude-sonnet-4-5"


async def test_backup_gets_its_own_key_model_and_headers_and_no_client_key(
    addon: tuple[CcSwitch, Path],
) -> None:
    cc, _ = addon
    assert cc.engine is not None
    cc.engine.router.switch("claude", "backup")
    f = model_flow(
        "https://api.anthropic.com/v1/messages?key=client-query-key",
        body={"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "héllo"}]},
        headers={
            "x-api-key": "client",
            "authorization": "Bearer client",
            "x-goog-api-key": "client",
        },
    )
    await cc.request(f)
    assert (f.request.scheme, f.request.host, f.request.port) == ("https", "backup.example", 443)
    assert f.request.path == "/api/v1/messages"
    assert f.request.headers.get_all("authorization") == [f"Bearer {SECRET}"]
    assert "x-api-key" not in f.request.headers
    assert "x-goog-api-key" not in f.request.headers
    assert f.request.headers["X-Title"] == "ccswitch"
    body = json.loads(f.request.content or b"")
    assert body["model"] == "vendor/sonnet"
    assert body["messages"][0]["content"] == "héllo"


async def test_version_segment_is_not_doubled(addon: tuple[CcSwitch, Path]) -> None:
    cc, _ = addon
    f = model_flow("https://api.openai.com/v1/chat/completions", body={"model": "gpt-5"})
    await cc.request(f)
    assert f.request.host == "api.deepseek.com"
    assert f.request.path == "/v1/chat/completions"
    assert f.request.headers["authorization"] == f"Bearer {SECRET}"


async def test_gemini_model_in_path_and_key_query_replaced(addon: tuple[CcSwitch, Path]) -> None:
    cc, _ = addon
    f = model_flow(
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:generateContent"
        "?key=client-key&alt=sse",
        body={"contents": []},
    )
    await cc.request(f)
    assert f.request.path.startswith("/v1beta/models/gemini-2.5-flash:generateContent?")
    assert f.request.query.get("alt") == "sse"
    assert "key" not in f.request.query
    assert f.request.headers["x-goog-api-key"] == SECRET


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("POST", "https://api.anthropic.com/api/claude_code/metrics"),
        ("GET", "https://api.openai.com/v1/responses"),
        ("POST", "https://example.com/v1/messages"),
    ],
)
async def test_unrelated_requests_pass_untouched(
    addon: tuple[CcSwitch, Path], method: str, url: str
) -> None:
    cc, _ = addon
    f = model_flow(url, method=method, headers={"x-api-key": "client"})
    before = f.request.get_state()
    await cc.request(f)
    assert f.request.get_state() == before
    assert f.response is None
    assert "ccswitch" not in f.metadata


async def test_remote_client_gets_403_and_no_key(addon: tuple[CcSwitch, Path]) -> None:
    cc, _ = addon
    f = model_flow("https://api.anthropic.com/v1/messages", peer="192.0.2.7")
    await cc.request(f)
    assert f.response is not None
    assert f.response.status_code == 403
    assert SECRET not in (f.response.text or "")
    assert f.request.host == "api.anthropic.com"


async def test_remote_client_allowed_by_option(addon: tuple[CcSwitch, Path]) -> None:
    cc, _ = addon
    from mitmproxy import ctx

    ctx.options.update(ccswitch_allow_remote="true")
    f = model_flow("https://api.anthropic.com/v1/messages", peer="192.0.2.7")
    await cc.request(f)
    assert f.response is None
    assert f.request.port == 9001


def trip(cc: CcSwitch, app: str, pid: str) -> None:
    """Open a breaker the way a dead host does: a connection failure."""
    assert cc.engine is not None
    breaker = cc.engine.router.breaker(app, pid)
    breaker.config = type(breaker.config)(**{**breaker.config.__dict__, "open_seconds": 60})
    f = model_flow("https://api.anthropic.com/v1/messages")
    permit = breaker.acquire()
    assert permit is not None
    from ccswitch_addon.core.outcome import ErrorKind, classify_error

    breaker.release(permit, classify_error(ErrorKind.CONNECT, "refused"))
    assert breaker.label() == "open", f


@pytest.mark.parametrize(
    ("url", "body", "status", "shape"),
    [
        ("https://api.anthropic.com/v1/messages", {"model": "x"}, 529, "anthropic"),
        ("https://api.openai.com/v1/responses", {"model": "x"}, 503, "openai"),
        (
            "https://generativelanguage.googleapis.com/v1beta/models/m:generateContent",
            {},
            503,
            "gemini",
        ),
    ],
)
async def test_all_open_answers_in_the_apis_own_shape(
    addon: tuple[CcSwitch, Path], url: str, body: object, status: int, shape: str
) -> None:
    cc, _ = addon
    assert cc.engine is not None
    for app in cc.engine.router.config.apps.values():
        for pid in app.queue:
            trip(cc, app.name, pid)
    f = model_flow(url, body=body)
    await cc.request(f)
    assert f.response is not None
    assert f.response.status_code == status
    assert 55 <= int(f.response.headers["retry-after"]) <= 60
    error = json.loads(f.response.content or b"")
    if shape == "anthropic":
        assert error["type"] == "error"
        assert error["error"]["type"] == "overloaded_error"
        message = error["error"]["message"]
    elif shape == "openai":
        assert set(error["error"]) >= {"message", "type"}
        message = error["error"]["message"]
    else:
        assert error["error"]["status"] == "UNAVAILABLE"
        assert error["error"]["code"] == 503
        message = error["error"]["message"]
    assert "open or cooling" in message


async def test_success_streams_and_is_labelled(addon: tuple[CcSwitch, Path]) -> None:
    cc, _ = addon
    f = model_flow("https://api.anthropic.com/v1/messages")
    await cc.request(f)
    f.response = http.Response.make(200, b"", {"content-type": "text/event-stream"})
    cc.responseheaders(f)
    assert callable(f.response.stream)
    assert f.response.headers["x-ccswitch-provider"] == "primary"
    assert f.response.headers["x-ccswitch-attempts"] == "1"


async def test_failure_is_not_streamed(addon: tuple[CcSwitch, Path]) -> None:
    cc, _ = addon
    f = model_flow("https://api.anthropic.com/v1/messages")
    await cc.request(f)
    f.response = http.Response.make(529, b"{}", {"content-type": "application/json"})
    cc.responseheaders(f)
    assert not f.response.stream


async def test_stream_error_event_counts_as_failure(addon: tuple[CcSwitch, Path]) -> None:
    cc, _ = addon
    f = model_flow("https://api.anthropic.com/v1/messages")
    await cc.request(f)
    f.response = http.Response.make(200, b"", {"content-type": "text/event-stream"})
    cc.responseheaders(f)
    stream = f.response.stream
    assert callable(stream)
    chunk = b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error"}}\n\n'
    assert stream(chunk) == chunk
    stream(b"")
    await cc.response(f)
    assert cc.engine is not None
    assert cc.engine.router.breaker("claude", "primary").consecutive_failures == 1
    assert f.metadata["ccswitch"]["attempts"][0]["provider"] == "primary"


async def test_connection_failure_opens_at_once_and_releases_the_permit(
    addon: tuple[CcSwitch, Path],
) -> None:
    cc, _ = addon
    f = model_flow("https://api.anthropic.com/v1/messages")
    await cc.request(f)
    f.server_conn = connection.Server(address=("127.0.0.1", 9001))  # never connected
    f.error = tflow.terr("Connection refused")
    cc.error(f)
    assert cc.engine is not None
    # open_seconds is 0 here, so "open" shows as half_open at once: one probe may go.
    assert cc.engine.router.breaker("claude", "primary").state is State.HALF_OPEN
    assert cc.engine.router.acquire("claude", "primary") is not None
    assert f.metadata["ccswitch"]["attempts"][0]["error"].startswith("connect")
    assert not cc._routed


async def routed_burst(cc: CcSwitch, n: int) -> tuple[list[http.HTTPFlow], list[asyncio.Task]]:
    """n requests at once; returns when each is either routed or waiting."""
    flows = [model_flow("https://api.anthropic.com/v1/messages") for _ in range(n)]
    tasks = [asyncio.create_task(cc.request(f)) for f in flows]
    for _ in range(3):  # let every request run up to its first wait
        await asyncio.sleep(0)
    return flows, tasks


async def test_a_burst_waits_for_a_fresh_providers_first_answer(
    addon: tuple[CcSwitch, Path],
) -> None:
    cc, _ = addon
    flows, tasks = await routed_burst(cc, 5)
    assert [t.done() for t in tasks] == [True, True, False, False, False]  # failure_threshold 2
    assert len(cc._routed) == 2
    first = flows[0]
    first.response = http.Response.make(200, b"{}", {"content-type": "application/json"})
    cc.responseheaders(first)  # it answers: the rest may go
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert [f.request.host for f in flows] == ["127.0.0.1"] * 5  # no spurious failover


async def test_a_burst_at_a_dead_fresh_provider_reaches_it_failure_threshold_times(
    addon: tuple[CcSwitch, Path],
) -> None:
    cc, _ = addon
    assert cc.engine is not None
    primary = cc.engine.router.breaker("claude", "primary")
    primary.reconfigure(dataclasses.replace(primary.config, open_seconds=60))
    prove(cc, "backup")
    flows, tasks = await routed_burst(cc, 6)
    sent = [f for f, t in zip(flows, tasks, strict=True) if t.done()]
    assert len(sent) == 2
    sent[0].server_conn = connection.Server(address=("127.0.0.1", 9001))  # never connected
    sent[0].error = tflow.terr("Connection refused")
    cc.error(sent[0])  # opens it: the waiting requests go to the backup
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    hosts = [f.request.host for f in flows]
    assert hosts.count("127.0.0.1") == 2
    assert hosts.count("backup.example") == 4


async def test_a_held_request_goes_after_hold_seconds(
    addon: tuple[CcSwitch, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cc, _ = addon
    monkeypatch.setattr("ccswitch_addon.attempts.HOLD_SECONDS", 0.05)
    flows, tasks = await routed_burst(cc, 3)
    assert not tasks[2].done()
    await asyncio.wait_for(tasks[2], 5)  # nobody answered: it goes anyway, to the same one
    assert flows[2].request.host == "127.0.0.1"
    assert cc.engine is not None
    assert cc.engine.router.breaker("claude", "primary").unconfirmed == 3


async def test_half_open_admits_one_of_fifty_concurrent_requests(
    addon: tuple[CcSwitch, Path],
) -> None:
    cc, _ = addon
    assert cc.engine is not None
    breaker = cc.engine.router.breaker("claude", "primary")
    from ccswitch_addon.core.outcome import ErrorKind, classify_error

    permit = breaker.acquire()
    assert permit is not None
    breaker.release(permit, classify_error(ErrorKind.CONNECT))
    assert breaker.state is State.HALF_OPEN
    prove(cc, "backup")  # else it takes only two unanswered requests at a time
    flows = [model_flow("https://api.anthropic.com/v1/messages") for _ in range(50)]
    for f in flows:
        await cc.request(f)
    hosts = [f.request.host for f in flows]
    assert hosts.count("127.0.0.1") == 1
    assert hosts.count("backup.example") == 49
    # The probe's client goes away: the permit comes back, and the next request may probe.
    probe = next(f for f in flows if f.request.host == "127.0.0.1")
    probe.server_conn = tflow.tserver_conn()
    probe.client_conn.state = connection.ConnectionState.CLOSED
    probe.error = tflow.terr("Client disconnected.")
    cc.error(probe)
    again = model_flow("https://api.anthropic.com/v1/messages")
    await cc.request(again)
    assert again.request.host == "127.0.0.1"


async def test_neutral_400_is_returned_and_leaves_the_breaker(
    addon: tuple[CcSwitch, Path],
) -> None:
    cc, _ = addon
    f = model_flow("https://api.anthropic.com/v1/messages")
    await cc.request(f)
    f.response = http.Response.make(400, b'{"type":"error"}', {"content-type": "application/json"})
    cc.responseheaders(f)
    await cc.response(f)
    assert f.response.status_code == 400
    assert breaker_state(cc, "claude", "primary") == "closed"
    assert cc.engine is not None
    assert cc.engine.router.breaker("claude", "primary").window_counts() == (0, 0)


async def test_retry_flows_are_left_alone(addon: tuple[CcSwitch, Path]) -> None:
    cc, _ = addon
    f = model_flow("https://backup.example/api/v1/messages")
    f.metadata[ATTEMPT] = {"of": "x"}
    await cc.request(f)
    assert f.request.host == "backup.example"
    f.response = http.Response.make(200, b"{}", {"content-type": "application/json"})
    f.response.stream = True
    cc.responseheaders(f)
    assert f.response.stream is False


async def control(
    cc: CcSwitch, method: str, path: str, body: object = None, peer: str = "127.0.0.1"
) -> http.Response:
    headers = {"content-type": "application/json", "x-ccswitch-token": cc.control.token}
    f = model_flow(
        f"http://ccswitch.local{path}", body=body, method=method, peer=peer, headers=headers
    )
    await cc.request(f)
    assert f.response is not None
    return f.response


async def test_status_json(addon: tuple[CcSwitch, Path]) -> None:
    cc, _ = addon
    response = await control(cc, "GET", "/status")
    assert response.status_code == 200
    status = json.loads(response.content or b"")
    claude = status["apps"]["claude"]
    assert claude["failover"] is True
    assert claude["current"] == "primary"
    assert claude["active"] is None
    assert [q["id"] for q in claude["queue"]][:2] == ["primary", "backup"]
    assert set(claude["queue"][0]) >= {"id", "name", "state", "consecutive_failures", "reopens_at"}
    assert SECRET not in response.text


async def test_control_switch_reset_and_errors(addon: tuple[CcSwitch, Path]) -> None:
    cc, _ = addon
    assert (
        await control(cc, "POST", "/switch", {"app": "claude", "provider": "spare"})
    ).status_code == 200
    assert cc.engine is not None
    assert cc.engine.router.current("claude") == "spare"
    trip(cc, "claude", "backup")
    assert (
        await control(cc, "POST", "/reset", {"app": "claude", "provider": "backup"})
    ).status_code == 200
    assert breaker_state(cc, "claude", "backup") == "closed"
    missing = await control(cc, "POST", "/switch", {"app": "nope", "provider": "x"})
    assert missing.status_code == 404
    assert "unknown app 'nope'" in missing.text
    assert (await control(cc, "POST", "/switch", {"app": "claude"})).status_code == 400
    assert (await control(cc, "GET", "/status", peer="192.0.2.1")).status_code == 403


async def test_commands(addon: tuple[CcSwitch, Path]) -> None:
    cc, _ = addon
    with pytest.raises(exceptions.CommandError, match="unknown provider 'ghost'"):
        cc.switch("claude", "ghost")
    with pytest.raises(exceptions.CommandError, match="unknown app"):
        cc.reset("nope", "x")
    cc.switch("claude", "backup")
    assert json.loads(cc.status())["apps"]["claude"]["current"] == "backup"


async def test_broken_reload_keeps_the_old_configuration(addon: tuple[CcSwitch, Path]) -> None:
    cc, path = addon
    path.write_text(CONFIG.replace("failure_threshold: 2", "failure_treshold: 2"))
    with pytest.raises(exceptions.CommandError, match=r"providers.yaml:4: .*failure_treshold"):
        cc.reload()
    with pytest.raises(exceptions.OptionsError, match="did you mean 'failure_threshold'"):
        cc.configure({"ccswitch_config"})  # as mitmproxy calls it when the option is set
    f = model_flow("https://api.anthropic.com/v1/messages")
    await cc.request(f)
    assert f.request.port == 9001


async def test_a_refused_reload_is_in_the_status_until_a_good_one(
    addon: tuple[CcSwitch, Path],
) -> None:
    cc, path = addon
    good = path.read_text()
    path.write_text(good.replace("failure_threshold: 2", "failure_treshold: 2"))
    with pytest.raises(exceptions.CommandError):
        cc.reload()
    error = json.loads(cc.status())["config_error"]
    assert "failure_treshold" in error["message"]
    assert error["since"] > 0
    path.write_text(good)
    cc.reload()
    assert json.loads(cc.status())["config_error"] is None


async def test_a_request_in_flight_finishes_on_the_configuration_it_started_with(
    addon: tuple[CcSwitch, Path],
) -> None:
    cc, path = addon
    f = model_flow("https://api.anthropic.com/v1/messages")
    await cc.request(f)
    assert f.request.port == 9001
    path.write_text(CONFIG.replace("queue: [primary, backup]", "queue: [spare]"))
    cc.reload()
    f.response = http.Response.make(200, b"{}", {"content-type": "application/json"})
    cc.responseheaders(f)
    await cc.response(f)
    assert f.metadata["ccswitch"]["provider"] == "primary"
    assert cc.engine is not None
    assert cc.engine.router.breaker("claude", "primary").window_counts() == (1, 0)
    later = model_flow("https://api.anthropic.com/v1/messages")
    await cc.request(later)
    assert later.request.port == 9003


async def test_warns_when_listening_beyond_loopback(
    addon: tuple[CcSwitch, Path], caplog: pytest.LogCaptureFixture
) -> None:
    cc, _ = addon
    from mitmproxy import ctx

    ctx.options.update(listen_host="")
    cc.running()
    assert "listening on every interface, beyond loopback" in caplog.text
    caplog.clear()
    ctx.options.update(listen_host="127.0.0.1")
    cc.running()
    assert "beyond loopback" not in caplog.text


async def test_the_default_config_honours_ccswitch_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BACKUP_KEY", SECRET)
    path = tmp_path / "elsewhere.yaml"
    path.write_text(CONFIG)
    monkeypatch.setenv("CCSWITCH_CONFIG", str(path))
    monkeypatch.chdir(tmp_path)  # no ./providers.yaml here
    cc = CcSwitch()
    with taddons.context(proxyserver.Proxyserver(), cc) as tctx:
        tctx.configure(cc, ccswitch_config="", ccswitch_state="")
        assert cc.engine is not None
        assert cc.engine.router.config.source == str(path)

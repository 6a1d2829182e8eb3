"""Hook logic of the addon, driven through mitmproxy's test context.

The relay runs for real on the test's loop (the addon starts it in ``running``); where a test
needs an answer, it sends the flow's request to the relay as mitmproxy would and feeds the
answer back through the response hooks. Providers are small fakes on loopback.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from mitmproxy import exceptions, http
from mitmproxy.addons import proxyserver
from mitmproxy.connection import ConnectionState
from mitmproxy.flow import Error
from mitmproxy.test import taddons, tflow
from upstream.providers import Provider, held, ok_json, status, stream, wait_until, whole

from ccswitch_addon.addon import CcSwitch
from ccswitch_addon.core.outcome import ErrorKind, classify_error
from ccswitch_addon.core.record import Finished
from ccswitch_addon.flows import ATTEMPT, ROUTED
from ccswitch_addon.upstream.answer import HEAD_HEADER
from ccswitch_addon.upstream.early import Begun
from ccswitch_addon.upstream.relay import JOB_HEADER, TOKEN_HEADER

SECRET = "sk-backup-secret-0123456789"
CONFIG = """\
apps:
  claude:
    queue: [primary, backup]
    breaker: {failure_threshold: 2, open_seconds: 60, success_threshold: 1}
    providers:
      primary:
        base_url: <primary>
        auth: passthrough
      backup:
        base_url: <backup>/api
        auth: bearer
        api_key: ${BACKUP_KEY}
        models: {claude-sonnet-4-5: vendor/sonnet}
      spare:
        base_url: http://127.0.0.1:9
        auth: passthrough
  codex:
    queue: [solo]
    providers:
      solo: {base_url: "<backup>/v1", api_key: "${BACKUP_KEY}"}
  gemini:
    queue: [g1]
    providers:
      g1: {base_url: "<backup>", api_key: "${BACKUP_KEY}"}
"""


class Seen:
    """An addon that records the flows handed to every addon (as mitmweb's view would)."""

    def __init__(self) -> None:
        self.flows: list[http.HTTPFlow] = []

    def response(self, flow: http.HTTPFlow) -> None:
        self.flows.append(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self.flows.append(flow)


@dataclass
class Env:
    cc: CcSwitch
    path: Path
    primary: Provider
    backup: Provider
    seen: Seen


@pytest.fixture
async def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Env]:
    monkeypatch.setenv("BACKUP_KEY", SECRET)
    primary, backup = Provider(ok_json()), Provider(ok_json())
    await primary.start()
    await backup.start()
    path = tmp_path / "providers.yaml"
    path.write_text(config_for(primary, backup))
    cc, seen = CcSwitch(), Seen()
    try:
        with taddons.context(proxyserver.Proxyserver(), cc, seen) as tctx:
            tctx.configure(cc, ccswitch_config=str(path), ccswitch_state=str(tmp_path / "s.db"))
            cc.running()
            await cc.started()
            try:
                yield Env(cc, path, primary, backup, seen)
            finally:
                cc.done()
                await cc.stopped()
    finally:
        await primary.stop()
        await backup.stop()


def config_for(primary: Provider, backup: Provider, text: str = CONFIG) -> str:
    return text.replace("<primary>", primary.url).replace("<backup>", backup.url)


STREAM_BODY = {"model": "claude-sonnet-4-5", "stream": True}


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


async def request_hooks(cc: CcSwitch, flow: http.HTTPFlow) -> None:
    """The request hook as mitmproxy runs it: every addon's (the addon's among them), then the
    flow's wait_for_resume, where a request for a whole answer is served."""
    await cc.request(flow)
    await flow.wait_for_resume()


async def through_relay(cc: CcSwitch, flow: http.HTTPFlow) -> http.HTTPFlow:
    """What mitmproxy does after the request hook. A response the hook set (a request that
    asked for no stream is answered in the hook) goes to the response hook as it is; a flow the
    hook pointed at the relay is sent there: responseheaders, the body read, response."""
    if flow.response is not None:
        cc.response(flow)
        return flow
    request = flow.request
    assert (request.host, request.port) == ("127.0.0.1", cc.relay.port if cc.relay else -1)
    url = f"{request.scheme}://{request.host}:{request.port}{request.path}"
    headers = [(k, v) for k, v in request.headers.items(multi=True) if k.lower() != "host"]
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.request(request.method, url, headers=headers, data=request.content) as answer,
    ):
        flow.response = http.Response.make(
            answer.status, b"", [(k.encode(), v.encode()) for k, v in answer.headers.items()]
        )
        told = cc.responseheaders(flow)  # awaited, as mitmproxy awaits what a hook returns
        if told is not None:
            await told
        flow.response.content = await answer.read()
    cc.response(flow)
    return flow


# --- pointing a flow at the relay and back ------------------------------------------------------


async def test_connection_strategy_is_forced_lazy(env: Env) -> None:
    from mitmproxy import ctx

    assert ctx.options.connection_strategy == "lazy"


async def test_a_routed_flow_is_pointed_at_the_relay_and_holds_no_body(env: Env) -> None:
    cc = env.cc
    assert cc.relay is not None
    body = {
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "user", "content": "héllo"}],
        "stream": True,  # a stream goes through the relay; a whole answer is served in the hook
    }
    f = model_flow(
        "https://api.anthropic.com/v1/messages?beta=true", body, headers={"x-api-key": "mine"}
    )
    sent = f.request.content
    await request_hooks(cc, f)
    assert f.response is None
    assert (f.request.scheme, f.request.host, f.request.port) == (
        "http",
        "127.0.0.1",
        cc.relay.port,
    )
    assert f.request.headers.fields == (
        (b"host", b"127.0.0.1:%d" % cc.relay.port),
        (TOKEN_HEADER.encode(), cc.relay.token.encode()),
        (JOB_HEADER.encode(), f.id.encode()),
        (HEAD_HEADER.encode(), b"later"),  # its real head is told in-process
        (b"content-length", b"0"),
    )
    assert f.request.content == b""
    job = cc.relay.jobs[f.id]
    assert isinstance(job, Begun)  # under way before mitmproxy's copy reaches the relay
    exchange = job.exchange
    assert exchange.path == "/v1/messages?beta=true"
    assert (b"x-api-key", b"mine") in exchange.headers
    assert exchange.body == sent
    assert exchange.app.name == "claude"


async def test_the_answer_restores_the_tools_request_and_streams(env: Env) -> None:
    env.primary.default = stream(whole("anthropic"))
    body = {"model": "claude-sonnet-4-5", "stream": True}  # a stream goes on only when asked for
    f = model_flow(
        "https://api.anthropic.com/v1/messages?beta=true", body, headers={"x-api-key": "mine"}
    )
    original = f.request.copy()
    await request_hooks(env.cc, f)
    await through_relay(env.cc, f)
    assert f.request.url == "https://api.anthropic.com/v1/messages?beta=true"
    assert f.request.headers.fields == original.headers.fields
    assert f.request.content == original.content
    assert f.response is not None
    assert f.response.stream is True  # an event stream goes on to the tool as it arrives
    assert f.response.headers["x-ccswitch-provider"] == "primary"
    assert env.primary.seen[0].headers["x-api-key"] == "mine"  # passthrough
    assert f.metadata[ROUTED]["provider"] == "primary"
    assert f.comment == "claude → primary"
    assert not env.cc._routed
    assert [s for s in env.seen.flows if ATTEMPT in s.metadata] == []  # one clean attempt


async def test_a_request_for_a_whole_answer_is_answered_in_the_hook(env: Env) -> None:
    cc = env.cc
    assert cc.relay is not None
    f = model_flow("https://api.anthropic.com/v1/messages?beta=true", headers={"x-api-key": "k"})
    before = f.request.get_state()
    await request_hooks(cc, f)
    assert f.response is not None  # set by the hook: mitmproxy opens no connection for it
    assert not cc.relay.jobs
    assert f.request.get_state() == before  # the tool's own request, never pointed elsewhere
    assert f.response.status_code == 200
    assert f.response.reason == "OK"
    assert f.response.headers["x-ccswitch-provider"] == "primary"
    assert f.response.headers["x-served-by"] == str(env.primary.port)
    assert f.response.headers["content-length"] == str(len(f.response.raw_content or b""))
    assert json.loads(f.response.content or b"")["content"][0]["text"] == "hello"
    assert env.primary.seen[0].headers["x-api-key"] == "k"
    told: list[Finished] = []
    assert cc.upstream is not None
    cc.upstream._done = told.append
    cc.response(f)
    assert f.metadata[ROUTED]["provider"] == "primary"
    assert f.comment == "claude → primary"
    assert not cc._routed
    # Told to the engine (stats, request log, console line) once mitmproxy has written the
    # answer: it does so right after the response hook, in the same turn of the loop.
    assert told == []
    await wait_until(lambda: told, what="the engine told")
    assert told[0].served == "primary"
    await asyncio.sleep(0)
    assert len(told) == 1


async def test_an_answer_not_yet_told_at_shutdown_is_told_then(env: Env) -> None:
    f = model_flow("https://api.anthropic.com/v1/messages")
    await request_hooks(env.cc, f)
    assert f.response is not None
    told: list[Finished] = []
    assert env.cc.upstream is not None
    env.cc.upstream._done = told.append
    env.cc.done()  # mitmproxy stops between the request hook and the response hook
    assert [t.served for t in told] == ["primary"]


async def test_a_whole_answer_is_served_once_every_addon_has_seen_the_request(env: Env) -> None:
    from mitmproxy import ctx

    chain = list(ctx.master.addons.chain)
    f = model_flow("https://api.anthropic.com/v1/messages")
    await env.cc.request(f)
    assert f.response is None  # the other addons see the request before it is served
    assert env.primary.seen == []
    assert ctx.master.addons.chain == chain  # no addon of its own in every event's path
    await f.wait_for_resume()
    assert f.response is not None
    assert len(env.primary.seen) == 1
    assert "wait_for_resume" not in vars(f)  # the flow's later hooks wait as mitmproxy's do
    f.intercept()
    waiting = asyncio.create_task(f.wait_for_resume())
    for _ in range(20):
        await asyncio.sleep(0)
    assert not waiting.done()
    f.resume()
    await asyncio.wait_for(waiting, 5)
    assert len(env.primary.seen) == 1  # served once


async def test_an_intercepted_request_is_served_once_resumed_and_a_killed_one_never(
    env: Env,
) -> None:
    f = model_flow("https://api.anthropic.com/v1/messages")
    await env.cc.request(f)
    f.intercept()  # as mitmweb's intercept addon does, later in the chain
    serving = asyncio.create_task(f.wait_for_resume())
    for _ in range(20):
        await asyncio.sleep(0)
    assert not serving.done()
    assert env.primary.seen == []
    f.resume()
    await asyncio.wait_for(serving, 10)
    assert f.response is not None
    assert f.response.status_code == 200

    g = model_flow("https://api.anthropic.com/v1/messages")
    await env.cc.request(g)
    g.kill()
    await g.wait_for_resume()
    assert g.response is None
    assert len(env.primary.seen) == 1  # only f's

    h = model_flow("https://api.anthropic.com/v1/messages")
    await env.cc.request(h)
    h.response = http.Response.make(204)  # answered by an addon after ours
    await h.wait_for_resume()
    assert h.response.status_code == 204
    assert len(env.primary.seen) == 1


async def test_a_client_that_leaves_a_held_answer_cancels_the_attempt(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ccswitch_addon.inline.CLIENT_CHECK_SECONDS", 0.05)
    env.primary.default = held(ok_json())
    f = model_flow("https://api.anthropic.com/v1/messages")
    answering = asyncio.create_task(request_hooks(env.cc, f))
    await wait_until(lambda: env.primary.seen, what="the request at the primary")
    f.client_conn.state = ConnectionState.CAN_WRITE  # as mitmproxy marks a client that hung up
    await asyncio.wait_for(answering, 5)  # without the gate ever opening
    assert f.response is None
    assert f.error is not None
    assert f.error.msg == Error.KILLED_MESSAGE
    env.cc.error(f)
    assert not env.cc._routed
    assert "primary: client_gone" in f.comment  # as when a client leaves the relay
    assert env.cc.engine is not None
    assert env.cc.engine.router.breaker("claude", "primary").window_counts() == (0, 0)
    assert env.backup.seen == []


async def test_a_failure_inside_the_hook_answers_500_in_the_apis_shape(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object) -> None:
        raise RuntimeError("a bug")

    assert env.cc.relay is not None
    monkeypatch.setattr(env.cc.relay.upstream, "serve", broken)
    f = model_flow("https://api.anthropic.com/v1/messages")
    await request_hooks(env.cc, f)
    assert f.response is not None
    assert f.response.status_code == 500
    assert json.loads(f.response.content or b"")["error"]["message"] == (
        "ccswitch: the proxy failed to answer"
    )


async def test_a_small_json_answer_is_not_streamed(env: Env) -> None:
    f = model_flow("https://api.anthropic.com/v1/messages")
    await request_hooks(env.cc, f)
    await through_relay(env.cc, f)
    assert f.response is not None
    assert f.response.stream is False
    assert f.response.status_code == 200


async def test_a_failover_is_shown_with_a_flow_per_attempt_and_no_key(env: Env) -> None:
    env.cc._seen = True  # as in mitmweb, which has a flow list
    env.primary.default = status(529)
    f = model_flow("https://api.anthropic.com/v1/messages", headers={"x-api-key": "mine"})
    await request_hooks(env.cc, f)
    await through_relay(env.cc, f)
    assert f.response is not None
    assert f.response.status_code == 200
    assert f.request.host == "api.anthropic.com"
    assert f.comment == "claude → backup (after primary: 529)"
    assert f.marked == ":twisted_rightwards_arrows:"
    assert [a["provider"] for a in f.metadata[ROUTED]["attempts"]] == ["primary", "backup"]
    deadline = asyncio.get_running_loop().time() + 5
    while len(attempts := [s for s in env.seen.flows if ATTEMPT in s.metadata]) < 2:
        assert asyncio.get_running_loop().time() < deadline, "the attempt flows never came"
        await asyncio.sleep(0.01)  # they are shown after the answer, in a task of their own
    assert [(a.metadata[ATTEMPT]["provider"], a.marked) for a in attempts] == [
        ("primary", ":x:"),
        ("backup", ":white_check_mark:"),
    ]
    assert attempts[0].response is not None
    assert attempts[0].response.status_code == 529
    assert attempts[1].request.host == "127.0.0.1"
    assert attempts[1].request.path == "/api/v1/messages"
    assert attempts[1].request.headers["authorization"] == "Bearer sk-b…6789"
    assert json.loads(attempts[1].request.content or b"")["model"] == "vendor/sonnet"
    assert env.backup.seen[0].headers["authorization"] == f"Bearer {SECRET}"
    for shown in [f, *attempts]:
        assert SECRET not in repr(shown.get_state())


async def test_a_flow_that_fails_before_the_relay_takes_it_is_restored(env: Env) -> None:
    cc = env.cc
    assert cc.relay is not None
    f = model_flow("https://api.anthropic.com/v1/messages", STREAM_BODY)
    await request_hooks(cc, f)
    assert f.id in cc.relay.jobs
    f.error = tflow.terr("Client disconnected.")
    cc.error(f)
    assert f.id not in cc.relay.jobs
    assert not cc._routed
    assert f.request.url == "https://api.anthropic.com/v1/messages"
    assert f.comment == "claude: the client went away before an answer"
    assert cc.engine is not None
    assert cc.engine.router.breaker("claude", "primary").window_counts() == (0, 0)


async def test_flows_the_addon_made_are_left_alone(env: Env) -> None:
    f = model_flow("https://api.anthropic.com/v1/messages")
    f.metadata[ATTEMPT] = {"of": "x"}
    before = f.request.get_state()
    await request_hooks(env.cc, f)
    assert f.request.get_state() == before
    env.cc.responseheaders(f)  # not routed: nothing to restore
    assert f.response is None


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("POST", "https://api.anthropic.com/api/claude_code/metrics"),
        ("GET", "https://api.openai.com/v1/responses"),
        ("POST", "https://example.com/v1/messages"),
        ("POST", "https://api.anthropic.com/v1/messages/batches"),
    ],
)
async def test_unrelated_requests_pass_untouched(env: Env, method: str, url: str) -> None:
    f = model_flow(url, method=method, headers={"x-api-key": "client"})
    before = f.request.get_state()
    await request_hooks(env.cc, f)
    assert f.request.get_state() == before
    assert f.response is None
    assert not env.cc._routed


# --- codex's websocket ----------------------------------------------------------------------


def upgrade(url: str = "https://api.openai.com/v1/responses") -> http.HTTPFlow:
    return model_flow(url, method="GET", headers={"upgrade": "websocket", "connection": "Upgrade"})


async def test_a_websocket_upgrade_on_a_routed_path_gets_426(env: Env) -> None:
    f = upgrade()
    await request_hooks(env.cc, f)
    assert f.response is not None
    assert f.response.status_code == 426
    assert json.loads(f.response.content or b"")["error"]["code"] == "upgrade_required"
    assert "falls back to HTTP" in f.comment
    assert env.backup.seen == []


@pytest.mark.parametrize(
    "url", ["https://api.openai.com/v1/models", "https://example.com/v1/responses"]
)
async def test_other_websockets_pass(env: Env, url: str) -> None:
    f = upgrade(url)
    await request_hooks(env.cc, f)
    assert f.response is None
    assert f.request.url == url


async def test_websocket_passthrough_lets_the_upgrade_through(env: Env) -> None:
    text = config_for(env.primary, env.backup).replace(
        "  codex:\n    queue: [solo]\n", "  codex:\n    queue: [solo]\n    websocket: passthrough\n"
    )
    env.path.write_text(text)
    env.cc.reload()
    f = upgrade()
    await request_hooks(env.cc, f)
    assert f.response is None
    assert f.request.url == "https://api.openai.com/v1/responses"


# --- refused before routing -------------------------------------------------------------------


async def test_a_remote_client_gets_403_and_no_key(env: Env) -> None:
    f = model_flow("https://api.anthropic.com/v1/messages", peer="192.0.2.7")
    env.cc.requestheaders(f)
    assert f.response is not None
    assert f.response.status_code == 403
    g = model_flow("https://api.anthropic.com/v1/messages", peer="192.0.2.7")
    await request_hooks(env.cc, g)  # the request hook alone refuses it too, in the API's shape
    assert g.response is not None
    assert g.response.status_code == 403
    assert json.loads(g.response.content or b"")["type"] == "error"
    for flow in (f, g):
        assert flow.request.host == "api.anthropic.com"
        assert SECRET not in (flow.response.text or "")
    assert not env.cc._routed


async def test_a_remote_client_allowed_by_option_is_routed(env: Env) -> None:
    from mitmproxy import ctx

    ctx.options.update(ccswitch_allow_remote="true")
    f = model_flow("https://api.anthropic.com/v1/messages", STREAM_BODY, peer="192.0.2.7")
    env.cc.requestheaders(f)
    await request_hooks(env.cc, f)
    assert f.response is None
    assert f.id in env.cc._routed


@pytest.mark.parametrize(
    ("url", "headers", "code"),
    [
        ("https://api.anthropic.com/v1/%2e%2e/messages", {}, 400),
        ("https://api.anthropic.com/v1/messages", {"origin": "https://evil.example"}, 403),
        ("http://api.anthropic.com/v1/messages", {}, 403),
    ],
)
async def test_the_guard_refuses_before_routing(
    env: Env, url: str, headers: dict[str, str], code: int
) -> None:
    f = model_flow(url, headers=headers)
    await request_hooks(env.cc, f)
    assert f.response is not None
    assert f.response.status_code == code
    assert f.request.host == "api.anthropic.com"
    assert not env.cc._routed


# --- control host and commands ------------------------------------------------------------------


async def control(
    cc: CcSwitch, method: str, path: str, body: object = None, peer: str = "127.0.0.1"
) -> http.Response:
    headers = {"content-type": "application/json", "x-ccswitch-token": cc.control.token}
    f = model_flow(
        f"http://ccswitch.local{path}", body=body, method=method, peer=peer, headers=headers
    )
    await request_hooks(cc, f)
    assert f.response is not None
    return f.response


async def test_status_json(env: Env) -> None:
    response = await control(env.cc, "GET", "/status")
    assert response.status_code == 200
    claude = json.loads(response.content or b"")["apps"]["claude"]
    assert claude["current"] == "primary"
    assert [q["id"] for q in claude["queue"]][:2] == ["primary", "backup"]
    assert SECRET not in response.text


def trip(cc: CcSwitch, app: str, pid: str) -> None:
    assert cc.engine is not None
    breaker = cc.engine.router.breaker(app, pid)
    permit = breaker.acquire()
    assert permit is not None
    breaker.release(permit, classify_error(ErrorKind.CONNECT, "refused"))
    assert breaker.label() == "open"


async def test_control_switch_reset_and_errors(env: Env) -> None:
    cc = env.cc
    assert cc.engine is not None
    ok = await control(cc, "POST", "/switch", {"app": "claude", "provider": "spare"})
    assert ok.status_code == 200
    assert cc.engine.router.current("claude") == "spare"
    trip(cc, "claude", "backup")
    reset = await control(cc, "POST", "/reset", {"app": "claude", "provider": "backup"})
    assert reset.status_code == 200
    assert cc.engine.router.breaker("claude", "backup").label() == "closed"
    missing = await control(cc, "POST", "/switch", {"app": "nope", "provider": "x"})
    assert missing.status_code == 404
    assert "unknown app 'nope'" in missing.text
    assert (await control(cc, "POST", "/switch", {"app": "claude"})).status_code == 400
    assert (await control(cc, "GET", "/status", peer="192.0.2.1")).status_code == 403


async def test_commands(env: Env) -> None:
    cc = env.cc
    with pytest.raises(exceptions.CommandError, match="unknown provider 'ghost'"):
        cc.switch("claude", "ghost")
    with pytest.raises(exceptions.CommandError, match="unknown app"):
        cc.reset("nope", "x")
    cc.switch("claude", "backup")
    assert json.loads(cc.status())["apps"]["claude"]["current"] == "backup"
    trip(cc, "claude", "primary")
    cc.reset("claude", "primary")
    assert json.loads(cc.status())["apps"]["claude"]["queue"][0]["state"] == "closed"


# --- reload -------------------------------------------------------------------------------------


async def test_a_broken_reload_keeps_the_old_configuration(env: Env) -> None:
    cc = env.cc
    good = env.path.read_text()
    env.path.write_text(good.replace("failure_threshold: 2", "failure_treshold: 2"))
    with pytest.raises(exceptions.CommandError, match=r"providers.yaml:4: .*failure_treshold"):
        cc.reload()
    with pytest.raises(exceptions.OptionsError, match="did you mean 'failure_threshold'"):
        cc.configure({"ccswitch_config"})  # as mitmproxy calls it when the option is set
    error = json.loads(cc.status())["config_error"]
    assert "failure_treshold" in error["message"]
    f = model_flow("https://api.anthropic.com/v1/messages")
    await request_hooks(cc, f)
    await through_relay(cc, f)
    assert f.metadata[ROUTED]["provider"] == "primary"
    env.path.write_text(good)
    cc.reload()
    assert json.loads(cc.status())["config_error"] is None


async def test_a_request_in_flight_finishes_on_the_configuration_it_started_with(
    env: Env,
) -> None:
    cc = env.cc
    env.primary.default = held(ok_json())
    f = model_flow("https://api.anthropic.com/v1/messages")
    answering = asyncio.create_task(request_hooks(cc, f))  # answered in the hook: it waits there
    await wait_until(lambda: env.primary.seen, what="the request at the primary")
    env.path.write_text(env.path.read_text().replace("queue: [primary, backup]", "queue: [spare]"))
    cc.reload()
    env.primary.gate.set()
    await asyncio.wait_for(answering, 10)
    await through_relay(cc, f)
    assert f.metadata[ROUTED]["provider"] == "primary"
    assert cc.engine is not None
    assert cc.engine.router.breaker("claude", "primary").window_counts() == (1, 0)
    later = model_flow("https://api.anthropic.com/v1/messages", STREAM_BODY)
    await request_hooks(cc, later)
    assert cc.relay is not None
    job = cc.relay.jobs[later.id]
    assert isinstance(job, Begun)
    assert job.exchange.app.queue == ("spare",)


# --- start-up -----------------------------------------------------------------------------------


async def test_warns_when_listening_beyond_loopback(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    from mitmproxy import ctx

    ctx.options.update(listen_host="")
    env.cc.running()
    await env.cc.started()
    assert "listening on every interface, beyond loopback" in caplog.text
    caplog.clear()
    ctx.options.update(listen_host="127.0.0.1")
    env.cc.running()
    await env.cc.started()
    assert "beyond loopback" not in caplog.text


async def test_the_default_config_honours_ccswitch_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BACKUP_KEY", SECRET)
    path = tmp_path / "elsewhere.yaml"
    path.write_text(
        CONFIG.replace("<primary>", "http://127.0.0.1:1").replace("<backup>", "http://127.0.0.1:2")
    )
    monkeypatch.setenv("CCSWITCH_CONFIG", str(path))
    monkeypatch.chdir(tmp_path)  # no ./providers.yaml here
    cc = CcSwitch()
    with taddons.context(proxyserver.Proxyserver(), cc) as tctx:
        tctx.configure(cc, ccswitch_config="", ccswitch_state="")
        assert cc.engine is not None
        assert cc.engine.router.config.source == str(path)


async def test_without_a_flow_list_or_file_no_attempt_flows_are_made(env: Env) -> None:
    env.primary.default = status(529)
    f = model_flow("https://api.anthropic.com/v1/messages")
    await request_hooks(env.cc, f)
    await through_relay(env.cc, f)
    assert f.comment == "claude → backup (after primary: 529)"  # the tool's flow still says it
    await asyncio.gather(*env.cc._showing)
    assert not [s for s in env.seen.flows if ATTEMPT in s.metadata]

"""The second hour of use through a real mitmdump: keys added while it runs, honest reasons,
the untrusted-CA warning, a quiet console."""

from __future__ import annotations

import io
import os
import re
import socket
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ccswitch_addon.cli.staleproxy import stale_keys
from ccswitch_addon.core.config import parse_config

from .fakes import FakeProvider, error, ok_json
from .proxy import Proxy, request, wait_until

pytestmark = pytest.mark.e2e

MESSAGES = "https://api.anthropic.com/v1/messages"
BODY = {
    "model": "claude-opus-4-8",
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "hi"}],
}
HEADERS = {"x-api-key": "client-own-key", "anthropic-version": "2023-06-01"}
KEY = "sk-from-dotenv-0123456789"


def config(primary: str, backup: str, models: str = "") -> str:
    return f"""\
apps:
  claude:
    queue: [official, backup]
    providers:
      official:
        base_url: {primary}
        auth: passthrough
      backup:
        base_url: {backup}
        auth: x-api-key
        api_key: ${{CCSW_DOTENV_KEY}}
{models}
"""


def send(proxy: Proxy, body: Any = None) -> Any:
    return request(proxy, "POST", MESSAGES, json=body or BODY, headers=HEADERS)


def status(proxy: Proxy) -> dict[str, Any]:
    document: dict[str, Any] = request(proxy, "GET", "http://ccswitch.local/status").json()
    return document


def test_a_key_added_to_the_env_file_takes_effect_without_a_restart(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.default = error(529)
    backup.default = ok_json()
    proxy = make_proxy(config(primary.url, backup.url))
    proxy.wait_for_output("provider disabled: environment variable CCSW_DOTENV_KEY is not set")
    assert f"add CCSW_DOTENV_KEY to {tmp_path / '.env'} (takes effect at once)" in proxy.output()
    assert send(proxy).status == 529  # the only backup is disabled

    env = tmp_path / ".env"
    env.write_text(f"# keys for providers.yaml\nCCSW_DOTENV_KEY={KEY}\n")
    env.chmod(0o600)
    wait_until(
        lambda: (
            not next(
                e for e in status(proxy)["apps"]["claude"]["queue"] if e["id"] == "backup"
            ).get("disabled_reason")
        ),
        10,
        "the backup enabled by the .env",
    )
    proxy.wait_for_output(f"ccswitch: reloaded the keys in {env}")
    reply = send(proxy)
    assert reply.status == 200
    assert reply.headers["x-ccswitch-provider"] == "backup"
    assert backup.requests[-1].headers["x-api-key"] == KEY
    assert KEY not in proxy.output()


FOUR = """\
apps:
  claude:
    queue: [official, chat, openrouter, deepseek]
    breaker: {{failure_threshold: 1, open_seconds: 600}}
    providers:
      official: {{base_url: "{official}", auth: passthrough}}
      chat: {{base_url: "{spare}", api_key: "${{CCSW_CHAT_KEY}}"}}
      openrouter: {{base_url: "{openrouter}", auth: passthrough}}
      deepseek: {{base_url: "{spare}", api_key: "${{CCSW_DS_KEY}}"}}
"""


def test_a_switch_reason_names_only_what_came_before_the_provider_that_served(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    official, openrouter, spare = fakes("official"), fakes("openrouter"), fakes("spare")
    official.default = error(529)
    openrouter.default = ok_json()
    proxy = make_proxy(
        FOUR.format(official=official.url, openrouter=openrouter.url, spare=spare.url)
    )
    proxy.wait_for_output(
        "claude [official → chat (disabled: CCSW_CHAT_KEY not set) → openrouter → "
        "deepseek (disabled: CCSW_DS_KEY not set)]"
    )
    reply = send(proxy)
    assert reply.status == 200
    assert reply.headers["x-ccswitch-provider"] == "openrouter"
    assert "x-ccswitch-note" not in reply.headers
    (event,) = status(proxy)["events"]
    assert event["reason"] == (
        "after official: 529, chat: skipped, disabled (CCSW_CHAT_KEY not set)"
    )
    line = proxy.wait_for_output("ccswitch: claude  official 529 → openrouter 200  → 200  ")
    assert "deepseek" not in line
    assert spare.requests == []


def test_no_failover_is_explained_to_the_client_and_in_the_log(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    official, openrouter, spare = fakes("official"), fakes("openrouter"), fakes("spare")
    openrouter.queue(error(500))
    official.queue(ok_json())
    proxy = make_proxy(
        FOUR.format(official=official.url, openrouter=openrouter.url, spare=spare.url)
    )
    token = request(proxy, "GET", "http://ccswitch.local/token").json()["token"]
    switched = request(
        proxy,
        "POST",
        "http://ccswitch.local/switch",
        json={"app": "claude", "provider": "openrouter"},
        headers={"content-type": "application/json", "x-ccswitch-token": token},
    )
    assert switched.status == 200
    send(proxy)  # openrouter 500 (opens: threshold 1) → official serves
    official.default = error(529)
    reply = send(proxy)  # official 529; openrouter open, chat and deepseek disabled
    assert reply.status == 529
    note = reply.headers["x-ccswitch-note"]
    assert note.startswith("no failover: ")
    assert "chat disabled (CCSW_CHAT_KEY not set)" in note
    assert "deepseek disabled (CCSW_DS_KEY not set)" in note
    assert re.search(r"openrouter open until \d\d:\d\d", note), note
    line = proxy.wait_for_output("ccswitch: claude  official 529  → 529")
    assert note in line


def test_the_quiet_console_prints_one_line_per_routed_request_and_nothing_else(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    official, spare = fakes("official"), fakes("spare")
    official.default = ok_json(input_tokens=12, output_tokens=34)
    spare.default = ok_json()
    (tmp_path / ".env").write_text("CCSW_DOTENV_KEY=sk-spare-123456\n")
    (tmp_path / ".env").chmod(0o600)
    proxy = make_proxy(
        config(official.url, spare.url),
        extra=["--set", "flow_detail=0", "--set", "ccswitch_quiet=true"],
    )
    proxy.wait_for_output("ccswitch: dashboard at")
    before = len(proxy.output())
    for path in ("/status", "/history", "/token", "/"):  # what a dashboard refresh asks
        assert request(proxy, "GET", f"http://ccswitch.local{path}").status == 200
    passthrough = request(proxy, "GET", f"{spare.url}/elsewhere")  # not a routed path
    assert passthrough.status == 200
    reply = send(proxy)
    assert reply.status == 200
    line = proxy.wait_for_output("ccswitch: claude  official 200  → 200  ", since=before)
    assert re.search(r"  12\+34 tok  \$\d+\.\d{4}$", line), line  # a known model is priced
    new = [text for text in proxy.output()[before:].splitlines() if text.strip()]
    assert new == [line], new


def _untrusting_handshake(proxy: Proxy, host: str = "api.anthropic.com") -> str:
    """CONNECT through the proxy, then a TLS handshake that trusts only the system CAs."""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as raw:
        raw.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += raw.recv(1024)
        assert head.startswith(b"HTTP/1.1 200"), head
        context = ssl.create_default_context()  # not the proxy's CA: as a tool without it
        try:
            with context.wrap_socket(raw, server_hostname=host):
                pass
        except ssl.SSLCertVerificationError as e:
            return str(e)
    raise AssertionError("the handshake succeeded without the proxy's CA")


def test_a_client_without_the_ca_is_a_warning_until_one_trusts_it(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy]
) -> None:
    official, spare = fakes("official"), fakes("spare")
    official.default = ok_json()
    proxy = make_proxy(config(official.url, spare.url))
    assert status(proxy)["warnings"] == []
    assert "certificate verify failed" in _untrusting_handshake(proxy)
    warnings = wait_until(lambda: status(proxy)["warnings"], 10, "the CA warning")
    (warning,) = warnings
    assert warning.startswith("a client (claude at 127.0.0.1, for api.anthropic.com) ")
    assert "does not trust the proxy's CA: run eval \"$(/" in warning
    assert " env claude --port " in warning  # the line for this proxy's port
    proxy.wait_for_output("does not trust the proxy's CA")
    assert send(proxy).status == 200  # a client with the CA: the warning goes
    wait_until(lambda: status(proxy)["warnings"] == [], 10, "the warning cleared")


def test_ccswitch_run_prints_nothing_for_passthrough_and_dashboard_polling(
    fakes: Callable[[str], FakeProvider], tmp_path: Path
) -> None:
    official, spare = fakes("official"), fakes("spare")
    spare.default = ok_json()
    path = tmp_path / "providers.yaml"
    path.write_text(config(official.url, spare.url))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["HOME"] = str(tmp_path)
    log = tmp_path / "run.log"
    ccswitch = Path(sys.executable).parent / "ccswitch"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(ccswitch), "run", "--config", str(path), "--port", str(port),
             "--set", f"confdir={tmp_path}/conf", "--set", f"ccswitch_state={tmp_path}/s.db"],
            stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path, env=env,
        )  # fmt: skip
    try:
        wait_until(lambda: "dashboard at" in log.read_text(), 30, "ccswitch run to start")
        printed = log.read_text()
        assert f'eval "$({ccswitch} env claude --port {port} --confdir ' in printed
        before = len(printed)
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{port}"})
        )
        for _ in range(3):  # three dashboard refreshes and some passthrough traffic
            for what in ("status", "history", "requests", "tokens"):
                with opener.open(f"http://ccswitch.local/{what}", timeout=10) as answer:
                    assert answer.status == 200
            with opener.open(f"{spare.url}/elsewhere", timeout=10) as answer:
                assert answer.status == 200
        assert log.read_text()[before:].strip() == ""
    finally:
        process.terminate()
        process.wait(15)


def test_check_says_when_the_running_proxy_lacks_a_key_this_shell_has(
    fakes: Callable[[str], FakeProvider], make_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    official, spare = fakes("official"), fakes("spare")
    proxy = make_proxy(config(official.url, spare.url))  # started without CCSW_DOTENV_KEY
    assert proxy.config_path is not None
    here = parse_config(
        proxy.config_path.read_text(), str(proxy.config_path), env={"CCSW_DOTENV_KEY": "sk-x"}
    )
    err = io.StringIO()
    assert stale_keys(here, err, proxy.url) == ["claude:backup"]
    assert (
        f"note: the proxy at {proxy.url} has claude:backup disabled: CCSW_DOTENV_KEY is set "
        "here but not in its environment; add CCSW_DOTENV_KEY to "
    ) in err.getvalue()
    elsewhere = parse_config(
        proxy.config_path.read_text(), str(tmp_path / "other.yaml"), env={"CCSW_DOTENV_KEY": "k"}
    )
    assert stale_keys(elsewhere, io.StringIO(), proxy.url) == []  # another file: not ours

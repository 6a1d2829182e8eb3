"""Providers reached through upstream proxies, through a real mitmdump: a SOCKS5 and an HTTP
CONNECT proxy on loopback (tests/e2e/tunnels.py), the global option, a provider's own proxy:,
proxy: none, a dead proxy failing over, credentials masked, and `ccswitch check` / `test`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .fakes import FakeProvider, closed_port, ok_json, ok_sse
from .proxy import Proxy
from .test_routing import claude_config, control, provider_status, send, start
from .tunnels import TunnelProxy

pytestmark = pytest.mark.e2e

PASSWORD = "tunnel-pass-0123456789"


@pytest.fixture
def tunnels() -> Iterator[Callable[..., TunnelProxy]]:
    made: list[TunnelProxy] = []

    def make(kind: str, **kwargs: str) -> TunnelProxy:
        proxy = TunnelProxy(kind, **kwargs).start()
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.stop()


def address(fake: FakeProvider) -> str:
    return fake.url.removeprefix("http://").rstrip("/")


def with_proxy(config: str, pid: str, value: str) -> str:
    """The provider's `proxy:` line added under its base_url."""
    marker = f"      {pid}:\n"
    head, _, rest = config.partition(marker)
    first, _, tail = rest.partition("\n")
    return f"{head}{marker}{first}\n        proxy: {value!r}\n{tail}"


def test_the_global_option_sends_every_provider_through_a_socks5_proxy(
    fakes: Callable[[str], FakeProvider],
    make_proxy: Callable[..., Proxy],
    tunnels: Callable[..., TunnelProxy],
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.default = ok_sse()
    socks = tunnels("socks5")
    proxy = start(
        make_proxy,
        claude_config(primary.url, backup.url),
        extra=["--set", f"ccswitch_upstream_proxy={socks.url()}"],
    )
    for _ in range(2):
        reply = send(proxy, body={"model": "m", "max_tokens": 8, "messages": [], "stream": True})
        assert reply.status == 200
        assert reply.headers["x-ccswitch-provider"] == "primary"
        assert b"message_stop" in reply.body
    assert [s.target for s in socks.seen] == [address(primary)]  # one tunnel, kept alive
    assert len(primary.requests) == 2


def test_a_providers_own_proxy_with_credentials_and_proxy_none(
    fakes: Callable[[str], FakeProvider],
    make_proxy: Callable[..., Proxy],
    tunnels: Callable[..., TunnelProxy],
    tmp_path: Path,
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    primary.default = ok_json()
    backup.default = ok_json()
    connect = tunnels("http", user="team", password=PASSWORD)
    socks = tunnels("socks5")  # the global proxy; primary says none
    config = claude_config(primary.url, backup.url)
    config = with_proxy(config, "primary", "none")
    url = f"http://team:${{TUNNEL_PASS}}@127.0.0.1:{connect.port}"
    config = with_proxy(config, "backup", url)
    flows = tmp_path / "flows.mitm"
    proxy = start(
        make_proxy,
        config,
        env={"TUNNEL_PASS": PASSWORD},
        extra=["--set", f"ccswitch_upstream_proxy={socks.url()}", "-w", str(flows)],
    )
    assert send(proxy).headers["x-ccswitch-provider"] == "primary"
    assert socks.seen == []  # proxy: none goes direct, whatever the option says
    assert len(primary.requests) == 1
    # The backup, through its own CONNECT proxy with a user and password from ${VAR}.
    control(proxy, "switch", "claude", "backup")
    reply = send(proxy)
    assert reply.headers["x-ccswitch-provider"] == "backup"
    assert [(s.target, s.user) for s in connect.seen] == [(address(backup), "team")]
    assert socks.seen == []
    proxy.stop()
    assert PASSWORD not in proxy.output()
    assert PASSWORD.encode() not in flows.read_bytes()


def test_a_dead_proxy_fails_over_and_the_reason_names_the_proxy(
    fakes: Callable[[str], FakeProvider],
    make_proxy: Callable[..., Proxy],
    tunnels: Callable[..., TunnelProxy],
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    backup.default = ok_json()
    socks = tunnels("socks5")
    dead = f"http://127.0.0.1:{closed_port()}"
    config = with_proxy(claude_config(primary.url, backup.url), "primary", dead)
    proxy = start(make_proxy, config, extra=["--set", f"ccswitch_upstream_proxy={socks.url()}"])
    reply = send(proxy)
    assert reply.status == 200
    assert reply.headers["x-ccswitch-provider"] == "backup"
    assert reply.headers["x-ccswitch-attempts"] == "2"
    assert primary.requests == []
    assert [s.target for s in socks.seen] == [address(backup)]
    entry = provider_status(proxy, "primary")
    assert entry["state"] == "open"
    assert f"proxy {dead} failed" in proxy.output()


def test_a_proxy_option_that_is_this_proxy_is_refused(make_proxy: Callable[..., Proxy]) -> None:
    proxy = make_proxy(
        claude_config("http://127.0.0.1:9", "http://127.0.0.1:9"),
        start=False,
        env={"BACKUP_KEY": "k", "HTTPS_PROXY": "http://127.0.0.1:8080"},
        extra=["--listen-port", "8080", "--set", "ccswitch_upstream_proxy=env"],
    )
    proxy.start(expect_exit=True)
    assert "ccswitch_upstream_proxy" in proxy.output()
    assert "own address" in proxy.output()


def test_check_shows_each_proxy_masked_and_test_goes_through_it(
    fakes: Callable[[str], FakeProvider], tunnels: Callable[..., TunnelProxy], tmp_path: Path
) -> None:
    good = fakes("good")
    good.default = ok_sse()
    socks = tunnels("socks5", user="me", password=PASSWORD)
    config = tmp_path / "providers.yaml"
    config.write_text(f"""\
apps:
  claude:
    queue: [good, local]
    providers:
      good:
        base_url: "{good.url}"
        api_key: "${{K}}"
        proxy: "socks5h://me:${{TUNNEL_PASS}}@127.0.0.1:{socks.port}"
      local: {{base_url: "http://127.0.0.1:11434", auth: passthrough, proxy: none}}
""")
    ccswitch = str(Path(sys.executable).parent / "ccswitch")
    env = {"PATH": "/usr/bin:/bin", "K": "sk-test-000000000000", "TUNNEL_PASS": PASSWORD}
    checked = subprocess.run(
        [ccswitch, "check", str(config)], capture_output=True, text=True, env=env, timeout=60
    )
    assert checked.returncode == 0, checked.stderr
    assert f"proxy socks5://me:***@127.0.0.1:{socks.port}" in checked.stdout
    assert "proxy none" in checked.stdout
    assert PASSWORD not in checked.stdout + checked.stderr
    tested = subprocess.run(
        [ccswitch, "test", "claude", "--provider", "good", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert [s.target for s in socks.seen] == [address(good)]
    assert PASSWORD not in tested.stdout + tested.stderr

"""The ccswitch command against a running proxy: a refused reload, a refused switch, the port."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from .fakes import FakeProvider
from .proxy import Proxy, wait_until

pytestmark = pytest.mark.e2e

CCSWITCH = str(Path(sys.executable).parent / "ccswitch")


def ccswitch(proxy: Proxy, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CCSWITCH, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=proxy.tmp_path,
        env=proxy.child_env(),
    )


def test_a_refused_reload_and_a_refused_switch_are_plain_to_see(
    make_proxy: Callable[..., Proxy], fakes: Callable[[str], FakeProvider]
) -> None:
    primary, backup = fakes("primary"), fakes("backup")
    good = f"""\
apps:
  claude:
    queue: [primary, backup]
    providers:
      primary: {{base_url: "{primary.url}", auth: passthrough}}
      backup: {{base_url: "{backup.url}", auth: passthrough}}
      keyless: {{base_url: "{backup.url}", api_key: "${{CCSW_E2E_UNSET}}"}}
"""
    proxy = make_proxy(good)
    assert proxy.config_path is not None
    url = f"http://127.0.0.1:{proxy.port}"

    refused = ccswitch(proxy, "switch", "claude", "keyless", "--proxy", url)
    assert refused.returncode == 2
    assert "claude cannot switch to keyless: it is disabled" in refused.stderr
    assert "claude keeps routing to primary" in refused.stderr
    unknown = ccswitch(proxy, "switch", "claude", "nope", "--proxy", url)
    assert unknown.returncode == 2
    assert "unknown provider 'nope' for claude; configured: primary, backup, keyless" in (
        unknown.stderr
    )
    switched = ccswitch(proxy, "switch", "claude", "backup", "--proxy", url)
    assert switched.returncode == 0
    assert switched.stdout.startswith("claude now tries backup first")

    proxy.config_path.write_text(good.replace("queue:", "queue: [primary]\n    queue:"))

    def shown() -> str | None:
        status = ccswitch(proxy, "status", "--proxy", url)
        return status.stdout if "CONFIG ERROR" in status.stdout else None

    text = wait_until(shown, 20, "the refused reload in `ccswitch status`")
    assert "apps.claude.queue: duplicate key" in text
    assert "keeps serving the previous configuration" in text
    status = ccswitch(proxy, "status", "--proxy", url)
    assert f"config: {proxy.config_path} (used by the proxy at {url})" in status.stderr
    assert "manual switch by ccswitch switch" in status.stdout

    proxy.config_path.write_text(good)
    wait_until(lambda: True if shown() is None else None, 20, "a good reload to clear it")


def test_run_on_the_port_of_a_running_proxy_says_so_before_starting(
    make_proxy: Callable[..., Proxy],
) -> None:
    proxy = make_proxy(
        "apps:\n  claude:\n    queue: [a]\n    providers:\n"
        '      a: {base_url: "http://127.0.0.1:9", auth: passthrough}\n'
    )
    result = ccswitch(proxy, "run", "--port", str(proxy.port), "--config", str(proxy.config_path))
    assert result.returncode == 1
    assert "HTTPS_PROXY" not in result.stdout
    assert "Errno" not in result.stderr
    assert "Is ccswitch already running? (`ccswitch status --proxy" in result.stderr

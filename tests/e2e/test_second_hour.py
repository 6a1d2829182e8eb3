"""The second hour of use through a real mitmdump: keys added while it runs, honest reasons,
the untrusted-CA warning, a quiet console."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

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
    reply = send(proxy)
    assert reply.status == 200
    assert reply.headers["x-ccswitch-provider"] == "backup"
    assert backup.requests[-1].headers["x-api-key"] == KEY
    assert KEY not in proxy.output()

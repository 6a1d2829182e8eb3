"""`ccswitch check`: what was understood on success, one FILE:LINE: key.path line on a mistake."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ccswitch_addon.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-or-v1-0123456789abcdef2222"
LITERAL = "sk-lit-abcdefghijklmn9876"

GOOD = """\
apps:
  claude:
    queue: [primary, backup, later]
    providers:
      primary:
        name: Anthropic
        base_url: https://api.anthropic.com
        auth: passthrough
      backup:
        base_url: https://openrouter.ai/api
        auth: bearer
        api_key: ${CCSW_TEST_KEY}
        models: {"*": anthropic/claude-sonnet-4.5}
      later:
        base_url: https://later.example
        api_key: ${CCSW_TEST_MISSING}
      spare:
        base_url: https://spare.example/v1
        auth: x-api-key
        api_key: sk-lit-abcdefghijklmn9876
  gemini:
    queue: [official]
    failover: false
    providers:
      official:
        base_url: https://generativelanguage.googleapis.com
        auth: passthrough
"""


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("CCSW_TEST_KEY", KEY)
    monkeypatch.delenv("CCSW_TEST_MISSING", raising=False)
    return monkeypatch


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "providers.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_check_shows_what_was_understood(
    tmp_path: Path, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, GOOD)
    assert main(["check", str(path)]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == f"{path}: 2 app(s)"
    assert lines[1].startswith("claude  (api anthropic, failover on, up to 3 attempts)")
    assert "hosts: api.anthropic.com   paths: /v1/messages" in out
    assert "breaker: failures 8, successes 3, open 90s, rate 0.7 over 120s (min 15)" in out
    rows = [line.split() for line in lines if line.startswith("  ") and "auth" in line]
    # queue order first, then the provider kept for a manual switch
    assert [(row[0], row[1]) for row in rows[:4]] == [
        ("1.", "primary"),
        ("2.", "backup"),
        ("3.", "later"),
        ("-", "spare"),
    ]
    primary, backup, later, spare = (
        next(line for line in lines if f" {pid} " in line)
        for pid in ("primary", "backup", "later", "spare")
    )
    assert "https://api.anthropic.com  auth passthrough" in primary
    assert "key" not in primary
    assert "https://openrouter.ai/api  auth bearer  key sk-o…2222 (from environment)" in backup
    assert "models * → anthropic/claude-sonnet-4.5" in backup
    assert "auth x-api-key" in later
    assert (
        "DISABLED: ${CCSW_TEST_MISSING} is not set (apps.claude.providers.later.api_key)" in later
    )
    assert "key sk-l…9876" in spare
    assert "(outside the queue: for a manual switch)" in spare
    assert "gemini  (api gemini, failover off, up to 1 attempts)" in out
    assert err.splitlines() == [
        f"config: {path} (given)",
        f"warning: {path}:16: apps.claude.providers.later.api_key: "
        "provider disabled: environment variable CCSW_TEST_MISSING is not set; "
        f"add CCSW_TEST_MISSING to {tmp_path / '.env'} (takes effect at once), "
        "or export it and restart",
        f"warning: {path}:20: apps.claude.providers.spare.api_key: "
        "the key is written in the file; prefer ${VAR} from the environment",
    ]
    for secret in (KEY, LITERAL):
        assert secret not in out
        assert secret not in err


def test_strict_turns_a_disabled_provider_into_an_error(
    tmp_path: Path, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, GOOD)
    assert main(["check", "--strict", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"error: {path}:16: apps.claude.providers.later.api_key: provider disabled" in err
    # a literal key is only a warning, even with --strict
    assert f"warning: {path}:20: apps.claude.providers.spare.api_key" in err

    env.setenv("CCSW_TEST_MISSING", "sk-now-it-is-set-0000")
    assert main(["check", "--strict", str(path)]) == 0
    assert "DISABLED" not in capsys.readouterr().out


def test_check_shows_each_providers_format(
    tmp_path: Path, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = GOOD.replace(
        "        base_url: https://openrouter.ai/api\n",
        "        base_url: https://openrouter.ai/api\n        format: openai_chat\n",
    )
    assert main(["check", str(write(tmp_path, text))]) == 0
    lines = capsys.readouterr().out.splitlines()
    backup, primary, official = (
        next(line for line in lines if f" {pid} " in line)
        for pid in ("backup", "primary", "official")
    )
    assert "key sk-o…2222 (from environment)  format openai_chat" in backup
    assert "format anthropic" in primary
    assert "format gemini" in official


def test_check_without_a_file_reads_providers_yaml_here(
    tmp_path: Path, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path, GOOD)
    env.chdir(tmp_path)
    assert main(["check"]) == 0
    assert capsys.readouterr().out.startswith("providers.yaml: 2 app(s)")


BROKEN = [
    pytest.param(
        "apps:\n  claude:\n    queue: [a]\n    breaker:\n      failure_treshold: 3\n"
        "    providers:\n      a: {base_url: 'https://x.example', auth: passthrough}\n",
        "5: apps.claude.breaker.failure_treshold: unknown key (did you mean 'failure_threshold'?)",
        id="unknown-key",
    ),
    pytest.param(
        "apps:\n  claude:\n    queue: [a]\n    breaker:\n      open_seconds: 90000\n"
        "    providers:\n      a: {base_url: 'https://x.example', auth: passthrough}\n",
        "5: apps.claude.breaker.open_seconds: 90000 is out of range: must be from 0 to 86400",
        id="out-of-range",
    ),
    pytest.param(
        "apps:\n  claude:\n    queue: [a]\n    max_attempts: two\n"
        "    providers:\n      a: {base_url: 'https://x.example', auth: passthrough}\n",
        "4: apps.claude.max_attempts: expected a whole number from 1 to 20, got 'two'",
        id="wrong-type",
    ),
    pytest.param(
        "apps:\n  claude:\n    queue:\n      - a\n      - ghost\n"
        "    providers:\n      a: {base_url: 'https://x.example', auth: passthrough}\n",
        "5: apps.claude.queue[1]: 'ghost' is not a provider of claude; known: a",
        id="queue-names-a-missing-provider",
    ),
    pytest.param(
        "apps:\n  claude:\n    queue: [a]\n    providers:\n      a:\n"
        "        base_url: api.example.com\n        auth: passthrough\n",
        "6: apps.claude.providers.a.base_url: expected an http:// or https:// URL, "
        "got 'api.example.com'",
        id="bad-base-url",
    ),
    pytest.param(
        "apps:\n  claude:\n    queue: [a]\n    providers:\n      a:\n"
        "        base_url: https://x.example\n        auth: token\n",
        "7: apps.claude.providers.a.auth: unknown auth 'token'; one of: x-api-key, bearer, "
        "x-goog-api-key, passthrough",
        id="bad-auth",
    ),
    pytest.param(
        "apps:\n  claude:\n    queue: [a, b\n    providers: {}\n",
        "3: a list opened with '[' on this line is not closed with ']'",
        id="malformed-yaml",
    ),
    pytest.param(
        "# apps: forgotten\n{}\n",
        "2: apps: is required",
        id="missing-apps",
    ),
    pytest.param(
        "apps:\n  aider:\n    queue: [a]\n"
        "    providers:\n      a: {base_url: 'https://x.example', auth: passthrough}\n",
        "2: apps.aider: 'aider' is not a known app (claude, codex, gemini), "
        "so it must set hosts and paths",
        id="custom-app-without-hosts",
    ),
    pytest.param(
        "apps:\n  claude:\n    queue: [a]\n    providers:\n"
        "      a: {base_url: 'https://x.example', auth: passthrough}\n"
        "      a: {base_url: 'https://y.example', auth: passthrough}\n",
        "6: apps.claude.providers.a: duplicate key",
        id="duplicate-key",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BROKEN)
def test_check_names_file_line_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    assert main(["check", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    named, line = err.splitlines()
    assert named == f"config: {path} (given)"
    assert line.startswith(f"{path}:{expected}")
    assert "Traceback" not in err


def test_check_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(tmp_path / "nope.yaml")]) == 2
    assert capsys.readouterr().err == (
        f"config: {tmp_path / 'nope.yaml'} (given)\n{tmp_path / 'nope.yaml'}: no such file\n"
    )


def ccswitch_script() -> str:
    script = Path(sys.executable).parent / "ccswitch"
    found = str(script) if script.exists() else shutil.which("ccswitch")
    assert found, "the ccswitch console script is not installed"
    return found


def test_the_console_script_checks_the_shipped_example() -> None:
    names = ("OPENROUTER_API_KEY", "DEEPSEEK_API_KEY", "GEMINI_BACKUP_API_KEY")
    env = {k: v for k, v in os.environ.items() if k not in names}
    result = subprocess.run(
        [ccswitch_script(), "check", "providers.yaml"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("providers.yaml: 3 app(s)\n")
    for app in ("claude", "codex", "gemini"):
        assert f"\n{app}  (api " in result.stdout
    assert "DISABLED: ${OPENROUTER_API_KEY} is not set" in result.stdout
    assert "environment variable GEMINI_BACKUP_API_KEY is not set" in result.stderr

    strict = subprocess.run(
        [ccswitch_script(), "check", "--strict", "providers.yaml"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert strict.returncode == 2
    assert "Traceback" not in strict.stderr


SECRET_HEADER = "org-secret-value-0123456789"


def test_check_masks_header_values_from_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], env: pytest.MonkeyPatch
) -> None:
    env.setenv("CCSW_TEST_ORG", SECRET_HEADER)
    text = GOOD.replace(
        '        models: {"*": anthropic/claude-sonnet-4.5}\n',
        '        models: {"*": anthropic/claude-sonnet-4.5}\n'
        '        headers: {X-Org-Token: "${CCSW_TEST_ORG}", X-Title: ccswitch}\n',
    )
    assert main(["check", str(write(tmp_path, text))]) == 0
    out, err = capsys.readouterr()
    assert SECRET_HEADER not in out + err
    assert "X-Org-Token: org-…6789" in out
    assert "X-Title: ccswitch" in out  # written in the file: not a secret


def test_check_refuses_a_base_url_with_a_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], env: pytest.MonkeyPatch
) -> None:
    env.setenv("CCSW_TEST_URL", "https://user:hunter2-password@proxy.example/v1")
    for base in ("https://user:hunter2-password@proxy.example/v1", "${CCSW_TEST_URL}"):
        text = GOOD.replace("base_url: https://openrouter.ai/api", f"base_url: {base}")
        path = write(tmp_path, text)
        assert main(["check", str(path)]) == 2
        out, err = capsys.readouterr()
        assert "hunter2" not in out + err
        config_line, line = err.splitlines()
        assert config_line.startswith("config: ")
        assert line.startswith(f"{path}:10: apps.claude.providers.backup.base_url: ")
        assert "put the credential in api_key or headers" in line

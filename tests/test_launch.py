"""`ccswitch env`, `init` and the mitmdump command line that `run` builds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ccswitch_addon.cli.launch import ADDON, EXAMPLE, init_config, mitm_command
from ccswitch_addon.cli.main import main

CCSWITCH = Path(sys.executable).parent / "ccswitch"


def read_back(tool: str, *flags: str) -> dict[str, str]:
    """Run `eval "$(ccswitch env TOOL)"` in a real shell and read the variables back."""
    script = (
        f'eval "$({CCSWITCH} env {tool} {" ".join(flags)})" && '
        'env | grep -E "^(HTTPS_PROXY|NODE_EXTRA_CA_CERTS|SSL_CERT_FILE|'
        'CODEX_CA_CERTIFICATE|ANTHROPIC_BASE_URL|OPENAI_BASE_URL|GOOGLE_GEMINI_BASE_URL)="'
        " || true"
    )
    clean = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    result = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, env=clean, check=True, timeout=60
    )
    return dict(line.split("=", 1) for line in result.stdout.splitlines())


CA = str(Path("~/.mitmproxy/mitmproxy-ca-cert.pem").expanduser())


@pytest.mark.parametrize(
    ("tool", "expected"),
    [
        ("claude", {"HTTPS_PROXY": "http://127.0.0.1:8080", "NODE_EXTRA_CA_CERTS": CA}),
        ("gemini", {"HTTPS_PROXY": "http://127.0.0.1:8080", "NODE_EXTRA_CA_CERTS": CA}),
        (
            "codex",
            {
                "HTTPS_PROXY": "http://127.0.0.1:8080",
                "SSL_CERT_FILE": CA,
                "CODEX_CA_CERTIFICATE": CA,
            },
        ),
    ],
)
def test_env_proxy_mode_in_a_real_shell(tool: str, expected: dict[str, str]) -> None:
    assert read_back(tool) == expected


@pytest.mark.parametrize(
    ("tool", "expected"),
    [
        ("claude", {"ANTHROPIC_BASE_URL": "http://127.0.0.1:8080"}),
        ("codex", {"OPENAI_BASE_URL": "http://127.0.0.1:8080/v1"}),
        ("gemini", {"GOOGLE_GEMINI_BASE_URL": "http://127.0.0.1:8080"}),
    ],
)
def test_env_reverse_mode_in_a_real_shell(tool: str, expected: dict[str, str]) -> None:
    assert read_back(tool, "--reverse") == expected


def test_env_reverse_names_the_run_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["env", "codex", "--reverse", "--port", "9000"]) == 0
    out = capsys.readouterr().out
    assert "ccswitch run --port 9000 --mode reverse:https://api.openai.com" in out
    assert "OPENAI_BASE_URL=http://127.0.0.1:9000/v1" in out
    # Codex CLI 0.171 never reads OPENAI_BASE_URL: the override it does read is named
    assert """codex -c 'openai_base_url="http://127.0.0.1:9000/v1"'""" in out
    assert 'config.toml: openai_base_url = "http://127.0.0.1:9000/v1"' in out


def test_env_reverse_gemini_names_the_auth_setting(capsys: pytest.CaptureFixture[str]) -> None:
    # a base URL alone makes Gemini CLI 0.61 exit 41 "Invalid auth method selected."
    assert main(["env", "gemini", "--reverse"]) == 0
    out = capsys.readouterr().out
    assert '{"security": {"auth": {"selectedType": "gemini-api-key"}}}' in out
    assert "GEMINI_API_KEY" in out


def test_env_with_a_port_names_it_in_the_run_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["env", "claude", "--port", "9001"]) == 0
    out = capsys.readouterr().out
    assert "start it with: ccswitch run --port 9001\n" in out
    assert main(["env", "claude"]) == 0
    assert "start it with: ccswitch run\n" in capsys.readouterr().out


def test_env_rejects_an_unknown_tool(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["env", "cursor"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'cursor'" in capsys.readouterr().err


def test_init_writes_the_example_and_never_overwrites(tmp_path: Path) -> None:
    target = tmp_path / "cc" / "providers.yaml"
    assert init_config(target) == (True, target)
    assert target.read_text() == EXAMPLE.read_text()
    target.write_text("# mine\n")
    assert init_config(target) == (False, target)
    assert target.read_text() == "# mine\n"


def test_shipped_example_is_the_package_example() -> None:
    assert (Path(__file__).parents[1] / "providers.yaml").read_text() == EXAMPLE.read_text()


def test_run_command_line_defaults_to_loopback() -> None:
    command, host, port, reverse = mitm_command("mitmdump", [])
    assert command[1:3] == ["-s", str(ADDON)]
    assert command[-4:] == ["--listen-host", "127.0.0.1", "--listen-port", "8080"]
    assert (host, port, reverse) == ("127.0.0.1", 8080, None)


def test_run_command_line_keeps_user_choices() -> None:
    args = ["--listen-port", "9999", "--mode", "reverse:https://api.anthropic.com"]
    command, _, port, reverse = mitm_command("mitmweb", args)
    assert command.count("--listen-port") == 1
    assert command[-4:] == args
    assert port == 9999
    assert reverse == "https://api.anthropic.com"


def test_run_prints_the_ca_of_the_confdir_it_is_given() -> None:
    from ccswitch_addon.cli.launch import confdir_of, paste_lines

    args = ["--set", "confdir=/srv/mitm", "--listen-port", "9001"]
    assert confdir_of(args) == "/srv/mitm"
    assert confdir_of([]) == "~/.mitmproxy"
    text = paste_lines(None, "127.0.0.1", 9001, None, confdir_of(args))
    assert "NODE_EXTRA_CA_CERTS=/srv/mitm/mitmproxy-ca-cert.pem" in text
    assert "HTTPS_PROXY=http://127.0.0.1:9001" in text

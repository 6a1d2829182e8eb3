"""providers.yaml parsing: defaults, ${VAR} keys, and errors that name FILE:LINE: key.path."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccswitch_addon.core.config import (
    Api,
    Auth,
    BreakerConfig,
    ConfigError,
    ConfigErrors,
    Format,
    load_config,
    parse_config,
)
from ccswitch_addon.core.envfile import env_path, shown

EXAMPLE = Path(__file__).resolve().parents[1] / "providers.yaml"

VALID = """\
apps:
  claude:
    queue: [primary, backup]
    providers:
      primary:
        base_url: https://api.anthropic.com
        auth: passthrough
      backup:
        name: Backup
        base_url: https://backup.example/api/
        auth: bearer
        api_key: ${BACKUP_KEY}
        models:
          "*": vendor/model
        headers:
          X-Title: ccswitch
      spare:
        base_url: http://127.0.0.1:8001
        auth: passthrough
"""


def error_of(text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "p.yaml", env={} if env is None else env)
    return str(info.value)


def one_app(app: str, provider: str = "{base_url: 'https://x.example', auth: passthrough}") -> str:
    return f"apps:\n  {app}:\n    queue: [a]\n    providers:\n      a: {provider}\n"


# --- defaults -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("app", "api", "hosts", "paths", "auth", "breaker"),
    [
        (
            "claude",
            Api.ANTHROPIC,
            ("api.anthropic.com",),
            ("/v1/messages", "/v1/messages/count_tokens"),
            Auth.X_API_KEY,
            (8, 3, 90, 0.7, 15, 120),
        ),
        (
            "codex",
            Api.OPENAI,
            ("api.openai.com",),
            ("/v1/responses", "/v1/chat/completions", "/v1/completions"),
            Auth.BEARER,
            (4, 2, 60, 0.6, 10, 120),
        ),
        (
            "gemini",
            Api.GEMINI,
            ("generativelanguage.googleapis.com",),
            (
                "/v1beta/models/{model}:generateContent",
                "/v1beta/models/{model}:streamGenerateContent",
                "/v1/models/{model}:generateContent",
                "/v1/models/{model}:streamGenerateContent",
            ),
            Auth.X_GOOG_API_KEY,
            (4, 2, 60, 0.6, 10, 120),
        ),
    ],
)
def test_known_app_defaults(
    app: str,
    api: Api,
    hosts: tuple[str, ...],
    paths: tuple[str, ...],
    auth: Auth,
    breaker: tuple[float, ...],
) -> None:
    config = parse_config(
        one_app(app, "{base_url: 'https://x.example', api_key: '${K}'}"), "p.yaml", env={"K": "k1"}
    )
    parsed = config.apps[app]
    assert parsed.api is api
    assert parsed.hosts == hosts
    assert parsed.paths == paths
    assert parsed.providers["a"].auth is auth
    b = parsed.breaker
    assert (
        b.failure_threshold,
        b.success_threshold,
        b.open_seconds,
        b.error_rate_threshold,
        b.min_requests,
        b.window_seconds,
    ) == breaker
    assert parsed.failover is True
    assert parsed.max_attempts is None  # every provider the router offers
    assert config.warnings == ()


def test_a_full_provider_is_understood() -> None:
    config = parse_config(VALID, "p.yaml", env={"BACKUP_KEY": "sk-backup-123456"})
    app = config.apps["claude"]
    assert app.queue == ("primary", "backup")
    assert app.max_attempts is None
    backup = app.providers["backup"]
    assert backup.name == "Backup"
    assert (backup.scheme, backup.host, backup.port, backup.base_path) == (
        "https",
        "backup.example",
        443,
        "/api",
    )
    assert backup.auth is Auth.BEARER
    assert backup.api_key == "sk-backup-123456"
    assert backup.literal_key is False
    assert backup.disabled is None
    assert dict(backup.models) == {"*": "vendor/model"}
    assert dict(backup.headers) == {"X-Title": "ccswitch"}
    primary = app.providers["primary"]
    assert primary.name == "primary"  # the id when no name is given
    assert primary.api_key is None
    assert (primary.port, primary.base_path) == (443, "")
    # A provider outside the queue is allowed: it is there for a manual switch.
    spare = app.providers["spare"]
    assert "spare" not in app.queue
    assert (spare.scheme, spare.host, spare.port) == ("http", "127.0.0.1", 8001)
    assert config.warnings == ()


def test_breaker_overrides_keep_the_apps_other_defaults() -> None:
    text = one_app("codex").replace(
        "    providers:", "    breaker:\n      failure_threshold: 9\n    providers:"
    )
    breaker = parse_config(text, "p.yaml", env={}).apps["codex"].breaker
    assert breaker.failure_threshold == 9
    assert breaker.success_threshold == 2
    assert breaker.open_seconds == 60


def test_variables_are_expanded_in_every_text_field() -> None:
    text = """\
apps:
  codex:
    queue: [a]
    providers:
      a:
        name: ${NAME}
        base_url: https://${HOST}/v1
        api_key: sk-${KEY_PART}
        models: {"*": "${MODEL}"}
        headers: {X-Org: "${ORG}"}
"""
    env = {"NAME": "N", "HOST": "h.example", "KEY_PART": "abc", "MODEL": "m", "ORG": "o"}
    provider = parse_config(text, "p.yaml", env=env).apps["codex"].providers["a"]
    assert provider.name == "N"
    assert provider.host == "h.example"
    assert provider.base_path == "/v1"
    assert provider.api_key == "sk-abc"
    assert dict(provider.models) == {"*": "m"}
    assert dict(provider.headers) == {"X-Org": "o"}
    assert provider.literal_key is False


# --- ${VAR} and literal keys --------------------------------------------------------------


@pytest.mark.parametrize("env", [{}, {"BACKUP_KEY": ""}], ids=["unset", "empty"])
def test_an_unset_variable_disables_the_provider_with_a_warning(env: dict[str, str]) -> None:
    config = parse_config(VALID, "p.yaml", env=env)
    backup = config.apps["claude"].providers["backup"]
    assert backup.disabled == (
        "${BACKUP_KEY} is not set (apps.claude.providers.backup.api_key); "
        f"add BACKUP_KEY to {shown(env_path('p.yaml'))} (takes effect at once), "
        "or export it and restart"
    )
    assert backup.missing == "BACKUP_KEY"
    assert config.apps["claude"].providers["primary"].disabled is None
    [warning] = config.warnings
    assert warning.disabling is True
    assert str(warning).startswith(
        "p.yaml:12: apps.claude.providers.backup.api_key: "
        "provider disabled: environment variable BACKUP_KEY is not set; add BACKUP_KEY to "
    )


def test_an_unset_variable_in_base_url_is_not_checked_as_a_url() -> None:
    text = one_app("claude", "{base_url: '${URL}', auth: passthrough}")
    config = parse_config(text, "p.yaml", env={})
    provider = config.apps["claude"].providers["a"]
    assert provider.disabled.startswith("${URL} is not set (apps.claude.providers.a.base_url); ")
    assert provider.base_url == "${URL}"
    assert [str(w).partition(";")[0] for w in config.warnings if w.disabling] == [
        "p.yaml:5: apps.claude.providers.a.base_url: "
        "provider disabled: environment variable URL is not set"
    ]


def test_a_literal_key_works_and_warns() -> None:
    text = one_app("claude", "{base_url: 'https://x.example', api_key: sk-literal-123456}")
    config = parse_config(text, "p.yaml", env={})
    provider = config.apps["claude"].providers["a"]
    assert provider.api_key == "sk-literal-123456"
    assert provider.literal_key is True
    assert provider.disabled is None
    [warning] = config.warnings
    assert warning.disabling is False
    assert str(warning).startswith("p.yaml:5: apps.claude.providers.a.api_key: ")
    assert "prefer ${VAR}" in str(warning)
    assert "sk-literal-123456" not in str(warning)


def test_a_key_is_required_unless_passthrough() -> None:
    text = one_app("claude", "{base_url: 'https://x.example'}")
    assert error_of(text) == (
        "p.yaml:5: apps.claude.providers.a: api_key is required with auth: x-api-key (use ${VAR})"
    )


def test_the_shipped_example_parses_with_no_variables_set() -> None:
    config = load_config(EXAMPLE, env={})
    assert set(config.apps) == {"claude", "codex", "gemini"}
    disabled = {
        (app.name, pid)
        for app in config.apps.values()
        for pid, p in app.providers.items()
        if p.disabled
    }
    assert disabled == {
        ("claude", "openrouter"),
        ("claude", "deepseek"),
        ("codex", "openrouter"),
        ("gemini", "backup-project"),
    }
    for app in config.apps.values():
        assert app.providers["official"].auth is Auth.PASSTHROUGH
        assert app.providers["official"].disabled is None
    assert all(w.disabling for w in config.warnings)
    assert len(config.warnings) == 4


def test_the_shipped_example_with_keys_set_has_no_disabled_provider() -> None:
    env = {"OPENROUTER_API_KEY": "a" * 20, "DEEPSEEK_API_KEY": "b" * 20}
    env["GEMINI_BACKUP_API_KEY"] = "c" * 20
    config = load_config(EXAMPLE, env=env)
    assert config.warnings == ()
    codex = config.apps["codex"].providers["openrouter"]
    assert (codex.host, codex.base_path, codex.api_key) == ("openrouter.ai", "/api/v1", "a" * 20)


# --- errors ---------------------------------------------------------------------------------


BREAKER_BASE = """\
apps:
  claude:
    queue: [a]
    max_attempts: 1
    breaker:
      {key}: {value}
    providers:
      a: {{base_url: "https://x.example", auth: passthrough}}
"""


@pytest.mark.parametrize(
    ("key", "value", "bound"),
    [
        ("failure_threshold", "0", "1 to 100"),
        ("failure_threshold", "101", "1 to 100"),
        ("success_threshold", "0", "1 to 100"),
        ("success_threshold", "101", "1 to 100"),
        ("open_seconds", "-1", "0 to 86400"),
        ("open_seconds", "86401", "0 to 86400"),
        ("error_rate_threshold", "-0.1", "0 to 1"),
        ("error_rate_threshold", "1.01", "0 to 1"),
        ("slow_rate_threshold", "-0.5", "0 to 1"),
        ("slow_rate_threshold", "2", "0 to 1"),
        ("window_seconds", "0", "1 to 86400"),
        ("window_seconds", "86400.5", "1 to 86400"),
        ("min_requests", "0", "1 to 100000"),
    ],
)
def test_breaker_values_out_of_range(key: str, value: str, bound: str) -> None:
    message = error_of(BREAKER_BASE.format(key=key, value=value))
    assert message == (
        f"p.yaml:6: apps.claude.breaker.{key}: {value} is out of range: must be from {bound}"
    )


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("failure_threshold", "1"),
        ("failure_threshold", "100"),
        ("success_threshold", "100"),
        ("open_seconds", "0"),
        ("open_seconds", "86400"),
        ("error_rate_threshold", "0"),
        ("error_rate_threshold", "1"),
        ("slow_rate_threshold", "0"),
        ("slow_rate_threshold", "1"),
        ("window_seconds", "1"),
        ("window_seconds", "86400"),
    ],
)
def test_breaker_values_at_the_edges_are_accepted(key: str, value: str) -> None:
    config = parse_config(BREAKER_BASE.format(key=key, value=value), "p.yaml", env={})
    assert getattr(config.apps["claude"].breaker, key) == float(value)


@pytest.mark.parametrize(("value", "ok"), [("0", False), ("1", True), ("20", True), ("21", False)])
def test_max_attempts_range(value: str, ok: bool) -> None:
    text = BREAKER_BASE.format(key="open_seconds", value="1").replace(
        "max_attempts: 1", f"max_attempts: {value}"
    )
    if ok:
        assert parse_config(text, "p.yaml", env={}).apps["claude"].max_attempts == int(value)
    else:
        assert error_of(text) == (
            f"p.yaml:4: apps.claude.max_attempts: {value} is out of range: must be from 1 to 20"
        )


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("failure_threshold", "many", "expected a whole number from 1 to 100, got 'many'"),
        ("failure_threshold", "2.5", "expected a whole number from 1 to 100, got 2.5"),
        ("failure_threshold", "true", "expected a whole number from 1 to 100, got True"),
        ("error_rate_threshold", "high", "expected a number from 0 to 1, got 'high'"),
        ("open_seconds", "[1, 2]", "expected a single value, got a list"),
    ],
)
def test_breaker_values_of_the_wrong_type(key: str, value: str, expected: str) -> None:
    assert error_of(BREAKER_BASE.format(key=key, value=value)) == (
        f"p.yaml:6: apps.claude.breaker.{key}: {expected}"
    )


def test_unknown_key_suggests_the_close_one() -> None:
    message = error_of(BREAKER_BASE.format(key="failure_treshold", value="3"))
    assert message.startswith(
        "p.yaml:6: apps.claude.breaker.failure_treshold: "
        "unknown key (did you mean 'failure_threshold'?); allowed: failure_threshold, "
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            one_app("claude", "{base_ulr: 'https://x.example', auth: passthrough}"),
            "p.yaml:5: apps.claude.providers.a.base_ulr: unknown key (did you mean 'base_url'?)",
        ),
        (
            "apps:\n  claude:\n    queu: [a]\n",
            "p.yaml:3: apps.claude.queu: unknown key (did you mean 'queue'?)",
        ),
        ("app:\n  claude: {}\n", "p.yaml:1: app: unknown key (did you mean 'apps'?)"),
        (
            "apps:\n  claude:\n    colour: red\n",
            "p.yaml:3: apps.claude.colour: unknown key; allowed: queue, failover,",
        ),
    ],
)
def test_unknown_keys_everywhere(text: str, expected: str) -> None:
    # one line of the report starts so (an app's other mistakes are reported with it)
    assert any(line.startswith(expected) for line in error_of(text).splitlines())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "apps:\n  claude:\n    queue: [a, ghost]\n    providers:\n"
            "      a: {base_url: 'https://x.example', auth: passthrough}\n",
            "p.yaml:3: apps.claude.queue[1]: 'ghost' is not a provider of claude; known: a",
            id="missing-provider",
        ),
        pytest.param(
            "apps:\n  claude:\n    queue:\n      - a\n      - b\n    providers:\n"
            "      a: {base_url: 'https://x.example', auth: passthrough}\n"
            "  codex:\n    queue: [b]\n    providers:\n"
            "      b: {base_url: 'https://x.example', auth: passthrough}\n",
            "p.yaml:5: apps.claude.queue[1]: 'b' is not a provider of claude; known: a",
            id="provider-of-another-app",
        ),
        pytest.param(
            "apps:\n  claude:\n    queue: [a, a]\n    providers:\n"
            "      a: {base_url: 'https://x.example', auth: passthrough}\n",
            "p.yaml:3: apps.claude.queue[1]: 'a' is listed twice",
            id="listed-twice",
        ),
        pytest.param(
            "apps:\n  claude:\n    queue: []\n    providers:\n"
            "      a: {base_url: 'https://x.example', auth: passthrough}\n",
            "p.yaml:3: apps.claude.queue: the queue is empty; list at least one provider",
            id="empty",
        ),
        pytest.param(
            "apps:\n  claude:\n    providers:\n"
            "      a: {base_url: 'https://x.example', auth: passthrough}\n",
            "p.yaml:2: apps.claude: queue is required: the providers in priority order",
            id="no-queue",
        ),
        pytest.param(
            "apps:\n  claude:\n    queue: [a]\n",
            "p.yaml:2: apps.claude: providers is required",
            id="no-providers",
        ),
    ],
)
def test_queue_errors(text: str, expected: str) -> None:
    assert error_of(text) == expected


def test_a_queue_may_be_a_single_name() -> None:
    text = one_app("claude").replace("queue: [a]", "queue: a")
    assert parse_config(text, "p.yaml", env={}).apps["claude"].queue == ("a",)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://x.example", "expected an http:// or https:// URL, got 'ftp://x.example'"),
        ("x.example/v1", "expected an http:// or https:// URL, got 'x.example/v1'"),
        ("https://", "expected an http:// or https:// URL, got 'https://'"),
        ("https://x.example/v1?key=1", "a base URL takes no query or fragment"),
        ("https://x.example/v1#top", "a base URL takes no query or fragment"),
        ("https://x.example:99999", "bad port in 'https://x.example:99999'"),
    ],
)
def test_bad_base_urls(url: str, message: str) -> None:
    text = one_app("claude", f"{{base_url: '{url}', auth: passthrough}}")
    assert error_of(text) == f"p.yaml:5: apps.claude.providers.a.base_url: {message}"


@pytest.mark.parametrize(
    ("url", "parts"),
    [
        ("http://LOCALHOST:8080", ("http", "localhost", 8080, "")),
        ("https://x.example/", ("https", "x.example", 443, "")),
        ("https://x.example/api/v1/", ("https", "x.example", 443, "/api/v1")),
        ("http://x.example/anthropic", ("http", "x.example", 80, "/anthropic")),
    ],
)
def test_good_base_urls(url: str, parts: tuple[str, str, int, str]) -> None:
    text = one_app("claude", f"{{base_url: '{url}', auth: passthrough}}")
    p = parse_config(text, "p.yaml", env={}).apps["claude"].providers["a"]
    assert (p.scheme, p.host, p.port, p.base_path) == parts


def test_bad_auth_names_the_choices() -> None:
    text = one_app("claude", "{base_url: 'https://x.example', auth: basic}")
    assert error_of(text) == (
        "p.yaml:5: apps.claude.providers.a.auth: unknown auth 'basic'; "
        "one of: x-api-key, bearer, x-goog-api-key, passthrough"
    )


def test_errors_about_a_block_point_at_its_key() -> None:
    text = """\
apps:
  claude:
    queue: [a]
    providers:
      a:
        name: A
        auth: passthrough
"""
    assert error_of(text) == "p.yaml:5: apps.claude.providers.a: base_url is required"


def test_a_custom_app_must_set_hosts_and_paths() -> None:
    text = """\
apps:
  mytool:
    queue: [a]
    providers:
      a: {base_url: "https://x.example", auth: passthrough}
"""
    assert error_of(text) == (
        "p.yaml:2: apps.mytool: 'mytool' is not a known app (claude, codex, gemini), "
        "so it must set hosts and paths"
    )
    only_hosts = text.replace("    queue:", "    hosts: [Tool.Example]\n    queue:")
    assert error_of(only_hosts).endswith("so it must set paths")


def test_a_custom_app_with_hosts_and_paths() -> None:
    text = """\
apps:
  mytool:
    hosts: [Tool.Example]
    paths: /api/chat
    api: anthropic
    queue: [a]
    providers:
      a: {base_url: "https://x.example", api_key: "${K}"}
"""
    app = parse_config(text, "p.yaml", env={"K": "key"}).apps["mytool"]
    assert app.hosts == ("tool.example",)
    assert app.paths == ("/api/chat",)
    assert app.api is Api.ANTHROPIC
    assert app.providers["a"].auth is Auth.X_API_KEY
    assert app.breaker == BreakerConfig(
        4, 2, 60, 0.6, 10, 120, first_byte_seconds=60, stream_idle_seconds=120
    )


def test_path_prefixes_start_with_a_slash() -> None:
    text = one_app("claude").replace(
        "    queue:", "    paths: [/v1/messages, v1/other]\n    queue:"
    )
    assert error_of(text) == (
        "p.yaml:3: apps.claude.paths[1]: a path prefix starts with '/', got 'v1/other'"
    )


def test_unknown_api() -> None:
    text = one_app("claude").replace("    queue:", "    api: cohere\n    queue:")
    assert error_of(text) == (
        "p.yaml:3: apps.claude.api: unknown api 'cohere'; one of: anthropic, openai, gemini"
    )


def test_bad_provider_id() -> None:
    text = one_app("claude").replace("a: {", "-bad: {").replace("[a]", "['-bad']")
    assert error_of(text) == (
        "p.yaml:5: apps.claude.providers.-bad: a provider id uses letters, digits, '_', '.' and '-'"
    )


def test_failover_must_be_a_boolean() -> None:
    text = one_app("claude").replace("    queue:", "    failover: maybe\n    queue:")
    assert error_of(text) == "p.yaml:3: apps.claude.failover: expected true or false, got 'maybe'"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "apps:\n  claude:\n    queue: [a\n    providers: {}\n",
            "p.yaml:3: a list opened with '[' on this line is not closed with ']'",
            id="unclosed-list",
        ),
        pytest.param(
            "apps:\n\tclaude: 1\n",
            "p.yaml:2: a tab character: YAML indents with spaces only",
            id="tab",
        ),
        pytest.param(
            'apps:\n  claude:\n    queue: "a\n',
            "p.yaml:3: a quote opened on this line is never closed",
            id="unclosed-quote",
        ),
    ],
)
def test_malformed_yaml_is_one_line_with_its_place(text: str, expected: str) -> None:
    message = error_of(text)
    assert message == expected
    assert "\n" not in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", "p.yaml:1: the file is empty; it needs an 'apps:' mapping", id="empty"),
        pytest.param("# only a comment\n", "p.yaml:1: the file is empty", id="comment"),
        pytest.param("{}\n", "p.yaml:1: apps: is required", id="no-apps"),
        pytest.param("apps: {}\n", "p.yaml:1: apps: no apps configured", id="no-app"),
        pytest.param("apps:\n", "p.yaml:1: apps: expected a mapping, got nothing", id="null"),
        pytest.param("- apps\n", "p.yaml:1: expected a mapping, got a list", id="list"),
        pytest.param(
            "apps:\n  claude:\n    queue: [a]\n    queue: [b]\n",
            "p.yaml:4: apps.claude.queue: duplicate key",
            id="duplicate",
        ),
        pytest.param("apps:\n  1: {}\n", "p.yaml:2: apps: keys must be text, got 1", id="int-key"),
    ],
)
def test_document_shape_errors(text: str, expected: str) -> None:
    assert any(line.startswith(expected) for line in error_of(text).splitlines())


def test_load_config_reads_the_file_and_names_it(tmp_path: Path) -> None:
    path = tmp_path / "providers.yaml"
    path.write_text(BREAKER_BASE.format(key="open_seconds", value="-5"), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"providers\.yaml:6: apps\.claude\.breaker"):
        load_config(path, env={})
    with pytest.raises(ConfigError, match=r"nothere\.yaml: no such file$"):
        load_config(tmp_path / "nothere.yaml", env={})
    path.write_bytes(b"apps: \xff\xfe\n")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(path, env={})


# --- mistakes in our own words, all of them in one run ------------------------------------


def _misindent(key: str, spaces: int) -> str:
    """The shipped example with one app's key moved to ``spaces`` columns."""
    text = EXAMPLE.read_text(encoding="utf-8")
    assert f"\n  {key}:" in text
    return text.replace(f"\n  {key}:", f"\n{' ' * spaces}{key}:", 1)


def _line_of(text: str, start: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if line.startswith(start))


@pytest.mark.parametrize("spaces", [0, 1, 3, 5])
def test_a_misindented_app_is_reported_at_its_own_line(spaces: int) -> None:
    text = _misindent("codex", spaces)
    line = _line_of(text, " " * spaces + "codex:")
    message = error_of(text)
    assert message == (
        f"p.yaml:{line}: 'codex' does not line up with the lines around it; check the indentation"
    )
    assert "<block" not in message


def test_a_misindented_nested_key_is_reported_at_its_line() -> None:
    text = "apps:\n  claude:\n    queue: [a]\n   providers: {}\n"
    assert error_of(text) == (
        "p.yaml:4: 'providers' does not line up with the lines around it; check the indentation"
    )


def test_a_key_without_its_colon() -> None:
    text = "apps:\n  claude:\n    queue\n    providers: {}\n"
    assert error_of(text).startswith("p.yaml:3: a key without ':'")


SEVERAL = """\
apps:
  claude:
    queue: [a, b]
    providers:
      a:
        base_url: ftp://a.example
        auth: passthrough
      b:
        base_url: https://b.example
        auth: passthrough
        modles: {"*": x}
  codex:
    queue: [a]
    breaker:
      failure_threshold: 0
    providers:
      a: {base_url: 'https://x.example', auth: passthrough}
  gemini:
    queue: [a]
    providers:
      a: {base_url: 'https://x.example', auth: passthrough, colour: red}
"""


def test_every_mistake_in_one_run_in_file_order() -> None:
    with pytest.raises(ConfigErrors) as info:
        parse_config(SEVERAL, "p.yaml", env={})
    lines = str(info.value).splitlines()
    assert [line.split(": ", 2)[:2] for line in lines] == [
        ["p.yaml:6", "apps.claude.providers.a.base_url"],
        ["p.yaml:11", "apps.claude.providers.b.modles"],
        ["p.yaml:15", "apps.codex.breaker.failure_threshold"],
        ["p.yaml:21", "apps.gemini.providers.a.colour"],
    ]
    assert "did you mean 'models'?" in lines[1]
    assert [e.line for e in info.value.errors] == [6, 11, 15, 21]


@pytest.mark.parametrize("where", ["api_key: $OR_KEY", "headers: {X-Key: $OR_KEY}"])
def test_a_variable_without_braces_is_a_mistake(where: str) -> None:
    text = one_app("claude", f"{{base_url: 'https://x.example', auth: bearer, {where}}}")
    if "headers" in where:
        text = text.replace("auth: bearer,", "auth: passthrough,")
    message = error_of(text, env={"OR_KEY": "sk-secret-value-123"})
    assert message.startswith("p.yaml:5: apps.claude.providers.a.")
    assert "did you mean `${OR_KEY}`?" in message
    assert "sk-secret" not in message


def test_an_app_whose_every_provider_is_disabled_is_flagged() -> None:
    text = (
        "apps:\n  claude:\n    queue: [a, b]\n    providers:\n"
        "      a: {base_url: 'https://a.example', api_key: '${NOPE_A}'}\n"
        "      b: {base_url: 'https://b.example', api_key: '${NOPE_B}'}\n"
        "      c: {base_url: 'https://c.example', auth: passthrough}\n"
    )
    config = parse_config(text, "p.yaml", env={})
    unusable = [str(w) for w in config.warnings if w.unusable]
    assert unusable == [
        "p.yaml:3: apps.claude.queue: claude has no usable provider: "
        "every one in its queue is disabled"
    ]
    config = parse_config(text, "p.yaml", env={"NOPE_B": "sk-now-set-1234"})
    assert not [w for w in config.warnings if w.unusable]


# --- provider format ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("app", "expected"),
    [
        ("claude", Format.ANTHROPIC),
        ("codex", Format.OPENAI_RESPONSES),
        ("gemini", Format.GEMINI),
    ],
)
def test_the_default_format_is_the_apps_own(app: str, expected: Format) -> None:
    provider = parse_config(one_app(app), "p.yaml", env={}).apps[app].providers["a"]
    assert provider.format is expected


def test_a_custom_openai_app_defaults_to_responses_which_passes_chat_through() -> None:
    text = one_app("mytool").replace(
        "    queue:", "    hosts: [t.example]\n    paths: /v1\n    queue:"
    )
    provider = parse_config(text, "p.yaml", env={}).apps["mytool"].providers["a"]
    assert provider.format is Format.OPENAI_RESPONSES


def test_a_chat_provider_for_claude_gets_bearer_auth_and_the_openai_probe() -> None:
    text = one_app(
        "claude",
        "{base_url: 'https://api.deepseek.com/v1', format: openai_chat, api_key: '${K}', "
        "probe: true}",
    )
    provider = parse_config(text, "p.yaml", env={"K": "k1"}).apps["claude"].providers["a"]
    assert provider.format is Format.OPENAI_CHAT
    assert provider.auth is Auth.BEARER
    assert provider.probe is not None
    assert (provider.probe.method, provider.probe.path) == ("GET", "/v1/models")


@pytest.mark.parametrize(
    ("app", "fmt"),
    [
        ("claude", "openai_responses"),
        ("claude", "gemini"),
        ("codex", "anthropic"),
        ("gemini", "openai_chat"),
        ("gemini", "anthropic"),
    ],
)
def test_the_pairs_through_the_chat_form_are_accepted(app: str, fmt: str) -> None:
    text = one_app(app, f"{{base_url: 'https://x.example', format: {fmt}, api_key: k-0123456789}}")
    provider = parse_config(text, "p.yaml", env={}).apps[app].providers["a"]
    assert provider.format is Format(fmt)


def test_a_chat_provider_for_codex() -> None:
    text = one_app(
        "codex", "{base_url: 'https://x.example', format: openai_chat, auth: passthrough}"
    )
    provider = parse_config(text, "p.yaml", env={}).apps["codex"].providers["a"]
    assert provider.format is Format.OPENAI_CHAT


@pytest.mark.parametrize(
    ("app", "fmt", "supported"),
    [
        ("codex", "gemini", "anthropic, openai_chat, openai_responses"),
        ("gemini", "openai_responses", "anthropic, openai_chat, gemini"),
    ],
)
def test_an_unsupported_pair_names_the_supported_ones(app: str, fmt: str, supported: str) -> None:
    text = one_app(app, f"{{base_url: 'https://x.example', format: {fmt}, auth: passthrough}}")
    api = {"claude": "anthropic", "codex": "openai", "gemini": "gemini"}[app]
    assert error_of(text) == (
        f"p.yaml:5: apps.{app}.providers.a.format: a {app} provider (api {api}) "
        f"cannot use format {fmt}; supported: {supported}"
    )


def test_an_unknown_format_lists_the_formats() -> None:
    text = one_app("claude", "{base_url: 'https://x.example', format: chat, auth: passthrough}")
    assert error_of(text) == (
        "p.yaml:5: apps.claude.providers.a.format: unknown format 'chat'; "
        "one of: anthropic, openai_chat, openai_responses, gemini"
    )


def test_header_values_from_the_environment_are_secrets() -> None:
    text = one_app(
        "claude",
        "{base_url: 'https://x.example', api_key: '${K}',"
        " headers: {X-Org: '${ORG}', X-Title: plain, X-Mixed: 'org-${ORG}'}}",
    )
    provider = (
        parse_config(text, "p.yaml", env={"K": "k1", "ORG": "s3cret-org"})
        .apps["claude"]
        .providers["a"]
    )
    assert provider.secret_headers == frozenset({"x-org", "x-mixed"})
    assert "s3cret-org" not in repr(provider)


@pytest.mark.parametrize("value", ["a\\r\\nX-Evil: 1", "a\\nb"])
def test_a_header_value_with_a_line_break_is_refused_without_showing_it(value: str) -> None:
    text = one_app(
        "claude", "{base_url: 'https://x.example', api_key: '${K}', headers: {X-Org: '${ORG}'}}"
    )
    with pytest.raises(ConfigError) as raised:
        parse_config(
            text, "p.yaml", env={"K": "k1", "ORG": value.encode().decode("unicode_escape")}
        )
    assert "line break" in str(raised.value)
    assert "X-Evil" not in str(raised.value)


def test_every_mistake_within_one_app_in_one_run() -> None:
    text = """\
apps:
  claude:
    queue: [a, b]
    breaker:
      failure_treshold: 3
    websocket: maybe
    providers:
      a: {base_url: "https://a.example", auth: passthrough}
      b:
        base_url: https://b.example
        auth: bearer-token
        api_key: ${K}
        colour: red
"""
    lines = error_of(text, {"K": "k"}).splitlines()
    assert lines == [
        "p.yaml:5: apps.claude.breaker.failure_treshold: unknown key (did you mean "
        "'failure_threshold'?); " + lines[0].split("; ", 1)[1],
        lines[1],
        lines[2],
        lines[3],
    ]
    assert lines[1].startswith("p.yaml:6: apps.claude.websocket: ")
    assert lines[2].startswith("p.yaml:11: apps.claude.providers.b.auth: ")
    assert lines[3].startswith("p.yaml:13: apps.claude.providers.b.colour: unknown key")


def test_every_mistake_of_a_provider_breaker_and_price_is_reported_in_one_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # before, each provider or breaker block stopped at its first mistake
    monkeypatch.delenv("FOO_KEY", raising=False)
    path = tmp_path / "p.yaml"
    path.write_text("""\
apps:
  claude:
    queue: [primary, backup, ghost]
    breaker:
      failure_threshold: 0
      open_seconds: -5
    providers:
      primary:
        base_url: ftp://example.com
        auth: bearr
        api_key: $FOO_KEY
      backup:
        base_url: https://user:pw@relay.example
        api_key: ${FOO_KEY}
        price: {input: 1}
        budget: {daily_usd: -1}
""")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    lines = str(e.value).splitlines()
    expected = [
        (3, "apps.claude.queue[2]: 'ghost' is not a provider of claude; known: primary, backup"),
        (5, "apps.claude.breaker.failure_threshold: 0 is out of range"),
        (6, "apps.claude.breaker.open_seconds: -5 is out of range"),
        (9, "apps.claude.providers.primary.base_url: expected an http:// or https:// URL"),
        (10, "apps.claude.providers.primary.auth: unknown auth 'bearr'"),
        (11, "apps.claude.providers.primary.api_key: did you mean `${FOO_KEY}`?"),
        (13, "apps.claude.providers.backup.base_url: a base URL takes no user:password@"),
        (15, "apps.claude.providers.backup.price: output is required"),
        (16, "apps.claude.providers.backup.budget.daily_usd: -1 is out of range"),
    ]
    assert len(lines) == len(expected), lines
    for line, (number, text) in zip(lines, expected, strict=True):
        assert line.startswith(f"{path}:{number}: {text}")
    assert "pw@" not in str(e.value)

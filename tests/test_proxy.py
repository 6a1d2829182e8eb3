"""Upstream proxy settings (core/proxy.py): the forms, curl's environment, masking, loops; and the
`proxy:` key of providers.yaml."""

from __future__ import annotations

import pytest

from ccswitch_addon.core.config import check_self_loop, parse_config
from ccswitch_addon.core.proxy import (
    DIRECT,
    ENV,
    Proxies,
    ProxyUrl,
    env_proxy,
    option_problem,
    parse_proxy,
)
from ccswitch_addon.core.yamlnodes import ConfigError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://127.0.0.1:3128", ProxyUrl("http", "127.0.0.1", 3128)),
        ("socks5://proxy.corp:1080", ProxyUrl("socks5", "proxy.corp", 1080)),
        ("socks5h://Proxy.Corp:7890/", ProxyUrl("socks5", "proxy.corp", 7890)),
        ("socks5://[::1]:1080", ProxyUrl("socks5", "::1", 1080)),
        ("http://proxy", ProxyUrl("http", "proxy", 1080)),  # curl's default port
        ("http://u%40x:p%3Aw@h:1", ProxyUrl("http", "h", 1, "u@x", "p:w")),
    ],
)
def test_the_url_forms(text: str, expected: ProxyUrl) -> None:
    choice = parse_proxy(text, {})
    assert choice.mode == "url"
    assert choice.url == expected


@pytest.mark.parametrize(("text", "expected"), [("", DIRECT), ("none", DIRECT), ("env", ENV)])
def test_the_words(text: str, expected: object) -> None:
    assert parse_proxy(text, {}) == expected


def test_credentials_come_from_variables_and_are_never_shown() -> None:
    choice = parse_proxy("socks5://${PU}:${PP}@127.0.0.1:1080", {"PU": "me", "PP": "hunter2"})
    assert choice.url is not None
    assert (choice.url.username, choice.url.password) == ("me", "hunter2")
    assert choice.shown() == "socks5://me:***@127.0.0.1:1080"
    assert "hunter2" not in repr(choice)
    assert "hunter2" not in str(choice.url)
    with pytest.raises(ValueError, match="PP is not set"):
        parse_proxy("socks5://me:${PP}@127.0.0.1:1080", {})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("https://p:1", "not a proxy URL"),
        ("socks4://p:1", "not a proxy URL"),
        ("127.0.0.1:1080", "not a proxy URL"),
        ("http://p:notaport", "port"),
        ("http://p:1/path", "host:port only"),
        ("http://user:topsecret@p:99999", "port"),
    ],
)
def test_malformed_urls_are_refused_without_the_password(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        parse_proxy(text, {})
    assert "topsecret" not in str(caught.value)


def test_env_is_read_as_curl_reads_it() -> None:
    environ = {
        "HTTPS_PROXY": "socks5h://127.0.0.1:7890",
        "HTTP_PROXY": "http://ignored:1",  # curl reads http_proxy in lower case only
        "ALL_PROXY": "http://all:3128",
        "NO_PROXY": "localhost,.internal, 10.0.0.0/8",
    }
    assert env_proxy("https", "api.anthropic.com", environ) == ProxyUrl("socks5", "127.0.0.1", 7890)
    assert env_proxy("http", "ollama.lan", environ) == ProxyUrl("http", "all", 3128)
    assert env_proxy("https", "localhost", environ) is None
    assert env_proxy("https", "llm.internal", environ) is None
    assert env_proxy("https", "internal", environ) is None
    assert env_proxy("https", "10.1.2.3", environ) is None
    assert env_proxy("https", "notinternal.com", environ) is not None
    assert env_proxy("https", "x", {"https_proxy": "proxy:8080"}) == ProxyUrl("http", "proxy", 8080)
    assert env_proxy("https", "x", {"https_proxy": "p:1", "no_proxy": "*"}) is None
    assert env_proxy("https", "x", {}) is None


def test_a_provider_setting_overrides_the_option() -> None:
    proxies = Proxies(parse_proxy("socks5://127.0.0.1:1080", {}), {})
    assert proxies.route(None, "https", "api.x") == ProxyUrl("socks5", "127.0.0.1", 1080)
    assert proxies.route(DIRECT, "https", "api.x") is None
    own = parse_proxy("http://127.0.0.1:3128", {})
    assert proxies.route(own, "https", "api.x") == ProxyUrl("http", "127.0.0.1", 3128)
    via_env = Proxies(ENV, Proxies.snapshot({"HTTPS_PROXY": "http://p:1", "HOME": "/root"}))
    assert via_env.environ == {"HTTPS_PROXY": "http://p:1"}
    assert via_env.route(None, "https", "api.x") == ProxyUrl("http", "p", 1)


def test_the_option_may_not_loop_back_into_this_proxy() -> None:
    assert "own address" in option_problem(parse_proxy("http://127.0.0.1:8080", {}), {}, "", 8080)
    assert "own address" in option_problem(parse_proxy("http://localhost:9", {}), {}, "", 9)
    assert option_problem(parse_proxy("http://127.0.0.1:3128", {}), {}, "", 8080) == ""
    # env: a shell set up for a tool points HTTPS_PROXY at ccswitch itself
    looping = {"HTTPS_PROXY": "http://127.0.0.1:8080"}
    assert "own address" in option_problem(ENV, looping, "127.0.0.1", 8080)
    assert option_problem(ENV, {"HTTPS_PROXY": "bad://x"}, "", 8080).startswith("env: HTTPS_PROXY")


CONFIG = """\
apps:
  claude:
    queue: [relay, local]
    providers:
      relay:
        base_url: https://relay.example
        api_key: k
        proxy: PROXY
      local:
        base_url: http://127.0.0.1:11434
        auth: passthrough
        proxy: none
"""


def test_the_proxy_key_of_a_provider() -> None:
    config = parse_config(
        CONFIG.replace("PROXY", "socks5://u:${PP}@127.0.0.1:1080"), "p.yaml", env={"PP": "pw"}
    )
    relay = config.apps["claude"].providers["relay"]
    assert relay.proxy is not None
    assert relay.proxy.shown() == "socks5://u:***@127.0.0.1:1080"
    assert config.apps["claude"].providers["local"].proxy == DIRECT
    assert "pw" not in repr(relay)


@pytest.mark.parametrize("value", ["ftp://p:1", "http://p:x", "socks5://u:${UNSET}@p:1"])
def test_a_bad_proxy_key_names_file_line_and_key(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(CONFIG.replace("PROXY", value), "p.yaml", env={})
    assert str(caught.value).startswith("p.yaml:8: apps.claude.providers.relay.proxy: ")


def test_a_provider_proxy_that_is_this_proxy_is_refused_at_load() -> None:
    config = parse_config(CONFIG.replace("PROXY", "http://127.0.0.1:8080"), "p.yaml", env={})
    with pytest.raises(ConfigError, match=r"^p.yaml:8: apps.claude.providers.relay.proxy: .*loop"):
        check_self_loop(config, "127.0.0.1", 8080, environ={})
    check_self_loop(config, "127.0.0.1", 8081, environ={})
    env = parse_config(CONFIG.replace("PROXY", "env"), "p.yaml", env={})
    with pytest.raises(ConfigError, match="loop"):
        check_self_loop(env, "", 8080, environ={"https_proxy": "http://localhost:8080"})

"""providers.yaml: the user's contract, parsed into frozen objects with line-accurate errors."""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

from ccswitch_addon.core.costconfig import COST_KEYS, CostConfig, parse_cost
from ccswitch_addon.core.envfile import exposed, fix_hint, read_env
from ccswitch_addon.core.proxy import ProxyChoice, loop_problem, parse_proxy
from ccswitch_addon.core.routes import Routing, parse_routing
from ccswitch_addon.core.rules import Rule, parse_rules
from ccswitch_addon.core.yamlnodes import ConfigError, ConfigErrors, Mistakes, Node, parse_document
from ccswitch_addon.wire.api import Api
from ccswitch_addon.wire.translate.formats import FORMAT_API, Format, provider_formats

__all__ = [
    "BREAKER_FIELDS",
    "KNOWN_APPS",
    "Api",
    "AppConfig",
    "Auth",
    "BreakerConfig",
    "Config",
    "ConfigError",
    "ConfigErrors",
    "Endpoint",
    "Format",
    "Probe",
    "ProviderConfig",
    "WebSocket",
    "check_self_loop",
    "default_format",
    "load_config",
    "parse_config",
]


class Auth(enum.StrEnum):
    X_API_KEY = "x-api-key"
    BEARER = "bearer"
    X_GOOG_API_KEY = "x-goog-api-key"
    PASSTHROUGH = "passthrough"


class WebSocket(enum.StrEnum):
    """What a websocket upgrade on a routed path gets (Codex CLI tries one before HTTP)."""

    REFUSE = "refuse"  # HTTP 426: the tool falls back to HTTP, which is routed
    PASSTHROUGH = "passthrough"  # to the original host, unrouted


@dataclass(frozen=True)
class BreakerField:
    name: str
    integer: bool
    lo: float
    hi: float
    help: str


BREAKER_FIELDS: tuple[BreakerField, ...] = (
    BreakerField("failure_threshold", True, 1, 100, "consecutive failures that open the breaker"),
    BreakerField("success_threshold", True, 1, 100, "successful half-open probes that close it"),
    BreakerField("open_seconds", False, 0, 86400, "time open before a half-open probe is allowed"),
    BreakerField(
        "error_rate_threshold", False, 0, 1, "failure ratio within the window that opens it"
    ),
    BreakerField(
        "min_requests", True, 1, 100000, "requests within the window before the ratio counts"
    ),
    BreakerField("window_seconds", False, 1, 86400, "sliding window for the ratio"),
    BreakerField(
        "max_open_seconds",
        False,
        0,
        86400,
        "cap on the open time, which doubles with each repeated trip",
    ),
    BreakerField(
        "slow_ms", True, 0, 600000, "a first byte slower than this counts as a slow call; 0 = off"
    ),
    BreakerField(
        "slow_rate_threshold", False, 0, 1, "slow-call ratio within the window that opens it"
    ),
    BreakerField(
        "first_byte_seconds",
        False,
        0,
        3600,
        "no response headers by then: recorded as a failure; 0 = off",
    ),
    BreakerField(
        "connect_seconds",
        False,
        0.1,
        300,
        "time to open a connection (TCP and TLS) to a provider before the next one is tried",
    ),
    BreakerField(
        "stream_idle_seconds",
        False,
        0,
        3600,
        "a stream silent this long is ended with the API's error event; 0 = off",
    ),
    BreakerField(
        "request_seconds",
        False,
        1,
        86400,
        "limit on a whole non-streaming answer, from the request to its last byte",
    ),
    BreakerField(
        "max_cooldown_seconds",
        False,
        0,
        604800,
        "cap on a cooldown taken from a provider's quota reset time",
    ),
)


@dataclass(frozen=True)
class BreakerConfig:
    failure_threshold: int = 8
    success_threshold: int = 3
    open_seconds: float = 90
    error_rate_threshold: float = 0.7
    min_requests: int = 15
    window_seconds: float = 120
    max_open_seconds: float = 1800
    slow_ms: int = 0
    slow_rate_threshold: float = 0.8
    first_byte_seconds: float = 90
    connect_seconds: float = 10
    stream_idle_seconds: float = 180
    request_seconds: float = 600
    max_cooldown_seconds: float = 21600


@dataclass(frozen=True)
class Endpoint:
    """A routed path, matched by whole segments: ``{model}`` stands for one model name, and a
    path ending in ``/`` also covers the segments below it."""

    path: str
    health: bool = True  # its answers move the breaker; count_tokens' do not
    optional: bool = False  # not every provider has it: a 404 is remembered per provider


@dataclass(frozen=True)
class KnownApp:
    api: Api
    hosts: tuple[str, ...]
    endpoints: tuple[Endpoint, ...]
    breaker: BreakerConfig

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(endpoint.path for endpoint in self.endpoints)


def _gemini(version: str) -> tuple[Endpoint, ...]:
    return tuple(
        Endpoint(f"/{version}/models/{{model}}:{method}")
        for method in ("generateContent", "streamGenerateContent")
    )


_QUICK = BreakerConfig(4, 2, 60, 0.6, 10, 120, first_byte_seconds=60, stream_idle_seconds=120)
KNOWN_APPS: Mapping[str, KnownApp] = {
    "claude": KnownApp(
        Api.ANTHROPIC,
        ("api.anthropic.com",),
        (
            Endpoint("/v1/messages"),
            Endpoint("/v1/messages/count_tokens", health=False, optional=True),
        ),
        BreakerConfig(),
    ),
    "codex": KnownApp(
        Api.OPENAI,
        ("api.openai.com",),
        tuple(Endpoint(p) for p in ("/v1/responses", "/v1/chat/completions", "/v1/completions")),
        _QUICK,
    ),
    "gemini": KnownApp(
        Api.GEMINI,
        ("generativelanguage.googleapis.com",),
        (*_gemini("v1beta"), *_gemini("v1")),
        _QUICK,
    ),
}
DEFAULT_AUTH: Mapping[Api, Auth] = {
    Api.ANTHROPIC: Auth.X_API_KEY,
    Api.OPENAI: Auth.BEARER,
    Api.GEMINI: Auth.X_GOOG_API_KEY,
}

APP_KEYS = (
    "queue",
    "failover",
    "max_attempts",
    "hosts",
    "paths",
    "api",
    "websocket",
    "breaker",
    "rules",
    "providers",
    "routes",
    "affinity_seconds",
    "failback",
)
PROVIDER_KEYS = (
    "name",
    "base_url",
    "format",
    "replay_reasoning",
    "auth",
    "api_key",
    "api_keys",
    "models",
    "headers",
    "proxy",
    "rules",
    "probe",
    *COST_KEYS,  # core/costconfig.py
)
PROBE_KEYS = ("method", "path", "body", "interval_seconds")


@dataclass(frozen=True)
class Probe:
    """A cheap request that tells whether an open provider has recovered."""

    method: str
    path: str
    body: str | None  # JSON text; "{model}" is replaced by the provider's mapped model
    interval_seconds: float  # at least this long between probes (and never under open_seconds)


DEFAULT_PROBES: Mapping[Api, Probe] = {
    Api.ANTHROPIC: Probe(
        "POST",
        "/v1/messages/count_tokens",
        '{"model": "{model}", "messages": [{"role": "user", "content": "ping"}]}',
        0,
    ),
    Api.OPENAI: Probe("GET", "/v1/models", None, 0),
    Api.GEMINI: Probe("GET", "/v1beta/models", None, 0),
}
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_BARE_VAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")  # $VAR: meant as ${VAR}, taken literally
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP header name
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


@dataclass(frozen=True)
class ProviderConfig:
    id: str
    name: str
    base_url: str
    scheme: str
    host: str
    port: int
    base_path: str  # "" or "/prefix" without a trailing slash
    auth: Auth
    api_key: str | None = field(default=None, repr=False)
    models: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    # Lower-case names of the headers whose values came from ${VAR}: secrets like the key.
    secret_headers: frozenset[str] = frozenset()
    disabled: str | None = None  # why the provider is not routed to
    literal_key: bool = False  # the key is written in the file, not taken from ${VAR}
    rules: tuple[Rule, ...] = ()
    probe: Probe | None = None
    line: int = 0  # of base_url in the file, for messages about it
    # the provider's wire format; default_format(app api) when the file names none
    format: Format = Format.ANTHROPIC
    # A translated provider that wants its earlier reasoning sent back with its tool calls
    # (DeepSeek, Kimi and the like: "reasoning_content is missing" otherwise).
    replay_reasoning: bool = False
    # A key pool (api_keys): every key, the first also as api_key; () with a single key.
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    key_var: str | None = None  # the ${VAR} api_key names, for where it came from
    missing: str | None = None  # the first unset ${VAR}: the short form of `disabled`
    cost: CostConfig = field(default_factory=CostConfig)  # price, budget, subscription window
    # How it is reached: its own `proxy:` (none, env or a URL); None: the addon's option says.
    proxy: ProxyChoice | None = None
    proxy_line: int = 0


@dataclass(frozen=True)
class AppConfig:
    name: str
    api: Api
    queue: tuple[str, ...]
    failover: bool
    max_attempts: int | None  # None: every provider the router offers (the queue's length,
    # plus one when a manual switch chose a provider outside the queue)
    hosts: tuple[str, ...]
    paths: tuple[str, ...]
    breaker: BreakerConfig
    providers: Mapping[str, ProviderConfig]
    rules: tuple[Rule, ...] = ()
    endpoints: tuple[Endpoint, ...] = ()  # what paths says, with each endpoint's kind
    websocket: WebSocket = field(default_factory=lambda: WebSocket.REFUSE)
    routing: Routing = field(default_factory=Routing)  # routes, affinity, failback

    def rules_for(self, provider: ProviderConfig) -> tuple[Rule, ...]:
        """The provider's own rules first, then the app's."""
        return provider.rules + self.rules if provider.rules else self.rules


@dataclass(frozen=True)
class Config:
    source: str
    apps: Mapping[str, AppConfig]
    warnings: tuple[ConfigError, ...] = ()


class _Unset(Exception):
    def __init__(self, variable: str, node: Node) -> None:
        super().__init__(variable)
        self.variable = variable
        self.node = node


def _expand(node: Node, env: Mapping[str, str]) -> str:
    """Text with every ${VAR} replaced from the environment; _Unset names the first missing one."""
    text = node.text()
    bare = _BARE_VAR.search(text)
    if bare:
        raise node.error(
            f"did you mean `${{{bare.group(1)}}}`? Only ${{VAR}} is read from the environment"
        )

    def replace(match: re.Match[str]) -> str:
        value = env.get(match.group(1))
        if not value:
            raise _Unset(match.group(1), node)
        return value

    return _VAR.sub(replace, text)


def _parse_base_url(node: Node, text: str) -> tuple[str, str, int, str]:
    parts = urlsplit(text)
    if "@" in parts.netloc:  # checked first: no message below may show the password
        raise node.error(
            "a base URL takes no user:password@ (it would not be sent); "
            "put the credential in api_key or headers, from ${VAR}"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise node.error(f"expected an http:// or https:// URL, got {text!r}")
    if parts.query or parts.fragment:
        raise node.error("a base URL takes no query or fragment")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as e:
        raise node.error(f"bad port in {text!r}") from e
    return parts.scheme, parts.hostname.lower(), port, parts.path.rstrip("/")


def default_format(api: Api) -> Format:
    """A provider's format when the file says none: the app's own, so nothing is translated.

    For an OpenAI app that is ``openai_responses``: a Responses request is then identity and
    a Chat Completions request passes through as well (an OpenAI server answers both).
    """
    return {
        Api.ANTHROPIC: Format.ANTHROPIC,
        Api.OPENAI: Format.OPENAI_RESPONSES,
        Api.GEMINI: Format.GEMINI,
    }[api]


def _parse_format(node: Node, api: Api, app: str) -> Format:
    chosen = node.choice(Format, "format")
    usable = provider_formats(api)
    if chosen not in usable:
        raise node.error(
            f"a {app} provider (api {api.value}) cannot use format {chosen.value}; "
            f"supported: {', '.join(f.value for f in usable)}"
        )
    return chosen


def _parse_provider(
    pid: str,
    node: Node,
    api: Api,
    env: Mapping[str, str],
    warnings: list[ConfigError],
    app: str = "",
    mistakes: Mistakes | None = None,
) -> ProviderConfig:
    entries = node.mapping(PROVIDER_KEYS, mistakes)
    if "base_url" not in entries:
        raise node.error("base_url is required")
    # Each key on its own, raised together at the end: one mistake must not hide the next.
    found = Mistakes()
    default_fmt = default_format(api)
    fmt = (
        found.attempt(lambda: _parse_format(entries["format"], api, app), default_fmt)
        if "format" in entries
        else default_fmt
    )
    # a translated provider is reached with its own API's credentials and probe
    own_api = FORMAT_API[fmt]
    auth_default = DEFAULT_AUTH[own_api]
    # None when misspelt: then whether it needs a key is not known, and not reported
    auth: Auth | None = (
        found.attempt(lambda: entries["auth"].choice(Auth, "auth"), None)
        if "auth" in entries
        else auth_default
    )
    unset: list[_Unset] = []

    def expand(child: Node) -> str:
        try:
            return _expand(child, env)
        except _Unset as e:
            unset.append(e)
        except ConfigError as e:
            found.record(e)
        return ""

    values = {
        key: expand(entries[key]) for key in ("name", "base_url", "api_key") if key in entries
    }
    key_nodes: list[Node] = []
    if "api_key" in entries and "api_keys" in entries:
        found.record(entries["api_keys"].error("give api_key or api_keys (a pool), not both"))
    elif "api_keys" in entries:
        key_nodes = found.attempt(lambda: list(_key_nodes(entries["api_keys"])), [])
    pool = tuple(expand(item) for item in key_nodes)
    if len(set(pool)) < len(pool) and not unset:
        found.record(entries["api_keys"].error("the pool names one key twice"))
    if pool:
        values["api_key"] = pool[0]
    models: dict[str, str] = (
        found.attempt(lambda: {k: expand(v) for k, v in entries["models"].mapping().items()}, {})
        if "models" in entries
        else {}
    )
    no_headers: tuple[dict[str, str], frozenset[str]] = ({}, frozenset())
    headers, secret_headers = found.attempt(
        lambda: _parse_headers(entries.get("headers"), expand), no_headers
    )
    disabled: str | None = None
    if unset:
        first = unset[0]
        disabled = f"${{{first.variable}}} is not set ({first.node.path}); " + fix_hint(
            first.variable, first.node.source
        )
        for e in unset:
            warnings.append(
                ConfigError(
                    e.node.source,
                    e.node.line,
                    e.node.path,
                    f"provider disabled: environment variable {e.variable} is not set; "
                    + fix_hint(e.variable, e.node.source),
                    disabling=True,
                )
            )
    base_node = entries["base_url"]
    # unset: cannot be checked before the variable is set; the provider is disabled anyway
    placeholder = ("https", "unset.invalid", 443, "")
    scheme, host, port, base_path = (
        found.attempt(lambda: _parse_base_url(base_node, values["base_url"]), placeholder)
        if values["base_url"]
        else placeholder
    )
    literal = False
    if auth is not None and auth is not Auth.PASSTHROUGH:
        literal = found.attempt(
            lambda: _literal_keys(node, entries, key_nodes, auth, warnings), False
        )
    rules: tuple[Rule, ...] = (
        found.attempt(lambda: parse_rules(entries["rules"]), ()) if "rules" in entries else ()
    )
    probe = (
        found.attempt(lambda: _parse_probe(entries["probe"], own_api), None)
        if "probe" in entries
        else None
    )
    proxy = found.attempt(lambda: _parse_provider_proxy(entries.get("proxy"), env), None)
    replay = found.attempt(
        lambda: entries["replay_reasoning"].boolean() if "replay_reasoning" in entries else False,
        False,
    )
    cost = found.attempt(lambda: parse_cost(entries), None)
    found.check()
    assert cost is not None  # a mistake in it or auth was raised by found.check()
    assert auth is not None
    return ProviderConfig(
        id=pid,
        name=values.get("name", pid),
        base_url=values["base_url"] or base_node.text(),
        scheme=scheme,
        host=host,
        port=port,
        base_path=base_path,
        auth=auth,
        api_key=values.get("api_key") if auth is not Auth.PASSTHROUGH else None,
        models=models,
        headers=headers,
        secret_headers=secret_headers,
        disabled=disabled,
        literal_key=literal,
        rules=rules,
        probe=probe,
        line=base_node.line,
        format=fmt,
        replay_reasoning=replay,
        api_keys=pool if len(pool) > 1 and auth is not Auth.PASSTHROUGH else (),
        key_var=_key_var(entries.get("api_key")),
        missing=unset[0].variable if unset else None,
        cost=cost,
        proxy=proxy,
        proxy_line=entries["proxy"].line if "proxy" in entries else 0,
    )


def _parse_headers(
    node: Node | None, expand: Callable[[Node], str]
) -> tuple[dict[str, str], frozenset[str]]:
    """A provider's extra headers, and the lower-case names of those holding a ${VAR}."""
    header_nodes = node.mapping() if node is not None else {}
    headers = {k: expand(v) for k, v in header_nodes.items()}
    secret = frozenset(k.lower() for k, v in header_nodes.items() if _VAR.search(v.text()))
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name):
            raise header_nodes[name].error(f"{name!r} is not a valid header name")
        if _CONTROL.search(value):  # the value may be a secret: it is not shown
            raise header_nodes[name].error("the value holds a line break or control character")
    return headers, secret


def _literal_keys(
    node: Node,
    entries: Mapping[str, Node],
    key_nodes: list[Node],
    auth: Auth,
    warnings: list[ConfigError],
) -> bool:
    """Whether a key is written in the file (each one warned about); an error when none is."""
    if "api_key" not in entries and not key_nodes:
        raise node.error(f"api_key is required with auth: {auth.value} (use ${{VAR}})")
    literal = False
    for key_node in [entries["api_key"]] if "api_key" in entries else key_nodes:
        if not _VAR.search(key_node.text()):
            literal = True
            warnings.append(
                key_node.error("the key is written in the file; prefer ${VAR} from the environment")
            )
    return literal


def _parse_provider_proxy(node: Node | None, env: Mapping[str, str]) -> ProxyChoice | None:
    if node is None:
        return None
    try:
        return parse_proxy(node.text(), env)
    except ValueError as e:
        raise node.error(str(e)) from None


def _key_nodes(node: Node) -> list[Node]:
    items = list(node.sequence()) if node.is_sequence() else [node]
    if not items:
        raise node.error("the key pool is empty; list at least one ${VAR}")
    return items


def _key_var(node: Node | None) -> str | None:
    found = _VAR.search(node.text()) if node is not None else None
    return found.group(1) if found else None


def _parse_probe(node: Node, api: Api) -> Probe | None:
    default = DEFAULT_PROBES[api]
    if not node.is_mapping():
        return default if node.boolean() else None
    entries = node.mapping(PROBE_KEYS)
    method = entries["method"].text().upper() if "method" in entries else default.method
    if method not in ("GET", "POST", "HEAD"):
        raise entries["method"].error(f"a probe is GET, POST or HEAD, not {method}")
    path = entries["path"].text() if "path" in entries else default.path
    if not path.startswith("/"):
        raise entries["path"].error(f"a probe path starts with '/', got {path!r}")
    body = (
        entries["body"].text()
        if "body" in entries
        else (default.body if "path" not in entries else None)
    )
    interval = (
        entries["interval_seconds"].number(0, 86400)
        if "interval_seconds" in entries
        else default.interval_seconds
    )
    return Probe(method, path, body, interval)


def _breaker_field(spec: BreakerField, node: Node) -> float | int:
    if spec.integer:
        return node.integer(int(spec.lo), int(spec.hi))
    return node.number(spec.lo, spec.hi)


def _parse_breaker(node: Node | None, defaults: BreakerConfig) -> BreakerConfig:
    if node is None:
        return defaults
    names = tuple(f.name for f in BREAKER_FIELDS)
    found = Mistakes()  # every bad field of the breaker, not only the first
    entries = node.mapping(names, found)
    values: dict[str, float | int] = {}
    for spec in BREAKER_FIELDS:
        if spec.name in entries:
            value = found.attempt(partial(_breaker_field, spec, entries[spec.name]), None)
            if value is not None:
                values[spec.name] = value
    found.check()
    return BreakerConfig(**{**defaults.__dict__, **values})


def _items(
    node: Node, empty: str = "the list is empty, so it would never match anything"
) -> list[tuple[str, Node]]:
    """A non-empty list of text with each item's node; a single value is a list of one."""
    if node.is_sequence():
        items = [(item.text(), item) for item in node.sequence()]
        if not items:
            raise node.error(empty)
        return items
    return [(node.text(), node)]


def _parse_app(
    name: str, node: Node, env: Mapping[str, str], warnings: list[ConfigError]
) -> AppConfig:
    mistakes = Mistakes()  # every mistake of the app in one run, not only the first one
    entries = node.mapping(APP_KEYS, mistakes)
    known = KNOWN_APPS.get(name)
    if known is None:
        missing = [k for k in ("hosts", "paths") if k not in entries]
        if missing:
            mistakes.record(
                node.error(
                    f"'{name}' is not a known app (claude, codex, gemini), "
                    f"so it must set {' and '.join(missing)}"
                )
            )
    api = known.api if known else Api.OPENAI
    if "api" in entries:
        api = mistakes.attempt(lambda: entries["api"].choice(Api, "api"), api)
    hosts = (
        tuple(h.lower() for h, _ in _items(entries["hosts"]))
        if "hosts" in entries
        else known.hosts
        if known
        else ()
    )
    if "paths" in entries:
        paths = tuple(text for text, _ in _items(entries["paths"]))
        for text, item in _items(entries["paths"]):
            if not text.startswith("/"):
                mistakes.record(item.error(f"a path prefix starts with '/', got {text!r}"))
        endpoints = tuple(Endpoint(path) for path in paths)
    else:
        endpoints = known.endpoints if known else ()
        paths = tuple(endpoint.path for endpoint in endpoints)
    if "providers" not in entries:
        mistakes.record(node.error("providers is required"))
        mistakes.check()
    providers: dict[str, ProviderConfig] = {}
    broken: set[str] = set()
    for pid, pnode in entries["providers"].mapping().items():
        try:
            if not _ID.match(pid):
                raise pnode.error("a provider id uses letters, digits, '_', '.' and '-'")
            providers[pid] = _parse_provider(pid, pnode, api, env, warnings, name, mistakes)
        except ConfigError as e:
            mistakes.record(e)
            broken.add(pid)
    if "queue" not in entries:
        mistakes.record(node.error("queue is required: the providers in priority order"))
        mistakes.check()
    queue_node = entries["queue"]

    def check_queue() -> tuple[str, ...]:
        empty = "the queue is empty; list at least one provider"
        queue = tuple(text for text, _ in _items(queue_node, empty))
        for index, (pid, item) in enumerate(_items(queue_node)):
            if pid in broken:
                continue
            if pid not in providers:
                known_ids = ", ".join(entries["providers"].mapping()) or "none"
                raise item.error(f"{pid!r} is not a provider of {name}; known: {known_ids}")
            if queue.index(pid) != index:
                raise item.error(f"{pid!r} is listed twice")
        return queue

    # Each part on its own: a misspelt breaker key must not hide a bad value elsewhere.
    defaults = known.breaker if known else _QUICK
    queue: tuple[str, ...] = mistakes.attempt(check_queue, ())
    failover = mistakes.attempt(
        lambda: entries["failover"].boolean() if "failover" in entries else True, True
    )
    max_attempts = mistakes.attempt(
        lambda: entries["max_attempts"].integer(1, 20) if "max_attempts" in entries else None,
        None,
    )
    breaker = mistakes.attempt(lambda: _parse_breaker(entries.get("breaker"), defaults), defaults)
    no_rules: tuple[Rule, ...] = ()
    rules = mistakes.attempt(
        lambda: parse_rules(entries["rules"]) if "rules" in entries else no_rules, no_rules
    )
    websocket_choice = mistakes.attempt(
        lambda: (
            entries["websocket"].choice(WebSocket, "websocket")
            if "websocket" in entries
            else WebSocket.REFUSE
        ),
        WebSocket.REFUSE,
    )
    routing: Routing | None = None
    try:
        routing = parse_routing(entries, providers, broken, name)
    except ConfigError as e:
        mistakes.record(e)
    mistakes.check()
    if all(providers[pid].disabled for pid in queue):
        warnings.append(
            ConfigError(
                queue_node.source,
                queue_node.line,
                queue_node.path,
                f"{name} has no usable provider: every one in its queue is disabled",
                unusable=True,
            )
        )
    websocket = websocket_choice
    assert routing is not None  # a routing mistake was raised by mistakes.check()
    return AppConfig(
        name,
        api,
        queue,
        failover,
        max_attempts,
        hosts,
        paths,
        breaker,
        providers,
        rules,
        endpoints,
        websocket,
        routing,
    )


def parse_config(text: str, source: str, env: Mapping[str, str] | None = None) -> Config:
    """Parse providers.yaml text. Raises ConfigError naming the file, line and key path."""
    environment = os.environ if env is None else env
    root = parse_document(text, source)
    top = root.mapping(("apps",))
    if "apps" not in top:
        raise ConfigError(
            source, root.line, "apps", "is required: one entry per tool (claude, codex, gemini, …)"
        )
    warnings: list[ConfigError] = []
    apps: dict[str, AppConfig] = {}
    mistakes = Mistakes()  # every app's mistakes in one run
    for name, app_node in top["apps"].mapping().items():
        try:
            apps[name] = _parse_app(name, app_node, environment, warnings)
        except ConfigError as e:
            mistakes.record(e)
    mistakes.check()
    if not apps:
        raise top["apps"].error("no apps configured")
    return Config(source, apps, tuple(warnings))


_LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0", "::"})


def check_self_loop(
    config: Config, listen_host: str, listen_port: int, environ: Mapping[str, str] | None = None
) -> None:
    """Refuse a provider that points at the proxy itself, or is reached through it: its
    requests would storm the breaker."""
    own = _LOOPBACK_NAMES | ({listen_host.lower()} if listen_host else set())
    environ = os.environ if environ is None else environ
    for app in config.apps.values():
        for provider in app.providers.values():
            problem = ""
            if provider.proxy is not None and not provider.disabled:
                target = (provider.scheme, provider.host)
                problem = loop_problem(provider.proxy, *target, listen_host, listen_port, environ)
            if problem:
                raise ConfigError(
                    config.source,
                    provider.proxy_line,
                    f"apps.{app.name}.providers.{provider.id}.proxy",
                    problem,
                )
            if provider.port == listen_port and provider.host in own and not provider.disabled:
                raise ConfigError(
                    config.source,
                    provider.line,
                    f"apps.{app.name}.providers.{provider.id}.base_url",
                    f"points at this proxy's own address ({provider.host}:{listen_port}); "
                    "its requests would come back here in a loop",
                )


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, None, "", "no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(source, None, "", f"cannot read: {e}") from None
    if env is not None:
        return parse_config(text, source, env)
    keys = read_env(path)  # the environment, else the .env beside the file
    config = parse_config(text, source, keys.values)
    notes = [
        ConfigError(str(keys.path), line, "", "cannot read this line (not UTF-8); it is left out")
        for line in keys.unreadable
    ]
    if exposed(keys.path):
        notes.append(
            ConfigError(
                str(keys.path), None, "", f"other users can read its keys: chmod 600 {keys.path}"
            )
        )
    if notes:
        config = Config(config.source, config.apps, (*config.warnings, *notes))
    return config

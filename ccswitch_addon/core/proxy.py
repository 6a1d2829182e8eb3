"""Upstream proxies: how a provider is reached, directly or through an HTTP or SOCKS5 proxy.

A setting is ``none`` (direct), ``env`` (the process's proxy variables, read as curl reads
them), or a URL: ``http://HOST:PORT`` (CONNECT) or ``socks5://HOST:PORT`` (``socks5h`` is the
same: the proxy resolves names), with ``user:password@`` from the URL, ``${VAR}`` allowed there.
A password is never shown: :meth:`ProxyUrl.masked` is what every message, status and listing
uses, and the dataclass's repr leaves it out.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

__all__ = [
    "DIRECT",
    "ENV",
    "Proxies",
    "ProxyChoice",
    "ProxyUrl",
    "env_proxy",
    "loop_problem",
    "loops_back",
    "option_problem",
    "parse_proxy",
]

DEFAULT_PORT = 1080  # curl's, for a proxy URL without one
_SCHEMES = {"http": "http", "socks5": "socks5", "socks5h": "socks5"}
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0", "::", ""})


@dataclass(frozen=True)
class ProxyUrl:
    scheme: str  # "http" (CONNECT) or "socks5" (names resolved by the proxy)
    host: str
    port: int
    username: str = ""
    password: str = field(default="", repr=False)

    def masked(self) -> str:
        """The URL as it may be shown: the password replaced."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = ""
        if self.username or self.password:
            user = f"{self.username}:***@" if self.password else f"{self.username}@"
        return f"{self.scheme}://{user}{host}:{self.port}"

    def __str__(self) -> str:
        return self.masked()


@dataclass(frozen=True)
class ProxyChoice:
    """What a setting says: ``direct``, ``env``, or ``url``."""

    mode: str
    url: ProxyUrl | None = None

    def shown(self) -> str:
        return self.url.masked() if self.url is not None else self.mode.replace("direct", "none")

    def resolve(self, scheme: str, host: str, environ: Mapping[str, str]) -> ProxyUrl | None:
        """The proxy for a provider at ``scheme://host``; None: direct."""
        if self.mode == "env":
            return env_proxy(scheme, host, environ)
        return self.url


DIRECT = ProxyChoice("direct")
ENV = ProxyChoice("env")


def parse_proxy(text: str, env: Mapping[str, str]) -> ProxyChoice:
    """``none``/empty, ``env`` or a proxy URL; ValueError saying what is wrong, never with the
    password in it."""
    value = text.strip()
    if value.lower() in ("", "none", "direct"):
        return DIRECT
    if value.lower() == "env":
        return ENV
    return ProxyChoice("url", parse_proxy_url(value, env))


def parse_proxy_url(text: str, env: Mapping[str, str], default_scheme: str = "") -> ProxyUrl:
    if "://" not in text and default_scheme:
        text = f"{default_scheme}://{text}"
    scheme, sep, rest = text.partition("://")
    userinfo, at, hostport = rest.rpartition("@")
    shown = f"{scheme}{sep}{'…@' if at else ''}{hostport}"  # never the userinfo
    kind = _SCHEMES.get(scheme.lower())
    if not sep or kind is None:
        raise ValueError(
            f"{shown!r} is not a proxy URL: expected http://HOST:PORT or socks5://HOST:PORT "
            "(socks5h the same), none or env"
        )
    try:
        parts = urlsplit(f"{scheme}://{hostport}")
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ValueError(f"{shown!r}: the port is not a number from 1 to 65535") from None
    if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{shown!r}: a proxy URL is scheme://[user:password@]host:port only")
    user, _, password = userinfo.partition(":")
    return ProxyUrl(kind, parts.hostname.lower(), port, _secret(user, env), _secret(password, env))


def _secret(text: str, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        value = env.get(match.group(1))
        if not value:
            raise ValueError(f"environment variable {match.group(1)} is not set")
        return value

    return _VAR.sub(replace, unquote(text))


def env_proxy(scheme: str, host: str, environ: Mapping[str, str]) -> ProxyUrl | None:
    """The proxy curl would use for ``scheme://host``: ``https_proxy``/``HTTPS_PROXY``,
    ``http_proxy`` (lower case only, as curl), then ``all_proxy``/``ALL_PROXY``; none when
    ``no_proxy``/``NO_PROXY`` covers the host. ValueError for a variable that is not a proxy URL."""
    names = [f"{scheme}_proxy"] + ([f"{scheme.upper()}_PROXY"] if scheme != "http" else [])
    for name in [*names, "all_proxy", "ALL_PROXY"]:
        value = environ.get(name, "").strip()
        if value:
            break
    else:
        return None
    if _bypassed(host, environ.get("no_proxy") or environ.get("NO_PROXY") or ""):
        return None
    try:
        return parse_proxy_url(value, {}, default_scheme="http")
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None


def _bypassed(host: str, no_proxy: str) -> bool:
    """curl's no_proxy: ``*``, a name and the names under it, an address or a CIDR range."""
    host = host.strip("[]").lower()
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in re.split(r"[,\s]+", no_proxy.lower()):
        entry = entry.strip().strip("[]")
        if not entry:
            continue
        if entry == "*":
            return True
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        entry = entry.lstrip(".")
        if host == entry or host.endswith("." + entry):
            return True
    return False


def loops_back(proxy: ProxyUrl, listen_host: str, listen_port: int) -> bool:
    """Whether the proxy is this process's own listen address: requests would come back here."""
    own = _LOOPBACK | ({listen_host.lower()} if listen_host else set())
    return proxy.port == listen_port and (proxy.host in own or proxy.host.startswith("127."))


@dataclass(frozen=True)
class Proxies:
    """The addon's option (``ccswitch_upstream_proxy``) and the environment it read, which a
    provider's own ``proxy:`` overrides."""

    option: ProxyChoice = DIRECT
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)

    def route(self, own: ProxyChoice | None, scheme: str, host: str) -> ProxyUrl | None:
        """The proxy to a provider at ``scheme://host``; None: direct."""
        return (own or self.option).resolve(scheme, host, self.environ)

    @staticmethod
    def snapshot(environ: Mapping[str, str]) -> dict[str, str]:
        """The proxy variables of an environment, all curl reads."""
        names = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
        return {k: v for k, v in environ.items() if k.lower() in names}


def loop_problem(
    choice: ProxyChoice,
    scheme: str,
    host: str,
    listen_host: str,
    listen_port: int,
    environ: Mapping[str, str],
) -> str:
    """Why a provider's own proxy cannot be used (it is this proxy, or ``env`` holds a variable
    that is no proxy URL), or ""."""
    try:
        via = choice.resolve(scheme, host, environ)
    except ValueError as e:
        return str(e)
    if via is not None and loops_back(via, listen_host, listen_port):
        return f"{via} is this proxy's own address: its requests would come back here in a loop"
    return ""


def option_problem(
    choice: ProxyChoice, environ: Mapping[str, str], listen_host: str, listen_port: int
) -> str:
    """Why the option cannot be used here (a loop, or ``env`` with a variable that is no proxy
    URL), or "". For ``env`` each variable is judged, whatever no_proxy says."""
    try:
        if choice.mode == "env":
            found = [env_proxy(s, "ccswitch.invalid", environ) for s in ("https", "http")]
        else:
            found = [choice.url]
    except ValueError as e:
        return f"env: {e}"
    for url in found:
        if url is not None and loops_back(url, listen_host, listen_port):
            return f"{url} is this proxy's own address: every request would come back here"
    return ""

"""Routes: a request class (a model, a subagent, a long or thinking request) gets a queue of
its own among the app's providers. The first route whose ``when`` matches wins; a request no
route takes uses the app's queue. Breakers stay per provider, shared by every route."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ccswitch_addon.core.affinity import Failback, parse_affinity
from ccswitch_addon.core.yamlnodes import ConfigError, Mistakes, Node

if TYPE_CHECKING:  # config imports this module; facts imports config (through rewrite)
    from ccswitch_addon.core.facts import Facts

__all__ = ["ROUTE_KEYS", "WHEN_KEYS", "Route", "Routing", "When", "parse_routing"]

ROUTE_KEYS = ("name", "when", "queue")
WHEN_KEYS = ("model", "subagent", "tokens_over", "thinking", "header")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # goes into a response header


@dataclass(frozen=True)
class When:
    """What a request must be for a route to take it; every condition given must hold."""

    models: tuple[str, ...] = ()  # globs over the model the tool asked for
    model_pattern: re.Pattern[str] | None = None
    subagent: bool | None = None
    tokens_over: int | None = None
    thinking: bool | None = None
    headers: tuple[tuple[str, re.Pattern[str]], ...] = ()

    def matches(self, facts: Facts) -> bool:
        # Cheapest questions first: headers and the size before the body is looked into.
        for name, pattern in self.headers:
            value = facts.header(name)
            if value is None or pattern.search(value) is None:
                return False
        if self.tokens_over is not None and facts.tokens <= self.tokens_over:
            return False
        if self.model_pattern is not None:
            model = facts.model
            if model is None or self.model_pattern.match(model) is None:
                return False
        if self.subagent is not None and facts.subagent is not self.subagent:
            return False
        return self.thinking is None or facts.thinking is self.thinking


@dataclass(frozen=True)
class Route:
    name: str
    when: When
    queue: tuple[str, ...]
    line: int = 0


@dataclass(frozen=True)
class Routing:
    """An app's routes and how its conversations keep their provider."""

    routes: tuple[Route, ...] = ()
    affinity_seconds: float = 300.0
    failback: Failback = Failback.IDLE

    def route_for(self, facts: Facts) -> Route | None:
        for route in self.routes:
            if route.when.matches(facts):
                return route
        return None


def _globs(node: Node) -> tuple[tuple[str, ...], re.Pattern[str]]:
    globs = tuple(node.text_list())
    if not globs:
        raise node.error("the list is empty, so it would never match anything")
    # One case-blind regex for all the globs: one match call per request.
    pattern = "|".join(f"(?:{fnmatch.translate(glob)})" for glob in globs)
    return globs, re.compile(pattern, re.IGNORECASE)


def _headers(node: Node) -> tuple[tuple[str, re.Pattern[str]], ...]:
    found = []
    for name, value in node.mapping().items():
        text = value.text()
        try:
            found.append((name.lower(), re.compile(text)))
        except re.error as e:
            raise value.error(f"not a regular expression: {e}") from None
    if not found:
        raise node.error("name at least one header: {name: regex}")
    return tuple(found)


def _when(node: Node) -> When:
    entries = node.mapping(WHEN_KEYS)
    if not entries:
        raise node.error(f"a route needs at least one condition: {', '.join(WHEN_KEYS)}")
    models, pattern = _globs(entries["model"]) if "model" in entries else ((), None)
    return When(
        models=models,
        model_pattern=pattern,
        subagent=entries["subagent"].boolean() if "subagent" in entries else None,
        tokens_over=(
            entries["tokens_over"].integer(0, 100_000_000) if "tokens_over" in entries else None
        ),
        thinking=entries["thinking"].boolean() if "thinking" in entries else None,
        headers=_headers(entries["header"]) if "header" in entries else (),
    )


def _queue(
    node: Node, providers: Collection[str], broken: Collection[str], app: str
) -> tuple[str, ...]:
    items = list(node.sequence()) if node.is_sequence() else [node]
    if not items:
        raise node.error("the queue is empty; list at least one provider")
    queue: list[str] = []
    for item in items:
        pid = item.text()
        if pid in queue:
            raise item.error(f"{pid!r} is listed twice")
        if pid not in providers and pid not in broken:
            known = ", ".join(providers) or "none"
            raise item.error(f"{pid!r} is not a provider of {app}; known: {known}")
        queue.append(pid)
    return tuple(queue)


def _route(node: Node, providers: Collection[str], broken: Collection[str], app: str) -> Route:
    entries = node.mapping(ROUTE_KEYS)
    for key in ROUTE_KEYS:
        if key not in entries:
            raise node.error(f"{key} is required (a route has {', '.join(ROUTE_KEYS)})")
    name = entries["name"].text()
    if not _NAME.match(name):
        raise entries["name"].error("a route name uses letters, digits, '_', '.' and '-'")
    return Route(
        name,
        _when(entries["when"]),
        _queue(entries["queue"], providers, broken, app),
        node.line,
    )


def parse_routing(
    entries: Mapping[str, Node],
    providers: Collection[str],
    broken: Collection[str] = (),
    app: str = "",
) -> Routing:
    """The app's ``routes``, ``affinity_seconds`` and ``failback``; every route's mistakes
    in one run."""
    affinity_seconds, failback = parse_affinity(entries)
    routes: list[Route] = []
    if "routes" in entries:
        mistakes = Mistakes()
        names: set[str] = set()
        for item in entries["routes"].sequence():
            try:
                route = _route(item, providers, broken, app)
            except ConfigError as e:
                mistakes.record(e)
                continue
            if route.name in names:
                mistakes.record(item.error(f"route {route.name!r} is defined twice"))
            names.add(route.name)
            routes.append(route)
        mistakes.check()
    return Routing(tuple(routes), affinity_seconds, failback)

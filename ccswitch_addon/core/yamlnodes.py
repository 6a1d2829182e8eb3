"""Read YAML keeping each value's line, so every config error can name FILE:LINE: key.path."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

import yaml

from ccswitch_addon.core.yamlerrors import explain

E = TypeVar("E", bound=Enum)
T = TypeVar("T")


class ConfigError(ValueError):
    """A mistake in providers.yaml, rendered as ``FILE:LINE: key.path: what is wrong``."""

    def __init__(
        self,
        source: str,
        line: int | None,
        path: str,
        message: str,
        *,
        disabling: bool = False,
        unusable: bool = False,
    ) -> None:
        self.disabling = disabling  # as a warning: it disables a provider (an error with --strict)
        self.unusable = unusable  # as a warning: an app has no usable provider (a check error)
        self.source = source
        self.line = line
        self.path = path
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigErrors(ConfigError):
    """Several mistakes found in one pass, one per line, in file order."""

    def __init__(self, errors: list[ConfigError]) -> None:
        flat: list[ConfigError] = []
        for error in errors:
            flat += error.errors if isinstance(error, ConfigErrors) else [error]
        self.errors: list[ConfigError] = sorted(flat, key=lambda e: e.line or 0)
        first = self.errors[0]
        super().__init__(first.source, first.line, first.path, first.message)

    def __str__(self) -> str:
        return "\n".join(ConfigError.__str__(e) for e in self.errors)


class Mistakes:
    """Collects ConfigErrors so that one run reports every independent mistake."""

    def __init__(self) -> None:
        self.errors: list[ConfigError] = []

    def record(self, error: ConfigError) -> None:
        self.errors.append(error)

    def attempt(self, parse: Callable[[], T], fallback: T) -> T:
        """``parse()``, or ``fallback`` with its mistake recorded: the parts after it are
        still checked."""
        try:
            return parse()
        except ConfigError as e:
            self.record(e)
            return fallback

    def check(self) -> None:
        """Raise what was collected, if anything."""
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise ConfigErrors(self.errors)


_loader = yaml.SafeLoader("")  # only its constructor is used, to type scalars


def _construct(node: yaml.Node) -> Any:
    try:
        return _loader.construct_object(node, deep=True)
    finally:
        _loader.constructed_objects.clear()  # the cache would keep every node alive


@dataclass(frozen=True)
class Node:
    """A YAML value with the place it came from."""

    source: str
    path: str
    raw: yaml.Node
    key: yaml.Node | None = None  # the key this value sits under, if any

    @property
    def line(self) -> int:
        # A block mapping or list starts on the line after its key: a missing entry or a
        # wrong shape is the key's fault, not the first nested line's.
        if self.key is not None and not isinstance(self.raw, yaml.ScalarNode):
            return self.key.start_mark.line + 1
        return self.raw.start_mark.line + 1

    def error(self, message: str) -> ConfigError:
        return ConfigError(self.source, self.line, self.path, message)

    def child(self, key: str, raw: yaml.Node, key_node: yaml.Node | None = None) -> Node:
        return Node(self.source, f"{self.path}.{key}" if self.path else key, raw, key_node)

    # --- shapes -----------------------------------------------------------------

    def is_mapping(self) -> bool:
        return isinstance(self.raw, yaml.MappingNode)

    def is_sequence(self) -> bool:
        return isinstance(self.raw, yaml.SequenceNode)

    def mapping(
        self, allowed: tuple[str, ...] | None = None, collect: Mistakes | None = None
    ) -> dict[str, Node]:
        """The entries of a mapping; unknown keys are errors with a close match suggested.

        With ``collect`` those errors are recorded there and the known entries returned, so
        the caller goes on to find the mistakes in them too."""
        if not isinstance(self.raw, yaml.MappingNode):
            raise self.error(f"expected a mapping, got {self._kind()}")
        entries: dict[str, Node] = {}
        mistakes = Mistakes()
        for key_node, value_node in self.raw.value:
            key = _construct(key_node)
            if not isinstance(key, str):
                raise Node(self.source, self.path, key_node).error(
                    f"keys must be text, got {key!r}"
                )
            child = self.child(key, value_node, key_node)
            if key in entries:
                mistakes.record(Node(self.source, child.path, key_node).error("duplicate key"))
                continue
            if allowed is not None and key not in allowed:
                hint = difflib.get_close_matches(key, allowed, n=1, cutoff=0.75)
                suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
                mistakes.record(
                    Node(self.source, child.path, key_node).error(
                        f"unknown key{suggestion}; allowed: {', '.join(allowed)}"
                    )
                )
                continue
            entries[key] = child
        if collect is not None:
            for error in mistakes.errors:
                collect.record(error)
            return entries
        mistakes.check()
        return entries

    def sequence(self) -> Iterator[Node]:
        if not isinstance(self.raw, yaml.SequenceNode):
            raise self.error(f"expected a list, got {self._kind()}")
        for index, item in enumerate(self.raw.value):
            yield Node(self.source, f"{self.path}[{index}]", item)

    def scalar(self) -> Any:
        if not isinstance(self.raw, yaml.ScalarNode):
            raise self.error(f"expected a single value, got {self._kind()}")
        return _construct(self.raw)

    # --- typed scalars --------------------------------------------------------------

    def text(self) -> str:
        value = self.scalar()
        if not isinstance(value, str) or not value.strip():
            raise self.error(f"expected non-empty text, got {value!r}")
        return value

    def choice(self, kind: type[E], what: str) -> E:
        """One of an enum's values, or an error listing them."""
        text = self.text()
        try:
            return kind(text)
        except ValueError:
            choices = ", ".join(str(member.value) for member in kind)
            raise self.error(f"unknown {what} {text!r}; one of: {choices}") from None

    def boolean(self) -> bool:
        value = self.scalar()
        if not isinstance(value, bool):
            raise self.error(f"expected true or false, got {value!r}")
        return value

    def integer(self, lo: int, hi: int) -> int:
        value = self.scalar()
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(f"expected a whole number from {lo} to {hi}, got {value!r}")
        if not lo <= value <= hi:
            raise self.error(f"{value} is out of range: must be from {lo} to {hi}")
        return value

    def number(self, lo: float, hi: float) -> float:
        value = self.scalar()
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(f"expected a number from {lo:g} to {hi:g}, got {value!r}")
        if not lo <= value <= hi:
            raise self.error(f"{value} is out of range: must be from {lo:g} to {hi:g}")
        return float(value)

    def text_list(self) -> list[str]:
        """A list of text; a single text value is taken as a list of one."""
        if isinstance(self.raw, yaml.ScalarNode):
            return [self.text()]
        return [item.text() for item in self.sequence()]

    def text_map(self) -> dict[str, str]:
        result: dict[str, str] = {}
        for key, node in self.mapping().items():
            value = node.scalar()
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                raise node.error(f"expected text, got {value!r}")
            result[key] = str(value)
        return result

    def _kind(self) -> str:
        if isinstance(self.raw, yaml.MappingNode):
            return "a mapping"
        if isinstance(self.raw, yaml.SequenceNode):
            return "a list"
        value = _construct(self.raw)
        return "nothing" if value is None else repr(value)


def parse_document(text: str, source: str) -> Node:
    """Parse YAML text into a root Node; a syntax error becomes a ConfigError with its line."""
    try:
        raw = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        line, message = explain(e, text)
        raise ConfigError(source, line, "", message) from e
    except yaml.YAMLError as e:
        raise ConfigError(source, None, "", f"malformed YAML: {e}") from e
    if raw is None:
        raise ConfigError(source, 1, "", "the file is empty; it needs an 'apps:' mapping")
    return Node(source, "", raw)

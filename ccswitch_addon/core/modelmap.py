"""Which model a provider gets: ``models:`` keys are names or globs.

A name matches itself; a glob (``"*opus*"``, ``"claude-*-haiku-*"``) matches with
fnmatch's rules, case-sensitively. An exact name wins, then the first glob in file order,
and ``"*"`` only when nothing else matched, wherever it is written: a mapping written for
``*opus*`` keeps working when the tool moves on to a new model version.
"""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase

__all__ = ["ANY", "is_glob", "lookup"]

ANY = "*"
_GLOB_CHARS = frozenset("*?[")


def is_glob(key: str) -> bool:
    return not _GLOB_CHARS.isdisjoint(key)


def lookup(models: Mapping[str, str], requested: str) -> str | None:
    """The model ``requested`` maps to, or None when no key matches it."""
    exact = models.get(requested)
    if exact is not None and not is_glob(requested):
        return exact
    for key, value in models.items():
        if key != ANY and is_glob(key) and fnmatchcase(requested, key):
            return value
    return models.get(ANY)

"""Keys beside the configuration: a ``.env`` file next to providers.yaml.

``${VAR}`` in providers.yaml is taken from the environment, else from this file. The
environment of a running proxy cannot change, but the file can: the proxy watches it like
providers.yaml, so a key added there takes effect without a restart. The syntax and the
parser are python-dotenv's (``KEY=value``, quotes, ``export``, comments).
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values

__all__ = ["ENV_NAME", "KeyEnv", "env_path", "exposed", "fix_hint", "read_env", "shown"]

ENV_NAME = ".env"


def env_path(config: str | Path) -> Path:
    """The ``.env`` that belongs to a providers.yaml: the one in the same directory."""
    return Path(config).expanduser().absolute().parent / ENV_NAME


def shown(path: Path) -> str:
    """A path as a person would type it: ``~/…`` under the home directory."""
    home = Path.home()
    try:
        return "~/" + str(path.relative_to(home))
    except ValueError:
        return str(path)


@dataclass(frozen=True)
class KeyEnv:
    """The variables ``${VAR}`` may use, and where each came from."""

    values: Mapping[str, str]
    from_file: frozenset[str]  # names whose value is the .env file's
    path: Path
    unreadable: tuple[int, ...] = ()  # lines of the file that are not UTF-8, left out

    def origin(self, name: str) -> str | None:
        """'environment', the .env file, or None when the variable is set nowhere."""
        if not self.values.get(name):
            return None
        return shown(self.path) if name in self.from_file else "environment"


def read_env(config: str | Path, environ: Mapping[str, str] | None = None) -> KeyEnv:
    """The environment over the .env beside ``config``; a missing or unreadable one adds nothing.

    A line that is not UTF-8 (a Latin-1 comment, a stray byte) is left out alone, and its
    number kept for a warning: decoding the whole file at once lost every key in it.
    """
    environment = os.environ if environ is None else environ
    path = env_path(config)
    try:
        data = path.read_bytes() if path.is_file() else b""
    except OSError:
        data = b""
    lines, unreadable = [], []
    for number, raw in enumerate(data.splitlines(keepends=True), 1):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            lines.append("\n")  # keeps the numbering of the lines after it
            unreadable.append(number)
    parsed = dotenv_values(stream=io.StringIO("".join(lines))) if data else {}
    from_file = {k: v for k, v in parsed.items() if v and not environment.get(k)}
    return KeyEnv({**from_file, **environment}, frozenset(from_file), path, tuple(unreadable))


def exposed(path: Path) -> bool:
    """Whether a .env holding keys can be read by other users (group or others)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return bool(mode & (stat.S_IRGRP | stat.S_IROTH))


def fix_hint(variable: str, config: str | Path) -> str:
    """How to set a missing variable, for every message that says a provider is disabled."""
    return (
        f"add {variable} to {shown(env_path(config))} (takes effect at once), "
        "or export it and restart"
    )

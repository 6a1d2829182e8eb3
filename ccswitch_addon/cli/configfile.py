"""Which providers.yaml a command uses, said once on stderr, and loading it."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from ccswitch_addon.core.config import Config, ConfigError, load_config
from ccswitch_addon.core.envfile import shown
from ccswitch_addon.core.paths import CONFIG_ENV, config_source, home_config_path

__all__ = ["CONFIG_HELP", "announce", "load_named", "resolve", "shadowing_notice"]

CONFIG_HELP = (
    f"providers.yaml to use (default: ${CONFIG_ENV}, else ./providers.yaml, "
    "else ~/.ccswitch/providers.yaml)"
)


def resolve(explicit: str | None) -> tuple[Path, str]:
    """The file and why it was chosen."""
    return config_source(explicit)


def announce(path: Path, why: str, err: TextIO) -> None:
    """One dim line naming the file, so a user never edits one file while another is used."""
    shown = path if path.is_absolute() else Path.cwd() / path
    line = f"config: {shown} ({why})"
    if err.isatty():
        line = f"\x1b[2m{line}\x1b[0m"
    print(line, file=err)


def shadowing_notice(used: Path, err: TextIO) -> None:
    """Say so when another file than ~/.ccswitch/providers.yaml (which exists) is used: a
    user edits the one `init` wrote while a providers.yaml in the directory wins."""
    home = home_config_path()
    try:
        if not home.exists() or used.resolve() == home.resolve():
            return
    except OSError:
        return
    print(
        f"ccswitch: note: using {used.absolute()}; {shown(home)} is ignored because of it"
        f" (pass --config {shown(home)} to use that one)",
        file=err,
    )


def load_named(explicit: str | None, err: TextIO, quiet_missing: bool = False) -> Config | None:
    """Load the config a command uses after naming it; None (with the error printed) on a
    mistake. ``quiet_missing``: a missing file is not worth a message (the caller copes)."""
    path, why = resolve(explicit)
    announce(path, why, err)
    try:
        return load_config(path)
    except ConfigError as e:
        if not (quiet_missing and not path.exists()):
            print(e, file=err)
        return None

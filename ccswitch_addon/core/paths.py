"""Where ccswitch looks for its files by default."""

from __future__ import annotations

from pathlib import Path

__all__ = ["HOME_DIR", "default_config_path", "default_state_path"]

HOME_DIR = Path("~/.ccswitch")


def default_config_path() -> Path:
    """./providers.yaml if there is one, else ~/.ccswitch/providers.yaml."""
    local = Path("providers.yaml")
    return local if local.is_file() else (HOME_DIR / "providers.yaml").expanduser()


def default_state_path() -> Path:
    return (HOME_DIR / "state.db").expanduser()

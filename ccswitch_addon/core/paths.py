"""Where ccswitch looks for its files by default."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "CONFIG_ENV",
    "HOME_DIR",
    "config_source",
    "default_config_path",
    "default_state_path",
    "home_config_path",
]

HOME_DIR = Path("~/.ccswitch")
CONFIG_ENV = "CCSWITCH_CONFIG"
LOCAL_CONFIG = Path("providers.yaml")


def home_config_path() -> Path:
    return (HOME_DIR / "providers.yaml").expanduser()


def config_source(explicit: str | None = None) -> tuple[Path, str]:
    """The providers.yaml to use and why: ``explicit`` (--config), else $CCSWITCH_CONFIG, else
    ./providers.yaml if there is one, else ~/.ccswitch/providers.yaml."""
    if explicit:
        return Path(explicit).expanduser(), "--config"
    from_env = os.environ.get(CONFIG_ENV)
    if from_env:
        return Path(from_env).expanduser(), f"${CONFIG_ENV}"
    if LOCAL_CONFIG.is_file():
        return LOCAL_CONFIG, "in the current directory"
    return home_config_path(), "the default"


def default_config_path() -> Path:
    """$CCSWITCH_CONFIG, else ./providers.yaml if there is one, else ~/.ccswitch/providers.yaml."""
    return config_source()[0]


def default_state_path() -> Path:
    return (HOME_DIR / "state.db").expanduser()

"""The ``ccswitch`` command."""

from ccswitch_addon.cli.main import main

__all__ = ["main"]

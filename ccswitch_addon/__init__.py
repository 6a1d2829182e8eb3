"""ccswitch_addon: a mitmproxy addon that fails AI coding tools over between providers.

The routing core (config, breaker, outcome, router, switch) never imports mitmproxy;
``ccswitch_addon/addon.py`` is the addon that wires it into mitmproxy's hooks.
"""

from ccswitch_addon.core.breaker import CircuitBreaker, Permit, State
from ccswitch_addon.core.config import (
    AppConfig,
    Config,
    ConfigError,
    ProviderConfig,
    load_config,
    parse_config,
)
from ccswitch_addon.core.outcome import Effect, ErrorKind, Outcome, classify_error, classify_status
from ccswitch_addon.core.router import Router, Selection
from ccswitch_addon.core.switch import SwitchEvent, SwitchManager

__version__ = "0.1.0"

__all__ = [
    "AppConfig",
    "CircuitBreaker",
    "Config",
    "ConfigError",
    "Effect",
    "ErrorKind",
    "Outcome",
    "Permit",
    "ProviderConfig",
    "Router",
    "Selection",
    "State",
    "SwitchEvent",
    "SwitchManager",
    "classify_error",
    "classify_status",
    "load_config",
    "parse_config",
]

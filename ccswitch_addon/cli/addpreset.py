"""`ccswitch add APP PRESET`: a preset into providers.yaml, keeping the file's comments.

The file is edited as a round trip (ruamel.yaml, which mitmproxy depends on too): only the
new provider and the queue's new last entry change; comments, order and layout stay.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from ccswitch_addon.cli.presets import Preset
from ccswitch_addon.core.config import KNOWN_APPS
from ccswitch_addon.core.envfile import env_path, shown
from ccswitch_addon.core.modelmap import is_glob
from ccswitch_addon.wire.api import Api

__all__ = ["AddRefused", "add_preset"]

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # as providers.yaml allows


class AddRefused(Exception):
    """The preset cannot be added; the message says why and what to do."""


def _yaml() -> YAML:
    yaml = YAML()  # round trip
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)  # the example's layout
    yaml.width = 4096  # never fold a long line
    return yaml


def _api_of(app: str, node: Any) -> Api:
    declared = node.get("api") if isinstance(node, dict) else None
    if declared in {a.value for a in Api}:
        return Api(declared)
    known = KNOWN_APPS.get(app)
    return known.api if known else Api.OPENAI


def add_preset(path: Path, text: str, app: str, preset: Preset, pid: str | None) -> str:
    """The text of ``path`` with ``preset`` added to ``app``; AddRefused when it cannot be."""
    yaml = _yaml()
    try:
        document = yaml.load(text)
    except YAMLError as e:
        raise AddRefused(f"{path}: cannot be read as YAML ({e}); `ccswitch check` explains") from e
    apps = document.get("apps") if isinstance(document, dict) else None
    if isinstance(apps, CommentedMap) and app not in apps and app in OFFICIAL:
        apps[app] = _new_app(app)  # a known tool not set up yet: its official API first
    if not isinstance(apps, dict) or not isinstance(apps.get(app), dict):
        known = ", ".join(apps) if isinstance(apps, dict) else "none"
        raise AddRefused(f"{path} has no app {app!r} (configured: {known})")
    app_node = apps[app]
    api = _api_of(app, app_node)
    variant = preset.variants.get(api)
    if variant is None:
        raise AddRefused(
            f"the preset {preset.id} cannot serve {app} (api {api.value}); "
            f"it serves apps of api {preset.apis()}"
        )
    pid = pid or preset.id
    if not _ID.match(pid):
        raise AddRefused(f"{pid!r} is not a provider id: letters, digits, '_', '.' and '-'")
    providers = app_node.get("providers")
    if not isinstance(providers, CommentedMap):
        raise AddRefused(f"{app} has no providers mapping in {path}")
    if pid in providers:
        raise AddRefused(f"{app} has a provider {pid!r} already; choose another id with --id ID")
    queue = app_node.get("queue")
    if not isinstance(queue, list):
        raise AddRefused(f"{app}'s queue in {path} is not a list; write it as [a, b]")

    entry = CommentedMap()
    entry["name"] = preset.name
    entry["base_url"] = variant.base_url
    entry["format"] = variant.format
    entry["auth"] = variant.auth
    if preset.key_var and variant.auth != "passthrough":
        entry["api_key"] = f"${{{preset.key_var}}}"
    if variant.models:
        # globs quoted as the example quotes them ("*" alone would be a YAML alias)
        entry["models"] = CommentedMap(
            (DoubleQuotedScalarString(k) if is_glob(k) else k, v) for k, v in variant.models.items()
        )
    if variant.replay_reasoning:
        entry["replay_reasoning"] = True
    providers[pid] = entry
    column = _column(providers)
    providers.yaml_set_comment_before_after_key(pid, before=_comment(path, preset), indent=column)
    if isinstance(queue, CommentedSeq):
        queue.append(pid)
    else:
        app_node["queue"] = [*queue, pid]
    out = io.StringIO()
    yaml.dump(document, out)
    return _blank_line_after(out.getvalue(), f"{' ' * column}# {preset.name}", column)


def _blank_line_after(text: str, first: str, column: int) -> str:
    """The blank line that ended the app's last provider ends the new one instead: ruamel
    keeps it with the old last entry, before the new one."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.startswith(first)), None)
    if start is None or start == 0 or lines[start - 1].strip():
        return text
    end = start
    while end < len(lines) and lines[end].startswith("#", column):  # the comment above it
        end += 1
    end += 1  # its key
    while end < len(lines) and len(lines[end]) - len(lines[end].lstrip()) > column:
        end += 1
    del lines[start - 1]
    lines.insert(end - 1, "\n")
    return "".join(lines)


# The official API of each known tool, the head of a queue `add` starts.
OFFICIAL = {
    "claude": "https://api.anthropic.com",
    "codex": "https://api.openai.com",
    "gemini": "https://generativelanguage.googleapis.com",
}


def _new_app(app: str) -> CommentedMap:
    official = CommentedMap([("base_url", OFFICIAL[app]), ("auth", "passthrough")])
    queue = CommentedSeq(["official"])
    queue.fa.set_flow_style()
    return CommentedMap([("queue", queue), ("providers", CommentedMap([("official", official)]))])


def _comment(path: Path, preset: Preset) -> str:
    if preset.key_var is None:
        return f"{preset.name}: {preset.key_url} (added by `ccswitch add`)"
    return (
        f"{preset.name}: get a key at {preset.key_url}\n"
        f"then add {preset.key_var}=… to {shown(env_path(path))} (added by `ccswitch add`)"
    )


def _column(mapping: CommentedMap) -> int:
    """The column the mapping's keys start at, for a comment above a new key."""
    for key in mapping:
        try:
            return int(mapping.lc.key(key)[1])
        except (AttributeError, KeyError, TypeError):
            break
    return 6

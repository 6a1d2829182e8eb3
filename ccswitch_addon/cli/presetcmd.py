"""`ccswitch presets` and `ccswitch add APP PRESET`."""

from __future__ import annotations

import argparse
from typing import TextIO

from ccswitch_addon.cli.addpreset import AddRefused, add_preset
from ccswitch_addon.cli.configfile import announce, resolve
from ccswitch_addon.cli.presets import PRESETS, find
from ccswitch_addon.core.config import ConfigError, load_config
from ccswitch_addon.core.envfile import env_path, shown

__all__ = ["cmd_add", "cmd_presets"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def cmd_presets(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    print("preset       apps (api)           key variable        provider", file=out)
    for preset in PRESETS:
        print(
            f"{preset.id:12} {preset.apis():20} {preset.key_var or '(no key)':19} {preset.name}",
            file=out,
        )
        if preset.aliases:
            print(f"{'':12} also: {', '.join(preset.aliases)}", file=out)
    print(
        "\nccswitch add APP PRESET [--id ID] adds one to APP's providers and the end of its"
        " queue;\napi anthropic is claude, openai is codex, gemini is gemini.",
        file=out,
    )
    return EXIT_OK


def cmd_add(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    preset = find(args.preset)
    if preset is None:
        known = ", ".join(p.id for p in PRESETS)
        print(f"ccswitch add: no preset {args.preset!r}; presets: {known}", file=err)
        return EXIT_USAGE
    path, why = resolve(args.config)
    announce(path, why, err)
    try:
        before = path.read_text(encoding="utf-8")
    except OSError as e:
        print(f"ccswitch add: cannot read {path}: {e}; `ccswitch init` writes one", file=err)
        return EXIT_FAILED
    try:
        pid = args.id or args.preset.lower()  # `add claude kimi` makes a provider kimi
        after = add_preset(path, before, args.app, preset, pid)
    except AddRefused as e:
        print(f"ccswitch add: {e}", file=err)
        return EXIT_USAGE
    path.write_text(after, encoding="utf-8")
    try:
        load_config(path)
    except ConfigError as e:  # the file was broken before, or the preset does not fit it
        path.write_text(before, encoding="utf-8")
        print(
            f"{e}\nccswitch add: {path} left as it was: the result would not pass check", file=err
        )
        return EXIT_USAGE
    print(
        f"added {pid} ({preset.name}) to {args.app}'s providers and the end of its queue", file=out
    )
    if preset.key_var:
        print(
            f"its key: get one at {preset.key_url}, then add {preset.key_var}=… to "
            f"{shown(env_path(path))} (takes effect at once)",
            file=out,
        )
    from ccswitch_addon.cli.main import cmd_check  # the command's own module imports this one

    return cmd_check(argparse.Namespace(file=str(path), config=None, strict=False), out, err)


def register(sub: argparse._SubParsersAction, config_help: str) -> None:  # type: ignore[type-arg]
    presets = sub.add_parser(
        "presets",
        help="list the built-in provider presets",
        description="List the built-in provider presets that `ccswitch add` takes.",
    )
    presets.set_defaults(handler=cmd_presets)
    add = sub.add_parser(
        "add",
        help="add a preset provider to an app (keeps the file's comments)",
        description=(
            "Add a preset provider to APP's providers and the end of its queue, keeping "
            "the file's comments and layout; the result is checked and shown."
        ),
    )
    add.add_argument("app", help="claude, codex, gemini, or another configured app")
    add.add_argument("preset", help="a preset of `ccswitch presets`")
    add.add_argument("--id", help="the provider id (default: the preset's name)")
    add.add_argument("--config", metavar="PATH", help=config_help)
    add.set_defaults(handler=cmd_add)

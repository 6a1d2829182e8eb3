"""Provider presets: the catalogue, and `ccswitch add` editing a commented providers.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccswitch_addon.cli.addpreset import AddRefused, add_preset
from ccswitch_addon.cli.main import main
from ccswitch_addon.cli.presets import PRESETS, find
from ccswitch_addon.core.config import Auth, load_config
from ccswitch_addon.core.modelmap import lookup
from ccswitch_addon.wire.api import Api

EXAMPLE = Path(__file__).resolve().parents[1] / "providers.yaml"
APP_OF = {Api.ANTHROPIC: "claude", Api.OPENAI: "codex", Api.GEMINI: "gemini"}

BLOCK_STYLE = """\
# my own file: comments everywhere
apps:
  claude:
    # the order I want
    queue:
      - official   # first
    providers:
      official:
        base_url: https://api.anthropic.com   # the real one
        auth: passthrough
# the end
"""


@pytest.fixture(autouse=True)
def no_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CCSWITCH_CONFIG", raising=False)
    for preset in PRESETS:
        if preset.key_var:
            monkeypatch.delenv(preset.key_var, raising=False)


def test_the_catalogue_has_the_promised_presets() -> None:
    for name in (
        "anthropic", "openai", "gemini", "openrouter", "deepseek", "moonshot", "kimi",
        "zhipu", "glm", "qwen", "dashscope", "groq", "ollama",
    ):  # fmt: skip
        assert find(name) is not None, name
    assert find("KIMI") is find("moonshot")
    assert find("nope") is None
    assert find("ollama").key_var is None  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("preset", "api"),
    [(p.id, api) for p in PRESETS for api in p.variants],
)
def test_every_preset_added_to_the_example_passes_check_and_keeps_every_line(
    tmp_path: Path, preset: str, api: Api
) -> None:
    path = tmp_path / "providers.yaml"
    before = EXAMPLE.read_text()
    app = APP_OF[api]
    after = add_preset(path, before, app, find(preset), f"new-{preset}")  # type: ignore[arg-type]
    path.write_text(after)
    config = load_config(path)
    added = config.apps[app].providers[f"new-{preset}"]
    assert config.apps[app].queue[-1] == f"new-{preset}"
    variant = find(preset).variants[api]  # type: ignore[union-attr]
    assert added.base_url == variant.base_url
    assert added.format.value == variant.format
    if variant.auth != "passthrough":
        assert added.key_var == find(preset).key_var  # type: ignore[union-attr]
        assert added.disabled  # no key yet: the hint says where to put it
    else:
        assert added.auth is Auth.PASSTHROUGH
    if api is Api.ANTHROPIC and variant.models:
        assert lookup(added.models, "claude-opus-4-8")  # new versions are mapped
    # nothing of the file was lost: every old line is still there, in order
    remaining = iter(after.splitlines())
    for line in before.splitlines():
        if line.strip().startswith("queue:"):
            continue  # the one line that changes
        assert any(line == other for other in remaining), line


def test_a_block_style_queue_and_comments_survive(tmp_path: Path) -> None:
    path = tmp_path / "providers.yaml"
    after = add_preset(path, BLOCK_STYLE, "claude", find("deepseek"), "ds")  # type: ignore[arg-type]
    assert after.startswith("# my own file: comments everywhere\n")
    assert "    # the order I want\n    queue:\n      - official   # first\n      - ds\n" in after
    assert "base_url: https://api.anthropic.com   # the real one" in after
    assert "# the end" in after
    assert "      # DeepSeek: get a key at https://platform.deepseek.com/api_keys\n" in after
    assert f"then add DEEPSEEK_API_KEY=… to {tmp_path / '.env'}" in after
    path.write_text(after)
    assert load_config(path).apps["claude"].queue == ("official", "ds")


def test_refusals(tmp_path: Path) -> None:
    path = tmp_path / "providers.yaml"
    with pytest.raises(AddRefused, match="has a provider 'official' already"):
        add_preset(path, BLOCK_STYLE, "claude", find("deepseek"), "official")  # type: ignore[arg-type]
    with pytest.raises(AddRefused, match="no app 'mytool'"):
        add_preset(path, BLOCK_STYLE, "mytool", find("deepseek"), None)  # type: ignore[arg-type]
    with pytest.raises(AddRefused, match="cannot serve claude"):
        add_preset(path, BLOCK_STYLE, "claude", find("gemini"), None)  # type: ignore[arg-type]
    with pytest.raises(AddRefused, match="is not a provider id"):
        add_preset(path, BLOCK_STYLE, "claude", find("groq"), "no spaces")  # type: ignore[arg-type]


def test_the_add_command_checks_and_prints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "providers.yaml"
    path.write_text(BLOCK_STYLE)
    assert main(["add", "claude", "kimi", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "added kimi (Moonshot AI (Kimi)) to claude's providers and the end of its queue" in out
    assert f"add MOONSHOT_API_KEY=… to {tmp_path / '.env'} (takes effect at once)" in out
    assert f"{path}: 1 app(s)" in out  # what check prints
    assert "  2.  kimi " in out
    text = path.read_text()

    assert main(["add", "claude", "kimi", "--config", str(path)]) == 2
    assert "has a provider 'kimi' already; choose another id with --id ID" in (
        capsys.readouterr().err
    )
    assert path.read_text() == text  # refused: untouched
    assert main(["add", "claude", "nosuch", "--config", str(path)]) == 2
    assert "no preset 'nosuch'; presets: anthropic, openai" in capsys.readouterr().err
    assert main(["add", "claude", "ollama", "--id", "local", "--config", str(path)]) == 0
    assert load_config(path).apps["claude"].queue == ("official", "kimi", "local")


def test_presets_lists_the_catalogue(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for preset in PRESETS:
        assert f"\n{preset.id:12} " in out
    assert "also: kimi" in out


def test_a_known_app_not_in_the_file_starts_with_its_official_api(tmp_path: Path) -> None:
    path = tmp_path / "providers.yaml"
    after = add_preset(path, BLOCK_STYLE, "codex", find("deepseek"), "deepseek")  # type: ignore[arg-type]
    path.write_text(after)
    codex = load_config(path).apps["codex"]
    assert codex.queue == ("official", "deepseek")
    assert codex.providers["official"].base_url == "https://api.openai.com"
    assert codex.providers["official"].auth is Auth.PASSTHROUGH
    assert codex.providers["deepseek"].format.value == "openai_chat"
    assert "queue: [official, deepseek]" in after
    assert after.startswith("# my own file: comments everywhere\n")

"""Keys from a .env beside providers.yaml (core/envfile.py, load_config)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccswitch_addon.core.config import load_config
from ccswitch_addon.core.envfile import exposed, fix_hint, read_env

CONFIG = """\
apps:
  claude:
    queue: [official, backup]
    providers:
      official: {base_url: "https://api.anthropic.com", auth: passthrough}
      backup:
        base_url: https://openrouter.ai/api
        auth: bearer
        api_key: ${CCSW_ENV_TEST_KEY}
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("CCSW_ENV_TEST_KEY", raising=False)
    path = tmp_path / "providers.yaml"
    path.write_text(CONFIG)
    return path


def test_a_key_in_the_env_file_enables_the_provider(config: Path) -> None:
    assert load_config(config).apps["claude"].providers["backup"].disabled
    (config.parent / ".env").write_text("# keys\nexport CCSW_ENV_TEST_KEY='sk-from-file'\n")
    (config.parent / ".env").chmod(0o600)
    backup = load_config(config).apps["claude"].providers["backup"]
    assert backup.disabled is None
    assert backup.api_key == "sk-from-file"
    assert backup.key_var == "CCSW_ENV_TEST_KEY"
    assert read_env(config).origin("CCSW_ENV_TEST_KEY") == str(config.parent / ".env")


def test_the_environment_wins_over_the_file(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (config.parent / ".env").write_text("CCSW_ENV_TEST_KEY=sk-file\n")
    monkeypatch.setenv("CCSW_ENV_TEST_KEY", "sk-env")
    assert load_config(config).apps["claude"].providers["backup"].api_key == "sk-env"
    assert read_env(config).origin("CCSW_ENV_TEST_KEY") == "environment"
    assert read_env(config).origin("CCSW_NOT_SET_ANYWHERE") is None


def test_an_empty_value_in_the_file_leaves_the_provider_disabled(config: Path) -> None:
    (config.parent / ".env").write_text("CCSW_ENV_TEST_KEY=\n")
    (config.parent / ".env").chmod(0o600)
    config_value = load_config(config)
    backup = config_value.apps["claude"].providers["backup"]
    assert backup.missing == "CCSW_ENV_TEST_KEY"
    assert fix_hint("CCSW_ENV_TEST_KEY", config) in (backup.disabled or "")
    assert "takes effect at once" in (backup.disabled or "")


def test_a_file_readable_by_others_is_a_warning(config: Path) -> None:
    env = config.parent / ".env"
    env.write_text("CCSW_ENV_TEST_KEY=sk-x\n")
    env.chmod(0o644)
    assert exposed(env)
    warnings = [str(w) for w in load_config(config).warnings]
    assert f"{env}: other users can read its keys: chmod 600 {env}" in warnings
    env.chmod(0o600)
    assert not exposed(env)
    assert not any("chmod" in w for w in map(str, load_config(config).warnings))


def test_the_hint_names_the_file_beside_the_config(tmp_path: Path) -> None:
    hint = fix_hint("DEEPSEEK_API_KEY", tmp_path / "providers.yaml")
    assert hint == (
        f"add DEEPSEEK_API_KEY to {tmp_path / '.env'} (takes effect at once), "
        "or export it and restart"
    )
    home = Path.home() / ".ccswitch" / "providers.yaml"
    assert fix_hint("X", home).startswith("add X to ~/.ccswitch/.env ")


@pytest.mark.parametrize(
    "content",
    [b"# caf\xe9 key\nCCSW_ENV_TEST_KEY=k-d\n", b"CCSW_ENV_TEST_KEY=k-d\nX=\xff\xfe\n"],
)
def test_a_line_that_is_not_utf8_is_left_out_alone(config: Path, content: bytes) -> None:
    # one bad byte used to make the whole file unreadable, and every key in it unset
    env = config.parent / ".env"
    env.write_bytes(content)
    env.chmod(0o600)
    loaded = load_config(config)
    assert loaded.apps["claude"].providers["backup"].api_key == "k-d"
    bad = 1 if content.startswith(b"#") else 2
    notes = [str(w) for w in loaded.warnings if str(env) in str(w)]
    assert notes == [f"{env}:{bad}: cannot read this line (not UTF-8); it is left out"]
    assert read_env(config).unreadable == (bad,)

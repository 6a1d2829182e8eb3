"""The addon's options: parse functions, and a bad value at run time refused with the old kept."""

from __future__ import annotations

from pathlib import Path

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons

from ccswitch_addon.addon import CcSwitch
from ccswitch_addon.options import MIB, Settings, parse_bool, parse_days, parse_size


@pytest.mark.parametrize(
    ("text", "value"), [("true", True), ("Yes", True), ("0", False), ("", False)]
)
def test_parse_bool(text: str, value: bool) -> None:
    assert parse_bool("x", text) is value


@pytest.mark.parametrize("text", ["maybe", "2", "tru"])
def test_parse_bool_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=rf"^x: expected true or false, got '{text}'$"):
        parse_bool("x", text)


def test_parse_days() -> None:
    assert parse_days("d", " 7 ") == 7
    for bad in ("abc", "0", "-1", "1.5", "3651", "٣"):
        with pytest.raises(ValueError, match=r"^d: expected a whole number of days"):
            parse_days("d", bad)


@pytest.mark.parametrize(
    ("text", "size"), [("32m", 32 * MIB), ("32MiB", 32 * MIB), ("2048", 2048), ("1g", 1024 * MIB)]
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size("s", text) == size


@pytest.mark.parametrize("text", ["lots", "10", "5g", "-1m", "1.5m"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=r"^s: expected a size"):
        parse_size("s", text)


def test_settings_from_the_options_text() -> None:
    settings = Settings.parse(
        {"ccswitch_log_days": "3", "ccswitch_allow_remote": "true", "ccswitch_body_limit": "1m"}
    )
    assert settings == Settings(log_days=3, allow_remote=True, body_limit=MIB)


async def test_a_bad_value_at_run_time_is_refused_and_the_previous_one_kept(
    tmp_path: Path,
) -> None:
    config = tmp_path / "providers.yaml"
    config.write_text(
        "apps:\n  claude:\n    queue: [a]\n    providers:\n"
        '      a: {base_url: "http://127.0.0.1:9", auth: passthrough}\n'
    )
    cc = CcSwitch()
    with taddons.context(cc) as tctx:
        tctx.configure(cc, ccswitch_config=str(config), ccswitch_state="", ccswitch_log_days="5")
        cc.running()
        await cc.started()
        for name, bad in (("ccswitch_log_days", "abc"), ("ccswitch_allow_remote", "maybe")):
            with pytest.raises(exceptions.OptionsError, match=f"^{name}: expected"):
                tctx.options.update(**{name: bad})
        assert tctx.options.ccswitch_log_days == "5"
        assert tctx.options.ccswitch_allow_remote == "false"
        assert cc.settings.log_days == 5
        assert cc.engine is not None  # still routing
        cc.done()
        await cc.stopped()


async def test_the_upstream_proxy_option_reaches_the_provider_side_and_refuses_bad_values(
    tmp_path: Path,
) -> None:
    config = tmp_path / "providers.yaml"
    config.write_text(
        "apps:\n  claude:\n    queue: [a]\n    providers:\n"
        '      a: {base_url: "http://127.0.0.1:9", auth: passthrough}\n'
    )
    cc = CcSwitch()
    with taddons.context(cc) as tctx:
        tctx.configure(cc, ccswitch_config=str(config), ccswitch_state="")
        cc.running()
        await cc.started()
        assert cc.upstream is not None
        assert cc.upstream.proxies.option.mode == "direct"
        tctx.options.update(ccswitch_upstream_proxy="socks5://me:pw@127.0.0.1:7890")
        assert cc.upstream.proxies.route(None, "https", "x") is not None
        for bad, why in (("ftp://p:1", "not a proxy URL"), ("http://127.0.0.1:8080", "own")):
            with pytest.raises(exceptions.OptionsError, match=r"^ccswitch_upstream_proxy: ") as e:
                tctx.options.update(ccswitch_upstream_proxy=bad)
            assert why in str(e.value)
        assert tctx.options.ccswitch_upstream_proxy == "socks5://me:pw@127.0.0.1:7890"
        assert cc.upstream.proxies.option.shown() == "socks5://me:***@127.0.0.1:7890"
        cc.done()
        await cc.stopped()


async def test_a_bad_redis_option_at_run_time_is_refused_and_the_previous_one_kept(
    tmp_path: Path,
) -> None:
    config = tmp_path / "providers.yaml"
    config.write_text(
        "apps:\n  claude:\n    queue: [a]\n    providers:\n"
        '      a: {base_url: "http://127.0.0.1:9", auth: passthrough}\n'
    )
    cc = CcSwitch()
    with taddons.context(cc) as tctx:
        tctx.configure(cc, ccswitch_config=str(config), ccswitch_state="")
        cc.running()
        await cc.started()
        with pytest.raises(exceptions.OptionsError, match=r"^ccswitch_redis: expected"):
            tctx.options.update(ccswitch_redis="foo://me:pw@x")
        assert tctx.options.ccswitch_redis == ""
        assert cc.engine is not None  # still routing
        cc.done()
        await cc.stopped()

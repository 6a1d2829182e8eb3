"""The team gateway's options on the addon: checked when set, the gateway started with them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from mitmproxy import exceptions
from mitmproxy.addons import proxyserver
from mitmproxy.test import taddons
from redis_server import RedisServer

from ccswitch_addon.addon import CcSwitch

CONFIG = """\
apps:
  claude:
    queue: [primary]
    providers:
      primary: {base_url: "http://127.0.0.1:9001", auth: passthrough}
"""


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("ccswitch_redis", "http://127.0.0.1:6379", "a redis://, rediss:// or unix:// URL"),
        ("ccswitch_redis_down", "open", "keep_open, local"),
    ],
)
async def test_bad_values_are_refused(
    option: str, value: str, message: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "providers.yaml"
    path.write_text(CONFIG)
    cc = CcSwitch()
    with taddons.context(cc) as tctx:
        # at start: logged, and mitmdump's startup check exits on it (raising there made
        # mitmproxy's rollback configure the same bad value again, recursing)
        tctx.configure(cc, **{option: value})
        assert f"ccswitch: {option}: " in caplog.text
        assert message in caplog.text
        tctx.options.update(**{option: tctx.options.default(option)})
        tctx.configure(cc, ccswitch_config=str(path), ccswitch_state="")
        cc.running()
        await cc.started()
        with pytest.raises(exceptions.OptionsError, match=message):  # at run time: refused
            tctx.configure(cc, **{option: value})
        assert getattr(tctx.options, option) == tctx.options.default(option)
        cc.done()
        await cc.stopped()


async def test_the_gateway_starts_with_the_addon(tmp_path: Path, redis_server: RedisServer) -> None:
    path = tmp_path / "providers.yaml"
    path.write_text(CONFIG)
    cc = CcSwitch()
    with taddons.context(proxyserver.Proxyserver(), cc) as tctx:
        tctx.configure(
            cc,
            ccswitch_config=str(path),
            ccswitch_state="",
            ccswitch_redis=redis_server.unix_url,
            ccswitch_redis_prefix="team-a",
        )
        cc.running()
        await cc.started()
        assert cc.gateway is not None
        assert cc.engine is not None
        assert cc.engine.gateway is cc.gateway
        deadline = asyncio.get_running_loop().time() + 5
        while not cc.gateway.reachable:
            assert asyncio.get_running_loop().time() < deadline, "never reached Redis"
            await asyncio.sleep(0.01)
        status = json.loads(cc.status())
        assert status["redis"]["prefix"] == "team-a"
        assert status["redis"]["reachable"] is True
        assert status["instance"] == cc.gateway.instance
        cc.done()  # cancels the gateway's task, which closes its connections
        await asyncio.gather(*cc._tasks, return_exceptions=True)


async def test_without_the_option_there_is_no_gateway(tmp_path: Path) -> None:
    path = tmp_path / "providers.yaml"
    path.write_text(CONFIG)
    cc = CcSwitch()
    with taddons.context(cc) as tctx:
        tctx.configure(cc, ccswitch_config=str(path), ccswitch_state="")
        assert cc.engine is not None
        assert cc.engine.gateway is None
        assert "redis" not in json.loads(cc.status())

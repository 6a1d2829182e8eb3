"""The refusals before routing, as pure checks and through the addon's hooks."""

from __future__ import annotations

import pytest
from mitmproxy import http
from mitmproxy.test import taddons, tflow

from ccswitch_addon.guard import path_trick, refuse_remote
from ccswitch_addon.options import Settings


@pytest.mark.parametrize(
    "path",
    [
        "/v1/messages/../../admin",
        "/v1/messages/..",
        "/./v1/messages",
        "/v1/%2e%2e/x",
        "/v1/%2E./x",
        "/v1/messages%2fcount_tokens",
        "/v1/messages%5C..",
        "/v1/messages\\..",
    ],
)
def test_path_tricks(path: str) -> None:
    assert path_trick(path)


@pytest.mark.parametrize(
    "path", ["/v1/messages", "/v1beta/models/gemini-2.5-pro:generateContent", "/v1/a.b/c..d/"]
)
def test_ordinary_paths(path: str) -> None:
    assert not path_trick(path)


@pytest.mark.parametrize(
    ("peer", "settings", "refused"),
    [
        ("192.0.2.7", Settings(), True),
        ("192.0.2.7", Settings(allow_remote=True), False),
        ("127.0.0.1", Settings(), False),
        ("::ffff:127.0.0.1", Settings(), False),
    ],
)
async def test_remote_clients_are_refused_for_anything(
    peer: str, settings: Settings, refused: bool
) -> None:
    with taddons.context():
        flow = tflow.tflow(req=http.Request.make("GET", "http://intranet.example/"))
        flow.client_conn.peername = (peer, 50000)
        assert refuse_remote(flow, settings) is refused
        assert (flow.response is not None and flow.response.status_code == 403) is refused

"""What a request says about itself: the conversation id of each tool."""

from __future__ import annotations

import json

from ccswitch_addon.core.facts import Facts, conversation_of_user_id
from ccswitch_addon.wire.api import Api

SESSION = "4f2a9c1e-0000-4000-8000-000000000001"


def test_claude_code_header_first() -> None:
    headers = ((b"X-Claude-Code-Session-Id", SESSION.encode()),)
    body = {"metadata": {"user_id": json.dumps({"session_id": "other"})}}
    assert Facts(Api.ANTHROPIC, "/", headers, json.dumps(body).encode()).conversation == SESSION


def test_claude_code_user_id_json_string() -> None:
    user_id = json.dumps({"device_id": "d", "account_uuid": "", "session_id": SESSION})
    body = json.dumps({"model": "m", "metadata": {"user_id": user_id}}).encode()
    assert Facts(Api.ANTHROPIC, "/", (), body).conversation == SESSION


def test_older_user_id_form_and_junk() -> None:
    assert conversation_of_user_id(f"user_abc_account__session_{SESSION}") == SESSION
    assert conversation_of_user_id("{not json") is None
    assert conversation_of_user_id(42) is None
    assert conversation_of_user_id(json.dumps({"session_id": ""})) is None


def test_codex_turn_metadata_then_prompt_cache_key() -> None:
    meta = json.dumps({"installation_id": "i", "session_id": "s-1", "turn_id": "t"})
    headers = ((b"x-codex-turn-metadata", meta.encode()),)
    body = json.dumps({"prompt_cache_key": "pck"}).encode()
    assert Facts(Api.OPENAI, "/v1/responses", headers, body).conversation == "s-1"
    assert Facts(Api.OPENAI, "/v1/responses", (), body).conversation == "pck"
    bad = ((b"x-codex-turn-metadata", b"{oops"),)
    assert Facts(Api.OPENAI, "/v1/responses", bad, body).conversation == "pck"


def test_no_id_no_affinity() -> None:
    assert Facts(Api.GEMINI, "/v1beta/models/g:generateContent", (), b"{}").conversation is None
    assert Facts(Api.ANTHROPIC, "/", (), b"not json").conversation is None
    assert Facts(Api.ANTHROPIC, "/", (), b"").model is None


def test_model_is_the_top_level_member() -> None:
    body = json.dumps({"messages": [{"model": "inner"}], "model": "outer"}).encode()
    assert Facts(Api.ANTHROPIC, "/", (), body).model == "outer"

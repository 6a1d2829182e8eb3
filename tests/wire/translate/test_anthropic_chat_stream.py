"""Chat SSE → Anthropic SSE: every case a peer shipped a bug for, each fed in every chunking."""

from __future__ import annotations

import json
from typing import Any

from ccswitch_addon.wire.translate.anthropic_chat_stream import ChatToAnthropicStream, State
from ccswitch_addon.wire.translate.common import ToolNames

from .streams import events, run_every_way, sse

Event = tuple[str, dict[str, Any]]


def chunk(
    delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any
) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "delta": delta or {}, "finish_reason": finish}
    return {"id": "c1", "model": "deepseek-chat", "choices": [choice], **extra}


def usage_chunk(prompt: int, completion: int, **more: Any) -> dict[str, Any]:
    return {
        "id": "c1",
        "choices": [],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, **more},
    }


def tool(
    index: int, id: str | None = None, name: str | None = None, args: str | None = None
) -> dict[str, Any]:
    call: dict[str, Any] = {"index": index, "function": {}}
    if id:
        call["id"] = id
        call["type"] = "function"
    if name:
        call["function"]["name"] = name
    if args is not None:
        call["function"]["arguments"] = args
    return call


def translate(
    raw: bytes, names: ToolNames | None = None
) -> tuple[list[Event], ChatToAnthropicStream]:
    machines: list[ChatToAnthropicStream] = []

    def factory() -> ChatToAnthropicStream:
        machines.append(ChatToAnthropicStream(names))
        return machines[-1]

    output = run_every_way(factory, raw)
    found = events(output)
    check_grammar(found)
    return found, machines[-1]


def check_grammar(found: list[Event]) -> None:
    """message_start once first; start → deltas → stop per block; one message_delta, one stop."""
    names = [name for name, _ in found]
    if names and names[0] != "error":
        assert names[0] == "message_start"
    assert names.count("message_start") <= 1
    open_blocks: set[int] = set()
    closed: set[int] = set()
    for name, data in found:
        if name == "content_block_start":
            assert data["index"] not in open_blocks | closed
            open_blocks.add(data["index"])
        elif name == "content_block_delta":
            assert data["index"] in open_blocks, f"delta for block {data['index']} not open"
        elif name == "content_block_stop":
            open_blocks.remove(data["index"])
            closed.add(data["index"])
        elif name == "message_delta":
            assert not open_blocks
            assert data["delta"]["stop_reason"] is not None
    assert names.count("message_delta") == names.count("message_stop") <= 1
    if "message_stop" in names:
        assert names[-2:] == ["message_delta", "message_stop"]
    if "error" in names:
        assert names[-1] == "error"
        assert "message_stop" not in names


def blocks(found: list[Event]) -> list[dict[str, Any]]:
    """The content blocks as the client assembles them."""
    result: dict[int, dict[str, Any]] = {}
    for name, data in found:
        if name == "content_block_start":
            result[data["index"]] = dict(data["content_block"], _json="")
        elif name == "content_block_delta":
            block, delta = result[data["index"]], data["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
            else:
                block["_json"] += delta["partial_json"]
    out = []
    for index in sorted(result):
        block = result[index]
        json_text = block.pop("_json")
        if block["type"] == "tool_use":
            block["input"] = json.loads(json_text) if json_text else {}
        out.append(block)
    return out


def final(found: list[Event]) -> dict[str, Any]:
    return next(data for name, data in found if name == "message_delta")


# --- the bug cases ------------------------------------------------------------------------


def test_finish_reason_and_usage_in_separate_chunks() -> None:
    raw = sse(
        chunk({"tool_calls": [tool(0, "call_1", "Read")]}),
        chunk({"tool_calls": [tool(0, args='{"path":"/a"}')]}),
        chunk(finish="tool_calls", usage=None),
        usage_chunk(13312, 79),
    )
    found, machine = translate(raw)
    names = [n for n, _ in found]
    assert names.count("message_delta") == 1
    assert names.count("message_stop") == 1
    delta = final(found)
    assert delta["delta"]["stop_reason"] == "tool_use"
    assert delta["usage"]["output_tokens"] == 79
    assert delta["usage"]["input_tokens"] == 13312
    assert machine.finished
    assert machine.failure is None


def test_two_finish_reason_chunks_give_one_message_delta_with_the_later_usage() -> None:
    raw = sse(
        chunk({"tool_calls": [tool(0, "call_1", "Read", "{}")]}),
        chunk(finish="tool_calls"),
        chunk(finish="tool_calls", usage={"prompt_tokens": 5, "completion_tokens": 9}),
    )
    found, _ = translate(raw)
    assert [n for n, _ in found].count("message_delta") == 1
    assert final(found)["usage"]["output_tokens"] == 9
    assert final(found)["delta"]["stop_reason"] == "tool_use"


def test_tool_id_and_name_after_the_first_argument_fragment() -> None:
    raw = sse(
        chunk({"tool_calls": [tool(0, args='{"pa')]}),
        chunk({"tool_calls": [tool(0, "call_1", "Read")]}),
        chunk({"tool_calls": [tool(0, args='th":"/a"}')]}),
        chunk(finish="tool_calls"),
    )
    found, _ = translate(raw)
    start = next(i for i, (n, d) in enumerate(found) if n == "content_block_start")
    first_json = next(
        i
        for i, (n, d) in enumerate(found)
        if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta"
    )
    assert start < first_json
    assert found[start][1]["content_block"] == {
        "type": "tool_use",
        "id": "call_1",
        "name": "Read",
        "input": {},
    }
    assert blocks(found) == [
        {"type": "tool_use", "id": "call_1", "name": "Read", "input": {"path": "/a"}}
    ]


def test_two_tool_calls_interleaved_by_index() -> None:
    raw = sse(
        chunk({"tool_calls": [tool(0, "call_a", "Read", '{"path":')]}),
        chunk({"tool_calls": [tool(1, "call_b", "Grep", '{"pattern"')]}),
        chunk({"tool_calls": [tool(1, args=':"x"}')]}),
        chunk({"tool_calls": [tool(0, args='"/a"}')]}),
        chunk(finish="tool_calls"),
    )
    found, _ = translate(raw)
    assert blocks(found) == [
        {"type": "tool_use", "id": "call_a", "name": "Read", "input": {"path": "/a"}},
        {"type": "tool_use", "id": "call_b", "name": "Grep", "input": {"pattern": "x"}},
    ]


def test_arguments_on_the_finish_chunk_are_not_lost() -> None:
    raw = sse(
        chunk({"tool_calls": [tool(0, "call_1", "Read", '{"path":"/a"')]}),
        chunk({"tool_calls": [tool(0, args="}")]}, finish="tool_calls"),
    )
    found, _ = translate(raw)
    assert blocks(found)[0]["input"] == {"path": "/a"}


def test_content_with_an_empty_tool_calls_list_is_text() -> None:
    found, _ = translate(sse(chunk({"content": "Hi", "tool_calls": []}), chunk(finish="stop")))
    assert blocks(found) == [{"type": "text", "text": "Hi"}]
    assert not any(d.get("delta", {}).get("type") == "input_json_delta" for _, d in found)
    assert final(found)["delta"]["stop_reason"] == "end_turn"


def test_reasoning_then_text_then_late_reasoning() -> None:
    raw = sse(
        chunk({"reasoning_content": "a"}),
        chunk({"reasoning_content": "b"}),
        chunk({"content": "X"}),
        chunk({"reasoning_content": "c"}),
        chunk({"content": "Y"}),
        chunk(finish="stop"),
    )
    found, _ = translate(raw)
    assert blocks(found) == [
        {"type": "thinking", "thinking": "ab", "signature": ""},
        {"type": "text", "text": "XY"},
    ]
    assert [n for n, _ in found].count("message_start") == 1


def test_a_stream_cut_with_no_finish_reason_is_a_failure() -> None:
    found, machine = translate(sse(chunk({"content": "Hel"}), chunk({"content": "lo"}), done=False))
    names = [n for n, _ in found]
    assert "message_delta" not in names
    assert "message_stop" not in names
    assert names[-1] == "error"
    assert found[-1][1]["error"]["type"] == "api_error"
    assert machine.failure == "the stream ended without a finish_reason"
    assert not machine.finished
    assert machine.state is State.FAILED


def test_done_without_any_finish_reason_is_a_failure_too() -> None:
    found, machine = translate(sse(chunk({"content": "Hello"})))
    assert [n for n, _ in found][-1] == "error"
    assert machine.failure == "the stream ended without a finish_reason"


def test_a_finish_reason_without_done_still_ends_properly() -> None:
    found, machine = translate(sse(chunk({"content": "Hi"}), chunk(finish="stop"), done=False))
    assert [n for n, _ in found][-2:] == ["message_delta", "message_stop"]
    assert machine.finished


def test_an_empty_stream_is_a_failure() -> None:
    found, machine = translate(b"")
    assert [n for n, _ in found] == ["error"]
    assert machine.failure == "the stream ended before any answer"


def test_content_filter_is_a_refusal() -> None:
    found, _ = translate(sse(chunk({"content": "I can"}), chunk(finish="content_filter")))
    assert final(found)["delta"]["stop_reason"] == "refusal"


def test_length_is_max_tokens_and_stop_with_tool_calls_is_tool_use() -> None:
    found, _ = translate(sse(chunk({"content": "ab"}), chunk(finish="length")))
    assert final(found)["delta"]["stop_reason"] == "max_tokens"
    found, _ = translate(
        sse(chunk({"tool_calls": [tool(0, "c", "Read", "{}")]}), chunk(finish="stop"))
    )
    assert final(found)["delta"]["stop_reason"] == "tool_use"


def test_text_and_tool_calls_in_one_message() -> None:
    raw = sse(
        chunk({"content": "Let me look."}),
        chunk({"tool_calls": [tool(0, "call_1", "Read", '{"path":"/a"}')]}),
        chunk(finish="tool_calls"),
    )
    found, _ = translate(raw)
    assert blocks(found) == [
        {"type": "text", "text": "Let me look."},
        {"type": "tool_use", "id": "call_1", "name": "Read", "input": {"path": "/a"}},
    ]


def test_usage_with_cached_tokens() -> None:
    raw = sse(
        chunk({"content": "x"}, finish="stop"),
        usage_chunk(
            1000, 7, prompt_tokens_details={"cached_tokens": 600, "cache_write_tokens": 300}
        ),
    )
    found, _ = translate(raw)
    assert final(found)["usage"] == {
        "input_tokens": 100,
        "output_tokens": 7,
        "cache_read_input_tokens": 600,
        "cache_creation_input_tokens": 300,
    }


def test_a_10_kb_tool_argument_arrives_unchanged() -> None:
    content = "é" + 'line of a long file with "quotes" and \\ backslashes 你好\n' * 180
    arguments = json.dumps({"file_path": "/a", "content": content}, ensure_ascii=False)
    assert len(arguments.encode()) > 10_000
    fragments = [arguments[i : i + 37] for i in range(0, len(arguments), 37)]
    raw = sse(
        chunk({"tool_calls": [tool(0, "call_w", "Write", "")]}),
        *(chunk({"tool_calls": [tool(0, args=f)]}) for f in fragments),
        chunk(finish="tool_calls"),
    )
    found, _ = translate(raw)
    assert blocks(found)[0]["input"] == {"file_path": "/a", "content": content}


def test_multi_byte_text_is_never_corrupted() -> None:
    found, _ = translate(sse(chunk({"content": "你好, 世界 🌍"}), chunk(finish="stop")))
    assert blocks(found) == [{"type": "text", "text": "你好, 世界 🌍"}]
    assert "\ufffd" not in json.dumps(found, ensure_ascii=False)


def test_a_leading_think_tag_becomes_thinking() -> None:
    raw = sse(
        chunk({"content": "<thi"}),
        chunk({"content": "nk>plan it</th"}),
        chunk({"content": "ink>\n\nAnswer"}),
        chunk({"content": " <think>kept</think>"}),
        chunk(finish="stop"),
    )
    found, _ = translate(raw)
    assert blocks(found) == [
        {"type": "thinking", "thinking": "plan it", "signature": ""},
        {"type": "text", "text": "Answer <think>kept</think>"},
    ]


def test_text_that_only_looks_like_a_tag_start_is_kept() -> None:
    found, _ = translate(
        sse(chunk({"content": "<thi"}), chunk({"content": "s"}), chunk(finish="stop"))
    )
    assert blocks(found) == [{"type": "text", "text": "<this"}]


def test_an_error_chunk_becomes_an_error_event_and_a_null_error_is_ignored() -> None:
    raw = sse(
        chunk({"content": "a"}, error=None),
        {"error": {"message": "upstream overloaded", "type": "server_error"}},
    )
    found, machine = translate(raw)
    assert [n for n, _ in found][-1] == "error"
    assert "upstream overloaded" in found[-1][1]["error"]["message"]
    assert machine.failure is not None
    assert "upstream overloaded" in machine.failure


def test_tool_calls_that_never_get_a_name_fail_the_stream() -> None:
    found, machine = translate(
        sse(chunk({"tool_calls": [tool(0, "call_1", None, "{}")]}), chunk(finish="tool_calls"))
    )
    assert [n for n, _ in found][-1] == "error"
    assert machine.failure == "every tool call came without a name"


def test_a_tool_without_an_id_gets_one_at_the_finish() -> None:
    found, _ = translate(
        sse(
            chunk({"tool_calls": [tool(0, None, "Read", '{"path":"/a"}')]}),
            chunk(finish="tool_calls"),
        )
    )
    (block,) = blocks(found)
    assert block["name"] == "Read"
    assert block["id"].startswith("toolu_")
    assert block["input"] == {"path": "/a"}


def test_shortened_tool_names_are_restored() -> None:
    names = ToolNames()
    long_name = "mcp__a_server_with_a_rather_long_name__and_a_tool_with_a_long_name_too"
    short = names.short(long_name)
    assert len(short) <= 64
    found, _ = translate(
        sse(chunk({"tool_calls": [tool(0, "c1", short, "{}")]}), chunk(finish="tool_calls")), names
    )
    assert blocks(found)[0]["name"] == long_name


def test_crlf_streams_and_comments() -> None:
    raw = b": OPENROUTER PROCESSING\r\n\r\n" + sse(
        chunk({"content": "ok"}), chunk(finish="stop"), crlf=True
    )
    found, machine = translate(raw)
    assert blocks(found) == [{"type": "text", "text": "ok"}]
    assert machine.finished


def test_message_start_carries_id_model_and_zero_output() -> None:
    found, _ = translate(sse(chunk({"content": "x"}), chunk(finish="stop")))
    start = found[0][1]["message"]
    assert start["id"] == "msg_c1"
    assert start["model"] == "deepseek-chat"
    assert start["usage"]["output_tokens"] == 0
    assert start["role"] == "assistant"


def _no_index(id: str, name: str, args: str) -> dict[str, Any]:
    return {"id": id, "type": "function", "function": {"name": name, "arguments": args}}


def test_parallel_calls_all_with_index_0_are_told_apart_by_their_id() -> None:
    raw = sse(
        chunk({"tool_calls": [tool(0, "call_a", "Read", '{"file_path":')]}),
        chunk({"tool_calls": [tool(0, args='"/w/a.txt"}')]}),
        chunk({"tool_calls": [tool(0, "call_b", "Read", '{"file_path":"/w/b.txt"}')]}),
        chunk(finish="tool_calls"),
    )
    found, _ = translate(raw)
    assert blocks(found) == [
        {"type": "tool_use", "id": "call_a", "name": "Read", "input": {"file_path": "/w/a.txt"}},
        {"type": "tool_use", "id": "call_b", "name": "Read", "input": {"file_path": "/w/b.txt"}},
    ]
    assert final(found)["delta"]["stop_reason"] == "tool_use"


def test_parallel_calls_without_any_index_are_told_apart_by_their_id() -> None:
    raw = sse(
        chunk({"tool_calls": [_no_index("call_a", "Read", '{"file_path":"/w/a.txt"}')]}),
        chunk({"tool_calls": [_no_index("call_b", "Bash", '{"command":"ls"}')]}),
        chunk(finish="tool_calls"),
    )
    found, _ = translate(raw)
    assert [(b["id"], b["name"], b["input"]) for b in blocks(found)] == [
        ("call_a", "Read", {"file_path": "/w/a.txt"}),
        ("call_b", "Bash", {"command": "ls"}),
    ]


def test_unterminated_streamed_arguments_are_closed_before_the_block_stops() -> None:
    raw = sse(
        chunk({"tool_calls": [tool(0, "call_1", "Read", '{"file_path": "/w/a.txt"')]}),
        chunk(finish="tool_calls"),
    )
    found, machine = translate(raw)  # blocks() parses each tool's joined partial_json
    assert blocks(found)[0]["input"] == {"file_path": "/w/a.txt"}
    assert machine.failure is None
    cut_in_string = sse(
        chunk({"tool_calls": [tool(0, "call_1", "Write", '{"content": "ab')]}),
        chunk(finish="tool_calls"),
    )
    found, _ = translate(cut_in_string)
    assert blocks(found)[0]["input"] == {"content": "ab"}


def test_arguments_no_suffix_can_repair_fail_the_stream() -> None:
    raw = sse(
        chunk({"tool_calls": [tool(0, "call_1", "Read", "not json at all")]}),
        chunk(finish="tool_calls"),
    )
    found, machine = translate(raw)
    assert [n for n, _ in found][-1] == "error"
    assert machine.failure is not None
    assert "Read" in machine.failure

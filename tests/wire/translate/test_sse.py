"""The incremental SSE parser: line ends, comments, multi-line data, cuts anywhere."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ccswitch_addon.wire.translate.sse import SseEvent, SseParser, encode_event


def parse(*pieces: bytes) -> list[SseEvent]:
    parser = SseParser()
    found = [event for piece in pieces for event in parser.feed(piece)]
    return found + parser.close()


def test_events_with_names_and_data() -> None:
    raw = b"event: a\ndata: 1\n\ndata: 2\n\n"
    assert parse(raw) == [SseEvent("a", "1"), SseEvent(None, "2")]


def test_crlf_and_lone_cr_line_ends() -> None:
    assert parse(b"data: x\r\n\r\ndata: y\r\rdata: z\n\n") == [
        SseEvent(None, "x"),
        SseEvent(None, "y"),
        SseEvent(None, "z"),
    ]


def test_a_cr_at_the_end_of_a_read_and_its_lf_in_the_next() -> None:
    assert parse(b"data: x\r", b"\n\r", b"\ndata: y\n\n") == [
        SseEvent(None, "x"),
        SseEvent(None, "y"),
    ]


def test_comments_and_unknown_fields_are_skipped() -> None:
    assert parse(b": keep-alive\n\nid: 7\nretry: 10\ndata: x\n\n") == [SseEvent(None, "x")]


def test_multi_line_data_is_joined_with_newlines() -> None:
    assert parse(b"data: a\ndata:b\ndata:  c\n\n") == [SseEvent(None, "a\nb\n c")]


def test_an_event_name_alone_is_not_an_event() -> None:
    assert parse(b"event: ping\n\ndata: x\n\n") == [SseEvent(None, "x")]


def test_a_multi_byte_character_cut_across_reads() -> None:
    raw = "data: 你好\n\n".encode()
    cut = raw.index("你".encode()) + 1
    parser = SseParser()
    assert parser.feed(raw[:cut]) == []
    assert parser.feed(raw[cut:]) == [SseEvent(None, "你好")]


def test_the_last_event_without_its_blank_line_counts_at_close() -> None:
    parser = SseParser()
    assert parser.feed(b"data: [DONE]") == []
    assert parser.close() == [SseEvent(None, "[DONE]")]


def test_encode_splits_lines() -> None:
    assert encode_event("e", "a\nb") == b"event: e\ndata: a\ndata: b\n\n"
    assert encode_event(None, "x") == b"data: x\n\n"


events_strategy = st.lists(
    st.tuples(
        st.one_of(st.none(), st.text("abcdef._", min_size=1, max_size=8)),
        st.text(
            alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n")
        ).map(lambda s: s or "-"),
    ),
    max_size=6,
)


@given(events_strategy, st.lists(st.integers(min_value=0), max_size=8), st.booleans())
def test_any_events_cut_anywhere_come_back_whole(
    sent: list[tuple[str | None, str]], cuts: list[int], crlf: bool
) -> None:
    raw = b"".join(encode_event(name, data) for name, data in sent)
    if crlf:
        raw = raw.replace(b"\n", b"\r\n")
    points = sorted({c % (len(raw) + 1) for c in cuts})
    pieces = [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]
    assert parse(*pieces) == [SseEvent(name, data) for name, data in sent]

"""Stream framing (providers/adapters/sse.py): SSE and NDJSON decoders fed bytes split
anywhere, and the OpenAI chunk events we build."""

from __future__ import annotations

import json

import pytest

from providers.adapters.sse import ChunkBuilder, NDJSONDecoder, SSEDecoder

STREAM = (
    b"event: message_start\r\ndata: {\"a\":1}\r\n\r\n"
    b": keep-alive comment\n\n"
    b"data: first line\ndata: second line\n\n"
    b"id: 7\nretry: 100\ndata:no-space\n\n"
    b"event: x\rdata: cr-only\r\r"
)
EXPECTED = [
    (b"message_start", b'{"a":1}'),
    (b"", b"first line\nsecond line"),
    (b"", b"no-space"),
    (b"x", b"cr-only"),
]


def decode(data: bytes, step: int | None) -> list[tuple[bytes, bytes]]:
    decoder = SSEDecoder()
    events = []
    if step is None:
        events += decoder.feed(data)
    else:
        for i in range(0, len(data), step):
            events += decoder.feed(data[i : i + step])
    return events + decoder.finish()


@pytest.mark.parametrize("step", [None, 1, 2, 3, 7, 64])
def test_sse_decoder_handles_any_split(step):
    assert decode(STREAM, step) == EXPECTED


def test_sse_decoder_crlf_split_between_cr_and_lf():
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\n\r") == []
    assert decoder.feed(b"\ndata: b\r\n\r\n") == [(b"", b"a"), (b"", b"b")]


def test_sse_decoder_flushes_an_unterminated_last_event():
    decoder = SSEDecoder()
    assert decoder.feed(b"data: x\n\ndata: tail") == [(b"", b"x")]
    assert decoder.finish() == [(b"", b"tail")]


def test_sse_decoder_only_comments_gives_nothing():
    assert decode(b": OPENROUTER PROCESSING\n\n: OPENROUTER PROCESSING\r\n\r\n", 1) == []


@pytest.mark.parametrize("step", [None, 1, 5])
def test_ndjson_decoder(step):
    data = b'{"a":1}\n\n{"b":2}\r\n{"c":3}'
    decoder = NDJSONDecoder()
    lines = []
    if step is None:
        lines += decoder.feed(data)
    else:
        for i in range(0, len(data), step):
            lines += decoder.feed(data[i : i + step])
    lines += decoder.finish()
    assert [line.strip() for line in lines] == [b'{"a":1}', b'{"b":2}', b'{"c":3}']


def test_chunk_builder_is_valid_json():
    chunks = ChunkBuilder("chatcmpl-1", 1700000000, 'we"ird')
    for event in (chunks.role(), chunks.content("hé\n"), chunks.delta({"tool_calls": []}), chunks.finish("stop")):
        assert event.startswith(b"data: ") and event.endswith(b"\n\n")
        obj = json.loads(event[6:])
        assert obj["model"] == 'we"ird' and obj["created"] == 1700000000
    assert json.loads(chunks.finish("length")[6:])["choices"][0]["finish_reason"] == "length"

"""The sans-I/O TCP framers and the bridge codec, without sockets."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wirehub.bridges.codecs import Codec, CodecError, load_function
from wirehub.bridges.example_codec import decode_reading, encode_reading
from wirehub.core.framing import FrameError, LengthFramer, LineFramer, RawFramer, make_framer
from wirehub.errors import BadRequest, ConfigError


def feed_all(framer, chunks):
    out = []
    for chunk in chunks:
        out.extend(framer.feed(chunk))
    return out


def split_every(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in [*points, len(data)]:
        pieces.append(data[last:p])
        last = p
    return pieces


# -- line --------------------------------------------------------------------------


def test_line_splits_many_lines_in_one_read_and_tolerates_crlf():
    framer = LineFramer(100)
    assert framer.feed(b"a\nbb\r\n\nccc\n") == [b"a", b"bb", b"", b"ccc"]
    assert framer.buffered == 0


def test_line_buffers_a_partial_line_across_reads():
    framer = LineFramer(100)
    assert framer.feed(b"hel") == []
    assert framer.feed(b"lo\r") == []
    assert framer.feed(b"\nwor") == [b"hello"]
    assert framer.buffered == 3
    assert framer.eof() == [b"wor"]


def test_line_over_max_frame_is_rejected_and_the_next_line_still_arrives():
    framer = LineFramer(8)
    out = feed_all(framer, [b"ok\n", b"x" * 20, b"y" * 20, b"\nnext\n"])
    assert out[0] == b"ok"
    assert isinstance(out[1], FrameError) and out[1].code == "too_large" and not out[1].fatal
    assert "exceeds max_frame 8" in out[1].message
    assert out[2:] == [b"next"]
    # Never holds more than max_frame (+ a possible \r) of an unfinished line.
    assert framer.buffered == 0


def test_line_over_max_frame_inside_one_read():
    framer = LineFramer(4)
    out = framer.feed(b"12345\nabcd\nabcd\r\n")
    assert isinstance(out[0], FrameError)
    assert out[1:] == [b"abcd", b"abcd"]


def test_line_encode_appends_newline():
    assert LineFramer().encode(b"hi") == b"hi\n"


# -- length ------------------------------------------------------------------------


def framed(*payloads: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(p)) + p for p in payloads)


def test_length_frames_split_reads_and_many_per_read():
    framer = LengthFramer(100)
    data = framed(b"one", b"", b"\x00\xff binary")
    assert feed_all(framer, [data[:2], data[2:5], data[5:]]) == [b"one", b"", b"\x00\xff binary"]
    assert framer.feed(data) == [b"one", b"", b"\x00\xff binary"]


def test_length_prefix_over_max_frame_is_fatal_and_stops_the_stream():
    framer = LengthFramer(10)
    out = framer.feed(framed(b"ok") + struct.pack(">I", 11) + b"x" * 11 + framed(b"later"))
    assert out[0] == b"ok"
    assert isinstance(out[1], FrameError) and out[1].fatal and out[1].code == "too_large"
    assert "length prefix 11 exceeds max_frame 10" in out[1].message
    assert framer.feed(framed(b"more")) == []


def test_length_stream_ending_inside_a_frame_is_an_error():
    framer = LengthFramer(10)
    assert framer.feed(b"\x00\x00\x00\x05ab") == []
    [err] = framer.eof()
    assert isinstance(err, FrameError) and "ended inside a frame" in err.message


def test_length_encode():
    assert LengthFramer().encode(b"abc") == b"\x00\x00\x00\x03abc"


# -- raw ---------------------------------------------------------------------------


def test_raw_each_read_is_one_frame():
    framer = RawFramer(4)
    # Only a caller feeding more than one read's worth gets it cut at max_frame.
    assert framer.feed(b"ab\ncd") == [b"ab\nc", b"d"]
    assert framer.feed(b"abc") == [b"abc"]
    assert framer.feed(b"") == []
    assert framer.encode(b"x") == b"x"


def test_make_framer_names():
    assert isinstance(make_framer("jsonl"), LineFramer)
    with pytest.raises(ValueError, match="unknown framing"):
        make_framer("xml")  # type: ignore[arg-type]


# -- fuzz: any split of any valid stream gives the same frames -----------------------

lines = st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"").rstrip(b"\r")))
cuts = st.lists(st.integers(min_value=0, max_value=10_000), max_size=12)


@settings(max_examples=200, deadline=None)
@given(lines, cuts)
def test_fuzz_line_framer_is_split_invariant(payloads, where):
    stream = b"".join(p + b"\n" for p in payloads)
    framer = LineFramer(64)
    assert feed_all(framer, split_every(stream, where)) == payloads
    assert framer.buffered == 0


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400), cuts, st.integers(min_value=1, max_value=50))
def test_fuzz_line_framer_never_raises_and_stays_bounded(stream, where, limit):
    framer = LineFramer(limit)
    for piece in split_every(stream, where):
        for item in framer.feed(piece):
            assert isinstance(item, FrameError) or len(item) <= limit
        assert framer.buffered <= limit + 1
    for item in framer.eof():
        assert isinstance(item, FrameError) or len(item) <= limit


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=60)), cuts)
def test_fuzz_length_framer_is_split_invariant(payloads, where):
    framer = LengthFramer(64)
    assert feed_all(framer, split_every(framed(*payloads), where)) == payloads
    assert framer.eof() == []


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400), cuts, st.integers(min_value=0, max_value=50))
def test_fuzz_length_framer_never_raises_and_stays_bounded(stream, where, limit):
    framer = LengthFramer(limit)
    for piece in split_every(stream, where):
        for item in framer.feed(piece):
            assert isinstance(item, FrameError) or len(item) <= limit
        # What stays is one unfinished frame: a partial header or header + partial body.
        assert framer.buffered < limit + 4
    framer.eof()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400), st.integers(min_value=1, max_value=50))
def test_fuzz_raw_framer_keeps_every_byte(data, limit):
    framer = RawFramer(limit)
    out = framer.feed(data)
    assert b"".join(out) == data
    assert all(0 < len(item) <= limit for item in out)


# -- codec -------------------------------------------------------------------------


def test_utf8_codec_replaces_invalid_bytes():
    codec = Codec()
    assert codec.decode("héllo".encode()) == "héllo"
    assert codec.decode(b"bad \xff\xfe!") == "bad \ufffd\ufffd!"
    assert codec.encode("héllo") == "héllo".encode()
    assert codec.encode({"a": 1}) == b'{"a":1}'


def test_base64_codec_round_trips_binary():
    codec = Codec(encoding="base64")
    data = codec.decode(b"\x00\xff\n")
    assert data == {"encoding": "base64", "data": "AP8K"}
    assert codec.encode(data) == b"\x00\xff\n"
    assert codec.encode("AP8K") == b"\x00\xff\n"
    with pytest.raises(CodecError, match="not valid base64"):
        codec.encode("*not base64*")


def test_jsonl_codec():
    codec = Codec(json_lines=True)
    assert codec.decode(b'{"t": 1}') == {"t": 1}
    with pytest.raises(BadRequest, match="invalid JSON line"):
        codec.decode(b"{nope")
    assert codec.encode({"t": 1}) == b'{"t":1}'


def test_device_codec_errors_are_codec_errors():
    codec = Codec(decoder=decode_reading, encoder=encode_reading)
    assert codec.decode(bytes.fromhex("0100d70192")) == {
        "sensor": 1,
        "temp": 21.5,
        "humidity": 40.2,
    }
    assert codec.encode({"sensor": 1, "temp": 21.5, "humidity": 40.2}) == bytes.fromhex(
        "0100d70192"
    )
    with pytest.raises(CodecError, match="decoder failed") as info:
        codec.decode(b"\x01")
    assert info.value.code == "codec_error"
    with pytest.raises(CodecError, match="encoder failed"):
        codec.encode("not a reading")


def test_load_function_names_what_failed():
    assert load_function("wirehub.bridges.example_codec:decode_reading", what="x") is (
        decode_reading
    )
    with pytest.raises(ConfigError, match=r"decoder 'nope\.nope:f': cannot import nope\.nope"):
        load_function("nope.nope:f", what="decoder")
    with pytest.raises(ConfigError, match="has no 'missing'"):
        load_function("wirehub.bridges.example_codec:missing", what="decoder")
    with pytest.raises(ConfigError, match="must look like"):
        load_function("no_colon", what="decoder")

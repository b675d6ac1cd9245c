"""`whole_lines`, the newline framing of both stdio hops: however the bytes are cut into reads, the lines
handed out are the stream's whole lines, in order, and what follows the last newline waits in the buffer."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from gateway.ops.codec import whole_lines


@given(
    stream=st.binary(max_size=400).map(lambda b: b.replace(b"\r", b"")),
    cuts=st.lists(st.integers(0, 400), max_size=12),
)
def test_any_cutting_of_a_stream_gives_its_whole_lines_in_order(stream: bytes, cuts: list[int]) -> None:
    points = sorted({0, len(stream), *(c for c in cuts if c <= len(stream))})
    buffer = bytearray()
    lines: list[bytes] = []
    for start, end in pairwise(points):
        lines.extend(line.removesuffix(b"\n") for line in whole_lines(buffer, stream[start:end]))
    *expected, rest = stream.split(b"\n")
    assert lines == expected
    assert bytes(buffer) == rest

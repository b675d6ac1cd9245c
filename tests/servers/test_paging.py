"""`follow_pages` and its resume cursor: any bounds, any page sizes, every record exactly once."""

from __future__ import annotations

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servers.common import UpstreamError
from servers.common.paging import follow_pages, parse_cursor, resume_cursor


def pages_of(sizes: list[int]) -> dict[str | None, tuple[list[int], str | None]]:
    """Vendor pages keyed by the cursor that fetches them; records are 0, 1, 2, ... in order."""
    out: dict[str | None, tuple[list[int], str | None]] = {}
    start, key = 0, None
    for number, size in enumerate(sizes):
        following = f"p{number + 1}" if number + 1 < len(sizes) else None
        out[key] = (list(range(start, start + size)), following)
        start, key = start + size, following
    return out


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 7), min_size=1, max_size=6),
    limit=st.integers(1, 9),
    max_pages=st.integers(1, 4),
    max_size=st.none() | st.integers(1, 30),
)
def test_walking_the_cursor_returns_every_record_once_in_order(
    sizes: list[int], limit: int, max_pages: int, max_size: int | None
) -> None:
    pages = pages_of(sizes)

    async def fetch(cursor: str | None) -> tuple[list[int], str | None]:
        return pages[cursor]

    async def walk() -> list[int]:
        seen: list[int] = []
        cursor: str | None = None
        for _ in range(200):
            page = await follow_pages(
                fetch, cursor, max_pages, limit, size=(lambda n: n % 5 + 1) if max_size else None, max_size=max_size
            )
            assert len(page.items) <= limit
            if max_size is not None and len(page.items) > 1:
                assert sum(n % 5 + 1 for n in page.items) <= max_size
            seen += page.items
            cursor = page.next_cursor
            if cursor is None:
                return seen
        raise AssertionError("the cursor never ended")

    assert anyio.run(walk) == list(range(sum(sizes)))


@given(page_cursor=st.none() | st.text(max_size=80), offset=st.integers(0, 10**6))
def test_resume_cursor_round_trips(page_cursor: str | None, offset: int) -> None:
    assert parse_cursor(resume_cursor(page_cursor, offset)) == (page_cursor, offset)


@given(text=st.text(max_size=120))
def test_any_cursor_text_parses_or_gives_a_clear_error(text: str) -> None:
    try:
        vendor, offset = parse_cursor("resume:" + text)
    except UpstreamError as exc:
        assert "cursor" in str(exc)
    else:
        assert offset >= 0 and (vendor is None or isinstance(vendor, str))


def test_a_vendor_cursor_passes_through() -> None:
    assert parse_cursor("c2") == ("c2", 0) and parse_cursor(None) == (None, 0)
    with pytest.raises(UpstreamError):
        parse_cursor(resume_cursor("c", 0)[:-3] + "@@@")

"""Follow a vendor's cursor across pages, up to a bound, without ever skipping a record.

When a bound (`max_items`, or a size budget) cuts a page short, the returned cursor is a *resume
cursor*: the vendor cursor of that page plus the number of its records already returned, so the next
call fetches the same page again and continues exactly after the last record it gave out.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from servers.common.errors import UpstreamError

T = TypeVar("T")

RESUME = "resume:"


@dataclass
class Page(Generic[T]):
    """Items gathered from one or more pages and the cursor that continues after the last of them."""

    items: list[T] = field(default_factory=list)
    next_cursor: str | None = None
    pages: int = 0
    cut: bool = False
    """True when a bound stopped inside a vendor page (`next_cursor` then resumes inside it)."""


def resume_cursor(page_cursor: str | None, offset: int) -> str:
    """A cursor for "the page fetched with `page_cursor`, from its record `offset` on"."""
    raw = json.dumps([page_cursor, offset], separators=(",", ":")).encode()
    return RESUME + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_cursor(cursor: str | None) -> tuple[str | None, int]:
    """(vendor cursor, records of that page to skip); a vendor cursor passes through with offset 0."""
    if not cursor or not cursor.startswith(RESUME):
        return cursor or None, 0
    data = cursor[len(RESUME) :]
    try:
        page_cursor, offset = json.loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
    except (ValueError, binascii.Error, TypeError):
        raise UpstreamError("cursor is not one this tool returned (pass `next_cursor` back unchanged)") from None
    if not (page_cursor is None or isinstance(page_cursor, str)) or not isinstance(offset, int) or offset < 0:
        raise UpstreamError("cursor is not one this tool returned (pass `next_cursor` back unchanged)")
    return page_cursor, offset


async def follow_pages(
    fetch: Callable[[str | None], Awaitable[tuple[list[T], str | None]]],
    cursor: str | None,
    max_pages: int,
    max_items: int | None = None,
    *,
    size: Callable[[T], int] | None = None,
    max_size: int | None = None,
) -> Page[T]:
    """Call `fetch(vendor_cursor)` until there is no next cursor, `max_pages` pages, `max_items` items,
    or (with `size`) items totalling `max_size`; at least one item is always returned if there is one."""
    page: Page[T] = Page()
    current, offset = parse_cursor(cursor)
    total = 0
    while True:
        items, following = await fetch(current)
        page.pages += 1
        for index in range(offset, len(items)):
            item = items[index]
            weight = size(item) if size is not None else 0
            full = max_items is not None and len(page.items) >= max_items
            over = max_size is not None and page.items and total + weight > max_size
            if full or over:
                page.next_cursor, page.cut = resume_cursor(current, index), True
                return page
            page.items.append(item)
            total += weight
        offset, current = 0, following
        if not current or page.pages >= max_pages:
            break
        if (max_items is not None and len(page.items) >= max_items) or (max_size is not None and total >= max_size):
            break
    page.next_cursor = current or None
    return page

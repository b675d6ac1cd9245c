"""Follow a vendor's cursor across pages, up to a bound."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class Page(Generic[T]):
    """Items gathered from one or more pages and the vendor's cursor for the next one."""

    items: list[T] = field(default_factory=list)
    next_cursor: str | None = None
    pages: int = 0


async def follow_pages(
    fetch: Callable[[str | None], Awaitable[tuple[list[T], str | None]]],
    cursor: str | None,
    max_pages: int,
    max_items: int | None = None,
) -> Page[T]:
    """Call `fetch(cursor)` until there is no next cursor, `max_pages` pages, or `max_items` items."""
    page: Page[T] = Page()
    while True:
        items, cursor = await fetch(cursor)
        page.items.extend(items)
        page.pages += 1
        if not cursor or page.pages >= max_pages or (max_items is not None and len(page.items) >= max_items):
            break
    page.next_cursor = cursor or None
    return page

"""What the gateway keeps of a backend's status document (`gateway.ops.published`), without processes: the
scalars by dotted path, the problems, the document inside a tool result, and the Prometheus families."""

from __future__ import annotations

import math

import anyio
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import generate_latest

from gateway.ops.published import MAX_TEXT, PublishedFigures, document_of, figures, problems

DOCUMENT = {
    "namespace": None,
    "l1": {"backend": "redis", "available": True, "hit_rate": 0.5},
    "l2": {"index_lag": {"pending": 3, "oldest_age_s": 1.25}, "nan": math.nan},
    "l3": {"outbox_pending": 0, "dead_letter_samples": [{"seq": 1}]},
    "problems": ["1 dead letter(s): refused", 7, ""],
}


def test_scalars_are_kept_by_dotted_path_lists_and_nulls_are_not() -> None:
    assert figures(DOCUMENT) == {
        "l1.backend": "redis",
        "l1.available": True,
        "l1.hit_rate": 0.5,
        "l2.index_lag.pending": 3,
        "l2.index_lag.oldest_age_s": 1.25,
        "l3.outbox_pending": 0,
    }
    assert problems(DOCUMENT) == ["1 dead letter(s): refused"]  # strings only, none empty
    assert problems({"problems": "not a list"}) == []


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=400),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(max_size=5), JSON, max_size=5))
def test_any_document_gives_finite_scalars_and_bounded_texts(document: dict[str, object]) -> None:
    for value in figures(document).values():
        assert isinstance(value, bool | int | float | str)
        assert not isinstance(value, float) or math.isfinite(value)
        assert not isinstance(value, str) or len(value) <= MAX_TEXT
    assert all(isinstance(problem, str) for problem in problems(document))


def test_the_document_is_the_structured_content_else_a_json_text() -> None:
    assert document_of({"content": [], "structuredContent": {"a": 1}}) == {"a": 1}
    assert document_of({"content": [{"type": "text", "text": "hello"}, {"type": "text", "text": '{"b": 2}'}]}) == {
        "b": 2
    }
    for result, problem in (
        ({"content": [{"type": "text", "text": "boom"}], "isError": True}, "the status tool failed: boom"),
        ({"content": [{"type": "text", "text": "[1, 2]"}]}, "no JSON object"),
    ):
        try:
            document_of(result)
        except ValueError as error:
            assert problem in str(error)
        else:
            raise AssertionError(f"{result} has no document")


def test_numbers_and_booleans_are_exported_a_failed_poll_keeps_the_last_figures() -> None:
    published = PublishedFigures(interval=5, timeout=1)
    published.record("mem", {"content": [], "structuredContent": DOCUMENT})
    published.failed("mem", "timed out")
    body = generate_latest(published.collector()).decode()  # type: ignore[arg-type]
    assert 'mcp_gateway_backend_status{backend="mem",figure="l2.index_lag.pending"} 3.0' in body
    assert 'mcp_gateway_backend_status{backend="mem",figure="l1.available"} 1.0' in body
    assert "l1.backend" not in body  # strings are for /health and /status only
    assert 'mcp_gateway_backend_problems{backend="mem"} 1.0' in body
    health = published.health("mem")
    assert health is not None and health["error"] == "timed out" and health["figures"]["l1.backend"] == "redis"
    published.forget("mem")
    assert published.health("mem") is None
    assert "backend=" not in generate_latest(published.collector()).decode()  # type: ignore[arg-type]


async def test_the_poll_asks_only_while_the_backend_is_up() -> None:
    published = PublishedFigures(interval=0.01, timeout=1)
    up, asked = False, anyio.Event()

    async def fetch() -> dict[str, object]:
        asked.set()
        return {"content": [], "structuredContent": {"depth": 1}}

    async with anyio.create_task_group() as group:
        group.start_soon(published.poll, "mem", fetch, lambda: up)
        await anyio.sleep(0.05)
        assert published.health("mem") is None  # down: never asked
        up = True
        with anyio.fail_after(10):
            await asked.wait()
        group.cancel_scope.cancel()
    health = published.health("mem")
    assert health is not None and health["figures"] == {"depth": 1}

"""`CallScope`: a fast-path call cancelled by asyncio's own task cancellation answers None and leaves its
task as it found it; any other cancellation (a server shutting down) still cancels the task."""

from __future__ import annotations

import asyncio

import pytest

from gateway.transports.fastpath import CallScope


async def _call(started: asyncio.Event, result: str = "answered") -> str:
    started.set()
    await asyncio.sleep(30)
    return result


async def test_a_call_cancelled_while_it_runs_answers_none_and_its_task_goes_on() -> None:
    scope, started = CallScope(), asyncio.Event()

    async def request() -> tuple[str | None, int, str]:
        answer = await scope.run(_call(started))
        await asyncio.sleep(0)  # the task is not left cancelled: it still awaits (its response is written)
        return answer, asyncio.current_task().cancelling(), "went on"  # type: ignore[union-attr]

    task = asyncio.ensure_future(request())
    await started.wait()
    scope.cancel()
    assert await task == (None, 0, "went on")
    scope.cancel()  # after the end: nothing to do
    assert not task.cancelled()


async def test_a_call_cancelled_before_it_starts_is_not_run() -> None:
    scope, started = CallScope(), asyncio.Event()
    scope.cancel()
    assert await scope.run(_call(started)) is None
    assert not started.is_set()


async def test_a_call_not_cancelled_answers_and_a_later_cancel_does_nothing() -> None:
    scope = CallScope()

    async def quick() -> str:
        await asyncio.sleep(0)
        return "answered"

    assert await scope.run(quick()) == "answered"
    scope.cancel()
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_someone_elses_cancellation_still_cancels_the_task() -> None:
    scope, started = CallScope(), asyncio.Event()
    task = asyncio.ensure_future(scope.run(_call(started)))
    await started.wait()
    task.cancel()  # e.g. the server's shutdown
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_both_cancellations_at_once_cancel_the_task() -> None:
    scope, started = CallScope(), asyncio.Event()
    task = asyncio.ensure_future(scope.run(_call(started)))
    await started.wait()
    scope.cancel()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_cancellation_swallowed_inside_the_call_is_taken_back() -> None:
    scope, started = CallScope(), asyncio.Event()

    async def stubborn() -> str:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            return "finished anyway"
        return "not reached"

    async def request() -> tuple[str | None, int]:
        answer = await scope.run(stubborn())
        return answer, asyncio.current_task().cancelling()  # type: ignore[union-attr]

    task = asyncio.ensure_future(request())
    await started.wait()
    scope.cancel()
    assert await task == ("finished anyway", 0)

"""The cache's lean L1-miss reader (`gateway.resilience.redis_reads`) against a real redis-server, on asyncio and
on uvloop (the gateway's loop): batching, a batch gathered while one is in flight, timeouts, Redis refusing,
killed and back, a connection lost under a batch, error replies, AUTH and SELECT, a reader that goes away, and
the URLs that stay on redis-py (a cluster among them)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import pytest
import redis

from gateway.config.resilience import RedisSettings
from gateway.resilience.redis_link import RedisLink
from gateway.resilience.redis_reads import Address, address
from tests.gateway.resilience.conftest import until
from tests.helpers.redis_proc import RedisProcess


@pytest.fixture(
    params=[pytest.param(("asyncio", {}), id="asyncio"), pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop")]
)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


def admin(server: RedisProcess, db: int = 0, password: str | None = None) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=server.port, db=db, password=password)


def link(url: str, **settings: Any) -> RedisLink:
    return RedisLink(url, RedisSettings(**{"timeout": 5.0, **settings}))


def reading(red: RedisLink, *keys: str) -> asyncio.Task[list[Any] | None]:
    """A task awaiting `red.read(*keys)`, as a call's would."""

    async def read() -> list[Any] | None:
        return await red.read(*keys)

    return asyncio.ensure_future(read())


@contextmanager
def stopped(server: RedisProcess) -> Iterator[None]:
    """redis-server frozen (SIGSTOP): connections stay open, nothing is answered."""
    assert server.proc is not None
    server.proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        server.proc.send_signal(signal.SIGCONT)


def test_which_urls_take_the_lean_reader() -> None:
    assert address("redis://127.0.0.1:6390/0") == Address("127.0.0.1", 6390, 0)
    assert address("redis://h") == Address("h", 6379, 0)
    assert address("redis://:p%40ss@h:1/3") == Address("h", 1, 3, None, "p@ss")
    assert address("redis://user:pw@h:1") == Address("h", 1, 0, "user", "pw")
    for other in (
        "rediss://h:1",  # TLS
        "unix:///tmp/redis.sock",
        "redis://h:1/0?socket_keepalive=true",  # options only redis-py knows
        "redis://h:1/x",
        "redis+cluster://h:1",
    ):
        assert address(other) is None, other
    assert link("redis+cluster://127.0.0.1:1").pipe is None  # a cluster keeps redis-py's `mget_nonatomic`
    assert link("rediss://127.0.0.1:1").pipe is None


async def test_the_reads_of_a_loop_turn_go_out_as_one_mget(redis_server: RedisProcess) -> None:
    admin(redis_server).mset({"gen": b"7", "a": b"1", "b": b"2"})
    red = link(redis_server.url)
    try:
        got = await asyncio.gather(*(red.read("gen", key) for key in ("a", "b", "missing", "a")))
        assert got == [[b"7", b"1"], [b"7", b"2"], [b"7", None], [b"7", b"1"]]
        assert red.batches == 1 and red.reads == 4 and red.errors == 0
    finally:
        await red.aclose()


async def test_reads_arriving_while_an_mget_is_on_its_way_go_out_together_next(redis_server: RedisProcess) -> None:
    admin(redis_server).mset({"a": b"1", "b": b"2", "c": b"3"})
    red = link(redis_server.url)
    try:
        assert await red.read("a") == [b"1"]  # connected
        with stopped(redis_server):
            first = reading(red, "a")
            await until(lambda: red.batches == 2)  # sent, unanswered
            later = [reading(red, key) for key in ("b", "c", "b")]
            await asyncio.sleep(0.05)
            assert red.batches == 2 and not first.done()  # nothing more goes out while one is in flight
        assert await first == [b"1"]
        assert await asyncio.gather(*later) == [[b"2"], [b"3"], [b"2"]]
        assert red.batches == 3 and red.errors == 0
    finally:
        await red.aclose()


async def test_an_mget_not_answered_in_time_gets_none_and_its_late_answer_is_not_taken(
    redis_server: RedisProcess,
) -> None:
    admin(redis_server).mset({"a": b"1", "b": b"2"})
    red = link(redis_server.url, timeout=0.2, fail_max=5)
    try:
        assert await red.read("a") == [b"1"]
        with stopped(redis_server):
            assert await red.read("a") is None
        assert red.errors == 1 and "did not answer within 0.2 s" in (red.last_error or "")
        assert red.up  # one failure of five
        assert await until(lambda: red.read("b")) == [b"2"]  # a new connection: a's late answer went with the old
    finally:
        await red.aclose()


async def test_redis_killed_then_back(redis_server: RedisProcess) -> None:
    admin(redis_server).set("a", b"1")
    red = link(redis_server.url, timeout=0.5, fail_max=2, retry_after=0.2)
    try:
        assert await red.read("a") == [b"1"]
        redis_server.kill()
        assert await red.read("a") is None  # the connection went: one new try, refused
        assert await red.read("a") is None
        assert not red.up  # two failures: the guard bypasses Redis
        batches = red.batches
        assert await red.read("a") is None and red.batches == batches  # without touching the network
        redis_server.start()  # same port, empty
        admin(redis_server).set("a", b"again")
        assert await until(lambda: red.read("a")) == [b"again"]  # the guard's probe, on a new connection
        assert red.up
        assert red.pipe is not None and red.pipe.connects == 2
    finally:
        await red.aclose()


@asynccontextmanager
async def dropping_proxy(server: RedisProcess, reply: bytes | None = None) -> AsyncIterator[tuple[str, list[int]]]:
    """A TCP proxy to `server` whose first connection takes one command and then closes (or answers `reply`
    to it, then closes); the others pass through. Yields its URL and its count of connections."""
    opened = [0]

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        opened[0] += 1
        if opened[0] == 1:
            await reader.read(65536)
            if reply is not None:
                writer.write(reply)
                await writer.drain()
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", server.port)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    proxy = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = proxy.sockets[0].getsockname()[1]
    try:
        yield f"redis://127.0.0.1:{port}/0", opened
    finally:
        proxy.close()


async def test_a_connection_lost_under_an_mget_sends_it_once_more(redis_server: RedisProcess) -> None:
    admin(redis_server).set("a", b"1")
    async with dropping_proxy(redis_server) as (url, opened):
        red = link(url)
        try:
            assert await red.read("a") == [b"1"]
            assert opened[0] == 2 and red.batches == 1 and red.errors == 0
        finally:
            await red.aclose()


async def test_garbage_from_the_server_fails_the_mget_and_the_connection(redis_server: RedisProcess) -> None:
    admin(redis_server).set("a", b"1")
    async with dropping_proxy(redis_server, reply=b"x\r\n") as (url, opened):
        red = link(url, fail_max=5)
        try:
            assert await red.read("a") is None
            assert red.errors == 1 and "Protocol error" in (red.last_error or "")
            assert await red.read("a") == [b"1"]  # on a new connection
            assert opened[0] == 2
        finally:
            await red.aclose()


async def test_auth_select_and_error_replies(redis_server: RedisProcess) -> None:
    admin(redis_server, db=3).set("a", b"three")
    admin(redis_server).config_set("requirepass", "s3cret")
    port = redis_server.port
    for url in (f"redis://:s3cret@127.0.0.1:{port}/3", f"redis://default:s3cret@127.0.0.1:{port}/3"):
        red = link(url)
        try:
            assert await red.read("a") == [b"three"], url
        finally:
            await red.aclose()
    red = link(f"redis://127.0.0.1:{port}/3", fail_max=5)  # no password: Redis answers the MGET with NOAUTH
    try:
        assert await red.read("a") is None
        assert red.errors == 1 and "NOAUTH" in (red.last_error or "")
    finally:
        await red.aclose()
    red = link(f"redis://:wrong@127.0.0.1:{port}/3", fail_max=5)  # AUTH refused: the connection is dropped
    try:
        assert await red.read("a") is None
        assert red.errors == 1 and red.last_error and "WRONGPASS" in red.last_error
    finally:
        await red.aclose()


async def test_a_reader_that_goes_away_takes_nothing_from_the_others(redis_server: RedisProcess) -> None:
    admin(redis_server).set("a", b"1")
    red = link(redis_server.url)
    try:
        assert await red.read("a") == [b"1"]
        with stopped(redis_server):
            gone = reading(red, "a")
            stays = reading(red, "a")
            await until(lambda: red.batches == 2)
            gone.cancel()
        assert await stays == [b"1"]
        assert gone.cancelled() and red.errors == 0
        assert await red.read("a") == [b"1"]
    finally:
        await red.aclose()


async def test_closing_answers_the_reads_still_waiting(redis_server: RedisProcess) -> None:
    red = link(redis_server.url)
    with stopped(redis_server):
        waiting = reading(red, "a")
        await until(lambda: red.batches == 1)
        await red.aclose()
        assert await waiting is None
        assert await red.read("a") is None

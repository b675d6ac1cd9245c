"""Fixtures for the ai_memory tests."""

from __future__ import annotations

import contextlib
import importlib
import shutil
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import fakesnow
import pytest

from embedding.embedder import Embedder, MiniLMEmbedder, make_embedder
from servers.ai_memory.config import MemoryConfig, SnowflakeSettings
from servers.ai_memory.service import MemoryService


@pytest.fixture(scope="session")
def minilm() -> MiniLMEmbedder:
    """The real all-MiniLM-L6-v2 model in numpy (float32), loaded once per session."""
    return MiniLMEmbedder().load()


@pytest.fixture(scope="session")
def default_embedder() -> Embedder:
    """The embedder a service picks with no configuration (int8 onnxruntime), loaded once."""
    e = make_embedder("auto")
    e.load()  # type: ignore[attr-defined]
    return e


class FakeClock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """Freeze the service's notion of time (created_at, TTL expiry) under test control."""
    fake = FakeClock()
    import servers.ai_memory as package

    for name in ("records", "writes", "reads", "coherence", "maintenance", "sqlite_store", "snowflake_store"):
        module = importlib.import_module(f"{package.__name__}.{name}")
        if hasattr(module, "now"):
            monkeypatch.setattr(module, "now", fake)
    return fake


def make_config(data_dir: Path, **overrides: Any) -> MemoryConfig:
    cfg = MemoryConfig(data_dir=data_dir, warm_embedder=False)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return cfg


@pytest.fixture
async def make_service(tmp_path: Path, default_embedder: Embedder) -> AsyncIterator[Callable[..., Any]]:
    """Factory for started services over the embedded defaults (real model); closed at the end."""
    made: list[MemoryService] = []

    async def factory(data_dir: Path | None = None, *, background: bool = True, **kw: Any) -> MemoryService:
        store = kw.pop("store", None)
        embedder = kw.pop("embedder", default_embedder)
        svc = MemoryService(make_config(data_dir or tmp_path / "data", **kw), embedder=embedder, store=store)
        await svc.start(background=background)
        made.append(svc)
        return svc

    yield factory
    for svc in made:
        await svc.close()


# fakesnow.server() imports the submodule fakesnow.server, which then shadows the function
# on the package: keep a reference to the function taken before that happens.
_fakesnow_server = fakesnow.server


@contextlib.contextmanager
def start_fakesnow(**kwargs: Any) -> Iterator[dict[str, Any]]:
    """fakesnow's server (Snowflake's wire protocol over DuckDB in this process), with Snowflake's VECTOR
    type and cosine similarity taught to it first (fake_cortex.py): sqlglot builds its renderers on the first
    statement, so whichever test starts fakesnow first in a worker (tests/deploy does too) must install them."""
    from .fake_cortex import install_rendering

    install_rendering()
    with _fakesnow_server(**kwargs) as connect_kwargs:
        yield connect_kwargs


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session", autouse=True)
def _remove_fakesnow_bucket() -> Iterator[None]:
    """fakesnow makes a temporary "stage bucket" directory when it is imported and never removes it.
    Also: fakesnow learns Snowflake's VECTOR type before it renders its first statement (fake_cortex.py)."""
    from .fake_cortex import install_rendering

    install_rendering()
    yield
    from fakesnow.transforms import stage

    shutil.rmtree(stage.LOCAL_BUCKET_PATH, ignore_errors=True)


@pytest.fixture(scope="module")
def fakesnow_kwargs() -> Iterator[dict[str, Any]]:
    """A fakesnow server (Snowflake's wire protocol over duckdb) for the module."""
    with start_fakesnow() as kwargs:
        yield kwargs


_schema_counter = iter(range(1_000_000))


def snowflake_settings(kwargs: dict[str, Any], port: int | None = None, **over: Any) -> SnowflakeSettings:
    s = SnowflakeSettings(
        account=kwargs.get("account", "fakesnow"),
        user=kwargs.get("user", "fake"),
        password=kwargs.get("password", "snow"),
        host="127.0.0.1",
        port=port or kwargs["port"],
        protocol="http",
        database="MEMDB",
        schema=f"S{next(_schema_counter)}",
        pool_size=2,
        login_timeout=5,
        network_timeout=5,
    )
    for k, v in over.items():
        setattr(s, k, v)
    return s

"""A real three-master Redis Cluster on free loopback ports (`redis-server --cluster-enabled yes` and
`redis-cli --cluster create`), owned by a test."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.helpers.redis_proc import orphan_guarded


def cluster_port() -> int:
    """A free port P whose cluster bus port P + 10000 is free too (so P < 55536)."""
    while True:
        port = random.randint(20000, 30000)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port


class RedisCluster:
    def __init__(self, workdir: Path, nodes: int = 3) -> None:
        self.workdir = workdir
        self.ports = [cluster_port() for _ in range(nodes)]
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """The gateway's cluster URL: one seed node, the client discovers the others."""
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    @staticmethod
    def available() -> str | None:
        """None if the binaries are there, else why not."""
        for binary in ("redis-server", "redis-cli"):
            if shutil.which(binary) is None:
                return f"{binary} is not installed (apt-get install redis-server redis-tools)"
        return None

    def cli(self, port: int, *args: str) -> str:
        return subprocess.run(
            ["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=30, check=True
        ).stdout

    def start(self) -> None:
        for port in self.ports:
            directory = self.workdir / f"node-{port}"
            directory.mkdir(parents=True, exist_ok=True)
            self.procs.append(
                subprocess.Popen(
                    orphan_guarded(
                        [
                            "redis-server",
                            "--port",
                            str(port),
                            "--bind",
                            "127.0.0.1",
                            "--cluster-enabled",
                            "yes",
                            "--cluster-config-file",
                            str(directory / f"nodes-{port}.conf"),
                            "--save",
                            "",
                            "--appendonly",
                            "no",
                            "--dir",
                            str(directory),
                        ]
                    ),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for port in self.ports:
            self._wait(lambda p=port: "PONG" in self.cli(p, "ping"))
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in self.ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        for port in self.ports:
            self._wait(lambda p=port: "cluster_state:ok" in self.cli(p, "cluster", "info"))

    @staticmethod
    def _wait(predicate: object, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if predicate():  # type: ignore[operator]
                    return
            except (subprocess.SubprocessError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("redis cluster did not come up")
            time.sleep(0.1)

    def kill(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()
        self.procs.clear()

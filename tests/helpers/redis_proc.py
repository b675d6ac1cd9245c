"""A real `redis-server` on a free loopback port, which a test can kill and restart."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

_SETPRIV = shutil.which("setpriv")  # util-linux


def orphan_guarded(argv: list[str]) -> list[str]:
    """`argv` run so that the child is stopped (SIGTERM) when the test process is killed (pytest-timeout, a
    killed run), and no gateway or redis-server outlives its test: through util-linux's `setpriv
    --pdeathsig`, which asks Linux for that signal and execs the command (the same pid). Not a `preexec_fn`:
    with one, `subprocess` forks with the interpreter's locks taken (the import lock, the GIL dance), which
    deadlocked a worker whose other threads (the in-process fakesnow server) held them. Linux ties the
    signal to the thread that forked, so only children started on the main thread get it."""
    if _SETPRIV is None or threading.current_thread() is not threading.main_thread():
        return argv
    return [_SETPRIV, "--pdeathsig", "TERM", "--", *argv]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisProcess:
    """One redis-server process with no persistence, owned by a test."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.proc = subprocess.Popen(
            orphan_guarded(
                [
                    binary,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.workdir),
                ]
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120  # an upper bound on the wait; a loaded machine may be slow
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def kill(self) -> None:
        """Stop the server abruptly (SIGKILL), as an outage would."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def restart(self) -> None:
        self.kill()
        self.start()

"""Safe by default: HTTP on a non-loopback address needs auth, or an explicit --insecure-no-auth."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gateway.auth.keys import hash_token
from tests.gateway.security.conftest import ALICE, secured_config
from tests.helpers import local_http
from tests.helpers.procs import ROOT, child_env, stdio_echo_server, stop, wait_http, write_config
from tests.helpers.redis_proc import free_port


def serve(config: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--transport", "http", *args],
        cwd=ROOT,
        env=child_env(ECHO_API_TOKEN="x" * 16),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_non_loopback_bind_without_auth_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"local": stdio_echo_server()})
    for host in ("0.0.0.0", "::", "192.0.2.10", "example.com"):
        proc = serve(config, "--host", host, "--port", str(free_port()))
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 2, host
        assert "without authentication" in err and "gateway.auth" in err and "--insecure-no-auth" in err


def test_insecure_flag_or_auth_allows_it(tmp_path: Path) -> None:
    open_config = write_config(tmp_path, {"local": stdio_echo_server()})
    port = free_port()
    proc = serve(open_config, "--host", "0.0.0.0", "--port", str(port), "--insecure-no-auth")
    try:
        wait_http(f"http://127.0.0.1:{port}/ready", proc)  # type: ignore[arg-type]
    finally:
        stop(proc)  # type: ignore[arg-type]
    port = free_port()
    proc = serve(secured_config(tmp_path, with_leaky=False), "--host", "0.0.0.0", "--port", str(port))
    try:
        wait_http(f"http://127.0.0.1:{port}/ready", proc)  # type: ignore[arg-type]
        assert local_http.get(f"http://127.0.0.1:{port}/metrics").status_code == 401
        assert local_http.get(
            f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {ALICE}"}
        ).is_success
    finally:
        stop(proc)  # type: ignore[arg-type]


def test_keyless_client_and_bad_hash_exit_2(tmp_path: Path) -> None:
    for auth, expected in [
        ({"clients": {"alice": {}}}, "$.gateway.auth.clients.alice: no token"),
        ({"clients": {"alice": {"token_sha256": "abc"}}}, "$.gateway.auth.clients.alice.token_sha256"),
        (
            {"clients": {"a": {"token_sha256": hash_token(ALICE)}, "b": {"token_sha256": hash_token(ALICE)}}},
            "the same token hash",
        ),
    ]:
        config = write_config(tmp_path, {"local": stdio_echo_server()}, {"auth": auth})
        proc = serve(config)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 2 and expected in err, err


def test_hash_token_command() -> None:
    made = subprocess.run(
        [sys.executable, "-m", "gateway", "hash-token"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=child_env(),
        timeout=30,
    )
    lines = made.stdout.splitlines()
    token = lines[0].rsplit(" ", 1)[1]
    digest = lines[1].rsplit(" ", 1)[1]
    assert len(token) >= 40 and hash_token(token) == digest
    hashed = subprocess.run(
        [sys.executable, "-m", "gateway", "hash-token", "--stdin"],
        input=token + "\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=child_env(),
        timeout=30,
    )
    assert hashed.stdout.strip() == digest
    weak = subprocess.run(
        [sys.executable, "-m", "gateway", "hash-token", "--stdin"],
        input="hunter2\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=child_env(),
        timeout=30,
    )
    assert weak.returncode == 2

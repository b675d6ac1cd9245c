"""`GET /status` end to end: a real gateway with two clients of different allow lists, loaded in headless
Chromium (Debian's `chromium` and `chromium-driver`, driven by selenium), with a screenshot in the test's tmp
dir; the page's auth and Origin rules are those of `/metrics`, and each client sees only what it may call,
including the figures a backend publishes (ai_memory's tiers and index lag, through its statusTool)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.auth.keys import hash_token
from tests.gateway.security.conftest import ALICE, BOB, rpc
from tests.helpers import local_http
from tests.helpers.procs import GatewayProcess, stdio_echo_server, write_config
from tests.ops.test_published import figures_until, memory_server

SECRET_ARGUMENT = "never-shown-7c1d"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    auth = {
        "clients": {
            "alice": {"token_sha256": hash_token(ALICE), "deny": ["local_add"]},
            "bob": {"token_sha256": hash_token(BOB), "allow": ["local_echo"]},
        }
    }
    tmp = tmp_path_factory.mktemp("status")
    servers = {"local": stdio_echo_server(), "other": stdio_echo_server(), "memory": memory_server(tmp / "data")}
    process = GatewayProcess(write_config(tmp, servers, {"auth": auth, "status_interval": 0.5}))
    try:
        for token, tool in ((ALICE, "local_echo"), (ALICE, "other_echo"), (BOB, "local_echo")):
            rpc(process, "tools/call", {"name": tool, "arguments": {"text": SECRET_ARGUMENT}}, token=token)
        rpc(process, "tools/call", {"name": "local_add", "arguments": {"a": 1, "b": 2}}, token=ALICE)  # denied
        yield process
    finally:
        process.stop()


def page(gateway: GatewayProcess, token: str | None, **headers: str) -> httpx.Response:
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return local_http.get(gateway.base + "/status", headers=headers, timeout=10)


def test_the_page_shows_each_client_what_it_may_see(gateway: GatewayProcess) -> None:
    alice = page(gateway, ALICE)
    assert alice.status_code == 200 and alice.headers["content-type"].startswith("text/html")
    assert '<meta http-equiv="refresh"' in alice.text
    assert "local_echo" in alice.text and "other_echo" in alice.text
    assert "local_add" not in alice.text  # denied to alice: neither as a tool nor as a call
    assert SECRET_ARGUMENT not in alice.text  # arguments are never shown
    bob = page(gateway, BOB).text
    assert "local_echo" in bob and "other" not in bob and "local_whoami" not in bob
    assert "memory" not in bob and "l2.index_lag" not in bob  # nor the figures of a backend it may not see


def test_the_page_has_the_rules_of_metrics(gateway: GatewayProcess) -> None:
    assert page(gateway, None).status_code == 401
    assert page(gateway, "not-a-token").status_code == 401
    assert page(gateway, ALICE, Origin="http://evil.example").status_code == 403
    assert local_http.get(gateway.base + "/metrics", headers={"Origin": "http://evil.example"}).status_code == 403


CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.mark.skipif(CHROMIUM is None or DRIVER is None, reason="Debian's chromium and chromium-driver not installed")
def test_the_page_in_headless_chromium(gateway: GatewayProcess, tmp_path: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,900"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=str(DRIVER)), options=options)
    try:
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Bearer {ALICE}"}})
        figures_until(gateway, lambda f: "l3.outbox_pending" in f)  # polled once at least
        driver.get(gateway.base + "/status")
        assert driver.title == "mcp-gateway status"
        rows = driver.find_elements(By.CSS_SELECTOR, "#backends tbody tr")
        backends = {row.find_elements(By.TAG_NAME, "td")[0].text: row.text for row in rows}
        assert set(backends) == {"local", "other", "memory"}
        assert all(" up " in f" {text} " for text in backends.values())
        # what ai_memory publishes (statusTool): its tiers and its index lag
        published = driver.find_element(By.CSS_SELECTOR, '#published section[data-backend="memory"]')
        shown = {
            cells[0].text: cells[1].text
            for cells in (
                row.find_elements(By.TAG_NAME, "td") for row in published.find_elements(By.CSS_SELECTOR, "tr")
            )
            if len(cells) == 2
        }
        assert shown["l1.backend"] == "local-lru" and shown["l2.embedder"].startswith("hash")
        assert shown["l3.backend"] == "sqlite" and shown["l3.reachable"] == "yes"
        assert shown["l2.index_lag.pending"] == "0" and shown["l3.outbox_pending"] == "0"
        recent = driver.find_element(By.ID, "recent").text
        assert "local_echo" in recent and "alice" in recent
        screenshot = tmp_path / "status.png"
        assert driver.save_screenshot(str(screenshot))
        assert screenshot.stat().st_size > 1000
    finally:
        driver.quit()

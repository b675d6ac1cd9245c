"""Logs come in one format (issue 16, point 8): every line the gateway writes to stderr is in the chosen
format, text or JSON: its own records, FastMCP's and the SDK's, the in-process servers', the audit lines
and the stdio backends' stderr (each backend message one record, with the server's name; a multi-line
message or traceback one record, not one per line). A call that fails only for missing credentials is one
warning naming the vendor and the variable, not FastMCP's `Error calling tool`."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.ops import logs
from tests.gateway.security.conftest import rpc
from tests.helpers.procs import ROOT, GatewayProcess, child_env, stdio_echo_server, write_config

TEXT_HEAD = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+( \[[^]]+\])?: "
)
EXCEPTION_LINE = re.compile(r"^[\w.]+(Error|Exception): ")


def _servers() -> dict[str, Any]:
    noisy = stdio_echo_server()
    noisy["args"] = ["-m", "tests.backends.noisy"]
    hubspot = {"command": "python", "args": ["-m", "servers.hubspot"], "env": {"HUBSPOT_ACCESS_TOKEN": ""}}
    return {
        "local": stdio_echo_server(),
        "noisy": noisy,
        "hubspot": {**hubspot, "inProcess": True},  # in the gateway's process
        "crm": {**hubspot, "env": {"HUBSPOT_ACCESS_TOKEN": "", "PYTHONPATH": str(ROOT)}},  # a child process
    }


def _run(tmp_path: Path, log_format: str) -> str:
    """A gateway logging in `log_format` (audit to stderr) through calls that log multi-line messages and
    a call refused for missing credentials, in process and in a child; its whole stderr."""
    gateway = GatewayProcess(
        write_config(tmp_path, _servers()),
        MCP_GATEWAY_LOG_FORMAT=log_format,
        MCP_GATEWAY_LOG_LEVEL="INFO",
        FASTMCP_LOG_LEVEL="INFO",
    )
    try:
        for tool in ("noisy_shout", "noisy_crash", "hubspot_search_contacts", "crm_search_contacts", "local_echo"):
            arguments = {"text": "hi"} if tool == "local_echo" else {}
            assert rpc(gateway, "tools/call", {"name": tool, "arguments": arguments}).status_code == 200
    finally:
        log = gateway.stop()
    return log


def test_json_logs_every_line_a_record_and_one_record_per_backend_message(tmp_path: Path) -> None:
    log = _run(tmp_path, "json")
    records = [json.loads(line) for line in log.splitlines() if line.strip()]  # every line is one JSON object
    assert all({"ts", "level", "logger", "message"} <= r.keys() for r in records), records
    noisy = [r for r in records if r["logger"] == "mcp_gateway.backend.noisy"]
    assert all(r["server"] == "noisy" for r in noisy)
    [logged] = [r for r in noisy if "lookup failed" in r["message"]]  # the message and its traceback: one record
    assert logged["level"] == "ERROR"
    assert "Traceback (most recent call last):" in logged["message"]
    assert "ValueError: the lookup table is empty" in logged["message"]
    [two_lines] = [r for r in noisy if "first line of one message" in r["message"]]
    assert "and its indented second line" in two_lines["message"]
    [crashed] = [r for r in noisy if "Error calling tool 'crash'" in r["message"]]
    assert "RuntimeError: noisy crashed" in crashed["message"]
    assert not [r for r in noisy if r["message"].lstrip().startswith(("File ", "Traceback", "ValueError"))]
    # the built-in servers log JSON records under the gateway: relayed with their level and logger
    starting = [r for r in records if r["logger"] == "mcp_gateway.backend.local" and "Starting" in r["message"]]
    assert starting and all("transport 'stdio'" in r["message"] for r in starting)
    audit = [r for r in records if r["logger"] == "mcp_gateway.audit"]
    assert {r["tool"] for r in audit} >= {"noisy_shout", "local_echo"}
    _one_warning_per_missing_credential(records)


def test_text_logs_every_line_in_the_gateways_format(tmp_path: Path) -> None:
    log = _run(tmp_path, "text")
    lines = [line for line in log.splitlines() if line.strip()]
    for line in lines:
        assert not line.startswith("{"), f"a raw JSON line: {line}"
        continuation = line[0] in " \t" or line.startswith("Traceback") or EXCEPTION_LINE.match(line)
        assert TEXT_HEAD.match(line) or continuation, f"a line not in the gateway's format: {line!r}"
    assert any(" INFO mcp_gateway.audit" in line and "tools/call local_echo: ok" in line for line in lines)
    # a backend's messages carry its name; a multi-line one continues under its first line
    at = next(i for i, line in enumerate(lines) if "ERROR mcp_gateway.backend.noisy: ERROR:noisy:lookup failed" in line)
    assert lines[at + 1] == "Traceback (most recent call last):"
    assert any("INFO mcp_gateway.backend.noisy: noisy: first line of one message" in line for line in lines)
    assert any("INFO mcp_gateway.backend.local: " in line and "Starting MCP server" in line for line in lines)
    records = [
        {"level": head[1], "message": line[head.end() :], "logger": line.split()[3].rstrip(":")}
        for line in lines
        if (head := TEXT_HEAD.match(line))
    ]
    _one_warning_per_missing_credential(records)


def _one_warning_per_missing_credential(records: list[dict[str, Any]]) -> None:
    """The in-process server's refused call and the child's: each one warning naming the vendor and the
    variable; no `Error calling tool` for them."""
    missing = [r for r in records if "HUBSPOT_ACCESS_TOKEN" in r["message"]]
    assert [r["level"] for r in missing] == ["WARNING", "WARNING"], missing
    assert all("HubSpot" in r["message"] and "missing credentials" in r["message"] for r in missing)
    assert sorted(r["logger"] for r in missing) == ["mcp_gateway.backend.crm", "servers.credentials"], missing
    assert not [r for r in records if "Error calling tool 'search_contacts'" in r["message"]]


# ------------------------------------------------------------------ how a backend's stderr is cut into messages

_HEAD = st.from_regex(r"[A-Za-z][A-Za-z0-9 :'.,=-]{0,40}", fullmatch=True).filter(
    lambda line: not line.startswith("Traceback") and not EXCEPTION_LINE.match(line) and line.strip() == line
)
# an indented continuation line with something on it (a blank one at a message's end is dropped as padding)
_MORE = st.from_regex(r"[ \t]{1,4}[A-Za-z0-9:'.,=-][A-Za-z0-9 :'.,=-]{0,39}", fullmatch=True)
_MESSAGE = st.tuples(_HEAD, st.lists(_MORE, max_size=4)).map(lambda m: "\n".join([m[0], *m[1]]))
_JSON = st.builds(
    lambda text, level: json.dumps({"ts": "t", "level": level, "logger": "x.y", "message": text}),
    st.text(max_size=30),
    st.sampled_from(["DEBUG", "INFO", "WARNING", "ERROR"]),
)


def _relayed(data: bytes, cuts: list[int]) -> list[tuple[str, int | None, dict[str, Any], str | None]]:
    """What `_Messages` emits for `data` read in the chunks `cuts` makes, then left quiet."""
    emitted: list[tuple[str, int | None, dict[str, Any], str | None]] = []
    messages = logs._Messages(
        "b", lambda name, message, level, fields, exc: emitted.append((message, level, fields, exc))
    )
    at = 0
    for cut in [*sorted(cuts), len(data)]:
        messages.feed(data[at:cut], now=0.0)
        at = max(at, cut)
    messages.idle(now=1.0)
    return emitted


@given(st.lists(st.one_of(_MESSAGE, _JSON), max_size=8), st.lists(st.integers(0, 2000), max_size=6))
def test_each_message_is_one_record_however_the_pipe_is_read(entries: list[str], cuts: list[int]) -> None:
    data = "".join(entry + "\n" for entry in entries).encode()
    emitted = _relayed(data, cuts)
    expected = [json.loads(e)["message"] if e.startswith("{") else e for e in entries]
    assert [message for message, *_ in emitted] == expected


def test_a_traceback_with_its_cause_is_one_record_and_an_error() -> None:
    traceback = (
        "lookup failed\n"
        "Traceback (most recent call last):\n"
        '  File "x.py", line 1, in <module>\n'
        "KeyError: 'a'\n"
        "\n"
        "During handling of the above exception, another exception occurred:\n"
        "\n"
        "Traceback (most recent call last):\n"
        '  File "x.py", line 3, in <module>\n'
        "ValueError: no a\n"
    )
    emitted = _relayed((traceback + "next message\n").encode(), [17, 60])
    assert [message for message, *_ in emitted] == [traceback.rstrip("\n"), "next message"]
    assert logs._level_of(emitted[0][0]) == logging.ERROR
    assert logs._level_of("WARNING:x:careful") == logging.WARNING


LOGS_UNDER_A_REQUEST_ID = """
import logging, os
from gateway.guard.redaction import Redactor
from gateway.ops import logs
logs.setup(os.environ)
logs.install_log_redaction(Redactor(["sekret-request-id-1234"]))
logs.request_id.set("sekret-request-id-1234")  # as the HTTP entry sets a client's own X-Request-Id
logging.getLogger("mcp_gateway.test").warning("a line written during the request")
"""


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_clients_own_request_id_is_scrubbed_on_every_log_line(log_format: str) -> None:
    """A client chooses its `X-Request-Id`; every line written under it carries it, scrubbed like the message
    (it was scrubbed on the audit line only, and reached ordinary log lines as sent)."""
    done = subprocess.run(
        [sys.executable, "-c", LOGS_UNDER_A_REQUEST_ID],
        cwd=ROOT,
        env=child_env(MCP_GATEWAY_LOG_FORMAT=log_format, MCP_GATEWAY_LOG_LEVEL="INFO"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    [line] = [line for line in done.stderr.splitlines() if "a line written during the request" in line]
    assert "sekret-request-id-1234" not in line
    assert "[REDACTED]" in (line if log_format == "text" else json.loads(line)["request_id"])

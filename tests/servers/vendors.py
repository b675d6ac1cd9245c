"""A local HTTP server standing in for Slack, Gong and HubSpot, for backends that run as their own process.

Payloads are shaped as the vendors' specs (`shared/specs`) and reference docs show them. Each vendor lives
under a prefix (`/slack/api`, `/gong`, `/hubspot`), so one server gives the three base URLs. The test
edits `VendorData` between runs and reads `requests` to check what was sent.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

ACME_ID = "9001"
PORTAL = 4455


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    status: int

    def as_httpx(self, base: str) -> httpx.Request:
        """The request as httpx would have sent it, for the spec checker."""
        content = json.dumps(self.body).encode() if self.body is not None else b""
        return httpx.Request(self.method, base + self.path, params=self.query, content=content)


@dataclass
class VendorData:
    """What the three vendors hold; tests change it between ingests."""

    channel: str = "C0ACME"
    messages: list[dict[str, Any]] = field(default_factory=list)
    replies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)
    calls: list[dict[str, Any]] = field(default_factory=list)
    transcripts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    companies: list[dict[str, Any]] = field(default_factory=list)
    notes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    owners: dict[str, dict[str, Any]] = field(default_factory=dict)
    page_size: int = 2
    slow: dict[str, float] = field(default_factory=dict)
    """Seconds `conversations.history` of a channel waits before answering."""
    fail_once: dict[str, int] = field(default_factory=dict)
    """`{"slack-history-page-2": seconds}`: that request is answered 429 with `Retry-After: seconds` once."""


def slack_message(ts: str, user: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "message", "user": user, "text": text, "ts": ts, "team": "T0GHOST", **extra}


class VendorServer:
    def __init__(self, data: VendorData) -> None:
        self.data = data
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        handler = self._handler()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def env(self) -> dict[str, str]:
        """The vendor credentials and base URLs, as config/mcp.json passes them."""
        return {
            "SLACK_BOT_TOKEN": "xoxb-test-bot-token",
            "SLACK_API_BASE": self.base + "/slack/api",
            "GONG_ACCESS_KEY": "GONGKEY",
            "GONG_ACCESS_KEY_SECRET": "gong-secret",
            "GONG_API_BASE": self.base + "/gong",
            "HUBSPOT_ACCESS_TOKEN": "pat-na1-test",
            "HUBSPOT_API_BASE": self.base + "/hubspot",
        }

    def seen(self, vendor: str, path: str) -> list[Seen]:
        with self._lock:
            return [r for r in self.requests if r.path == f"/{vendor}{path}" or r.path.startswith(f"/{vendor}{path}")]

    # -- routing ---------------------------------------------------------------------------------
    def answer(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, dict[str, str], Any]:
        d = self.data
        if path.startswith("/slack/api/"):
            return self.slack(path.removeprefix("/slack/api/"), query)
        if path.startswith("/gong/"):
            return self.gong(path.removeprefix("/gong"), body)
        if path.startswith("/hubspot/"):
            return self.hubspot(method, path.removeprefix("/hubspot"), body)
        return 404, {}, {"error": "unknown", "path": path, "data": bool(d)}

    def _fail_once(self, key: str) -> int | None:
        with self._lock:
            return self.data.fail_once.pop(key, None)

    def slack(self, method: str, q: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        d = self.data
        if method == "conversations.info":
            name = "acme-deal" if q["channel"] == d.channel else q["channel"].lower()
            return 200, {}, {"ok": True, "channel": {"id": q["channel"], "name": name, "is_channel": True}}
        if method == "users.info":
            name = d.users.get(q["user"], q["user"])
            return 200, {}, {"ok": True, "user": {"id": q["user"], "name": name.lower(), "real_name": name}}
        if method == "chat.getPermalink":
            ts = q["message_ts"]
            url = f"https://acme-team.slack.com/archives/{q['channel']}/p{ts.replace('.', '')}"
            return 200, {}, {"ok": True, "channel": q["channel"], "permalink": url}
        if method in ("conversations.history", "conversations.replies"):
            if method == "conversations.history" and q["channel"] in d.slow:
                time.sleep(d.slow[q["channel"]])
            if method == "conversations.history":
                oldest = float(q.get("oldest") or 0)
                items = sorted((m for m in d.messages if float(m["ts"]) > oldest), key=lambda m: -float(m["ts"]))
            else:
                items = d.replies.get(q["ts"], [])
            start = int(q.get("cursor") or 0)
            page = items[start : start + d.page_size]
            more = start + d.page_size < len(items)
            wait = self._fail_once(f"slack-history-page-{start // d.page_size + 1}") if start else None
            if wait is not None:
                return 429, {"Retry-After": str(wait)}, {"ok": False, "error": "ratelimited"}
            meta = {"next_cursor": str(start + d.page_size) if more else ""}
            return 200, {}, {"ok": True, "messages": page, "has_more": more, "response_metadata": meta}
        return 200, {}, {"ok": False, "error": "unknown_method"}

    def gong(self, path: str, body: Any) -> tuple[int, dict[str, str], Any]:
        d = self.data
        if path == "/v2/calls/extensive":
            since, until = body["filter"].get("fromDateTime", ""), body["filter"].get("toDateTime")
            calls = [
                c
                for c in d.calls
                if _after_or_at(c["metaData"]["started"], since)
                and not (until and _after_or_at(c["metaData"]["started"], until))
            ]
            if not calls:
                return 404, {}, {"requestId": "r0", "errors": ["No calls found corresponding to the provided filters"]}
            records = {"totalRecords": len(calls), "currentPageSize": len(calls), "currentPageNumber": 0}
            return 200, {}, {"requestId": "r1", "records": records, "calls": calls}
        if path == "/v2/calls/transcript":
            ids = body["filter"].get("callIds") or []
            found = [{"callId": i, "transcript": d.transcripts[i]} for i in ids if i in d.transcripts]
            records = {"totalRecords": len(found), "currentPageSize": len(found), "currentPageNumber": 0}
            return 200, {}, {"requestId": "r2", "records": records, "callTranscripts": found}
        return 404, {}, {"requestId": "r", "errors": ["not found"]}

    def hubspot(self, method: str, path: str, body: Any) -> tuple[int, dict[str, str], Any]:
        d = self.data
        if path == "/account-info/v3/details":
            return 200, {}, {"portalId": PORTAL, "uiDomain": "app.hubspot.com", "timeZone": "US/Eastern"}
        if path == "/crm/v3/objects/companies/search":
            groups = body.get("filterGroups") or []
            since = min((int(f["value"]) for g in groups for f in g["filters"]), default=None)
            rows = [c for c in d.companies if since is None or _modified_ms(c) > since]
            return 200, {}, {"total": len(rows), "results": rows}
        if path.startswith("/crm/v4/objects/companies/") and path.endswith("/associations/notes"):
            company = path.split("/")[5]
            results = [
                {"toObjectId": int(n["id"]), "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": 189}]}
                for n in d.notes.get(company, [])
            ]
            return 200, {}, {"results": results}
        if path in ("/crm/v3/objects/notes/batch/read", "/crm/v3/objects/companies/batch/read"):
            wanted = {i["id"] for i in body["inputs"]}
            pool = d.companies if "companies" in path else [n for notes in d.notes.values() for n in notes]
            rows = [r for r in pool if r["id"] in wanted]
            stamp = "2026-03-01T00:00:00.000Z"
            return 200, {}, {"status": "COMPLETE", "results": rows, "startedAt": stamp, "completedAt": stamp}
        if path.startswith("/crm/v3/owners/"):
            owner = d.owners.get(path.rsplit("/", 1)[1])
            return (200, {}, owner) if owner else (404, {}, {"status": "error", "message": "no owner"})
        return 404, {}, {"status": "error", "message": f"unknown {method} {path}", "category": "OBJECT_NOT_FOUND"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                query = dict(parse_qsl(url.query))
                status, headers, payload = server.answer(self.command, url.path, query, body)
                with server._lock:
                    server.requests.append(Seen(self.command, url.path, query, body, status))
                out = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        return Handler


def _after_or_at(started: str, since: str) -> bool:
    from datetime import datetime

    if not since:
        return True
    return datetime.fromisoformat(started.replace("Z", "+00:00")) >= datetime.fromisoformat(
        since.replace("Z", "+00:00")
    )


def _modified_ms(company: dict[str, Any]) -> int:
    from datetime import datetime

    props = company["properties"]
    stamps = [props.get("hs_lastmodifieddate"), props.get("notes_last_updated")]
    return max(int(datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() * 1000) for s in stamps if s)


@contextmanager
def vendor_server(data: VendorData) -> Iterator[VendorServer]:
    server = VendorServer(data)
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def revenue_team() -> VendorData:
    """One account's story across the three systems (Acme pushed back on price), and some noise."""
    d = VendorData()
    d.users = {"U01DANA": "Dana Lee", "U02SAM": "Sam Ortiz"}
    d.messages = [
        slack_message(
            "1767225600.000100",
            "U01DANA",
            "Acme's procurement pushed back on the 12% price increase; they want a three-year lock at current pricing.",
            thread_ts="1767225600.000100",
            reply_count=1,
        ),
        slack_message("1767312000.000300", "U02SAM", "Team lunch on Friday at the taco place, who is in?"),
        slack_message("1767398400.000400", "U01DANA", "Acme asked for SSO and SCIM before their security review."),
    ]
    pdf = {
        "id": "F0PRICING",
        "name": "acme-pricing.pdf",
        "title": "Acme pricing",
        "mimetype": "application/pdf",
        "filetype": "pdf",
        "size": 52344,
        "permalink": "https://acme-team.slack.com/files/U02SAM/F0PRICING/acme-pricing.pdf",
    }
    d.replies = {
        "1767225600.000100": [
            d.messages[0],
            slack_message(
                "1767225700.000200",
                "U02SAM",
                "I can offer a 5% multi-year discount if they sign by March.",
                thread_ts="1767225600.000100",
                parent_user_id="U01DANA",
                files=[pdf],
            ),
        ]
    }

    def call(call_id: str, title: str, started: str, account: str, parties: list[dict[str, Any]]) -> dict[str, Any]:
        meta = {
            "id": call_id,
            "url": f"https://app.gong.io/call?id={call_id}",
            "title": title,
            "scheduled": started,
            "started": started,
            "duration": 1800,
            "primaryUserId": "234599484848423",
            "direction": "Conference",
            "system": "Zoom",
            "scope": "External",
            "media": "Video",
            "language": "eng",
            "workspaceId": "623457276584334",
            "isPrivate": False,
        }
        context = [
            {
                "system": "Salesforce",
                "objects": [
                    {
                        "objectType": "Account",
                        "objectId": f"001{call_id[-4:]}",
                        "fields": [{"name": "Name", "value": account}],
                        "timing": "Now",
                    }
                ],
            }
        ]
        return {"metaData": meta, "context": context, "parties": parties}

    def party(pid: str, name: str, affiliation: str, speaker: str) -> dict[str, Any]:
        email = f"{name.split()[0].lower()}@{'acme.example' if affiliation == 'External' else 'us.example'}"
        return {
            "id": pid,
            "emailAddress": email,
            "name": name,
            "title": "VP Procurement" if affiliation == "External" else "Account Executive",
            "userId": None if affiliation == "External" else "234599484848423",
            "speakerId": speaker,
            "affiliation": affiliation,
            "methods": ["Invitee"],
        }

    def turn(speaker: str, start: int, *sentences: str) -> dict[str, Any]:
        return {
            "speakerId": speaker,
            "topic": "Pricing",
            "sentences": [
                {"start": start + i * 4000, "end": start + i * 4000 + 3500, "text": s} for i, s in enumerate(sentences)
            ],
        }

    d.calls = [
        call(
            "7782342274025937895",
            "Acme renewal pricing review",
            "2026-01-05T15:01:02Z",
            "Acme",
            [party("p1", "Ann Buyer", "External", "s1"), party("p2", "Rita Rep", "Internal", "s2")],
        ),
        call(
            "5511223344556677889",
            "Globex onboarding kickoff",
            "2026-01-07T16:00:00Z",
            "Globex",
            [party("p3", "Gil Globex", "External", "s3"), party("p4", "Rita Rep", "Internal", "s4")],
        ),
    ]
    d.transcripts = {
        "7782342274025937895": [
            turn("s2", 0, "Thanks for joining.", "Let's walk through the renewal quote."),
            turn(
                "s1",
                9000,
                "Honestly the price is our biggest concern.",
                "The renewal is too expensive compared with last year.",
            ),
            turn("s2", 18000, "Okay."),  # too short to remember
            turn("s2", 20000, "Understood, we can look at a multi-year discount."),
        ],
        "5511223344556677889": [
            turn("s3", 0, "The weather in Springfield has been lovely this week."),
            turn("s4", 6000, "Great, let's schedule the data migration workshop."),
        ],
    }
    d.companies = [
        {
            "id": ACME_ID,
            "properties": {
                "name": "Acme",
                "domain": "acme.com",
                "industry": "COMPUTER_SOFTWARE",
                "city": "Boston",
                "hs_object_id": ACME_ID,
                "hs_lastmodifieddate": "2026-01-10T10:00:00Z",
                "notes_last_updated": "2026-01-09T10:00:00Z",
                "hubspot_owner_id": "77",
            },
            "createdAt": "2025-06-01T10:00:00Z",
            "updatedAt": "2026-01-10T10:00:00Z",
            "archived": False,
        }
    ]

    def note(note_id: str, body: str, stamp: str) -> dict[str, Any]:
        props = {"hs_note_body": body, "hs_timestamp": stamp, "hubspot_owner_id": "77", "hs_object_id": note_id}
        return {"id": note_id, "properties": props, "createdAt": stamp, "updatedAt": stamp, "archived": False}

    d.notes = {
        ACME_ID: [
            note(
                "501",
                "<p>QBR: Acme pushed back on pricing and asked for a 15% discount on the renewal.</p>",
                "2026-01-08T14:00:00Z",
            ),
            note("502", "<p>Sent the SOC 2 report to Acme&#39;s security team.</p>", "2026-01-09T10:00:00Z"),
        ]
    }
    d.owners = {
        "77": {
            "id": "77",
            "email": "rita@us.example",
            "firstName": "Rita",
            "lastName": "Rep",
            "userId": 9,
            "archived": False,
        }
    }
    return d

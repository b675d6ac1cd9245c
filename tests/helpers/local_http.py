"""Plain-HTTP requests to the processes a test started on 127.0.0.1.

httpx's module functions (`httpx.get`, `httpx.post`) build a client per request, and a client that verifies
TLS loads the CA bundle first: about 20 ms of CPU, more than the request itself. Polling loops (waiting for
`/ready`, for a `/health` condition) paid it 10-20 times a second while the gateway they waited for needed the
CPU to start. Nothing here speaks TLS, so these skip loading the bundle; otherwise they are httpx's functions.
"""

from __future__ import annotations

from typing import Any

import httpx


def request(method: str, url: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, url, verify=False, **kwargs)


def get(url: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(url, verify=False, **kwargs)


def post(url: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(url, verify=False, **kwargs)


def delete(url: str, **kwargs: Any) -> httpx.Response:
    return httpx.delete(url, verify=False, **kwargs)


def async_client(**kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(verify=False, **kwargs)

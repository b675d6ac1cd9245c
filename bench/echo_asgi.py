"""The bare limit: a JSON-RPC `tools/call` echo as a plain ASGI app, served like the gateway (uvicorn with
uvloop and httptools). It decodes the request, builds the same result shape and encodes it, nothing else,
so the gateway's cached figure can be printed as a ratio of what Python can serve on this machine.

`python -m bench.echo_asgi PORT`
"""

from __future__ import annotations

import json
import sys
from typing import Any

_HEADERS = [(b"content-type", b"application/json")]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
        return
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    request = json.loads(b"".join(chunks))
    text = request["params"]["arguments"]["text"]
    result = {"content": [{"type": "text", "text": text}], "isError": False, "resultType": "complete"}
    body = json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": result}, separators=(",", ":")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [*_HEADERS, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )

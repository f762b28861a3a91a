"""The floor for an HTTP MCP proxy on this stack: starlette + uvicorn (httptools, uvloop) +
httpx2 forwarding each POST with no policy at all. bench_http.py measures it beside
mcp-defense so the cost of the hop and the cost of the policy can be told apart.

    python benchmarks/bare_http_proxy.py UPSTREAM_URL PORT
"""

from __future__ import annotations

import sys

import httpx2
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

UPSTREAM, PORT = sys.argv[1], int(sys.argv[2])
client = httpx2.AsyncClient(timeout=None)
DROP = {"host", "content-length", "connection", "transfer-encoding"}


async def forward(request: Request) -> Response:
    body = await request.body()
    headers = {k: v for k, v in request.headers.items() if k not in DROP}
    r = await client.post(UPSTREAM, content=body, headers=headers)
    back = {k: v for k, v in r.headers.items() if k not in DROP}
    return Response(r.content, r.status_code, headers=back)


app = Starlette(routes=[Route("/mcp", forward, methods=["POST"])])
uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="warning", http="httptools", loop="uvloop")

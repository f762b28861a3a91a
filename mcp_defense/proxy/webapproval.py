"""Approval without a terminal: a small page served by the HTTP proxy itself.

An HTTP proxy (or a stdio proxy launched by an IDE) has no tty to ask on. With `--approval`,
each `require_approval` decision waits here, listed on `/_mcp-defense/approvals` (same
loopback port, same Host/Origin checks, and a token of its own in the page's URL) until a
person approves or rejects it. No answer within the timeout is a rejection, as is a proxy
shutting down: fail closed. Each answer becomes the decision event's `approval` and reason.
"""

from __future__ import annotations

import asyncio
import hmac
import html
import json
import secrets
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from mcp_defense.proxy.session import AskApproval
from mcp_defense.proxy.web import Guard

PAGE = "/_mcp-defense/approvals"


@dataclass
class _Pending:
    id: str
    session_id: str
    tool: str
    arguments: Any
    rule: str
    reason: str
    correlation_id: str
    asked: float = field(default_factory=time.time)
    future: asyncio.Future[tuple[bool, str]] | None = None


class Approvals:
    """The pending approvals of one proxy and the page that answers them."""

    def __init__(self, guard: Guard, timeout_s: float, token: str | None = None) -> None:
        self.guard = guard
        self.timeout_s = timeout_s
        self.token = token or secrets.token_urlsafe(24)
        self.pending: dict[str, _Pending] = {}
        self.page_url = ""  # set by the CLI once the address is known; printed on first ask
        self._told = False

    async def ask(self, session_id: str, a: AskApproval) -> tuple[bool, str]:
        p = _Pending(
            secrets.token_hex(8),
            session_id,
            a.tool,
            a.arguments,
            a.decision.rule,
            a.decision.reason,
            a.correlation_id,
        )
        p.future = asyncio.get_running_loop().create_future()
        self.pending[p.id] = p
        if not self._told:
            self._told = True
            print(
                f"mcp-defense: a call needs approval: open {self.page_url}?token={self.token}",
                file=sys.stderr,
            )
        try:
            return await asyncio.wait_for(asyncio.shield(p.future), self.timeout_s)
        except TimeoutError:
            return False, f"approval timed out after {self.timeout_s:g}s: {a.decision.reason}"
        finally:
            self.pending.pop(p.id, None)

    def routes(self) -> list[Route]:
        return [
            Route(PAGE, self.page, methods=["GET"]),
            Route(PAGE + ".json", self.listing, methods=["GET"]),
            Route(PAGE + "/{id}", self.answer, methods=["POST"]),
        ]

    def _refuse(self, request: Request, given: str) -> Response | None:
        refused = self.guard.refuse(request.headers)
        if refused is not None:
            return refused
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return JSONResponse({"error": "mcp-defense: missing or wrong approval token"}, 401)
        return None

    async def listing(self, request: Request) -> Response:
        refused = self._refuse(request, request.query_params.get("token", ""))
        if refused is not None:
            return refused
        return JSONResponse([self._public(p) for p in self.pending.values()])

    async def page(self, request: Request) -> Response:
        token = request.query_params.get("token", "")
        refused = self._refuse(request, token)
        if refused is not None:
            return refused
        rows = "".join(self._row(p, token) for p in self.pending.values())
        body = rows or '<p id="none">No call is waiting for approval.</p>'
        return HTMLResponse(
            _TEMPLATE.replace("{rows}", body),
            headers={"cache-control": "no-store", "content-security-policy": _CSP},
        )

    async def answer(self, request: Request) -> Response:
        form = await request.form()
        token = str(form.get("token", ""))
        refused = self._refuse(request, token)
        if refused is not None:
            return refused
        p = self.pending.get(request.path_params["id"])
        if p is None or p.future is None or p.future.done():
            return JSONResponse({"error": "mcp-defense: no such pending approval"}, 404)
        approved = form.get("decision") == "approve"
        who = "approved" if approved else "rejected"
        p.future.set_result((approved, f"{who} on the approval page: {p.reason}"))
        if "application/json" in request.headers.get("accept", ""):
            return JSONResponse({"id": p.id, "approved": approved})
        return RedirectResponse(f"{PAGE}?token={token}", status_code=303)

    def close(self) -> None:
        """The proxy is stopping: every waiting call is rejected."""
        for p in list(self.pending.values()):
            if p.future is not None and not p.future.done():
                p.future.set_result((False, f"proxy stopped before approval: {p.reason}"))

    @staticmethod
    def _public(p: _Pending) -> dict[str, Any]:
        return {
            "id": p.id,
            "session_id": p.session_id,
            "tool": p.tool,
            "arguments": p.arguments,
            "rule": p.rule,
            "reason": p.reason,
            "correlation_id": p.correlation_id,
            "waiting_s": round(time.time() - p.asked, 1),
        }

    @staticmethod
    def _row(p: _Pending, token: str) -> str:
        args = html.escape(json.dumps(p.arguments, indent=2, ensure_ascii=False)[:4000])
        e = html.escape
        return (
            f'<section class="call" id="call-{e(p.id)}"><h2>{e(p.tool)}</h2>'
            f"<p>rule <code>{e(p.rule)}</code>: {e(p.reason)}</p><pre>{args}</pre>"
            f'<form method="post" action="{PAGE}/{e(p.id)}">'
            f'<input type="hidden" name="token" value="{e(token)}">'
            '<button name="decision" value="approve">Approve</button> '
            '<button name="decision" value="reject">Reject</button></form></section>'
        )


_CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
_TEMPLATE = """<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="3">
<title>mcp-defense: approvals</title>
<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto}
.call{border:1px solid #ccc;border-radius:6px;padding:0 1rem 1rem;margin:1rem 0}
pre{background:#f6f6f6;padding:.5rem;overflow:auto}button{font-size:1rem;margin-right:.5rem}</style>
</head><body><h1>Tool calls waiting for approval</h1>{rows}</body></html>"""

"""An MCP SDK server (stdio) that answers a tool call as a task when the client asks for one
(2025-11-25 task-augmented `tools/call`): the SDK carries the task types, and its extension
interface serves the methods (`tasks/get`, `tasks/result`, `tasks/cancel`, `tasks/list`).
The `leak` tool's result holds a fake AWS key and a private key."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import RequestParams

FAKE_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "QyNTUxOQAAACDe7i8ZfakefakefakefakefakefakefakefakefakeAAAA\n-----END OPENSSH PRIVATE KEY-----"
)


class TaskParams(RequestParams):
    task_id: str


class _Task:
    def __init__(self, ttl: int | None) -> None:
        self.id = f"task-{uuid.uuid4().hex[:12]}"
        self.status = "working"
        self.created = datetime.now(UTC).isoformat()
        self.ttl = ttl
        self.result: HandlerResult = None
        self.done = anyio.Event()

    def wire(self) -> dict[str, Any]:
        return {
            "taskId": self.id,
            "status": self.status,
            "createdAt": self.created,
            "lastUpdatedAt": datetime.now(UTC).isoformat(),
            "ttl": self.ttl,
            "pollInterval": 10,
        }


class Tasks(Extension):
    identifier = "io.modelcontextprotocol/tasks"

    def __init__(self) -> None:
        self.tasks: dict[str, _Task] = {}

    async def middleware(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> Any:
        """A task-augmented tools/call is answered with the task (a middleware owns its
        result: the SDK's result sieve knows only the core 2025-11-25 result shapes)."""
        params = ctx.params
        if ctx.method != "tools/call" or not params or params.get("task") is None:
            return await call_next(ctx)
        ttl = params["task"].get("ttl")
        task = _Task(ttl if type(ttl) is int else None)
        self.tasks[task.id] = task
        plain = {k: v for k, v in params.items() if k != "task"}
        # The work runs to completion here; the requestor learns of it by polling.
        task.result = await call_next(replace(ctx, params=plain))
        task.status = "completed"
        task.done.set()
        return {"task": {**task.wire(), "status": "working"}}

    def methods(self) -> list[MethodBinding]:
        return [
            MethodBinding("tasks/get", TaskParams, self._get),
            MethodBinding("tasks/result", TaskParams, self._result),
            MethodBinding("tasks/cancel", TaskParams, self._cancel),
            MethodBinding("tasks/list", RequestParams, self._list),
        ]

    def _task(self, params: TaskParams) -> _Task:
        task = self.tasks.get(params.task_id)
        if task is None:
            raise MCPError(code=-32602, message=f"no task {params.task_id}")
        return task

    async def _get(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> HandlerResult:
        return self._task(params).wire()

    async def _result(
        self, ctx: ServerRequestContext[Any, Any], params: TaskParams
    ) -> HandlerResult:
        task = self._task(params)
        await task.done.wait()
        body = dict(task.result or {})  # type: ignore[call-overload]
        meta = {"io.modelcontextprotocol/related-task": {"taskId": task.id}}
        return {**body, "_meta": meta}

    async def _cancel(
        self, ctx: ServerRequestContext[Any, Any], params: TaskParams
    ) -> HandlerResult:
        task = self._task(params)
        if task.status == "working":
            task.status = "cancelled"
        return task.wire()

    async def _list(
        self, ctx: ServerRequestContext[Any, Any], params: RequestParams
    ) -> HandlerResult:
        return {"tasks": [t.wire() for t in self.tasks.values()]}


_tasks = Tasks()
server = MCPServer("tasks", extensions=[_tasks], middleware=[_tasks.middleware])


@server.tool()
def leak(name: str) -> str:
    """Read a config file (here: one that holds secrets)."""
    return f"[{name}]\nregion = eu-west-1\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\n{FAKE_KEY}\nok = yes"


@server.tool()
def echo(text: str) -> str:
    """Echo the text."""
    return text


if __name__ == "__main__":
    server.run("stdio")

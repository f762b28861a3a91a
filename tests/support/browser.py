"""A real headless Chromium driven over the DevTools protocol (for the approval page test).

Skips cleanly where Chromium is not installed: `browser()` returns None.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2

from tests.support.http_proxy import free_port, wait_port

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")


def chromium_path() -> str | None:
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


class Page:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self._ids = itertools.count(1)

    def send(self, method: str, **params: Any) -> Any:
        mid = next(self._ids)
        self.ws.send_json({"id": mid, "method": method, "params": params})
        while True:
            msg = self.ws.receive_json(timeout=30)
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(msg["error"])
                return msg.get("result")

    def goto(self, url: str) -> None:
        self.send("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'")

    def eval(self, expression: str) -> Any:
        r = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return r.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.eval(expression):
                return
            time.sleep(0.1)
        raise TimeoutError(expression)


@contextlib.contextmanager
def browser(tmp: Path) -> Iterator[Page | None]:
    exe = chromium_path()
    if exe is None:
        yield None
        return
    port = free_port()
    proc = subprocess.Popen(
        [
            exe,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={tmp / 'chromium'}",
            f"--remote-debugging-port={port}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, proc)  # type: ignore[arg-type]
        targets: list[dict[str, Any]] = []
        for _ in range(100):
            targets = [
                t
                for t in httpx2.get(f"http://127.0.0.1:{port}/json/list").json()
                if t.get("type") == "page"
            ]
            if targets:
                break
            time.sleep(0.1)
        with (
            httpx2.Client(timeout=30) as http,
            http.websocket(
                targets[0]["webSocketDebuggerUrl"], max_message_size_bytes=1 << 24
            ) as ws,
        ):
            page = Page(ws)
            page.send("Page.enable")
            yield page
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        _ = json

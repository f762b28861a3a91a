"""Pinned tool definitions: a rug-pulled tool is seen, and the policy decides.

On the first tool list from a server, each tool's definition (name, title, description, input
and output schemas, annotations) is hashed into a pin file, one per server (its command or
URL), human-readable and meant to be committed. Later lists are compared with it: a tool whose
definition changed, or that was added since, gets the status "changed" or "new" (rules see it
as `call.tool_status`) and a `tool_changed` event, as does a removed tool, until someone
approves the new definitions (`mcp-defense pins approve`). Unchanged tools are "pinned".

The file is written whole and atomically (a temporary file renamed over it), so a reader
never sees half of it and concurrent proxies of one server at worst both write the same pins.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp_defense.resources import state_dir

PINNED, CHANGED, NEW = "pinned", "changed", "new"
_DEFINITION_KEYS = ("name", "title", "description", "inputSchema", "outputSchema", "annotations")


def definition_sha256(tool: dict[str, Any]) -> str:
    """The hash of what a tool says it is (canonical JSON, so key order does not matter)."""
    d = {k: tool[k] for k in _DEFINITION_KEYS if k in tool}
    raw = json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def default_pin_file(server: str) -> Path:
    """One file per server under the state directory, named so a person can tell which."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", server).strip("-")[:60] or "server"
    digest = hashlib.sha256(server.encode()).hexdigest()[:10]
    return state_dir() / "pins" / f"{slug}-{digest}.json"


@dataclass
class Change:
    tool: str
    change: str  # changed | added | removed
    pinned_sha256: str
    seen_sha256: str
    description: str


class PinStore:
    """The pins of one server, read at start and re-read before each comparison (another
    proxy, or `pins approve`, may have changed them)."""

    def __init__(self, path: Path, server: str) -> None:
        self.path = path
        self.server = server

    def load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise PinError(f"pin file {self.path}: {e}") from e
        if not isinstance(data, dict) or not isinstance(data.get("tools", {}), dict):
            raise PinError(f"pin file {self.path}: not a pin file (no 'tools' object)")
        return data

    def save(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".pins-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=2, sort_keys=True, ensure_ascii=False)
                f.write("\n")
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def observe(
        self, tools: Iterable[dict[str, Any]], complete: bool
    ) -> tuple[dict[str, str], list[Change]]:
        """Compare a tool list with the pins: (status per tool, changes to report). The first
        list ever seen is pinned as it is (trust on first use). `complete`: the list is the
        whole list (not one page), so a pinned tool missing from it was removed."""
        listed = {t["name"]: t for t in tools if isinstance(t.get("name"), str)}
        data = self.load()
        pins: dict[str, Any] = data.get("tools", {})
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if not data:
            data = {"server": self.server, "tools": {}}
            for name, t in listed.items():
                data["tools"][name] = _entry(t, now)
            self.save(data)
            return {name: PINNED for name in listed}, []
        statuses: dict[str, str] = {}
        changes: list[Change] = []
        pending: dict[str, Any] = data.setdefault("pending", {})
        dirty = False
        for name, t in listed.items():
            sha = definition_sha256(t)
            pin = pins.get(name)
            if pin is not None and pin.get("sha256") == sha:
                statuses[name] = PINNED
                continue
            statuses[name] = CHANGED if pin is not None else NEW
            if pending.get(name, {}).get("sha256") != sha:
                pending[name] = _entry(t, now)
                dirty = True
            changes.append(
                Change(
                    name,
                    "changed" if pin is not None else "added",
                    pin.get("sha256", "") if pin is not None else "",
                    sha,
                    str(t.get("description") or "")[:2000],
                )
            )
        if complete:
            for name, pin in pins.items():
                if name not in listed:
                    changes.append(Change(name, "removed", pin.get("sha256", ""), "", ""))
                    if pending.get(name) != {"removed": True}:
                        pending[name] = {"removed": True}
                        dirty = True
        if dirty:
            self.save(data)
        return statuses, changes

    def approve(self, names: Iterable[str] | None = None) -> list[str]:
        """Adopt the pending definitions (all, or those named) as the new pins."""
        data = self.load()
        if not data:
            return []
        pending: dict[str, Any] = data.get("pending", {})
        chosen = list(pending) if names is None else [n for n in names if n in pending]
        for name in chosen:
            entry = pending.pop(name)
            if entry.get("removed"):
                data["tools"].pop(name, None)
            else:
                data["tools"][name] = entry
        if not pending:
            data.pop("pending", None)
        self.save(data)
        return chosen

    def reset(self) -> bool:
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True


class PinError(ValueError):
    pass


def _entry(tool: dict[str, Any], now: str) -> dict[str, Any]:
    return {
        "sha256": definition_sha256(tool),
        "description": str(tool.get("description") or ""),
        "annotations": tool.get("annotations") or {},
        "input_schema_sha256": hashlib.sha256(
            json.dumps(tool.get("inputSchema"), sort_keys=True).encode()
        ).hexdigest()[:16],
        "pinned_at": now,
    }

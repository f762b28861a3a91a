"""What CEL sees: the one declaration of every variable, field and function a `when` may use.

The checker, the lowering to closures, the reference (cel-python) evaluation and the docs all
read this table, so a fact is declared once and the three can never disagree about it.
"""

from __future__ import annotations

from dataclasses import dataclass

# Type names are CEL spellings: "string", "bool", "int", "double", "list<string>", "dyn",
# "map<string,dyn>", or the name of a record type declared in RECORDS.


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    type: str
    doc: str


@dataclass(frozen=True, slots=True)
class Function:
    """A function callable from CEL. `receiver` is the record type for `x.f(...)` style calls."""

    name: str
    params: tuple[str, ...]
    result: str
    doc: str
    receiver: str | None = None


RECORDS: dict[str, tuple[Field, ...]] = {
    "Call": (
        Field("tool", "string", "tool name as sent in tools/call params.name"),
        Field("args", "map<string,dyn>", "raw arguments object, untouched"),
        Field(
            "paths", "list<string>", "absolute, normalised filesystem paths found anywhere in args"
        ),
        Field(
            "urls", "list<string>", "normalised URLs (lower-case host, no userinfo, explicit port)"
        ),
        Field("hosts", "list<string>", "host names (lower-case) and canonical IP literals"),
        Field("endpoints", "list<string>", "'host:port' for every URL / host with a known port"),
        Field("commands", "list<string>", "shell words of every command string (argv[0] first)"),
        Field("programs", "list<string>", "basenames of programs a command would run"),
        Field("reads", "bool", "the call reads files (classification)"),
        Field("writes", "bool", "the call writes, moves or deletes files (classification)"),
        Field(
            "written",
            "list<string>",
            "paths the call may write: all of `paths` unless the extractor knows which arguments"
            " are only read (a `cp` source, a `<` redirection); empty when it does not write",
        ),
        Field("spawns", "bool", "the call runs a process (classification)"),
        Field("network", "bool", "the call reaches the network (classification)"),
        Field(
            "annotations",
            "map<string,dyn>",
            "tool annotations the server advertised (untrusted hints)",
        ),
        Field(
            "description",
            "string",
            "the tool's description as the server listed it ('' before a tools/list)",
        ),
        Field(
            "tool_status",
            "string",
            "the tool's definition against its pin: 'pinned' (unchanged), 'changed', 'new' "
            "(added after pinning), '' (not pinned or not listed)",
        ),
    ),
    "Archetype": (
        Field("name", "string", "archetype name"),
        Field("network", "string", "'none', 'any' or 'list'"),
        Field("spawn", "bool", "whether the archetype may spawn processes"),
        Field("learning", "bool", "true while the archetype is in its learning period"),
    ),
    "Agent": (Field("id", "string", "the --agent-id of the runtime"),),
    "Session": (Field("id", "string", "runtime session id"),),
    "Flow": (
        Field("src_ip", "string", "source address (canonical)"),
        Field("src_port", "int", "source port"),
        Field("dst_ip", "string", "destination address (canonical)"),
        Field("dst_port", "int", "destination port"),
        Field("host", "string", "destination host name when known, else dst_ip"),
        Field("protocol", "string", "'tcp' or 'udp'"),
        Field("pid", "int", "process id that owns the socket (0 when unknown)"),
        Field("cgroup_id", "int", "cgroup v2 id (0 when unknown)"),
        Field("binary", "string", "executable of the process (empty when unknown)"),
        Field("calls", "int", "number of tool calls this flow joined"),
    ),
    "Result": (
        Field(
            "text",
            "string",
            "the result's text: content blocks, embedded resources, "
            "structuredContent strings (first MiB)",
        ),
        Field(
            "secrets",
            "list<string>",
            "kinds of secrets found anywhere in the result "
            "(private_key, aws_access_key_id, github_token, jwt, env_secret, …)",
        ),
        Field("is_error", "bool", "a JSON-RPC error, or a tool result with isError: true"),
        Field("size", "int", "bytes of the response message"),
    ),
    "Vars": (),  # fields are the policy's variables, all strings; filled per compile
}

# Top-level CEL variables and their record types.
VARIABLES: dict[str, str] = {
    "call": "Call",
    "archetype": "Archetype",
    "agent": "Agent",
    "session": "Session",
    "flow": "Flow",
    "result": "Result",
    "vars": "Vars",
}

# Which variables each kind of rule may read. `archetype` and `vars` are compile-time constants.
RULE_SCOPES: dict[str, frozenset[str]] = {
    "rule": frozenset({"call", "archetype", "agent", "session", "vars"}),
    "flow": frozenset({"flow", "archetype", "agent", "session", "vars"}),
    "orphan": frozenset({"flow", "archetype", "agent", "session", "vars"}),
    "response": frozenset({"result", "call", "archetype", "agent", "session", "vars"}),
}

# How the language spells each kind of rule, and what it decides (a message that says a kind of
# rule cannot read a variable names both).
RULE_KINDS: dict[str, tuple[str, str]] = {
    "rule": ("`rule` (tool-call rule)", "decides a tool call, before any flow exists"),
    "flow": ("`flow rule`", "decides a network flow"),
    "orphan": ("`orphan rule`", "decides a network flow"),
    "response": ("`response rule`", "decides a tool result on its way back to the agent"),
}

FUNCTIONS: tuple[Function, ...] = (
    Function(
        "jewel",
        ("string",),
        "string",
        "sensitivity level of the most sensitive jewel glob matching the path, '' if none; a"
        " glob pattern (`~/.ss?/id*`) that can match a jewel of the most sensitive level has"
        " that level",
    ),
    Function(
        "jewel_set", ("string",), "string", "name of the jewels block that matched, '' if none"
    ),
    Function(
        "glob", ("string", "string"), "bool", "path glob match (`*` one segment, `**` any depth)"
    ),
    Function("basename", ("string",), "string", "last path segment"),
    Function("is_ip", ("string",), "bool", "host is an IP literal"),
    Function("is_loopback", ("string",), "bool", "127.0.0.0/8, ::1, localhost"),
    Function("is_link_local", ("string",), "bool", "169.254.0.0/16, fe80::/10"),
    Function("is_private", ("string",), "bool", "RFC 1918, RFC 4193, CGNAT"),
    Function(
        "is_metadata",
        ("string",),
        "bool",
        "cloud metadata endpoints (AWS, GCP, Azure, Alibaba, ...)",
    ),
    Function(
        "allows_path", ("string",), "bool", "path is inside the archetype's paths", "Archetype"
    ),
    Function(
        "allows_write", ("string",), "bool", "path is inside the archetype's writes", "Archetype"
    ),
    Function(
        "allows_host", ("string",), "bool", "some network entry admits this host", "Archetype"
    ),
    Function(
        "allows_endpoint", ("string",), "bool", "network entries admit 'host:port'", "Archetype"
    ),
    Function(
        "allows_program", ("string",), "bool", "spawn entries admit this program", "Archetype"
    ),
    Function(
        "allows_flow",
        ("Flow",),
        "bool",
        "network entries admit the flow's destination",
        "Archetype",
    ),
)

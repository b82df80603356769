"""Which TCP ports listen on this machine where 127.0.0.1 reaches them, and who holds them.

Blocking (psutil reads /proc): the service runs it off the event loop and reuses it briefly.
A command line is shown shortened and without secrets (`scrub_cmdline`): the listing is read
by anyone holding the Jupyter token, and another process's `--token` is not theirs to read.
"""

from __future__ import annotations

import contextlib
import re
import shlex
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

# Addresses at which a connection to the loopback address arrives.
LOOPBACK_REACHABLE = frozenset({"127.0.0.1", "0.0.0.0", "::", "::1", "::ffff:127.0.0.1"})
# A preferred address per port when a process listens on several (0.0.0.0 and ::).
_ADDRESS_RANK = {"127.0.0.1": 0, "0.0.0.0": 1, "::ffff:127.0.0.1": 2, "::": 3, "::1": 4}

MAX_CMDLINE = 200
ELLIPSIS = "…"
REDACTED = "***"
_MARK = "REDACTEDx9q7"  # no shell-special characters
# Parts of an option's or variable's name that say its value is a secret.
SECRET_WORDS = ("token", "password", "passwd", "pwd", "secret", "apikey", "key", "credential")
# Names that hold a secret word and name no secret (vLLM's `--tokenizer`, `--max-tokens`).
NOT_SECRET = re.compile(r"tokenizer|(?:max|min|num|batched|new|prompt|output|input)tokens")

# `name=value`, `name: value`, `"name": "value"`, a URL's `?name=value&` where the name holds a
# secret word (only those: a pair that is not one must not swallow the next); not `https://`.
_WORDS = "|".join(SECRET_WORDS)
_ASSIGNED = re.compile(
    rf"(?i)(?P<name>[A-Za-z0-9_.\-]*(?:{_WORDS})[A-Za-z0-9_.\-]*)"
    r"(?P<sep>[\"']?\s*[=:]\s*)(?P<value>(?!//)[^\s&;,?]+)"
)
_AUTH_HEADER = re.compile(r"(?i)\b(?P<head>(?:proxy-)?authorization\s*:)(?P<value>.*)")
_BEARER = re.compile(r"(?i)\b(?P<head>bearer|basic)\s+(?P<value>\S+)")
_URL_USERINFO = re.compile(r"(?P<head>://[^/\s:@]*:)(?P<value>[^/\s@]+)@")


def secret_name(name: str) -> bool:
    """Whether an option or variable name (`--api-key`, `NotebookApp.token`) names a secret."""
    plain = NOT_SECRET.sub("", name.lstrip("-").lower().replace("-", "").replace("_", ""))
    return any(word in plain for word in SECRET_WORDS)


def _scrub_text(arg: str) -> str:
    """`name=value` / `name: value` pairs with a secret name, Authorization headers, bearer
    credentials and URL passwords inside one argument, with their values replaced."""
    arg = _AUTH_HEADER.sub(lambda m: f"{m['head']} {REDACTED}", arg)
    arg = _BEARER.sub(lambda m: f"{m['head']} {REDACTED}", arg)
    arg = _URL_USERINFO.sub(lambda m: f"{m['head']}{REDACTED}@", arg)

    def pair(m: re.Match[str]) -> str:
        if not secret_name(m["name"]):
            return m[0]  # `max_tokens=512`: its own value only, so nothing is skipped
        return f"{m['name']}{m['sep']}{REDACTED}"

    return _ASSIGNED.sub(pair, arg)


def scrub_cmdline(argv: Sequence[str], limit: int = MAX_CMDLINE) -> str:
    """The command line as one shell-quoted string, secrets replaced by ***, cut to `limit`.

    Dropped: the value after a flag whose name holds token, password, secret, key, ... (both
    `--flag value` and `--flag=value`), `NAME=value` with such a name, an Authorization
    header's value, a bearer credential and a URL's password. It errs on the side of dropping.
    """
    shown: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            shown.append(REDACTED)
            hide_next = False
            continue
        if arg.startswith("-") and "=" not in arg and secret_name(arg):
            hide_next = True  # `--token VALUE`: the next argument is the secret
            shown.append(arg)
            continue
        if re.fullmatch(r"(?i)\s*(?:proxy-)?authorization\s*:?\s*|bearer|basic", arg):
            hide_next = True  # `-H Authorization: VALUE` split over two arguments
            shown.append(arg)
            continue
        shown.append(_scrub_text(arg))
    # Quoted with a plain stand-in, so that `--token=***` is not shown as `'--token=***'`.
    text = " ".join(shlex.quote(a.replace(REDACTED, _MARK)) for a in shown).replace(_MARK, REDACTED)
    if len(text) > limit:
        text = text[: max(0, limit - len(ELLIPSIS))] + ELLIPSIS
    return text


@dataclass(frozen=True)
class ListeningPort:
    port: int
    address: str
    pid: int | None
    name: str | None  # the process name, when visible
    cmdline: str | None  # shortened, secrets dropped
    kernel_id: str | None = None  # the kernel of this server that started it, if any


@dataclass(frozen=True)
class Socket:
    """One listening socket as the system reports it."""

    address: str
    port: int
    pid: int | None


def reachable(address: str) -> bool:
    """Whether a connection to the loopback address reaches a socket bound to `address`."""
    return address.split("%", 1)[0] in LOOPBACK_REACHABLE


def collect(
    sockets: Iterable[Socket],
    describe: Callable[[int], tuple[str | None, str | None]],
) -> list[ListeningPort]:
    """One entry per reachable port, sorted: the holder known where any socket names it.

    `describe(pid)` -> (name, scrubbed command line); it returns (None, None) for a process
    it may not read. Pure apart from `describe`.
    """
    best: dict[int, Socket] = {}
    for sock in sockets:
        if not reachable(sock.address):
            continue
        held = best.get(sock.port)
        if held is None or _rank(sock) < _rank(held):
            best[sock.port] = sock
    found = []
    for port in sorted(best):
        sock = best[port]
        name, cmdline = describe(sock.pid) if sock.pid is not None else (None, None)
        found.append(ListeningPort(port, sock.address, sock.pid, name, cmdline))
    return found


def _rank(sock: Socket) -> tuple[int, int]:
    return (sock.pid is None, _ADDRESS_RANK.get(sock.address, 9))


def describe_process(pid: int) -> tuple[str | None, str | None]:
    """(name, scrubbed command line) of a process; None for what may not be read."""
    import psutil

    try:
        proc = psutil.Process(pid)
    except (psutil.Error, OSError):
        return None, None
    name = cmdline = None
    with contextlib.suppress(psutil.Error, OSError):
        name = proc.name()
    with contextlib.suppress(psutil.Error, OSError):
        cmdline = scrub_cmdline(proc.cmdline()) or None
    return name, cmdline


def listening_sockets() -> list[Socket]:
    """Every listening TCP socket; the pids that may be read (all of them as root).

    Where the system-wide table is refused (macOS without root), each readable process is
    asked for its own sockets: other users' ports are then missing, never an error.
    """
    import psutil  # not at import: psutil stays out of the server's start-up

    try:
        conns = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return _per_process_sockets()
    return [
        Socket(c.laddr.ip, c.laddr.port, c.pid)
        for c in conns
        if c.status == psutil.CONN_LISTEN and c.laddr
    ]


def _per_process_sockets() -> list[Socket]:
    import psutil

    found = []
    for proc in psutil.process_iter():
        try:
            conns = proc.net_connections(kind="tcp")
        except (psutil.Error, OSError):
            continue
        found += [
            Socket(c.laddr.ip, c.laddr.port, proc.pid)
            for c in conns
            if c.status == psutil.CONN_LISTEN and c.laddr
        ]
    return found


def listening_ports() -> list[ListeningPort]:
    """The listening TCP ports reachable at loopback, one entry per port, sorted by port."""
    return collect(listening_sockets(), describe_process)

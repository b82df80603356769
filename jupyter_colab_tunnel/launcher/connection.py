"""A server started by `launch()`, how to connect to it, and how it is shown.

`sections()` decides what is shown; `render_text` (print, the CLI) and `render_markdown`
(a notebook's output) only lay it out, so both always say the same.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from ..connect import connect_info, connect_steps
from ..problems import Problem
from ..states import RETRYING, UNKNOWN, as_word, known_state
from . import record as rec
from . import server
from .errors import LaunchError
from .report import STOP_HOW, Reporter
from .waiting import Interrupted, wait_for_tunnel, wait_interruptibly
from .watch import GIVE_UP_AFTER

NO_URL_HINT = (
    "The named tunnel is ready but has no URL: set --ColabTunnelApp.public_hostname to the "
    "hostname routed to it (without it, requests through the tunnel are refused with 403)."
)
FOLLOWS = ", and follows the tunnel's URL through the connection file"
DOES_NOT_FOLLOW = (
    "; a quick tunnel's URL changes when it restarts: with launch(connection_file=...) the "
    "relay follows it"
)


@dataclass
class Connection:
    """A Jupyter server started by `launch()`, and how to connect to it through its tunnel."""

    port: int
    token: str = field(repr=False)
    pid: int
    log_path: str
    root_dir: str
    base_url: str = "/"
    gateway_url: str | None = None  # the URL local clients use, once the tunnel has one
    state: str = UNKNOWN  # the tunnel state last seen (see /colab/tunnel)
    error: Problem | None = None  # the classified tunnel error, when it failed or timed out
    reused: bool = False  # True when launch() found this server already running
    # Identify the process (with pid), so that stop() never signals another one.
    create_time: float | None = field(default=None, repr=False)
    record_path: str | None = field(default=None, repr=False)  # where the token is kept
    connection_file: str | None = None  # where the server writes its URL (from /colab/tunnel)

    @classmethod
    def from_record(cls, record: rec.ServerRecord, record_path: str | None = None) -> Connection:
        return cls(
            port=record.port,
            token=record.token,
            pid=record.pid,
            log_path=record.log_path,
            root_dir=record.root_dir,
            base_url=record.base_url,
            create_time=record.create_time,
            record_path=record_path,
        )

    @property
    def local_url(self) -> str:
        """The server's own address on this machine (it listens on loopback only)."""
        return f"http://127.0.0.1:{self.port}{self.base_url}"

    @property
    def dashboard_url(self) -> str:
        """The live dashboard on this machine (docs/dashboard.md); add ?token= the first time."""
        return self.local_url + "colab/"

    @property
    def public_dashboard_url(self) -> str | None:
        """The dashboard through the tunnel, once it has a URL."""
        return self.gateway_url.rstrip("/") + "/colab/" if self.gateway_url else None

    def status(self, timeout: float = 10.0) -> dict[str, Any]:
        """GET /colab/tunnel: the tunnel's state, URL, error and connect info (a dict)."""
        code, body = server.get_json(self.local_url + "colab/tunnel", self.token, timeout)
        if code != 200 or not isinstance(body, dict):
            raise LaunchError(
                "unreachable" if code == 0 else "http_error",
                f"GET {self.local_url}colab/tunnel answered {code or 'nothing'}",
                f"Is the server still running? See its log: {self.log_path}",
                self.log_path,
            )
        return body

    def refresh(self, body: dict[str, Any]) -> None:
        """Take state, URL and error from a /colab/tunnel answer."""
        self.state = str(body.get("state") or UNKNOWN)
        info = body.get("connect")
        url = info.get("gateway_url") if isinstance(info, dict) else None
        self.gateway_url = url if isinstance(url, str) else None
        where = info.get("connection_file") if isinstance(info, dict) else None
        self.connection_file = where if isinstance(where, str) else None
        self.error = Problem.from_dict(body.get("error"))

    def alive(self) -> bool:
        return not server.exited(self.pid, self.create_time, self.port)

    def wait(
        self,
        timeout: float = 120.0,
        quiet: bool = False,
        give_up_after: int | None = GIVE_UP_AFTER,
    ) -> Connection:
        """Wait until the tunnel is ready, failed, or keeps failing the same way; update
        gateway_url/state/error; print progress and then this connection unless `quiet`."""
        report = Reporter(quiet)
        deadline = time.monotonic() + timeout
        try:
            wait_interruptibly(
                self, report, lambda: wait_for_tunnel(self, deadline, report, give_up_after)
            )
        except Interrupted:
            return self
        report.text(str(self))
        return self

    def stop(self, timeout: float = server.STOP_TIMEOUT) -> None:
        """SIGTERM the server (it stops cloudflared and its kernels), SIGKILL after `timeout`.

        Only this very server: when its pid now names another process, nothing is signalled.
        """
        server.stop(self.pid, self.create_time, self.port, timeout)
        rec.forget(rec.state_dir(), self.pid)
        self.state = as_word("stopped")

    def connect(self) -> dict[str, Any] | None:
        """What to run on the local machine (see connect.connect_info); None without a URL."""
        return connect_info(self.gateway_url, "/", self.token, self.connection_file)

    def __str__(self) -> str:
        return render_text(sections(self))

    def _repr_markdown_(self) -> str:
        return render_markdown(sections(self))


class Code(str):
    """A literal (a URL, a path, a token): code-formatted in Markdown."""

    __slots__ = ()


@dataclass(frozen=True)
class Fact:
    """One labelled line: `parts` are prose, or `Code` for literals."""

    label: str
    parts: tuple[str, ...]


@dataclass(frozen=True)
class Block:
    """Something to copy: an introducing sentence and a code block."""

    intro: str
    code: str
    lang: str


def sections(conn: Connection) -> list[Fact | Block]:
    """What a connection shows, in order: the one place that decides it."""
    out: list[Fact | Block] = [
        Fact(
            "Jupyter server",
            (f"pid {conn.pid}, ", Code(conn.local_url), " (log: ", Code(conn.log_path), ")"),
        ),
        Fact("Tunnel", (conn.state, *(("  ", Code(conn.gateway_url)) if conn.gateway_url else ()))),
        Fact(
            "Dashboard",
            (
                Code(conn.dashboard_url),
                *(
                    (" (through the tunnel: ", Code(conn.public_dashboard_url), ")")
                    if conn.public_dashboard_url
                    else ()
                ),
                "; add ?token=<token> the first time",
            ),
        ),
    ]
    if conn.error is not None:
        out.append(Fact("Error", (Code(conn.error.kind), f": {conn.error.message}")))
        if conn.error.hint:
            out.append(Fact("Hint", (conn.error.hint,)))
        if known_state(conn.state) != "ready":
            retrying = (
                ", and the tunnel keeps retrying in the background: conn.wait() (or "
                "`jupyter colab-tunnel launch` again) waits for it"
                if conn.state in RETRYING
                else ""
            )
            out.append(Fact("Server", (f"keeps running{retrying}. Stop it: {STOP_HOW}.",)))
    ready = known_state(conn.state) == "ready"
    info = conn.connect() if ready else None
    if info is None:
        if ready:
            out.append(Fact("Hint", (NO_URL_HINT,)))
        where = (
            f'conn.token in Python, or "token" in {conn.record_path}'
            if conn.record_path
            else "conn.token"
        )
        out.append(Fact("Token", (f"not shown without a tunnel to connect through ({where})",)))
        return out
    assert conn.gateway_url is not None
    token_line, relay_line, lab_line = (
        line for _, line in connect_steps(conn.gateway_url, conn.token, conn.connection_file)
    )
    out += [
        Fact("Token", (Code(conn.token),)),
        Block(
            "On your machine, put the token in a private file and start the relay (leave it "
            f"running: it adds the token{FOLLOWS if conn.connection_file else DOES_NOT_FOLLOW}):",
            f"{token_line}\n{relay_line}",
            "bash",
        ),
        Block(
            "Then, in a second terminal, JupyterLab through the relay (kernels run here, "
            "notebooks stay there; the relay prints the same command):",
            lab_line,
            "bash",
        ),
        Block(
            "Or put this in jupyter_lab_config.py (or jupyter_server_config.py) on your machine:",
            info["config"].rstrip("\n"),
            "python",
        ),
        Block(
            "MCP config for an agent on your machine, through the relay (JUPYTER_URL is your "
            "LOCAL JupyterLab started as above):",
            json.dumps(info["mcp"], indent=2),
            "json",
        ),
    ]
    return out


def render_text(parts: list[Fact | Block]) -> str:
    lines: list[str] = []
    for part in parts:
        if isinstance(part, Fact):
            lines.append(f"{part.label}: {''.join(part.parts)}")
        else:
            lines += ["", part.intro, *(f"    {line}" for line in part.code.splitlines())]
    return "\n".join(lines)


def render_markdown(parts: list[Fact | Block]) -> str:
    chunks: list[str] = []
    facts: list[str] = []
    for part in parts:
        if isinstance(part, Fact):
            text = "".join(f"`{p}`" if isinstance(p, Code) else _escape(p) for p in part.parts)
            facts.append(f"**{part.label}** {text}")
            continue
        if facts:
            chunks.append("  \n".join(facts))
            facts = []
        chunks.append(f"{_escape(part.intro)}\n\n```{part.lang}\n{part.code}\n```")
    if facts:
        chunks.append("  \n".join(facts))
    return "\n\n".join(chunks)


def _escape(text: str) -> str:
    """Prose in Markdown: no HTML (error messages quote HTML pages), no stray emphasis."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("*", r"\*")

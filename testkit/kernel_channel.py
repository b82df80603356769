"""A kernel websocket client (Jupyter's legacy JSON protocol) for tests and benchmarks."""

from __future__ import annotations

import datetime
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import websocket


def ws_url(http_url: str) -> str:
    return "ws" + http_url.removeprefix("http")


@dataclass
class Execution:
    stdout: str = ""
    stderr: str = ""
    status: str | None = None  # execute_reply status: ok | error | aborted
    error: str | None = None  # "ename: evalue" of an error reply


class KernelChannel:
    """A client of /api/kernels/<id>/channels speaking the legacy JSON protocol (text frames)."""

    def __init__(
        self, url: str, headers: dict[str, str] | None = None, origin: str | None = None
    ) -> None:
        self.session = uuid.uuid4().hex
        self.ws = websocket.create_connection(
            f"{url}?session_id={self.session}",
            header=[f"{k}: {v}" for k, v in (headers or {}).items()],
            origin=origin,
            timeout=30,
        )

    def close(self) -> None:
        self.ws.close()

    def __enter__(self) -> KernelChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, msg_type: str, content: dict[str, Any], channel: str = "shell") -> str:
        msg_id = uuid.uuid4().hex
        msg = {
            "header": {
                "msg_id": msg_id,
                "msg_type": msg_type,
                "username": "e2e",
                "session": self.session,
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                "version": "5.3",
            },
            "parent_header": {},
            "metadata": {},
            "content": content,
            "channel": channel,
            "buffers": [],
        }
        self.ws.send(json.dumps(msg))
        return msg_id

    def execute(self, code: str, timeout: float = 30.0) -> Execution:
        """Run code; return its output once the reply and the idle status both arrived.

        Raises TimeoutError when they do not arrive in time (e.g. the request was lost).
        """
        msg_id = self.send(
            "execute_request",
            {
                "code": code,
                "silent": False,
                "store_history": False,
                "user_expressions": {},
                "allow_stdin": False,
                "stop_on_error": True,
            },
        )
        result = Execution()
        idle = False
        deadline = time.monotonic() + timeout
        while not (idle and result.status):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no complete reply to {code!r} in {timeout}s: {result}")
            self.ws.settimeout(left)
            try:
                raw = self.ws.recv()
            except websocket.WebSocketTimeoutException:
                continue
            if not isinstance(raw, str):  # binary frames are not used by the JSON protocol
                continue
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            content = msg["content"]
            if kind == "stream":
                if content["name"] == "stdout":
                    result.stdout += content["text"]
                else:
                    result.stderr += content["text"]
            elif kind == "status" and content["execution_state"] == "idle":
                idle = True
            elif kind == "execute_reply":
                result.status = content["status"]
                if content["status"] == "error":
                    result.error = f"{content['ename']}: {content['evalue']}"
        return result

    def execute_eventually(self, code: str, timeout: float = 60.0, each: float = 3.0) -> Execution:
        """Resend until a reply comes: a request sent while a proxy reconnects is dropped."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.execute(code, timeout=min(each, max(0.1, deadline - time.monotonic())))
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise

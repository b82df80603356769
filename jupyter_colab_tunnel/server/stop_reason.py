"""Why this server is stopping, for the connection file's last record.

jupyter_server stops cleanly on SIGTERM (its own handler), on SIGINT from a terminal (twice, or
confirmed), through POST /api/shutdown (which `jupyter server stop` uses) or on its own
`shutdown_no_activity_timeout`. Only a signal leaves no other trace, so the signal handlers are
chained: the server's own handler still runs, after the signal is noted. (SIGINT without a
terminal interrupts jupyter_server without cleaning up its extensions: no last record then, as
after SIGKILL. Its behaviour is left as it is.)
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

Handler = Callable[[int, "FrameType | None"], Any]

API_OR_TIMEOUT = (
    "the Jupyter server was stopped through its API (POST /api/shutdown, e.g. `jupyter server "
    "stop`)"
)
IDLE_SHUTDOWN = (
    "the Jupyter server shut itself down after no activity (shutdown_no_activity_timeout)"
)


def signal_reason(signum: int) -> str:
    return f"the server received {signal.Signals(signum).name}"


def stop_reason(signum: int | None, idle_shutdown: bool) -> str:
    """The `reason` of the last record: the signal if one came, else the API or the idle timer."""
    if signum is not None:
        return signal_reason(signum)
    return IDLE_SHUTDOWN if idle_shutdown else API_OR_TIMEOUT


class SignalNotes:
    """Notes the stop signal a process received, then hands it to the handler installed before."""

    # Not SIGHUP: its default ends the process at once, with no record written either way.
    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self, owner: object) -> bool:
        """Chain the handlers, only where `owner` (the ServerApp) installed its own SIGTERM
        handler: a server embedded in another program (tests, a notebook) is left alone."""
        current = signal.getsignal(signal.SIGTERM)
        if getattr(current, "__self__", None) is not owner:
            return False
        for signum in self.SIGNALS:
            previous = signal.getsignal(signum)
            if previous in (signal.SIG_IGN, None):
                continue
            self._previous[signum] = previous
            signal.signal(signum, self._note)
        return True

    def _note(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum
        previous = self._previous.get(signum)
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            # The default action (end the process): run it as it would have run.
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    def uninstall(self) -> None:
        for signum, previous in self._previous.items():
            if signal.getsignal(signum) == self._note:
                signal.signal(signum, previous)
        self._previous.clear()

"""Progress for a notebook cell or a terminal: prefixed lines, each printed once."""

from __future__ import annotations

PREFIX = "[colab-tunnel]"
# How to stop a server that launch() started, wherever the user is.
STOP_HOW = "conn.stop() in Python, `jupyter colab-tunnel stop` in a shell"


class Reporter:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self._said: set[str] = set()

    def line(self, text: str) -> None:
        """A progress line; one already printed is not printed again."""
        if self.quiet or text in self._said:
            return
        self._said.add(text)
        print(f"{PREFIX} {text}", flush=True)

    def text(self, text: str) -> None:
        """A block as it is (the connection)."""
        if not self.quiet:
            print(text, flush=True)

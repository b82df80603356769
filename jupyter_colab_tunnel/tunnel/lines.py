"""Split a byte stream into lines, bounded in memory whatever the child writes."""

from __future__ import annotations


class LineSplitter:
    """Feed chunks, get complete lines (without the newline), each cut at `max_line` bytes.

    Reading big chunks and splitting them costs one await per chunk instead of one per line,
    which keeps a log flood cheap; an endless line never grows the buffer past `max_line`.
    """

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        self._skipping = False  # inside the rest of an overlong line

    def feed(self, chunk: bytes) -> list[bytes]:
        lines: list[bytes] = []
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                break
            if self._skipping:
                self._skipping = False
            else:
                self._buf += chunk[start:end]
                lines.append(bytes(self._buf[: self.max_line]))
            self._buf.clear()
            start = end + 1
        if not self._skipping:
            self._buf += chunk[start:]
            if len(self._buf) > self.max_line:
                # Emit the head now and drop the rest up to the next newline.
                lines.append(bytes(self._buf[: self.max_line]))
                self._buf.clear()
                self._skipping = True
        return lines

    def close(self) -> list[bytes]:
        """The unterminated last line, if any (a fatal message may lack its newline)."""
        rest = [] if self._skipping or not self._buf else [bytes(self._buf)]
        self._buf.clear()
        self._skipping = False
        return rest

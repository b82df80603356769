"""Files that hold a secret (a token, extra headers): the warning when other users can open them.

Shared by `connect` and `mcp`: both take their tokens from files, never from argv.
"""

from __future__ import annotations

import os
import stat

# Any permission for the group or others: a token there is readable (or replaceable) by them.
OPEN_TO_OTHERS = stat.S_IRWXG | stat.S_IRWXO


def exposure_warning(path: str) -> str | None:
    """A sentence naming the file and the fix when users other than its owner may read or
    change it; None when it is private (or cannot be stat()ed: the read reports that)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if not mode & OPEN_TO_OTHERS:
        return None
    what = "readable" if mode & (stat.S_IRGRP | stat.S_IROTH) else "open"
    return f"{path} is {what} by other users; `chmod 600 {path}`"

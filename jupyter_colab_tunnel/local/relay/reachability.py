"""Whether the remote Jupyter server still answers: said once, not retried in silence.

A remote killed outright (SIGKILL, a runtime that vanished) cannot update its connection file,
which goes on saying `ready`. After consecutive failures of the kinds "nothing answers there"
(refused, no tunnel, the tunnel's origin down), the relay confirms with a probe of its own and
marks the remote unreachable (one WARNING, `/relay/status`), then probes every few seconds
until it answers again (one INFO line) or the upstream changes. Unreachable for
`RelaySettings.gone_after` seconds, it is "gone" (life.py says so and what to do).

A quick tunnel's hostname that no longer resolves is a dead tunnel too (Cloudflare removes it
with the tunnel); any other name that does not resolve may be this machine's own DNS.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tornado.httputil import HTTPHeaders

from ...http1 import UpstreamError
from ...timefmt import iso_utc
from ..failures import CLOUDFLARE_NO_TUNNEL, Failure, classify_exception, classify_status
from ..upstream import Upstream

if TYPE_CHECKING:
    from .server import Relay

# Failures before the probe that confirms; the probe's period while the remote is gone.
DOWN_AFTER = 2
PROBE_INTERVAL = 2.0
HINT = (
    "The remote Jupyter server seems to have stopped (its connection file may still say "
    "ready): restart it on the GPU machine. The relay keeps checking and follows it back."
)


def _down_kinds() -> frozenset[str]:
    """The classifier's names for "nothing answers there", asked of the classifier itself."""
    kinds = {classify_exception(ConnectionRefusedError(), "").reason}
    for status, body in ((CLOUDFLARE_NO_TUNNEL, b""), (502, b"error code: 502")):
        edge = classify_status(status, body, "")
        if edge is not None:
            kinds.add(edge.reason)
    return frozenset(kinds)


DOWN_KINDS = _down_kinds()
QUICK_TUNNEL_DOMAIN = ".trycloudflare.com"


def dead_tunnel(reason: str, url: str | None) -> bool:
    """Whether a failure of this kind at `url` says that nothing answers there any more."""
    if reason in DOWN_KINDS:
        return True
    host = (urlsplit(url).hostname or "") if url else ""
    return reason == "dns_error" and host.lower().rstrip(".").endswith(QUICK_TUNNEL_DOMAIN)


class Reachability:
    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.failures = 0
        self.first_failure_at: float | None = None  # the streak's first: "gone since" then
        self.down_since: float | None = None
        self.down_error: str | None = None
        self._probe: asyncio.Task[None] | None = None
        self._unlisten = relay.tracker.listen(self._on_switch)

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def failed(self, failure: Failure, confirm_now: bool = False) -> None:
        current = self.relay.tracker.current
        if not dead_tunnel(failure.reason, current.url if current else None):
            return
        self.failures += 1
        if self.first_failure_at is None:
            self.first_failure_at = time.time()
        self.down_error = f"{failure.reason}: {failure.message}"
        if (confirm_now or self.failures >= DOWN_AFTER) and self._probe is None:
            self._probe = asyncio.ensure_future(self._watch())

    def suspect(self, failure: Failure) -> None:
        """A check of the relay's own failed (the life read): probe now, no second failure
        awaited (an idle relay makes no other requests)."""
        self.failed(failure, confirm_now=True)

    def answered(self) -> None:
        """The remote answered (a kernel websocket was dialled, a probe got an answer)."""
        self.failures = 0
        self.first_failure_at = None
        if self.down_since is not None:
            self.down_since = None
            self.relay.log.info("The remote answers again")
        self.relay.life.clear_gone("the remote answers again", cause="unreachable")

    def status(self) -> dict[str, Any] | None:
        if self.down_since is None:
            return None
        return {"since": iso_utc(self.down_since), "last_error": self.down_error, "hint": HINT}

    async def _watch(self) -> None:
        try:
            while True:
                upstream = self.relay.tracker.current
                if upstream is None:
                    break
                verdict = await self._check(upstream)
                if self.relay.tracker.current != upstream:
                    break  # a new URL meanwhile: what was learnt is about the old one
                if verdict is True:
                    self.answered()
                    break
                if verdict is None and self.down_since is None:
                    break  # cannot tell: the next such failure probes again
                if verdict is False and self.down_since is None:
                    self.down_since = time.time()
                    self.relay.log.warning(
                        "The remote at %s is unreachable (%s). %s",
                        upstream.url,
                        self.down_error,
                        HINT,
                    )
                if verdict is False:
                    self._gone_yet()
                await self.relay.tracker.wait_change(upstream, PROBE_INTERVAL)
        finally:
            self._probe = None

    def _gone_yet(self) -> None:
        """Unreachable (confirmed) since the streak's first failure, for gone_after: gone."""
        since = self.first_failure_at or self.down_since
        after = self.relay.settings.gone_after
        if since is not None and time.time() - since >= after:
            self.relay.life.declare_gone(
                since,
                f"unreachable for {after:g} s behind a dead tunnel ({self.down_error})",
                "unreachable",
            )

    async def _check(self, upstream: Upstream) -> bool | None:
        """True: the remote Jupyter server answered (any status of its own); False: nothing
        answers there; None: cannot tell (a timeout, another failure)."""
        timeout = self.relay.settings.connect_timeout
        # No token: any answer of the server's own (200, 403) says that it runs. The extra
        # headers (Cloudflare Access) are sent: else Access itself would answer for the server.
        # On the relay's kept connections: one that the remote closed is never reused.
        headers = HTTPHeaders(dict(self.relay.settings.extra_headers))
        try:
            response = await self.relay.client.fetch(
                f"{upstream.url}/api", "GET", headers, None, timeout, timeout
            )
        except Exception as e:  # whatever it was, the probe goes on: "cannot tell" at worst
            cause = e.cause if isinstance(e, UpstreamError) else e
            return self._verdict(classify_exception(cause, upstream.url), upstream)
        edge = classify_status(response.code, response.body, upstream.url)
        if edge is None:
            return True
        return self._verdict(edge, upstream)

    def _verdict(self, failure: Failure, upstream: Upstream) -> bool | None:
        if not dead_tunnel(failure.reason, upstream.url):
            return None
        self.down_error = f"{failure.reason}: {failure.message}"
        return False

    def _on_switch(self, old: Upstream | None, new: Upstream | None) -> None:
        """A new URL (or none): nothing is known of it yet."""
        self.failures = 0
        self.first_failure_at = None
        self.down_since = None

    async def close(self) -> None:
        self._unlisten()
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe

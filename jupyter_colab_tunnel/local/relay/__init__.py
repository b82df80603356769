"""A 127.0.0.1 HTTP + WebSocket relay to the remote Jupyter server that follows its URL.

Built on tornado (already a dependency of jupyter_server): its HTTP/1.1 connection class over
kept-alive streams forwards REST requests (`..pool`; tornado's `SimpleAsyncHTTPClient` would
open a TCP and TLS connection per request), and `websocket_connect` dials kernel websockets; both
verify TLS with the system trust store. A separate proxy library would add a dependency without
solving the part that matters here: keeping a local kernel websocket open while its upstream is
re-dialled to a new URL.

- `rules`: who may ask, what is forwarded, the headers sent upstream, the one error writer;
- `server`: `Relay` (settings, counters, tracker, sockets, the HTTP server, `/relay/status`);
- `proxy`: REST requests to the remote;
- `kernel_socket`: kernel websockets that survive a change of upstream;
- `frames`: their frames from the local side: refused when too big, held during a re-dial;
- `forward`, `forward_http`, `forward_socket`: `connect --forward`, one listener per forwarded
  port, streaming HTTP and websockets to the remote's port route;
- `reachability`: whether the remote still answers (said once, not retried in silence).
"""

from .rules import error_body
from .server import Relay, RelaySettings, RelayStats

__all__ = ["Relay", "RelaySettings", "RelayStats", "error_body"]

"""`jupyter colab-tunnel connect`: run the local relay in the foreground (its options and words:
connect_options.py)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import sys
from pathlib import Path

from ..connect import GATEWAY_RETRY, lab_command
from ..connection_record import RecordRefused, check_remote_url
from ..http1 import KeepAliveClient
from ..problems import Problem
from ..subcommand import Subcommand
from .check import CheckResult, check_remote
from .cli_input import TOKEN_ENV, UsageError, read_secret_file, token_from
from .connect_options import DESCRIPTION, HEADERS_ENV, HELP, add_connect_options
from .relay import Relay, RelaySettings
from .relay.forward import ForwardSpecError, parse_forwards
from .relay.kernel_socket import MAX_WS_MESSAGE
from .relay.life import LIFE_INTERVAL
from .upstream import ConnectionFileWatcher, UpstreamTracker

PREFIX = "[colab-tunnel relay]"

log = logging.getLogger("jupyter_colab_tunnel.relay")


def local_token(path: str) -> tuple[str, bool]:
    """(token, created): the file's content, or a new token written there with mode 0600."""
    target = Path(path).expanduser()
    if target.exists():
        return read_secret_file(str(target), "local token", PREFIX), False
    token = secrets.token_urlsafe(32)
    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(token + "\n")
    except FileExistsError:  # written meanwhile by another relay: use that one
        return read_secret_file(str(target), "local token", PREFIX), False
    except OSError as e:
        raise UsageError(f"cannot write the local token file {path}: {e.strerror}") from None
    return token, True


def extra_headers(path: str | None, environ: dict[str, str]) -> dict[str, str]:
    """Headers for the remote from a JSON file or $JUPYTER_COLAB_TUNNEL_HEADERS (never argv)."""
    if path:
        text, source = read_secret_file(path, "headers", PREFIX), f"the headers file {path}"
    elif environ.get(HEADERS_ENV):
        text, source = environ[HEADERS_ENV], f"${HEADERS_ENV}"
    else:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        raise UsageError(
            f"{source} is not JSON: expected an object such as "
            '{"CF-Access-Client-Id": "...", "CF-Access-Client-Secret": "..."}'
        ) from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise UsageError(f"{source} must be a JSON object of string header names and values")
    return dict(data)


def local_instructions(port: int, token_file: str) -> str:
    """The one command for the local JupyterLab, and the same as jupyter_lab_config.py lines."""
    url = f"http://127.0.0.1:{port}"
    path = str(Path(token_file).expanduser())
    config = "\n".join(f"    c.GatewayClient.{k} = {v!r}" for k, v in GATEWAY_RETRY.items())
    return (
        "Start JupyterLab on this machine (the relay's token stays in its file):\n"
        f"    {lab_command(port, path)}\n"
        "Or in jupyter_lab_config.py:\n"
        "    from pathlib import Path\n"
        f'    c.GatewayClient.url = "{url}"\n'
        f'    c.GatewayClient.auth_token = Path("{path}").read_text().strip()\n'
        f"{config}\n"
        f'Relay status: curl -H "Authorization: token $(cat {path})" {url}/relay/status'
    )


def check_hint(result: CheckResult, url: str | None) -> str:
    """The check's hint; for https:// at a server that answers plain HTTP (TLS's
    WRONG_VERSION_NUMBER), the http:// URL to use instead."""
    if url and url.startswith("https://") and "WRONG_VERSION_NUMBER" in result.message:
        plain = "http://" + url.removeprefix("https://")
        return (
            "The remote answers plain HTTP, not TLS: for a Jupyter server on this machine "
            f"(a loopback address) use --url {plain}; a tunnel URL is always https://."
        )
    return result.hint


def _print_check(result: CheckResult, url: str | None = None) -> None:
    mark = "OK" if result.ok else "PROBLEM"
    print(f"{PREFIX} remote check: {mark} ({result.kind}): {result.message}", flush=True)
    hint = check_hint(result, url)
    if hint:
        print(f"{PREFIX} hint: {hint}", flush=True)


class _QuietTLSNoise(logging.Filter):
    """tornado logs "SSL Error on <fd> ...: [SSL: WRONG_VERSION_NUMBER] ..." for a failed TLS
    handshake to the remote: the relay classifies that failure itself (the check's verdict, a
    502 `tls` answer with a hint, /relay/status), so the raw line would only say it twice."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("SSL Error on ")


def configure_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO,
            format="[colab-tunnel relay %(asctime)s] %(message)s",
            datefmt="%H:%M:%S",
            stream=sys.stderr,
        )
    tornado_log = logging.getLogger("tornado.general")
    if not any(isinstance(f, _QuietTLSNoise) for f in tornado_log.filters):
        tornado_log.addFilter(_QuietTLSNoise())


def run_connect(args: argparse.Namespace) -> int:
    """Run the relay (or only the check with --check)."""
    configure_logging()
    try:
        return asyncio.run(_serve(args))
    except UsageError as e:
        print(f"{PREFIX} error: {e}", file=sys.stderr, flush=True)
        return 2


async def _serve(args: argparse.Namespace) -> int:
    if not 0 <= args.port < 65536:
        raise UsageError(f"--port must be between 0 and 65535, not {args.port}")
    if not 0 < args.max_message_size <= MAX_WS_MESSAGE:
        raise UsageError(
            f"--max-message-size must be between 1 and {MAX_WS_MESSAGE} bytes, "
            f"not {args.max_message_size}"
        )
    if not args.gone_after > 0:
        raise UsageError(f"--gone-after must be a number of seconds above 0, not {args.gone_after}")
    try:
        forwards = parse_forwards(args.forward, args.port)
    except ForwardSpecError as e:
        raise UsageError(str(e)) from None
    fixed_token = token_from(args.token_file, PREFIX)
    headers = extra_headers(args.headers_file, dict(os.environ))
    tracker = UpstreamTracker(log)
    watcher: ConnectionFileWatcher | None = None
    if args.connection_file:
        # Only a record signed with fixed_token moves the relay (or, without one, a record
        # whole under the token it carries): see connection_record.accept_record.
        watcher = ConnectionFileWatcher(args.connection_file, tracker, log, token=fixed_token)
        await watcher.read_now()
    else:
        try:
            check_remote_url(args.url)
        except RecordRefused as e:
            raise UsageError(f"--url {e.message}. {e.hint}") from None
        # Not logged as an upstream yet: nothing is known of it before the check below.
        tracker.set_url(args.url, quiet=True)

    def remote_token() -> str | None:
        if fixed_token:
            return fixed_token
        return watcher.info.token if watcher is not None and watcher.info else None

    settings = RelaySettings(
        local_token="",
        remote_token=remote_token,
        extra_headers=headers,
        allowed_origins=frozenset(args.allow_origin),
        http_wait=args.wait,
        ws_resume_timeout=args.resume_timeout,
        ws_max_message=args.max_message_size,
        request_timeout=args.request_timeout,
        gone_after=args.gone_after,
        life_interval=LIFE_INTERVAL,
        follows_file=bool(args.connection_file),
    )
    check_headers = dict(headers)
    token = remote_token()
    if token:
        check_headers["Authorization"] = f"token {token}"
    elif not args.check:
        log.warning(
            "No remote token: pass --token-file, set $%s, or let the remote write it into the "
            "connection file (c.ColabTunnelApp.connection_file_token = True)",
            TOKEN_ENV,
        )
    relay: Relay | None = None
    created = False
    if not args.check:
        # Our own port first: a port in use is said at once, not after the remote's check.
        settings.local_token, created = local_token(args.local_token_file)
        relay = Relay(
            settings,
            tracker,
            log,
            status_extra=lambda: {
                "connection_file": args.connection_file,
                "remote": watcher.describe() if watcher else None,
            },
        )
        try:
            port = relay.listen(args.port)
        except OSError as e:
            raise UsageError(
                f"cannot listen on 127.0.0.1:{args.port}: {e.strerror}. Choose another --port."
            ) from None
        for spec in forwards:
            try:
                relay.add_forward(spec)
            except OSError as e:
                await relay.close()  # nothing is left listening
                raise UsageError(spec.taken_message(e.strerror or str(e))) from None
    current = tracker.current
    refused = watcher.refused if watcher is not None and current is None else None
    if refused is not None and watcher is not None:
        # Nothing to check: say why the file is not followed rather than "no URL yet".
        result = CheckResult.failed(
            Problem(
                refused.kind, f"connection file {watcher.path}: {refused.message}", refused.hint
            )
        )
    else:
        client = KeepAliveClient(settings.ca_certs)
        try:
            result = await check_remote(client, current.url if current else None, check_headers)
        finally:
            client.close()
    _print_check(result, current.url if current else None)
    if watcher is None and current is not None:
        log.info(
            "Remote %s: %s (%s)", current.url, "answers" if result.ok else "PROBLEM", result.kind
        )
    if relay is None:
        return 0 if result.ok else 1

    if watcher is not None:
        watcher.start()
    where = "new token written to" if created else "token in"
    print(
        f"{PREFIX} listening on http://127.0.0.1:{port} -> "
        f"{tracker.current.url if tracker.current else '(waiting for a URL)'}; "
        f"{where} {args.local_token_file}",
        flush=True,
    )
    for forward in relay.forwards:
        print(
            f"{PREFIX} Forwarding {forward.url} -> remote port {forward.spec.remote}",
            flush=True,
        )
    print(local_instructions(port, args.local_token_file), flush=True)

    stop, stop_now = asyncio.Event(), asyncio.Event()

    def on_signal() -> None:
        (stop_now if stop.is_set() else stop).set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    await stop.wait()
    log.info("Stopping")
    await relay.close(grace=args.stop_grace, stop_now=stop_now)
    if watcher is not None:
        await watcher.stop()
    with contextlib.suppress(Exception):
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 0


CONNECT = Subcommand(
    "connect", HELP, DESCRIPTION, add_connect_options, lambda args, rest: run_connect(args)
)

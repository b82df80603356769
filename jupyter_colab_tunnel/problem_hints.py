"""The default hint of every kind of problem: what a user can do about it.

`HINTS` must name every kind of problem_kinds.py (a test checks it), so no kind ever reaches a user
without something to do about it.
"""

from __future__ import annotations

from .problem_kinds import Kind

# The default hint of each kind; a Problem may carry a more specific one.
HINTS: dict[Kind, str] = {
    # --- the tunnel (cloudflared) ---
    "binary_unavailable": (
        "Install cloudflared and put it on PATH, or set c.ColabTunnelApp.cloudflared_path. "
        "Without internet access pycloudflared cannot download it."
    ),
    "invalid_token": (
        "The named-tunnel token was rejected. Copy it again from the Cloudflare dashboard "
        "(Networks > Tunnels > your tunnel > the token in the install command) into "
        "tunnel_token, tunnel_token_file or $TUNNEL_TOKEN."
    ),
    "token_unavailable": (
        "tunnel_mode 'named' needs a token: set c.ColabTunnelApp.tunnel_token, "
        "tunnel_token_file, or $TUNNEL_TOKEN; or use tunnel_mode 'quick'."
    ),
    "bad_arguments": (
        "cloudflared rejected its command line. Check c.ColabTunnelApp.cloudflared_args: only "
        "tunnel-level flags belong there, and never --token (use tunnel_token)."
    ),
    "network": (
        "cloudflared could not reach Cloudflare. Check DNS and outbound access to "
        "api.trycloudflare.com:443 and the edge on port 7844; where UDP is blocked set "
        "c.ColabTunnelApp.protocol = 'http2'. It is retried for as long as the server runs."
    ),
    "rate_limited": (
        "Cloudflare is rate-limiting quick tunnels from this address (HTTP 429, error 1015). "
        "It is retried after a long delay; a named tunnel (tunnel_token) is not rate-limited."
    ),
    "metrics_port_in_use": (
        "The metrics address given to cloudflared in cloudflared_args is taken by another "
        "program. Pick a free port, or remove --metrics from cloudflared_args so that a free "
        "one is chosen."
    ),
    "url_timeout": (
        "cloudflared did not report its tunnel within url_timeout. The quick-tunnel service "
        "may be slow or unreachable; it is restarted. Raise c.ColabTunnelApp.url_timeout on "
        "slow networks."
    ),
    "stalled": (
        "The tunnel lost its connection to Cloudflare and did not recover; cloudflared was "
        "restarted. Frequent stalls point at an unstable network: try protocol 'http2'."
    ),
    "crashed": "cloudflared exited unexpectedly; it is restarted with backoff. See the logs (?logs=50).",
    "crash_loop": (
        "cloudflared keeps exiting, so restarts stopped. Read the last error and the logs "
        '(?logs=100), fix the cause, then POST {"action": "start"} to /colab/tunnel.'
    ),
    "insecure_config": (
        "This server has neither a token nor a password, so a public tunnel would let anyone "
        "run code here. Set a token (--IdentityProvider.token=...) or a password; only if the "
        "tunnel is protected otherwise (Cloudflare Access), set allow_unauthenticated = True."
    ),
    "invalid_config": (
        "Fix the named ColabTunnelApp settings and restart the server, or POST "
        '{"action": "start"} to run the tunnel with the valid settings.'
    ),
    # --- the GPU (NVML) ---
    "no_library": (
        "This machine has no NVIDIA driver library (libnvidia-ml.so.1). On Colab pick "
        "Runtime > Change runtime type > GPU; elsewhere install the NVIDIA driver."
    ),
    "driver_not_loaded": (
        "The NVIDIA driver library is installed but the kernel driver is not loaded. Check with "
        "`nvidia-smi`; load the driver (e.g. `sudo modprobe nvidia`) or reboot. In a container, "
        "start it with GPU access (e.g. `docker run --gpus all`)."
    ),
    "no_permission": (
        "NVML may not open the GPU device files (/dev/nvidia*). Run the server as a user that "
        "can (often the `video` group), or give the container access to the GPU."
    ),
    "version_mismatch": (
        "The NVIDIA kernel driver and its user-space library have different versions, usually "
        "after a driver upgrade without a reboot. Reboot (or reload the nvidia kernel modules)."
    ),
    "no_devices": (
        "NVML works but sees no GPU. In a container, expose the GPUs (e.g. `--gpus all` or "
        "NVIDIA_VISIBLE_DEVICES); on Colab pick Runtime > Change runtime type > GPU."
    ),
    "tpu_runtime": (
        "Use the TPU from JAX or PyTorch/XLA. For an NVIDIA GPU on Colab pick "
        "Runtime > Change runtime type > a GPU (e.g. T4)."
    ),
    "shutting_down": (
        "The server is stopping, so it no longer reads the GPUs. Start it again (or wait for the "
        "runtime to come back) and repeat the request."
    ),
    "unknown": (
        "NVML failed for an unexpected reason. Run `nvidia-smi` to see whether the driver works; "
        "restarting the runtime (or the machine) often helps."
    ),
    # --- launch() and the CLI ---
    "unreachable": "Is the server still running? Read its log.",
    "http_error": "Is the server still running? Read its log.",
    "already_running": "Stop it first: Connection.stop() or `jupyter colab-tunnel stop`.",
    "port_in_use": "Choose another port, or leave port=None to pick a free one.",
    "no_state_dir": "Make $HOME (or the system's temporary directory) writable.",
    "bad_root_dir": "Pass root_dir= an existing directory.",
    "server_exited": "Read the whole server log: its path is printed with the error.",
    "token_rejected": "Stop it (`jupyter colab-tunnel stop`) and launch again.",
    "server_timeout": "The machine may be overloaded: read the server log, then launch again.",
    "extension_missing": (
        "Install jupyter-colab-tunnel in the Python that runs the server and check "
        "`jupyter server extension list`."
    ),
    "timeout": (
        "The server keeps trying: call conn.wait() or read conn.status(); raise timeout= on "
        "slow networks."
    ),
    "not_started": 'Start it: POST {"action": "start"} to /colab/tunnel.',
    # --- configuration ---
    "invalid_value": "Fix the setting in jupyter_server_config.py (or on the command line).",
    # --- the REST client and the MCP tools (local side) ---
    "invalid_url": (
        "Give the server's address, e.g. https://<words>.trycloudflare.com or "
        "http://127.0.0.1:8888/ (with its base_url, if it has one)."
    ),
    "dns_error": (
        "Check the URL for typos. A quick tunnel's hostname disappears when its cloudflared "
        "stops: read the current URL on the remote (`jupyter colab-tunnel status`)."
    ),
    "connection_refused": "Is the server (or the relay) running, and is the port right?",
    "tls_error": (
        "Use http:// for a server on this machine (it speaks plain HTTP) and https:// for a "
        "tunnel URL. Certificates are checked against the system trust store: behind a "
        "TLS-intercepting proxy, point SSL_CERT_FILE at its CA bundle."
    ),
    "forbidden": (
        "Pass the token of the server that URL reaches: the remote Jupyter server's token for a "
        "tunnel URL (printed by launch() and `jupyter colab-tunnel status` on the remote), or "
        "the relay's token for the local relay. `jupyter colab-tunnel mcp` reads it from "
        "--token-file or $JUPYTER_COLAB_TUNNEL_TOKEN."
    ),
    "not_found": (
        "The URL reaches a web server without the jupyter-colab-tunnel extension: install "
        "jupyter-colab-tunnel where the remote Jupyter server runs and restart it (`jupyter "
        "server extension list` shows it), or fix the URL's base path."
    ),
    "no_tunnel": (
        "No tunnel is connected behind that hostname. A quick tunnel gets a new URL each time "
        "cloudflared starts: read the current one on the remote (`jupyter colab-tunnel "
        "status`, or `url` in /colab/tunnel), or use a named tunnel or the local relay, which "
        "keep their address. If the runtime was recycled, launch the server again."
    ),
    "bad_gateway": (
        "The tunnel (or proxy) is up but the Jupyter server behind it does not answer: it may "
        "have stopped or be restarting. Check it on the remote machine."
    ),
    "redirected": "Use the address the server redirects to, with the server's base_url.",
    "bad_request": "The request was refused as malformed; see the message.",
    "conflict": "The remote cannot do this in its current configuration; see the message.",
    "server_error": "The remote server failed; its log (on the remote machine) says why.",
    "bad_response": (
        "The URL reaches some other web server or a login page: check the URL (and its base_url)."
    ),
    "tunnel_cut": (
        "A stop or restart cut the tunnel its own request went through. A quick tunnel comes "
        "back under a new URL: read it on the remote (`jupyter colab-tunnel status`); the local "
        "relay follows the URL by itself, and a named tunnel keeps it."
    ),
    "no_such_gpu": "Call colab_gpu for the list of GPUs, or leave gpu_index out to use any GPU.",
    # --- the local relay ---
    "no_upstream": (
        "The remote's tunnel has no live URL: it is starting, restarting or stopped, or the "
        "runtime is gone. Wait for it to become ready (or start it on the remote); GET "
        "/relay/status shows what the relay knows, and the connection file the remote's state."
    ),
    "remote_gone": (
        "The remote runtime has ended (stopped, recycled or killed): its kernels and their "
        "state are lost. Start a new runtime (in Colab, run launch() again) writing the same "
        "connection file: the relay follows it by itself, without a restart, and new kernels "
        "run there."
    ),
    "remote_refused": (
        "The remote Jupyter server refused the kernel websocket: a 403 means the remote token "
        "is wrong (pass the current one with --token-file), a 404 that the kernel no longer "
        "exists (start a new one)."
    ),
    "host_not_allowed": (
        "Address the relay as 127.0.0.1, localhost or [::1]: it answers no other host name "
        "(protection against DNS rebinding)."
    ),
    "origin_not_allowed": (
        "A web page on another origin called the relay. If that page must use it, start the "
        "relay with --allow-origin <that origin>."
    ),
    "bad_local_token": (
        "Send the relay's own token, not the remote's: the content of the relay's "
        "--local-token-file (default ~/.jupyter-colab-tunnel/relay_token), as "
        "'Authorization: token <token>' (JupyterLab: c.GatewayClient.auth_token)."
    ),
    "replaced": (
        "A newer connection to the same kernel session took this one's place; nothing to do "
        "unless two clients share one session."
    ),
    "not_forwarded": (
        "The relay forwards only what a local JupyterLab in gateway mode and the tools need "
        "(kernels, kernel specs, /colab/*): open other pages on the remote itself."
    ),
    "body_too_large": "Send less: the relay forwards request bodies up to 64 MiB.",
    "upstream_lost_request": (
        "The request reached the remote but its answer was lost (the tunnel dropped), so the "
        "relay did not send it again. Check the remote's state (e.g. GET /colab/tunnel or the "
        "kernel list) before you repeat it."
    ),
    "remote_token_withheld": (
        "The remote's answer held its own token, so the relay did not pass it on. Open that "
        "page on the remote itself, not through the relay."
    ),
    "relay_stopping": (
        "The relay is stopping. Stop the local JupyterLab first and the relay after it; start "
        "the relay again to go on."
    ),
    # --- the remote's forward route ---
    "port_not_allowed": (
        "Forward another port: the server's own, cloudflared's metrics port and Colab's own "
        "(8080, 9000, 6000, 3453) never are, and c.ColabTunnelApp.forward_ports on the remote "
        "limits the rest (default 1024-65535)."
    ),
    "port_not_listening": (
        "Start the app on the remote first, listening on 127.0.0.1 or 0.0.0.0 at that port, "
        "or forward a port that listens (GET /colab/ports lists them)."
    ),
    "forward_path_refused": (
        "Send the path as the app expects it, without '.' or '..' segments or backslashes "
        "(raw or percent-encoded): they could leave the forward route."
    ),
    "forward_failed": (
        "The app on the remote closed the connection or answered something that is not HTTP: "
        "check that it is running and serves HTTP at that port (its own log says why)."
    ),
    # --- file transfers (/colab/files, `jupyter colab-tunnel cp`) ---
    "path_outside_root": (
        "Give a path inside the remote server's root directory (ServerApp.root_dir, /content on "
        "Colab): relative to it, or absolute under it; '..' and symlinks that lead out are refused."
    ),
    "path_hidden": (
        "The remote server does not serve hidden files (a name starting with '.'); start it with "
        "--ContentsManager.allow_hidden=True to allow them, or use another name."
    ),
    "path_not_found": (
        "Check the path (`jupyter colab-tunnel cp` and the colab_list tool list a remote "
        "directory); a file's directory must exist (cp -r creates directories)."
    ),
    "is_a_directory": "Copy a directory with -r, or name a file inside it.",
    "not_a_directory": "A file is in the way: name a directory, or remove or rename the file.",
    "upload_offset_mismatch": (
        "The upload resumes from the bytes the remote holds: run the same command again."
    ),
    "upload_busy": (
        "Another transfer to the same file is under way: wait for it to end, then run again."
    ),
    "upload_mismatch": (
        "The bytes that arrived differ from the file sent (it changed while it was read, or "
        "another transfer wrote the same target): run the same command again."
    ),
    "download_mismatch": (
        "The file changed on the remote while it was read, or the bytes were damaged: run the "
        "same command again (the target was left as it was)."
    ),
    "file_changed": "The remote file changed during the transfer: run the same command again.",
    "range_not_satisfiable": "Ask for a range inside the file (GET ?op=stat gives its size).",
    "disk_full": (
        "The remote's disk (or its file size limit) is full: free space there (`df -h` in a "
        "cell; on Colab, /content is the VM's disk) or copy to another place, e.g. Drive."
    ),
    "local_disk_full": "This machine's disk is full: free space here, or copy somewhere else.",
    "local_error": "Check the local path and its permissions.",
    # --- the connection file, as the relay reads it ---
    "unreadable": "Check that the connection file exists and that you may read it.",
    "not_regular": "Point --connection-file at the JSON file the remote writes, not a pipe or folder.",
    "too_large": "This is not a connection file: point --connection-file at the remote's file.",
    "not_utf8": "This is not a connection file: point --connection-file at the remote's file.",
    "not_json": (
        "A synced folder can show a half-written file for a moment: it is read again when it "
        "changes. If it stays, point --connection-file at the remote's file."
    ),
    "bad_record": "This is not a connection file: point --connection-file at the remote's file.",
    "bad_url": "The file's URL is not an http(s) URL: only the remote should write this file.",
    "insecure_url": (
        "The token is never sent over plain http:// beyond this machine: use the https tunnel URL."
    ),
    "unsigned": (
        "Update jupyter-colab-tunnel on the remote and restart its server (it then writes signed "
        "records), or connect with --url instead. Keep the file in a folder only you can write."
    ),
    "bad_signature": (
        "The file was not written by the remote whose token the relay holds: check --token-file, "
        "and keep the connection file in a folder only you can write."
    ),
    "no_key": (
        "Give the relay the remote token (--token-file or $JUPYTER_COLAB_TUNNEL_TOKEN) so that it "
        "can check the file's signature."
    ),
    "stale": (
        "An older record than the one in use (a replay, or a sync conflict): the relay keeps the "
        "newer. Keep the connection file in a folder only you can write."
    ),
    # --- the local JupyterLab's view of the remote (/colab/remote/*) ---
    "not_gateway_mode": (
        "Start JupyterLab with the command `jupyter colab-tunnel connect` prints (--gateway-url "
        "pointing at the relay) to see the remote here; this JupyterLab runs its kernels locally."
    ),
    "no_extension": (
        "Install jupyter-colab-tunnel on the remote and restart its Jupyter server (in Colab, run "
        "launch()), and point --gateway-url at `jupyter colab-tunnel connect`'s relay."
    ),
    "not_a_relay": (
        "Point --gateway-url at the relay that `jupyter colab-tunnel connect` runs on this "
        "machine to see its state here."
    ),
}

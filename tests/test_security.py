"""Security of the /colab endpoints with real server processes: auth, XSRF, authorizer, secrets.

The whole-run scans (the tunnel token in no child's command line, log, response or failure text;
no process left behind) live in tests/run_audit.py and run at the end of every pytest session;
the last tests here prove that the audit really catches what it looks for.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import run_audit
from server_process import ServerProcess
from tunnel_env import FAST, VALID_TOKEN, TunnelServer, start_tunnel_server

from testkit import fake_cloudflared

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent

OPERATIONS = [
    ("GET", "colab/status", None),
    ("GET", "colab/gpu", None),
    ("GET", "colab/gpu?processes=false", None),
    ("GET", "colab/tunnel", None),
    ("GET", "colab/tunnel?logs=10", None),
    ("GET", "colab/ports", None),
    ("POST", "colab/tunnel", {"action": "start"}),
    ("POST", "colab/tunnel", {"action": "stop"}),
    ("POST", "colab/tunnel", {"action": "restart"}),
]
OP_IDS = [f"{m} {p} {b['action'] if b else ''}".strip() for m, p, b in OPERATIONS]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TunnelServer]:
    ts = start_tunnel_server(tmp_path_factory.mktemp("security"), traits={"autostart": False})
    try:
        yield ts
    finally:
        code = ts.server.stop()
        left = ts.alive_spawned()
    assert code == 0
    assert left == []


def assert_forbidden(r: Any) -> None:
    assert r.status == 403, (r.status, r.body[:200])
    assert r.headers["Content-Type"].startswith("application/json")
    assert isinstance(r.json()["message"], str)


@pytest.mark.parametrize(
    "credentials",
    [
        {},
        {"Authorization": "token wrong"},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "token "},
        {"Cookie": "username-127-0-0-1=forged; _xsrf=forged"},
    ],
    ids=["none", "wrong-token", "wrong-bearer", "empty-token", "forged-cookie"],
)
@pytest.mark.parametrize(("method", "path", "body"), OPERATIONS, ids=OP_IDS)
def test_every_endpoint_refuses_missing_or_wrong_credentials(
    live: TunnelServer, method: str, path: str, body: Any, credentials: dict[str, str]
) -> None:
    r = live.server.request(method, path, body=body, headers=credentials, token=None)
    assert_forbidden(r)
    assert live.spawned_pids() == []


@pytest.mark.parametrize(("method", "path", "body"), OPERATIONS[:6], ids=OP_IDS[:6])
def test_wrong_token_in_the_query_is_refused(
    live: TunnelServer, method: str, path: str, body: Any
) -> None:
    sep = "&" if "?" in path else "?"
    assert_forbidden(live.server.request(method, f"{path}{sep}token=wrong", token=None))
    # The right one in the query works (what a browser link carries).
    ok = live.server.request(method, f"{path}{sep}token={live.server.token}", token=None)
    assert ok.status == 200


# ----- cookie login and XSRF ----------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def browser_login(server: ServerProcess) -> dict[str, str]:
    """Log in like a browser (the login form, with the token as password): the cookies set."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), _NoRedirect())
    with opener.open(server.url + "login", timeout=10) as r:
        assert r.status == 200
    xsrf = {c.name: c.value for c in jar}["_xsrf"]
    form = urllib.parse.urlencode({"_xsrf": xsrf, "password": server.token}).encode()
    with pytest.raises(urllib.error.HTTPError) as redirect:
        opener.open(server.url + "login", data=form, timeout=10)
    assert redirect.value.code == 302  # to the next page: logged in
    cookies = {c.name: c.value for c in jar if c.value is not None}
    assert any(name.startswith("username-") for name in cookies), cookies.keys()
    return cookies


def test_cookie_only_post_needs_the_xsrf_header(live: TunnelServer) -> None:
    cookies = browser_login(live.server)
    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
    # Logged in by cookie alone, reads work...
    for path in ("colab/status", "colab/gpu", "colab/tunnel"):
        r = live.server.request("GET", path, headers={"Cookie": cookie}, token=None)
        assert r.status == 200, (path, r.body[:200])
    # ...a POST without X-XSRFToken is refused (a cross-site form could send the cookie)...
    body = {"action": "start"}
    r = live.server.request("POST", "colab/tunnel", body, headers={"Cookie": cookie}, token=None)
    assert_forbidden(r)
    assert "_xsrf" in r.json()["message"]
    wrong = {"Cookie": cookie, "X-XSRFToken": "2|00000000|" + "0" * 32 + "|1"}
    assert_forbidden(live.server.request("POST", "colab/tunnel", body, headers=wrong, token=None))
    assert live.spawned_pids() == []
    assert live.tunnel()["state"] == "stopped"
    # ...and with the _xsrf cookie's value in X-XSRFToken it is done.
    good = {"Cookie": cookie, "X-XSRFToken": cookies["_xsrf"]}
    r = live.server.request("POST", "colab/tunnel", {"action": "stop"}, headers=good, token=None)
    assert r.status == 200, r.body[:300]
    assert r.json()["state"] == "stopped"


# ----- a custom Authorizer ------------------------------------------------------------------


def test_authorizer_denying_write_on_colab(server_factory: Any, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_cloudflared.install(bin_dir)
    server = server_factory(
        args=[
            "--ServerApp.authorizer_class=deny_write_authorizer.DenyWriteAuthorizer",
            "--ColabTunnelApp.autostart=False",
            *(f"--ColabTunnelApp.{k}={v}" for k, v in FAST.items()),
        ],
        env={
            "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
        },
        path_prepend=[bin_dir],
    )
    for path in ("colab/status", "colab/gpu", "colab/tunnel?logs=5"):
        assert server.request("GET", path).status == 200
    for action in ("start", "stop", "restart"):
        r = server.request("POST", "colab/tunnel", {"action": action})
        assert_forbidden(r)
        assert r.json()["message"] == "User is not authorized to write on resource: colab."
    assert server.get_json("colab/tunnel")["state"] == "stopped"
    log = server.log()
    assert "DenyWriteAuthorizer: write on colab -> False" in log
    assert "DenyWriteAuthorizer: read on colab -> True" in log
    assert "Started cloudflared" not in log


# ----- the tunnel token stays secret --------------------------------------------------------


def test_token_file_reaches_only_the_childs_environment(tunnel_server: Any, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(VALID_TOKEN + "\n")
    ts = tunnel_server(
        traits={"tunnel_token_file": str(token_file), "public_hostname": "jupyter.example.com"},
        env={"FAKE_CLOUDFLARED_HOSTNAME": "jupyter.example.com"},
    )
    body = ts.wait_state("ready")
    pid = body["pid"]
    assert ts.fake_state(pid)["token_seen"] is True
    proc = Path(f"/proc/{pid}")
    assert VALID_TOKEN.encode() not in (proc / "cmdline").read_bytes()
    assert f"TUNNEL_TOKEN={VALID_TOKEN}".encode() in (proc / "environ").read_bytes().split(b"\0")
    server_env = Path(f"/proc/{ts.server.pid}/environ").read_bytes()
    assert VALID_TOKEN.encode() not in server_env  # read from the file, never exported
    seen = [
        ts.server.request("GET", "colab/tunnel?logs=1000").body,
        ts.server.request("GET", "colab/status").body,
        ts.post("restart").body,
        ts.server.log().encode(),
    ]
    assert not any(VALID_TOKEN.encode() in text for text in seen)
    assert run_audit.AUDIT.cmdlines_checked > 0  # the session audit is sampling children


def test_the_run_audit_catches_leaks_and_leftovers(tmp_path: Path) -> None:
    """The session audit is only worth its silence if it speaks: plant each kind of leak."""
    secret = "planted-secret-0123456789"
    audit = run_audit.Audit(basetemp=tmp_path, secrets={"PLANTED": secret})
    audit.observe(json.dumps({"token": secret}).encode(), "a response")
    (tmp_path / "server.log").write_text(f"[I] started with {secret}\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "cloudflared"
    script.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(60)\n")
    script.chmod(0o755)
    child = subprocess.Popen([str(script), "tunnel", "run", "--token", secret])
    try:
        audit._sample_once()
        audit._scan_files()
        left = audit.leftovers(grace=0.5)
    finally:
        child.kill()
        child.wait()
    assert any("a response" in f for f in audit.findings), audit.findings
    assert any("server.log" in f for f in audit.findings), audit.findings
    assert any(f"/proc/{child.pid}/cmdline" in f for f in audit.findings), audit.findings
    assert any(f"pid {child.pid}:" in line for line in left), left
    assert audit.leftovers(grace=0.5) == []
    # The real audit of this run knows the tunnel token and samples children.
    assert VALID_TOKEN in run_audit.AUDIT.secrets.values()
    assert os.environ[run_audit.MARK_ENV] == run_audit.AUDIT.run_id

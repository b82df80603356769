"""Colab's environment stays as Colab shipped it.

For each Colab runtime in tests/colab_pins/ (the newest on Python 3.13, the last on 3.12): a
venv on that runtime's Python gets the versions Colab pins, then the built wheel without
extras, as `%pip install` adds it. No version Colab had may move. Then the real path runs from
that venv: `jupyter server` with the extension and the cloudflared stand-in, the tunnel gets
ready, and a kernel started through it reports Colab's jupyter_client (7.4.9).

It installs packages from the package index. The Python is found through $COLAB_PYTHON_3_13
(or _3_12), pyenv, or `python3.13` on PATH; without one the runtime is skipped, unless
$COLAB_ENV_REQUIRED is set (CI sets it): then it fails.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from e2e_kit import Browser
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from server_process import build_wheel

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

# Building the venv (from the index) counts towards the first test's time.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

HERE = Path(__file__).parent
REPO = HERE.parent
PINS_DIR = HERE / "colab_pins"
RUNTIMES = sorted(p.stem for p in PINS_DIR.glob("*.txt"))
PIP_TIMEOUT = 600


@dataclass
class Runtime:
    name: str
    python: tuple[int, int]
    pins: dict[str, str]  # canonical name -> version

    @property
    def tag(self) -> str:
        return "%d.%d" % self.python  # noqa: UP031

    @property
    def file(self) -> Path:
        return PINS_DIR / f"{self.name}.txt"


def read_runtime(name: str) -> Runtime:
    """tests/colab_pins/<name>.txt: a `# python: X.Y` line and name==version lines."""
    path = PINS_DIR / f"{name}.txt"
    python = None
    pins = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        found = re.fullmatch(r"#\s*python:\s*(\d+)\.(\d+)\s*", raw)
        if found:
            python = (int(found[1]), int(found[2]))
        line = raw.split("#", 1)[0].strip()
        if line:
            pkg, _, version = line.partition("==")
            assert version, f"{path.name}: {line!r} is not name==version"
            pins[canonicalize_name(pkg)] = version
    assert python, f"{path.name} has no '# python: X.Y' line"
    return Runtime(name=name, python=python, pins=pins)


def extra_packages() -> set[str]:
    """Canonical names of the packages the optional extras in pyproject.toml list."""
    with (REPO / "pyproject.toml").open("rb") as f:
        extras = tomllib.load(f)["project"]["optional-dependencies"]
    names = set()
    for requirements in extras.values():
        for requirement in requirements:
            names.add(canonicalize_name(Requirement(requirement).name))
    names.discard("jupyter-colab-tunnel")
    return names


def _python_version(python: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except OSError:
        return None
    if out.returncode != 0:
        return None
    major, minor = out.stdout.split()
    return int(major), int(minor)


def find_python(version: tuple[int, int]) -> str | None:
    """An interpreter of this version: $COLAB_PYTHON_3_13, pyenv's 3.13.*, or python3.13."""
    tag = "%d.%d" % version  # noqa: UP031
    candidates = []
    given = os.environ.get("COLAB_PYTHON_" + tag.replace(".", "_"))
    if given:
        candidates.append(given)
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    if shutil.which("pyenv"):
        out = subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=30)
        if out.returncode == 0 and out.stdout.strip():
            pyenv_root = out.stdout.strip()
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/{tag}.*/bin/python{tag}"), reverse=True)
    on_path = shutil.which(f"python{tag}")
    if on_path:
        candidates.append(on_path)  # a pyenv shim works only if that version is selected
    for python in candidates:
        if _python_version(python) == version:
            return python
    return None


def freeze(python: Path) -> dict[str, str]:
    out = subprocess.run(
        [str(python), "-m", "pip", "freeze", "--all"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    versions = {}
    for line in out.stdout.splitlines():
        if "==" in line:
            name, _, version = line.partition("==")
            versions[canonicalize_name(name)] = version.strip()
        elif " @ " in line:  # a direct reference: the wheel we installed
            versions[canonicalize_name(line.split(" @ ")[0])] = line.split(" @ ", 1)[1]
    return versions


def pip(python: Path, *args: str) -> str:
    out = subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 0, f"pip {' '.join(args)} failed:\n{text[-6000:]}"
    return text


def built_wheel(tmp: Path) -> Path:
    """$COLAB_ENV_WHEEL (the release check's wheel), or one built here from the source tree."""
    given = os.environ.get("COLAB_ENV_WHEEL")
    if given:
        return Path(given)
    return build_wheel(tmp)


@dataclass
class ColabEnv:
    runtime: Runtime
    venv: Path
    before: dict[str, str]
    after: dict[str, str]

    @property
    def pins(self) -> dict[str, str]:
        return self.runtime.pins

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)


@pytest.fixture(scope="module", params=RUNTIMES)
def colab_env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> ColabEnv:
    runtime = read_runtime(request.param)
    python = find_python(runtime.python)
    if python is None:
        tag = runtime.tag
        message = (
            f"no Python {tag} for Colab's {runtime.name} runtime: install it (`pyenv install "
            f"{tag}`) or set $COLAB_PYTHON_{tag.replace('.', '_')} to its interpreter"
        )
        if os.environ.get("COLAB_ENV_REQUIRED"):
            pytest.fail(message)
        pytest.skip(message)
    tmp = tmp_path_factory.mktemp(f"colab-{runtime.name}")
    venv = tmp / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=300)
    env_python = venv / "bin" / "python"
    pip(env_python, "install", "-q", "-r", str(runtime.file))
    before = freeze(env_python)
    # As `%pip install "git+..."` or `%pip install <wheel>` does on Colab: no extras, deps from
    # the index, and pip free to upgrade whatever our floors demand (which the test catches).
    pip(env_python, "install", "-q", str(built_wheel(tmp)))
    after = freeze(env_python)
    return ColabEnv(runtime=runtime, venv=venv, before=before, after=after)


def test_the_pins_are_what_colab_ships(colab_env: ColabEnv) -> None:
    # The environment really is Colab's: its Python, and every pin installed as pinned.
    assert _python_version(str(colab_env.python)) == colab_env.runtime.python
    wrong = {
        n: colab_env.before.get(n)
        for n, v in colab_env.pins.items()
        if colab_env.before.get(n) != v
    }
    assert not wrong, f"the pins did not install as pinned: {wrong}"


def test_installing_the_wheel_moves_no_colab_version(colab_env: ColabEnv) -> None:
    moved = {
        name: f"{version} -> {colab_env.after.get(name, 'removed')}"
        for name, version in colab_env.before.items()
        if colab_env.after.get(name) != version
    }
    assert not moved, (
        f"installing jupyter-colab-tunnel changed versions Colab ships: {moved}. Lower the "
        "floors in pyproject.toml [project].dependencies so Colab's pins satisfy them."
    )
    assert "jupyter-colab-tunnel" in colab_env.after
    added = set(colab_env.after) - set(colab_env.before)
    # Without extras: none of the extras' own packages (test, dev, bench, release) came along.
    from_extras = added & extra_packages()
    assert not from_extras, f"a plain install pulled in extras' packages: {sorted(from_extras)}"
    check = subprocess.run(
        [str(colab_env.python), "-m", "pip", "check"], capture_output=True, text=True, timeout=120
    )
    ours = [line for line in check.stdout.splitlines() if "jupyter-colab-tunnel" in line.lower()]
    assert not ours, check.stdout


def test_extension_is_enabled_in_the_colab_env(colab_env: ColabEnv, tmp_path: Path) -> None:
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path), HOME=str(tmp_path))
    out = subprocess.run(
        [colab_env.bin("jupyter"), "server", "extension", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.stdout + out.stderr)
    assert "jupyter_colab_tunnel enabled" in text, text
    assert re.search(r"jupyter_colab_tunnel \S+ OK", text), text


def test_server_tunnel_and_kernel_in_the_colab_env(colab_env: ColabEnv, tunnel_server: Any) -> None:
    ts = tunnel_server(command=[colab_env.bin("jupyter-server")])
    status = ts.server.get_json("colab/status")
    assert status["server"]["version"] == colab_env.pins["jupyter-server"]
    body = ts.wait_state("ready")
    edge = ts.fake_state(body["pid"])["edge"]
    host = urlparse(body["url"]).hostname
    assert edge, body
    assert host, body

    # Through the tunnel, as a browser on the user's machine: log in, start a kernel, run code.
    browser = Browser(edge=edge, host=host)
    assert browser.login(ts.server.token).status == 302
    created = browser.request("POST", "/api/kernels", body={"name": "python3"})
    assert created.status == 201, (created.status, created.body, ts.server.log()[-3000:])
    with browser.kernel_channel(created.json()["id"]) as channel:
        run = channel.execute(
            "import sys, jupyter_client, ipykernel\n"
            "print(jupyter_client.__version__, ipykernel.__version__, sys.prefix)",
            timeout=60,
        )
    assert (run.status, run.error) == ("ok", None), run
    jc_version, ik_version, prefix = run.stdout.split()
    assert jc_version == colab_env.pins["jupyter-client"] == "7.4.9"
    assert ik_version == colab_env.pins["ipykernel"]
    assert Path(prefix) == colab_env.venv  # the kernel runs in the Colab env, not the tests'


def test_config_loading_on_colabs_traitlets(colab_env: ColabEnv, tunnel_server: Any) -> None:
    # ColabTunnelApp._load_config overrides a private traitlets method: prove it on Colab's
    # traitlets (5.7.1), with a bad value beside a good one and the deprecated name.
    assert colab_env.pins["traitlets"] == "5.7.1"
    ts = tunnel_server(
        command=[colab_env.bin("jupyter-server")],
        traits={"protocol": "udp", "extra_args": ["--edge-ip-version", "4"]},
        wait=False,
    )
    body = ts.server.wait_for("colab/tunnel", lambda b: b["state"] == "failed")
    (error,) = body["config_errors"]
    assert error["trait"] == "protocol"
    assert "'auto', 'quic', 'http2'" in error["message"]
    assert body["error"]["kind"] == "invalid_config"
    log = ts.server.log()
    assert "ColabTunnelApp.extra_args is deprecated" in log

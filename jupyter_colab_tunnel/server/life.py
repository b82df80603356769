"""The runtime's life: when the machine started, how idle the server is, and when it may end.

Hosted runtimes end without warning (Colab after a maximum lifetime or a stretch of idle time,
Kaggle after its session cap). This module says how long this one has been up, how long the
Jupyter server has seen no activity, and, where the platform's limits are known (or configured),
an estimated end. Every end time is an estimate: no platform publishes when it will recycle a
machine, and none of this tries to keep a runtime alive.

The computations are pure (`limits_for`, `life_section`); `LifeReporter` gathers their inputs:
the machine's start (psutil, read off the event loop and cached), jupyter_server's own
`last_activity()` and the kernels' execution states (both in memory).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..cache import SharedSample
from ..timefmt import iso_utc

if TYPE_CHECKING:
    from jupyter_server.serverapp import ServerApp


COLAB_FAQ = "https://research.google.com/colaboratory/faq.html"
KAGGLE_DOCS = "https://www.kaggle.com/docs/notebooks"
HOUR = 3600.0
# The machine's start does not change; re-read now and then only in case the clock was stepped.
MACHINE_START_TTL = 60.0


@dataclass(frozen=True)
class Limits:
    """A platform's limits in seconds (None: not known), where they come from, and a note."""

    max_lifetime_seconds: float | None
    idle_timeout_seconds: float | None
    source: str
    note: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "max_lifetime_seconds": self.max_lifetime_seconds,
            "idle_timeout_seconds": self.idle_timeout_seconds,
            "source": self.source,
            "note": self.note,
        }


COLAB_LIMITS = Limits(
    max_lifetime_seconds=12 * HOUR,
    idle_timeout_seconds=1.5 * HOUR,
    source=COLAB_FAQ,
    note=(
        "Colab's FAQ: free notebooks run for at most 12 hours (longer on paid tiers), and idle "
        "runtimes are recycled after a time it does not publish; the 90 minutes used here are "
        "what users report with the Colab tab closed. Estimates only."
    ),
)

KAGGLE_LIMITS = Limits(
    max_lifetime_seconds=12 * HOUR,
    idle_timeout_seconds=20 * 60.0,
    source=KAGGLE_DOCS,
    note=(
        "Kaggle's notebook documentation: editing sessions run for at most 12 hours on CPU and "
        "GPU and 9 hours on TPU, and end after 20 minutes in which no code is modified or run "
        "(Kaggle's editor sees edits; this server sees only what reaches it). Estimates only."
    ),
)


def platform_name(runtime: Mapping[str, Any], environ: Mapping[str, str]) -> str | None:
    """'colab', 'kaggle' or None, from the runtime detection (runtime.py) and the environment."""
    if runtime.get("colab"):
        return "colab"
    if environ.get("KAGGLE_KERNEL_RUN_TYPE") or environ.get("KAGGLE_URL_BASE"):
        return "kaggle"
    return None


def limits_for(
    platform: str | None,
    accelerator: str | None = None,
    max_lifetime: float | None = None,
    idle_timeout: float | None = None,
) -> Limits | None:
    """The limits that apply: the platform's, with each setting given (not None) replacing its
    figure (0: not known). None when neither the platform nor a setting says anything."""
    base: Limits | None = None
    if platform == "colab":
        base = COLAB_LIMITS
    elif platform == "kaggle":
        lifetime = 9 * HOUR if accelerator == "tpu" else 12 * HOUR
        base = Limits(
            lifetime, KAGGLE_LIMITS.idle_timeout_seconds, KAGGLE_LIMITS.source, KAGGLE_LIMITS.note
        )
    if max_lifetime is None and idle_timeout is None:
        return base
    configured = [
        f"ColabTunnelApp.{name}"
        for name, value in (
            ("runtime_max_lifetime", max_lifetime),
            ("runtime_idle_timeout", idle_timeout),
        )
        if value is not None
    ]
    # The platform's page stays a source only while one of its figures is still used.
    rest = base if base is not None and len(configured) < 2 else None
    note = "Set in this server's settings: " + ", ".join(configured) + "."
    note += " Otherwise: " + rest.note if rest is not None else " Estimates only."
    return Limits(
        max_lifetime_seconds=_setting(max_lifetime, base.max_lifetime_seconds if base else None),
        idle_timeout_seconds=_setting(idle_timeout, base.idle_timeout_seconds if base else None),
        source="; ".join([*configured, *([rest.source] if rest is not None else [])]),
        note=note,
    )


def _setting(value: float | None, platform_figure: float | None) -> float | None:
    """A setting's figure (0: not known) over the platform's."""
    if value is None:
        return platform_figure
    return value or None


def idle_for(now: float, last_activity_at: float, busy_kernels: int) -> float:
    """Seconds without activity; a running cell is activity: nothing is idle while a kernel is
    busy."""
    return 0.0 if busy_kernels else max(0.0, now - last_activity_at)


def uptime(now: float, machine_started_at: float | None) -> float | None:
    """Seconds since the machine started, to a tenth (None: not read yet)."""
    if machine_started_at is None:
        return None
    return round(max(0.0, now - machine_started_at), 1)


def life_section(
    now: float,
    machine_started_at: float | None,
    last_activity_at: float,
    busy_kernels: int,
    platform: str | None,
    limits: Limits | None,
) -> dict[str, Any]:
    """The `life` section of /colab/status (all times POSIX seconds)."""
    idle = idle_for(now, last_activity_at, busy_kernels)
    ends: list[tuple[float, str]] = []
    if limits is not None:
        if limits.max_lifetime_seconds and machine_started_at is not None:
            ends.append((machine_started_at + limits.max_lifetime_seconds, "max_lifetime"))
        if limits.idle_timeout_seconds:
            ends.append((now - idle + limits.idle_timeout_seconds, "idle"))
    end_at, end_reason = min(ends) if ends else (None, None)
    return {
        "machine_started_at": iso_utc(round(machine_started_at))
        if machine_started_at is not None
        else None,
        "uptime_seconds": uptime(now, machine_started_at),
        "last_activity_at": iso_utc(last_activity_at),
        "idle_seconds": round(idle, 1),
        "busy_kernels": busy_kernels,
        "platform": platform,
        "limits": limits.as_dict() if limits is not None else None,
        # Whole seconds: the same estimate reads the same in every record and answer.
        "estimated_end_at": iso_utc(round(end_at)) if end_at is not None else None,
        "estimated_end_reason": end_reason,
        "estimate": True,
    }


def read_machine_start() -> float | None:
    """The later of the kernel's boot time and PID 1's start (a container's start). Blocking.

    Read from /proc where there is one (what psutil reads too), so that psutil stays out of
    the server's start-up, when this is first read; psutil elsewhere."""
    boot = _proc_boot_time()
    if boot is None:
        return _psutil_machine_start()
    starts = [boot]
    pid1 = _proc_pid1_start(boot)
    if pid1 is not None:  # hidepid, or no PID 1 in sight: the boot time alone
        starts.append(pid1)
    return max(starts)


def _proc_boot_time() -> float | None:
    try:
        with open("/proc/stat", encoding="ascii") as f:
            for line in f:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _proc_pid1_start(boot: float) -> float | None:
    """PID 1's start: field 22 of /proc/1/stat, in clock ticks since boot."""
    try:
        with open("/proc/1/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rpartition(")")[2].split()
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _psutil_machine_start() -> float | None:
    import psutil  # here, not at the top: kept out of the server's start-up

    starts: list[float] = []
    with contextlib.suppress(OSError, RuntimeError):
        starts.append(psutil.boot_time())
    with contextlib.suppress(psutil.Error, OSError):  # hidepid, or no PID 1 in sight
        starts.append(psutil.Process(1).create_time())
    return max(starts) if starts else None


def busy_kernels(serverapp: ServerApp) -> int:
    """Kernels whose execution_state is 'busy' (in memory: kept by jupyter_server)."""
    manager = serverapp.kernel_manager
    try:
        ids = manager.list_kernel_ids()
    except Exception:  # a gateway-backed or custom manager may not list locally
        return 0
    busy = 0
    for kernel_id in ids:
        try:
            state = getattr(manager.get_kernel(kernel_id), "execution_state", None)
        except KeyError:  # gone between the listing and now
            continue
        busy += state == "busy"
    return busy


def last_activity(serverapp: ServerApp) -> float:
    """jupyter_server's last activity (API requests, kernel messages, terminals), POSIX time."""
    when: datetime = serverapp.web_app.last_activity()  # type: ignore[no-untyped-call]
    return when.timestamp()


class LifeReporter:
    """The `life` section from cached and in-memory values; `snapshot` never blocks."""

    def __init__(
        self,
        serverapp: ServerApp,
        runtime: Mapping[str, Any],
        environ: Mapping[str, str],
        max_lifetime: float | None = None,
        idle_timeout: float | None = None,
    ) -> None:
        self._serverapp = serverapp
        self.platform = platform_name(runtime, environ)
        self.limits = limits_for(
            self.platform, runtime.get("accelerator"), max_lifetime, idle_timeout
        )
        self._machine_start: SharedSample[float | None] = SharedSample(
            read_machine_start, MACHINE_START_TTL
        )

    async def life(self) -> dict[str, Any]:
        """Reads the machine's start off the loop when its cache is stale."""
        await self._machine_start.get()
        return self.snapshot()

    def seconds(self, now: float | None = None) -> dict[str, float | None]:
        """`uptime_seconds` and `idle_seconds` of `snapshot`, without the rest of the section
        (its timestamps and limits): what each /metrics scrape reads."""
        now = time.time() if now is None else now
        cached = self._machine_start.latest()
        busy = busy_kernels(self._serverapp)
        # jupyter_server's last activity is read only when it counts (no kernel busy).
        idle = idle_for(now, last_activity(self._serverapp) if not busy else now, busy)
        return {
            "uptime_seconds": uptime(now, cached[1] if cached is not None else None),
            "idle_seconds": round(idle, 1),
        }

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        """From the cached machine start (null before the first read) and in-memory state."""
        cached = self._machine_start.latest()
        return life_section(
            time.time() if now is None else now,
            cached[1] if cached is not None else None,
            last_activity(self._serverapp),
            busy_kernels(self._serverapp),
            self.platform,
            self.limits,
        )

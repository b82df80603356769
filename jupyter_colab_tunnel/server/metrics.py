"""Prometheus gauges on Jupyter's own /metrics: the GPUs (DCGM exporter names) and the tunnel.

jupyter_server renders /metrics on the event loop, so `collect` only reads what is already in
memory: the GPU sampler's newest cached sample and the supervisor's counters. When that sample
is older than `max_age` (or missing), a scrape schedules one background sample for the next
scrape and returns at once; it never waits for NVML.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

try:
    from prometheus_client.registry import Collector
except ImportError:  # prometheus_client < 0.14: any object with collect() is a collector
    Collector = object  # type: ignore[misc, assignment]

if TYPE_CHECKING:
    from ..tunnel.supervisor import TunnelSupervisor
    from .files.service import FilesStats

log = logging.getLogger(__name__)

MiB = 1024 * 1024
# Labels as NVIDIA's dcgm-exporter names them, so its Grafana dashboards work. Only these three:
# jupyter_server renders /metrics on the event loop, and each label costs formatting time on
# every sample of every scrape (the host is Prometheus' own `instance` label).
GPU_LABELS = ["gpu", "UUID", "modelName"]


def _memory(key: str) -> Callable[[dict[str, Any]], float | None]:
    def read(device: dict[str, Any]) -> float | None:
        value = (device.get("memory") or {}).get(key)
        return None if value is None else float(value // MiB)

    return read


def _nested(section: str, key: str) -> Callable[[dict[str, Any]], float | None]:
    def read(device: dict[str, Any]) -> float | None:
        value = (device.get(section) or {}).get(key)
        return None if value is None else float(value)

    return read


def _field(key: str) -> Callable[[dict[str, Any]], float | None]:
    def read(device: dict[str, Any]) -> float | None:
        value = device.get(key)
        return None if value is None else float(value)

    return read


# (name, help, how to read it from a /colab/gpu device); a null field emits no sample.
GPU_GAUGES: list[tuple[str, str, Callable[[dict[str, Any]], float | None]]] = [
    ("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", _nested("utilization", "gpu")),
    ("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", _memory("used")),
    ("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).", _memory("free")),
    ("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", _field("temperature_c")),
    ("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", _field("power_w")),
    ("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz).", _nested("clocks_mhz", "sm")),
]


# The scalar series (no labels): (name, help, type, key in what its reader returns).
LIFE_SERIES = [
    (
        "colab_uptime_seconds",
        "Seconds since the machine (or its container) started.",
        "gauge",
        "uptime_seconds",
    ),
    (
        "colab_idle_seconds",
        "Seconds since jupyter_server last saw activity; 0 while a kernel is busy.",
        "gauge",
        "idle_seconds",
    ),
]
TRANSFER_SERIES = [
    (
        "colab_files_received_bytes",
        "Bytes received by /colab/files uploads.",
        "counter",
        "bytes_received",
    ),
    ("colab_files_sent_bytes", "Bytes sent by /colab/files downloads.", "counter", "bytes_sent"),
    ("colab_files_uploads", "Uploads committed whole and verified.", "counter", "uploads"),
]
TUNNEL_UP = ("colab_tunnel_up", "1 when the cloudflared tunnel is ready, else 0.", "gauge")
TUNNEL_RESTARTS = (
    "colab_tunnel_restarts",
    "Automatic restarts of cloudflared since the server started.",
    "counter",
)
SAMPLE_AGE = (
    "colab_gpu_sample_age_seconds",
    "Age of the GPU sample the DCGM_* values come from (seconds).",
    "gauge",
)


class ColabCollector(Collector):
    """Reads cached state only; `refresh` is asked (never awaited) for a newer GPU sample.

    A scrape runs on the event loop: a series whose value did not change since the last
    scrape is yielded as the same family object, not built again.
    """

    def __init__(
        self,
        gpu_latest: Callable[[], tuple[float, dict[str, Any]] | None],
        refresh: Callable[[], None],
        supervisor: Callable[[], TunnelSupervisor | None],
        max_age: float,
        clock: Callable[[], float] = time.monotonic,
        files: Callable[[], FilesStats | None] = lambda: None,
        life: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        self._gpu_latest = gpu_latest
        self._life = life
        self._files = files
        self._refresh = refresh
        self._supervisor = supervisor
        self.max_age = max_age
        self._clock = clock
        self._families: tuple[float, list[Metric]] | None = None
        self._scalars: dict[str, tuple[float, Metric]] = {}

    def describe(self) -> list[Metric]:
        # Without describe() the registry would call collect() at registration.
        return []

    def collect(self) -> Iterator[Metric]:
        yield from self._tunnel()
        yield from self._runtime_life()
        yield from self._transfers()
        yield from self._gpus()

    def _scalar(self, series: tuple[str, str, str], value: float) -> Metric:
        """The family of one unlabelled series holding `value`: the last one if unchanged."""
        name, help_text, kind = series
        kept = self._scalars.get(name)
        if kept is not None and kept[0] == value:
            return kept[1]
        family: Metric
        if kind == "counter":
            family = CounterMetricFamily(name, help_text, value=value)
        else:
            family = GaugeMetricFamily(name, help_text, value=value)
        self._scalars[name] = (value, family)
        return family

    def _runtime_life(self) -> Iterator[Metric]:
        # From the cached machine start and jupyter_server's in-memory activity: no read here.
        if self._life is None:
            return
        try:
            life = self._life()
        except Exception as e:  # a scrape never fails for this: say so in the log instead
            log.warning("runtime life for /metrics failed: %s", e)
            return
        for name, help_text, kind, key in LIFE_SERIES:
            value = life.get(key)
            if value is not None:
                yield self._scalar((name, help_text, kind), float(value))

    def _transfers(self) -> Iterator[Metric]:
        stats = self._files()
        if stats is None:
            return
        for name, help_text, kind, attribute in TRANSFER_SERIES:
            yield self._scalar((name, help_text, kind), float(getattr(stats, attribute)))

    def _tunnel(self) -> Iterator[Metric]:
        sup = self._supervisor()
        yield self._scalar(TUNNEL_UP, 1.0 if sup is not None and sup.state == "ready" else 0.0)
        yield self._scalar(TUNNEL_RESTARTS, float(sup.restarts_total if sup is not None else 0))

    def _gpus(self) -> Iterator[Metric]:
        hit = self._gpu_latest()
        now = self._clock()
        if hit is None or now - hit[0] >= self.max_age:
            self._refresh()
        if hit is None:
            return
        taken, sample = hit
        yield self._scalar(SAMPLE_AGE, max(0.0, now - taken))
        # Scrapes between two samples reuse the families built from the first.
        if self._families is None or self._families[0] != taken:
            self._families = (taken, self._gpu_families(sample))
        yield from self._families[1]

    def _gpu_families(self, sample: dict[str, Any]) -> list[Metric]:
        devices = [d for d in sample.get("devices") or [] if not d.get("lost")]
        families: list[Metric] = []
        for name, help_text, read in GPU_GAUGES:
            family = GaugeMetricFamily(name, help_text, labels=GPU_LABELS)
            for device in devices:
                value = read(device)
                if value is not None:
                    family.add_metric(self._labels(device), value)
            if family.samples:
                families.append(family)
        return families

    def _labels(self, device: dict[str, Any]) -> list[str]:
        return [str(device.get("index")), device.get("uuid") or "", device.get("name") or ""]


class MetricsHook:
    """Registers a `ColabCollector` on jupyter_server's registry and runs its refreshes.

    Registered while the extension runs (`register` at start, `unregister` at stop): a server
    started again in the same process registers its own collector.
    """

    def __init__(
        self,
        latest: Callable[[], tuple[float, dict[str, Any]] | None],
        sample: Callable[[], Awaitable[Any]],
        supervisor: Callable[[], TunnelSupervisor | None],
        max_age: float,
        registry: CollectorRegistry = REGISTRY,
        files: Callable[[], FilesStats | None] = lambda: None,
        life: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        """`latest`: the newest GPU sample without reading; `sample`: take one (awaitable);
        `files`: the transfer counters; `life`: /colab/status `life`'s `uptime_seconds` and
        `idle_seconds` from cached values."""
        self._sample = sample
        self._registry = registry
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: asyncio.Future[Any] | None = None
        self._registered = False
        self.collector = ColabCollector(
            latest, self._request_refresh, supervisor, max_age, files=files, life=life
        )

    def register(self) -> None:
        """Call on the server's event loop (refreshes are scheduled onto it)."""
        self._loop = asyncio.get_running_loop()
        self._registry.register(self.collector)
        self._registered = True

    def unregister(self) -> None:
        if self._registered:
            self._registry.unregister(self.collector)
            self._registered = False
        self._loop = None

    def _request_refresh(self) -> None:
        # Thread-safe: a collector may also be read from prometheus_client's own HTTP thread.
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._start_refresh)

    def _start_refresh(self) -> None:
        if self._pending is not None and not self._pending.done():
            return
        self._pending = asyncio.ensure_future(self._sample())
        self._pending.add_done_callback(_log_failure)


def _log_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("background GPU sample for /metrics failed: %s", future.exception())

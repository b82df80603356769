"""Figures, their summaries, the printed table and the JSON document."""

from __future__ import annotations

import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100), like numpy's default."""
    if not values:
        raise ValueError("no values")
    data = sorted(values)
    if len(data) == 1:
        return data[0]
    pos = (len(data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


@dataclass
class Summary:
    """One figure's numbers: a distribution (median, p99, n > 1) or a single value (n = 1)."""

    median: float
    p99: float | None
    n: int
    min: float
    max: float
    mean: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        vals = [float(v) for v in values]
        if not vals:
            raise ValueError("a figure needs at least one value")
        return cls(
            median=statistics.median(vals),
            p99=percentile(vals, 99) if len(vals) > 1 else None,
            n=len(vals),
            min=min(vals),
            max=max(vals),
            mean=statistics.fmean(vals),
        )

    @classmethod
    def scalar(cls, value: float) -> Summary:
        return cls.of([value])

    def text(self, unit: str) -> str:
        if self.p99 is None:
            return _num(self.median, unit)
        return f"{_num(self.median, unit)} / {_num(self.p99, unit)}"


@dataclass
class Figure:
    key: str
    group: str
    title: str
    unit: str
    value: Summary
    baseline: Summary
    baseline_label: str
    target: str
    met: bool | None  # None: no target, a comparison only
    compare: str
    notes: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return "info" if self.met is None else ("met" if self.met else "MISSED")

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["status"] = self.status
        return out


def ratio(a: float, b: float) -> float:
    return a / b if b else math.inf


def _num(x: float, unit: str) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if unit in ("ms",):
        text = f"{x:.2f}" if abs(x) < 10 else f"{x:.1f}" if abs(x) < 1000 else f"{x:.0f}"
    elif unit in ("req/s", "lines/s"):
        text = f"{x:.0f}"
    elif unit in ("MB", "%", "x"):
        text = f"{x:.1f}"
    else:
        text = f"{x:.3g}"
    return f"{text}x" if unit == "x" else f"{text} {unit}"


def machine() -> dict[str, Any]:
    model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import jupyter_server
    import tornado

    import jupyter_colab_tunnel

    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "jupyter_server": jupyter_server.__version__,
        "tornado": tornado.version,
        "jupyter_colab_tunnel": jupyter_colab_tunnel.__version__,
        "executable": sys.executable,
    }


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def document(figures: list[Figure], meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **meta,
        "figures": [f.as_dict() for f in figures],
        "summary": {
            "met": sum(f.met is True for f in figures),
            "missed": [f.key for f in figures if f.met is False],
            "info": sum(f.met is None for f in figures),
        },
    }


COLUMNS = ("figure", "value p50 / p99", "baseline p50 / p99", "compare", "target", "status")


def rows(figures: list[Figure]) -> list[tuple[str, ...]]:
    return [
        (
            f.title,
            f.value.text(f.unit),
            f.baseline.text(f.unit),
            f.compare,
            f.target,
            f.status,
        )
        for f in figures
    ]


def table(figures: list[Figure]) -> str:
    body = rows(figures)
    widths = [max(len(r[i]) for r in [COLUMNS, *body]) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    group = None
    for f, r in zip(figures, body, strict=True):
        if f.group != group and group is not None:
            lines.append("")
        group = f.group
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    lines.append("")
    lines.append("Baselines:")
    for f in figures:
        lines.append(f"  {f.key}: {f.baseline_label}" + (f" ({f.notes})" if f.notes else ""))
    return "\n".join(lines)


def markdown(figures: list[Figure]) -> str:
    header = "| " + " | ".join(COLUMNS) + " |"
    sep = "|" + "|".join("---" for _ in COLUMNS) + "|"
    out = [header, sep]
    for r in rows(figures):
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
    return "\n".join(out)

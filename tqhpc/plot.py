"""`tqhpc stats --plot`: one picture of a sweep for a lab meeting: how long its tasks ran, how much memory they
took, and how fast they got done. matplotlib is an optional extra (`pip install 'tqhpc[plot]'`), drawn with the Agg
backend, so no display is needed (a login node has none)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from .stats import Samples, TaskStats

INSTALL_HINT = "pip install 'tqhpc[plot]'"


class PlotUnavailable(RuntimeError):
    """matplotlib cannot be imported; the message says how to install it."""


def require_matplotlib() -> Any:
    """The pyplot module on the Agg backend, or PlotUnavailable naming the install command."""
    try:
        matplotlib = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        return importlib.import_module("matplotlib.pyplot")
    except ImportError as err:
        raise PlotUnavailable(
            f"--plot needs matplotlib, which cannot be imported here ({err}): {INSTALL_HINT}"
        ) from None


def draw_stats(samples: Samples, summary: TaskStats, path: Path, *, title: str) -> None:
    """Three panels side by side: wall time and peak RSS histograms of the measured tasks, with their p50 and p95,
    and the ended tasks counted over time since the first one ended."""
    plt = require_matplotlib()
    figure, (wall_axes, rss_axes, done_axes) = plt.subplots(1, 3, figsize=(13, 4), dpi=100, layout="constrained")
    figure.suptitle(f"{title}: {summary.count:,} tasks, {summary.measured:,} measured")
    minutes = max(samples.wall, default=0) >= 120
    scale, unit = (60.0, "min") if minutes else (1.0, "s")
    _histogram(wall_axes, [w / scale for w in samples.wall], f"wall time ({unit})", summary.wall_time, scale)
    _histogram(rss_axes, [r / (1 << 20) for r in samples.peak_rss], "peak RSS (MiB)", summary.peak_rss, 1 << 20)
    _done_over_time(done_axes, sorted(samples.ended_at))
    figure.savefig(path, format="png")
    plt.close(figure)


def _histogram(axes: Any, values: list[float], label: str, spread: Any, scale: float) -> None:
    axes.set_xlabel(label)
    axes.set_ylabel("tasks")
    if not values:
        axes.text(0.5, 0.5, "no measured task", ha="center", va="center", transform=axes.transAxes)
        return
    axes.hist(values, bins=min(50, max(5, len(values) // 4)), color="#4C72B0")
    for name, value, style in (("p50", spread.p50, "--"), ("p95", spread.p95, ":")):
        axes.axvline(value / scale, color="#C44E52", linestyle=style, label=f"{name} {value / scale:.3g}")
    axes.legend(loc="upper right")


def _done_over_time(axes: Any, ended: list[float]) -> None:
    axes.set_ylabel("tasks ended (S or F)")
    if not ended:
        axes.set_xlabel("time")
        axes.text(0.5, 0.5, "no task has ended", ha="center", va="center", transform=axes.transAxes)
        return
    span = ended[-1] - ended[0]
    scale, unit = (3600.0, "h") if span >= 7200 else (60.0, "min") if span >= 120 else (1.0, "s")
    axes.set_xlabel(f"time since the first task ended ({unit})")
    axes.step([(t - ended[0]) / scale for t in ended], range(1, len(ended) + 1), where="post", color="#55A868")
    axes.set_ylim(bottom=0)

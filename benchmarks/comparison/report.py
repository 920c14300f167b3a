"""The one table compare.py prints: every figure per peer, the ratios tqhpc/HyperQueue and tqhpc/Parsl, and the
goal each figure is held to, met or not, in the same run."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PEERS = ("tqhpc", "hq", "parsl", "bare")
TITLES = {"tqhpc": "tqhpc", "hq": "HQ", "parsl": "Parsl", "bare": "bare"}
Goal = Callable[[dict[str, float]], bool]


@dataclass
class Row:
    label: str
    unit: str  # "tasks/s", "ms", "s", "MiB", "%"
    values: dict[str, float] = field(default_factory=dict)
    goal: str = ""
    check: Goal | None = None

    def ratio(self, peer: str) -> float | None:
        mine, theirs = self.values.get("tqhpc"), self.values.get(peer)
        if mine is None or theirs is None or not theirs or math.isnan(mine) or math.isnan(theirs):
            return None
        return mine / theirs

    def verdict(self) -> str:
        if self.check is None:
            return self.goal
        if any(math.isnan(value) for value in self.values.values()):
            return f"{self.goal}: not measured"
        try:
            met = self.check(self.values)
        except (KeyError, TypeError):
            return f"{self.goal}: not measured"
        return f"{self.goal}: {'met' if met else 'NOT met'}"

    def as_dict(self) -> dict[str, Any]:
        return {"figure": self.label, "unit": self.unit, "values": self.values,
                "tqhpc_over_hq": self.ratio("hq"), "tqhpc_over_parsl": self.ratio("parsl"),
                "goal": self.verdict()}  # fmt: skip


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if math.isnan(value):
        return "n/a"
    if unit == "tasks/s":
        return f"{value:,.0f}"
    if unit in ("ms", "%"):
        return f"{value:,.1f}" if value < 1000 else f"{value:,.0f}"
    if unit == "ms/task":
        return f"{value:.2f}"
    if unit == "s":
        return f"{value:,.2f}"
    return f"{value:,.0f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def rows_from(results: dict[str, Any]) -> list[Row]:
    return [*_throughput_rows(results), *_dispatch_rows(results), *_pending_rows(results), *_idle_rows(results)]


def _throughput_rows(results: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for tasks, by_peer in results.get("throughput", {}).items():
        n = f"{int(tasks):,} `true`"
        rows.append(Row(f"{n}: tasks/s", "tasks/s", _pick(by_peer, "tasks_per_s"), ">=1.5x HQ and > Parsl",
                        lambda v: v["tqhpc"] >= 1.5 * v["hq"] and v["tqhpc"] > v["parsl"]))  # fmt: skip
        rows.append(Row(f"{n}: submit call", "s", _pick(by_peer, "submit_seconds", skip=("bare",))))
        tq = by_peer.get("tqhpc", {})
        if "server_cpu_ms_per_task" in tq:
            rows.append(Row(f"{n}: server CPU a task", "ms/task", {"tqhpc": tq["server_cpu_ms_per_task"]}, "< 0.5 ms",
                            lambda v: v["tqhpc"] < 0.5))  # fmt: skip
            rows.append(Row(f"{n}: worker CPU a task", "ms/task", {"tqhpc": tq["worker_cpu_ms_per_task"]}, "< 1 ms",
                            lambda v: v["tqhpc"] < 1.0))  # fmt: skip
        queue_cpu = {}
        if "server_cpu_ms_per_task" in tq:
            queue_cpu["tqhpc"] = tq["server_cpu_ms_per_task"] + tq["worker_cpu_ms_per_task"]
        if "process_cpu_ms_per_task" in by_peer.get("hq", {}):
            queue_cpu["hq"] = by_peer["hq"]["process_cpu_ms_per_task"]
        if queue_cpu:
            rows.append(Row(f"{n}: queue CPU a task (1)", "ms/task", queue_cpu))
    return rows


def _dispatch_rows(results: dict[str, Any]) -> list[Row]:
    dispatch = results.get("idle_dispatch", {})
    if not dispatch:
        return []
    rows: list[Row] = []
    count = max((d.get("first_line", {}).get("count", 0) for d in dispatch.values()), default=0)
    for what, label in (("first_line", "first line"), ("finished", "S seen by client")):
        p50 = _pick(dispatch, what, "p50_ms")
        p99 = _pick(dispatch, what, "p99_ms")
        if what == "first_line":
            rows.append(Row(f"idle dispatch x{count}, submit->{label} p50", "ms", p50, "<= HQ's p50",
                            lambda v: v["tqhpc"] <= v["hq"]))  # fmt: skip
            rows.append(Row(f"idle dispatch x{count}, submit->{label} p99", "ms", p99, "< 50 ms",
                            lambda v: v["tqhpc"] < 50))  # fmt: skip
        else:
            rows.append(Row(f"idle dispatch x{count}, submit->{label} p50", "ms", p50))
            rows.append(Row(f"idle dispatch x{count}, submit->{label} p99", "ms", p99))
    return rows


def _pending_rows(results: dict[str, Any]) -> list[Row]:
    pending = results.get("pending")
    if not pending:
        return []
    rows: list[Row] = []
    n = f"{pending['pending']:,} pending"
    at_scale = " (at 1,000,000)" if pending["pending"] < 1_000_000 else ""
    rows.append(Row(f"{n}: submit_many", "s", {"tqhpc": pending["submit_seconds"]}))
    rows.append(Row(f"{n}: server RSS after submit", "MiB", {"tqhpc": pending["server_rss_mib_after_submit"]}))
    rows.append(Row(f"{n}: server peak RSS, listing too", "MiB", {"tqhpc": pending["server_peak_rss_mib"]},
                    f"< 300 MiB{at_scale}", lambda v: v["tqhpc"] < 300))  # fmt: skip
    first = pending["dispatch"]["first_line"]
    rows.append(Row(f"{n}: dispatch x{first['count']} p50", "ms", {"tqhpc": first["p50_ms"]}))
    rows.append(Row(f"{n}: dispatch x{first['count']} p99", "ms", {"tqhpc": first["p99_ms"]},
                    f"< 50 ms{at_scale}", lambda v: v["tqhpc"] < 50))  # fmt: skip
    listing = pending["listing"]
    rows.append(Row(f"{n}: `tqhpc tasks` first row", "s", {"tqhpc": listing["first_row_seconds"]},
                    f"<= 1 s{at_scale}", lambda v: v["tqhpc"] <= 1))  # fmt: skip
    rows.append(Row(f"{n}: `tqhpc tasks` last row", "s", {"tqhpc": listing["last_row_seconds"]},
                    f"<= 15 s{at_scale}", lambda v: v["tqhpc"] <= 15))  # fmt: skip
    return rows


def _idle_rows(results: dict[str, Any]) -> list[Row]:
    idle = results.get("idle_workers")
    if not idle:
        return []
    rows: list[Row] = []
    rows.append(Row(f"server CPU, {idle['workers']} idle workers (2)", "%", {"tqhpc": idle["cpu_percent"]},
                    "< 5% of a core", lambda v: v["tqhpc"] < 5))  # fmt: skip
    rows.append(Row("server CPU, no worker", "%", {"tqhpc": idle["server_alone_cpu_percent"]}))
    return rows


def _pick(by_peer: dict[str, Any], *keys: str, skip: tuple[str, ...] = ()) -> dict[str, float]:
    values = {}
    for peer, figures in by_peer.items():
        if peer in skip or not isinstance(figures, dict):
            continue
        value: Any = figures
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, int | float):
            values[peer] = float(value)
    return values


def table(rows: list[Row]) -> str:
    header = ["figure", "unit", *(TITLES[p] for p in PEERS), "tqhpc/HQ", "tqhpc/Parsl", "goal"]
    lines = [[row.label, row.unit, *(_number(row.values.get(p), row.unit) for p in PEERS),
              _ratio(row.ratio("hq")), _ratio(row.ratio("parsl")), row.verdict()] for row in rows]  # fmt: skip
    widths = [max(len(str(line[i])) for line in [header, *lines]) for i in range(len(header))]

    def render(cells: list[str]) -> str:
        text = [cells[0].ljust(widths[0]), cells[1].ljust(widths[1])]
        text += [cell.rjust(width) for cell, width in zip(cells[2:-1], widths[2:-1], strict=True)]
        return "  ".join([*text, cells[-1]]).rstrip()

    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    return "\n".join([render(header), rule, *(render(line) for line in lines)])

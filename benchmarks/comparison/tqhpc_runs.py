"""tqhpc measured through its public surfaces only: `tqhpc server` and `tqhpc worker` processes, `tqhpc.Client`,
the `tqhpc tasks` command, and the wire protocol for the idle workers. Every case gets a fresh server."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import Popen
from typing import Any

from common import cpu_seconds, running_server, running_worker, stop_process, tqhpc

from tqhpc import Client, TaskSpec
from tqhpc.config import WorkerSettings

from . import probes
from .figures import latency_summary, peak_rss_mib, rss_mib, throughput_summary
from .idle_workers import IdleWorkers, StreamIdleWorkers, UnaryIdleWorkers

SEED_WORKER = Path(__file__).resolve().with_name("seed_worker.py")
"""The seed-only worker, started as a process of its own as a worker would be."""
NEVER_RUNNABLE_IMAGE = "/nonexistent/never-runs.sif"
"""Pending tasks that must stay pending ask for this container; the scale run's worker cannot run containers."""
NO_APPTAINER = "/nonexistent/apptainer"
STEADY_MARGIN_SECONDS = 0.3
"""Idle clients send their first heartbeat within one ping interval of connecting; this much later, all have."""
LAST_PING_POLL_SECONDS = 0.05
"""Far shorter than a ping interval: two heartbeats never fall between two looks."""
ROW = re.compile(r"^\W*\d+\s+[WPACRSFX]\b")
"""A line of `tqhpc tasks` that is a task (its id, then its status letter), not the header or the summary."""


@dataclass(frozen=True)
class Setup:
    """Where the runs keep their state, and the one worker's shape (the same as the peers')."""

    root: Path
    concurrency: int = 2
    prefetch: int = 2
    ping_interval: float = 1.0
    heartbeat_interval: float = WorkerSettings().heartbeat_interval  # an idle session worker's, by default
    _cases: itertools.count = field(default_factory=itertools.count, compare=False, repr=False)

    def case(self, name: str) -> Path:
        """A new directory for one case; a case run again gets a new one."""
        path = self.root / name
        while path.exists():
            path = self.root / f"{name}-{next(self._cases)}"
        path.mkdir(parents=True)
        return path


@contextmanager
def running_seed_worker(setup: Setup, access: Path, case: Path) -> Iterator[Popen]:
    """The seed-only worker (seed_worker.py) as a process of its own, shaped as `tqhpc worker` is; stopped on exit."""
    with (case / "worker.log").open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, str(SEED_WORKER), "--access", str(access), "--workdir", str(case / "scratch"),
             "--concurrency", str(setup.concurrency), "--prefetch", str(setup.prefetch),
             "--ping-interval", str(setup.ping_interval)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            yield worker
        finally:
            stop_process(worker)


@contextmanager
def server_and_worker(
    setup: Setup, name: str, *worker_options: str, seed_only: bool = False, server_python: str = sys.executable
) -> Iterator[tuple[Popen, Popen, Client]]:
    """A fresh server and one worker, registered and idle, with a client to it. The worker is `tqhpc worker`, or
    with `seed_only` the seed-only worker; the server is that of the checkout `server_python` belongs to."""
    case = setup.case(name)
    with ExitStack() as stack:
        server, access = stack.enter_context(running_server(case / "state", python=server_python))
        if seed_only:
            worker = stack.enter_context(running_seed_worker(setup, access, case))
        else:
            worker = stack.enter_context(
                running_worker(access, case / "scratch", "--concurrency", str(setup.concurrency), "--prefetch",
                               str(setup.prefetch), "--ping-interval", str(setup.ping_interval), *worker_options,
                               log=case / "worker.log")
            )  # fmt: skip
        client = stack.enter_context(Client(access))
        deadline = time.monotonic() + 60
        while not client.workers():
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the tqhpc worker did not register; see {case / 'worker.log'}")
            time.sleep(0.05)
        time.sleep(setup.ping_interval + 0.2)  # past its first pings: idle, as a worker waiting for work is
        yield server, worker, client


def _wait_finished(client: Client, ids: list[int], timeout: float) -> str:
    """Poll one task's status letter (tasks start oldest first; `Client.wait` asks the same way) until it is done,
    then all of them; their letters."""
    deadline = time.monotonic() + timeout
    while client.letters(ids[-1:]) not in ("S", "F", "X"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"tqhpc: the tasks were not finished within {timeout:g} s")
        time.sleep(0.01)
    while True:
        letters = client.letters(ids)
        if all(letter in "SFX" for letter in letters):
            return letters
        if time.monotonic() > deadline:
            raise RuntimeError(f"tqhpc: the tasks were not finished within {timeout:g} s")
        time.sleep(0.01)


def throughput(
    setup: Setup, tasks: int, *, seed_only: bool = False, server_python: str = sys.executable
) -> dict[str, float]:
    """`tasks` times `true` submitted in one submit_many call, until the last is finished; the server's and the
    worker's own CPU time over that window (the tasks' processes are not counted). The worker is `tqhpc worker`,
    or with `seed_only` the seed-only worker; the server is that of the checkout `server_python` belongs to."""
    name = f"{'seed-only' if seed_only else 'throughput'}-{tasks}"
    with server_and_worker(setup, name, seed_only=seed_only, server_python=server_python) as (server, worker, client):
        server_cpu, worker_cpu = cpu_seconds(server.pid), cpu_seconds(worker.pid)
        start = time.perf_counter()
        ids = client.submit_many(["true"] * tasks)
        submitted = time.perf_counter()
        letters = _wait_finished(client, ids, timeout=max(120.0, tasks / 10))
        finished = time.perf_counter()
        server_cpu, worker_cpu = cpu_seconds(server.pid) - server_cpu, cpu_seconds(worker.pid) - worker_cpu
    if letters.count("S") != tasks:
        raise RuntimeError(f"tqhpc: {tasks - letters.count('S')} of {tasks} `true` tasks did not succeed")
    figures = throughput_summary(tasks, finished - start, submitted - start)
    figures["succeeded"] = letters.count("S")
    figures["server_cpu_ms_per_task"] = 1000 * server_cpu / tasks
    figures["worker_cpu_ms_per_task"] = 1000 * worker_cpu / tasks
    return figures


def _probe_queue(client: Client) -> probes.Queue[int]:
    return probes.Queue(
        submit=client.submit,
        finished=lambda task_id: client.task(task_id).status.terminal,
        succeeded=lambda task_id: client.task(task_id).status.value == "S",
        cancel=lambda task_id: client.cancel([task_id]),
    )


def _probe_figures(run: probes.ProbeRun) -> dict[str, object]:
    return {"first_line": latency_summary(run.started), "finished": latency_summary(run.finished), "missed": run.missed}


def idle_dispatch(setup: Setup, count: int) -> dict[str, object]:
    """Tasks submitted one at a time to an idle worker (see probes)."""
    with server_and_worker(setup, "idle-dispatch") as (_, _, client):
        run = probes.measure(_probe_queue(client), setup.root / "idle-dispatch" / "clocks", count)
    return _probe_figures(run)


def pending_scale(setup: Setup, pending: int, count: int, kind: str) -> dict[str, object]:
    """`pending` tasks the worker can never run, then: submit time, the server's RSS, idle dispatch of fresh tasks
    beside them, and how long `tqhpc tasks` takes to print its first row and its last.

    kind "container": they ask for a container and the worker registers as unable to run containers (its apptainer
    is missing), so they stay pending; kind "slots": each takes more slots than the worker has."""
    with server_and_worker(setup, f"pending-{pending}", "--apptainer-executable", NO_APPTAINER) as (server, _, client):
        if kind == "container":
            spec = TaskSpec("true", container=NEVER_RUNNABLE_IMAGE)
        else:
            spec = TaskSpec("true", slots=setup.concurrency + 1)
        start = time.perf_counter()
        client.submit_many(itertools.repeat(spec, pending))
        submit_seconds = time.perf_counter() - start
        rss_after_submit = rss_mib(server.pid)
        run = probes.measure(_probe_queue(client), setup.root / f"pending-{pending}" / "clocks", count)
        listing = _list_tasks(client.access_file, setup.root / f"pending-{pending}" / "tasks.err")
        figures: dict[str, object] = {
            "pending": pending,
            "kind": kind,
            "submit_seconds": submit_seconds,
            "submit_tasks_per_s": pending / submit_seconds,
            "server_rss_mib_after_submit": rss_after_submit,
            "server_rss_mib_after_listing": rss_mib(server.pid),
            "server_peak_rss_mib": peak_rss_mib(server.pid),
            "dispatch": _probe_figures(run),
            "listing": listing,
        }
    return figures


def _list_tasks(access: Path | None, errors: Path, timeout: float = 900.0) -> dict[str, object]:
    """Run `tqhpc tasks` with its output to a pipe read here: seconds to its first task row and to its end."""
    start = time.perf_counter()
    first = None
    rows = 0
    with errors.open("wb") as stderr:
        command = tqhpc("tasks", "--access", str(access))
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr) as listing:
            assert listing.stdout is not None
            for line in listing.stdout:
                if ROW.match(line.decode(errors="replace")):
                    rows += 1
                    if first is None:
                        first = time.perf_counter() - start
                if time.perf_counter() - start > timeout:
                    listing.kill()
                    break
            code = listing.wait()
    last = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"`tqhpc tasks` exited {code}: {errors.read_text().strip()[-500:]}")
    return {"first_row_seconds": first, "last_row_seconds": last, "rows": rows}


def idle_server_cpu(setup: Setup, workers: int, seconds: float, check_seconds: float) -> dict[str, object]:
    """The server's CPU, as percent of one core over `seconds`: alone; with `workers` idle stream clients (what an
    idle `tqhpc worker` does); and with as many idle clients of the seed protocol. Each on a fresh server.

    First, the stream clients are checked against the real thing: one idle `tqhpc worker` and one stream client on
    the same server, each one's heartbeats a second as the server records them (see `_heartbeat_rates`)."""
    heartbeat = setup.heartbeat_interval
    case = setup.case(f"idle-{workers}-workers")
    with running_server(case / "state") as (server, access):
        time.sleep(1.0)
        alone = _cpu_percent(server.pid, min(seconds, 5.0))
        options = ("--heartbeat-interval", str(heartbeat))
        with running_worker(access, case / "scratch", *options, log=case / "worker.log") as real:
            check = asyncio.run(_heartbeat_rates(access, real, check_seconds, heartbeat))
    figures: dict[str, object] = {"workers": workers, "server_alone_cpu_percent": alone, "heartbeat_check": check}
    for kind, clients, interval in (
        ("stream", StreamIdleWorkers, heartbeat),
        ("unary", UnaryIdleWorkers, setup.ping_interval),
    ):
        with running_server(setup.case(f"idle-{workers}-{kind}") / "state") as (server, access):
            figures[kind] = asyncio.run(_with_idle_workers(server.pid, clients(access, workers, interval), seconds))
    return figures


async def _with_idle_workers(pid: int, clients: IdleWorkers, seconds: float) -> dict[str, Any]:
    """The server's CPU while `clients` idle beside it, and this process's own (which hosts them all)."""
    await clients.start()
    try:
        await asyncio.sleep(clients.ping_interval + STEADY_MARGIN_SECONDS)  # every one has sent its first heartbeat
        counts = clients.figures()
        before, own_before, start = cpu_seconds(pid), _own_cpu_seconds(), time.perf_counter()
        await asyncio.sleep(seconds)
        used, own, elapsed = cpu_seconds(pid) - before, _own_cpu_seconds() - own_before, time.perf_counter() - start
        after = clients.figures()
    finally:
        await clients.stop()
    figures: dict[str, Any] = {
        "workers": clients.count,
        "seconds": elapsed,
        "cpu_percent": 100 * used / elapsed,
        "clients_process_cpu_percent": 100 * own / elapsed,
    }
    for key in clients.rated:
        figures[f"{key}_per_s"] = (after[key] - counts[key]) / elapsed  # type: ignore[operator]
    figures.update(clients.figures())  # the totals, goodbyes included
    return figures


async def _heartbeat_rates(access: Path, worker: Popen, seconds: float, interval: float) -> dict[str, Any]:
    """Heartbeats a second of an idle `tqhpc worker` and of one stream client beside it, counted the same way for
    both: each change of the worker's last_ping in ListWorkers (the server sets it at each heartbeat it takes), and
    of its host state's sampled_at (a heartbeat that carried the host's state), polled every LAST_PING_POLL_SECONDS."""
    client = Client(access)
    clients = StreamIdleWorkers(access, 1, interval)
    try:
        deadline = time.monotonic() + 60
        while not any(w.state == "running" for w in await asyncio.to_thread(client.workers)):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the idle tqhpc worker did not register")
            await asyncio.sleep(0.05)
        await clients.start()
        await asyncio.sleep(interval + STEADY_MARGIN_SECONDS)  # both past their start: idle, heartbeats only
        seen = {w.worker_id: _heartbeat_marks(w) for w in await asyncio.to_thread(client.workers)}
        pings, samples = dict.fromkeys(seen, 0), dict.fromkeys(seen, 0)
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            await asyncio.sleep(LAST_PING_POLL_SECONDS)
            for record in await asyncio.to_thread(client.workers):
                if record.worker_id not in seen:
                    continue
                (ping, sample), (last_ping, last_sample) = _heartbeat_marks(record), seen[record.worker_id]
                pings[record.worker_id] += ping != last_ping
                samples[record.worker_id] += sample != last_sample
                seen[record.worker_id] = ping, sample
        elapsed = time.perf_counter() - start
    finally:
        await clients.stop()
        client.close()
    (stream_id,) = clients.worker_ids
    (real_id,) = set(pings) - {stream_id}
    return {
        "seconds": elapsed,
        "tqhpc_worker_heartbeats": pings[real_id],
        "tqhpc_worker_host_states": samples[real_id],
        "stream_client_heartbeats": pings[stream_id],
        "stream_client_host_states": samples[stream_id],
        "tqhpc_worker_per_s": pings[real_id] / elapsed,
        "stream_client_per_s": pings[stream_id] / elapsed,
        "errors": clients.errors[:5],
    }


def _heartbeat_marks(worker: Any) -> tuple[float | None, float | None]:
    """What changes at each heartbeat the server takes: last_ping; and the host state's time, when one came with it."""
    return worker.last_ping, worker.stats.sampled_at if worker.stats is not None else None


def _own_cpu_seconds() -> float:
    return cpu_seconds(os.getpid())


def _cpu_percent(pid: int, seconds: float) -> float:
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return 100 * (cpu_seconds(pid) - before) / seconds

"""HyperQueue (PyPI `hyperqueue`) through its Python API: `LocalCluster` runs the server and one worker with 2
cores inside this process, tasks are `/bin/sh -c true` with HyperQueue's default stdout/stderr files.

The API's own `wait_for_jobs` looks at the server once a second, far too coarse for these figures; `_job_done`
asks once and returns, so the harness can poll it as often as it polls tqhpc. HyperQueue's server listens on
every interface: compare.py runs it only inside a loopback-only network namespace.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from common import cpu_seconds

from . import probes
from .figures import latency_summary, throughput_summary

POLL_SECONDS = 0.01


class _NotYet(Exception):
    """Raised from the progress callback to turn one wait into one look."""


@contextmanager
def _cluster(root: Path, cores: int) -> Iterator[object]:
    from hyperqueue import LocalCluster
    from hyperqueue.cluster import WorkerConfig

    root.mkdir(parents=True)
    with _quiet_stdout():  # the server prints its banner table straight to file descriptor 1
        cluster = LocalCluster(server_dir=str(root / "server"))
    try:
        with _quiet_stdout():
            cluster.start_worker(WorkerConfig(cores=cores))
        client = cluster.client()
        _run_job(client, root, ["/bin/sh", "-c", "true"], 2)  # the worker has connected and run something
        time.sleep(0.5)
        yield client
    finally:
        cluster.stop()


@contextmanager
def _quiet_stdout() -> Iterator[None]:
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _run_job(client: object, workdir: Path, args: list[str], tasks: int, timeout: float = 120.0) -> tuple[int, float]:
    """Submit one job of `tasks` copies of `args` and poll it until it is finished: (job id, seconds the submit
    call took, building the job included)."""
    from hyperqueue import Job

    start = time.perf_counter()
    job = Job(default_workdir=workdir)
    for _ in range(tasks):
        job.program(args)
    submitted = client.submit(job)
    submit_seconds = time.perf_counter() - start
    deadline = time.monotonic() + timeout
    while not _job_done(client, submitted.id):
        if time.monotonic() > deadline:
            raise RuntimeError(f"HyperQueue: job {submitted.id} not finished within {timeout:g} s")
        time.sleep(POLL_SECONDS)
    return submitted.id, submit_seconds


def _job_done(client: object, job_id: int) -> bool:
    """One look at the job: finished (successfully or not) or not yet."""

    def look(jobs: dict[int, dict[str, object]]) -> None:
        if not all(state["completed"] for state in jobs.values()):
            raise _NotYet

    try:
        client.connection.wait_for_jobs([job_id], look)
    except _NotYet:
        return False
    return True


def _job_failed(client: object, job_id: int) -> bool:
    return bool(client.connection.get_failed_tasks([job_id]).get(job_id))


def throughput(root: Path, tasks: int, cores: int) -> dict[str, float]:
    """One job of `tasks` times `sh -c true`; CPU of this process (HyperQueue's server, worker and client)."""
    with _cluster(root / f"throughput-{tasks}", cores) as client:
        workdir = root / f"throughput-{tasks}" / "tasks"
        workdir.mkdir()
        cpu = cpu_seconds(os.getpid())
        start = time.perf_counter()
        job_id, submit_seconds = _run_job(client, workdir, ["/bin/sh", "-c", "true"], tasks, max(120.0, tasks / 10))
        finished = time.perf_counter()
        cpu = cpu_seconds(os.getpid()) - cpu
        if _job_failed(client, job_id):
            raise RuntimeError("HyperQueue: some `true` tasks failed")
    figures = throughput_summary(tasks, finished - start, submit_seconds)
    figures["process_cpu_ms_per_task"] = 1000 * cpu / tasks
    return figures


def idle_dispatch(root: Path, count: int, cores: int) -> dict[str, object]:
    """Clock tasks one at a time, each its own job, to the idle worker (see probes)."""
    from hyperqueue import Job

    workdir = root / "idle-dispatch"
    with _cluster(workdir, cores) as client:

        def submit(command: str) -> int:
            job = Job(default_workdir=workdir)
            job.program(["/bin/sh", "-c", command])
            return client.submit(job).id

        queue = probes.Queue(
            submit=submit,
            finished=lambda job_id: _job_done(client, job_id),
            succeeded=lambda job_id: not _job_failed(client, job_id),
        )
        run = probes.measure(queue, workdir / "clocks", count)
    return {"first_line": latency_summary(run.started), "finished": latency_summary(run.finished), "missed": run.missed}

"""Slurm worker pools against the real single-node Slurm: worker jobs created, watched, cancelled and allocated by the
server.

Slurm jobs are few and long-lived here: each test starts at most two, and the cluster is the one scripts/test.sh
started with slurm/start-cluster.sh.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from conftest import ServerProcess, Workers, start_server, tqhpc_command, wait_until
from slurm_cluster import (
    default_partition,
    job_fields,
    job_script,
    require_cluster,
    scancel,
    scancel_all,
    squeue_jobs,
)

from tqhpc import Client, Status
from tqhpc._proto import pb
from tqhpc.channel import open_channel
from tqhpc.client import ClientError

TEST = """
[pools.test]
time_limit = "10:00"
concurrency = 1
prefetch = 2
ping_interval = 0.2
idle_timeout = 0
walltime_margin = 30
"""
AUTO = """
[pools.auto]
time_limit = "10:00"
concurrency = 1
prefetch = 1
ping_interval = 0.2
autoalloc = true
backlog = 1
max_workers = 2
idle_timeout = 3
"""
SHORT = """
[pools.short]
time_limit = "1"
concurrency = 1
prefetch = 3
ping_interval = 0.2
idle_timeout = 0
walltime_margin = 45
"""
ZERO = """
[pools.zero]
time_limit = "10:00"
prefetch = 0
ping_interval = 0.2
"""
BROKEN = """
[pools.broken]
partition = "no-such-partition"
time_limit = "10:00"
autoalloc = true
max_submit_failures = 2
"""


@pytest.fixture(scope="module")
def slurm_env() -> dict[str, str]:
    return require_cluster()


@pytest.fixture
def slurm_server(request: pytest.FixtureRequest, tmp_path: Path, slurm_env: dict[str, str]) -> Iterator[ServerProcess]:
    """A server whose config.toml holds the pool profiles the test names with @pytest.mark.parametrize."""
    config = tmp_path / "config.toml"
    config.write_text(request.param)
    env = dict(slurm_env, TQHPC_CONFIG=str(config), TQHPC_HOME=str(tmp_path / "home"))
    server = start_server(
        tmp_path / "state", "--slurm-poll-interval", "0.5", "--worker-timeout", "5", "--reap-interval", "0.5", env=env
    )
    yield server
    with Client(server.access_file) as client:
        for worker in client.workers():
            if worker.slurm_job_id and worker.state in {"starting", "running", "draining"}:
                client.delete_worker(worker.worker_id)
    server.stop()


def pools(text: str) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("slurm_server", [text], indirect=True, ids=[""])


def _cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        tqhpc_command(*args, "--access", str(server.access_file)),
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip


def _cli_fails(server: ServerProcess, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        tqhpc_command(*args, "--access", str(server.access_file)),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode != 0, result
    return result


def _job_of(client: Client, worker_id: int) -> str:
    return next(w.slurm_job_id for w in client.workers() if w.worker_id == worker_id)


def _jobs(client: Client, pool: str | None = None) -> list[str]:
    return [w.slurm_job_id for w in client.workers() if w.slurm_job_id and (pool is None or w.slurm_pool == pool)]


def _all(client: Client, status: Status, count: int) -> bool:
    return len(client.tasks(status.value)) == count


@pools(TEST)
def test_create_two_slurm_workers_run_40_tasks_and_delete_them(slurm_server, slurm_env) -> None:
    with Client(slurm_server.access_file) as client:
        ids = client.create_workers(2, provider="slurm", flavor="test", concurrency=1, prefetch=2)
        assert len(ids) == 2
        workers = {w.worker_id: w for w in client.workers()}
        jobs = [workers[i].slurm_job_id for i in ids]
        assert all(job.isdigit() for job in jobs), "job ids are recorded at once"
        assert {workers[i].state for i in ids} <= {"starting", "running"}
        assert len(squeue_jobs(slurm_env, jobs)) == 2, "both jobs are in squeue"
        wait_until(
            lambda: all(w.state == "running" for w in client.workers() if w.worker_id in ids),
            60,
            what="both Slurm workers to register under their reserved ids",
        )
        for _ in range(40):
            client.submit("true")
        wait_until(lambda: _all(client, Status.SUCCEEDED, 40), 60, what="40 tasks to succeed")
        assert {t.worker_id for t in client.tasks()} <= set(ids)
        wait_until(
            lambda: {w.slurm_job_state for w in client.workers() if w.worker_id in ids} == {"RUNNING"},
            10,
            what="the reconciliation loop to see both jobs RUNNING",
        )
        listing = _cli(slurm_server, "workers").stdout
        for worker_id, job in zip(ids, jobs, strict=True):
            line = next(line for line in listing.splitlines() if line.split()[0] == str(worker_id))
            assert line.rstrip().endswith(f"{job} RUNNING"), listing
        deleted = _cli(slurm_server, "worker", "delete", *map(str, ids)).stdout
        assert deleted.split("\n")[:2] == [f"worker {i} deleted" for i in ids]
        wait_until(lambda: not squeue_jobs(slurm_env, jobs), 30, what="both jobs to leave squeue")
        states = {w.worker_id: (w.state, w.slurm_job_state) for w in client.workers()}
        assert all(states[i] == ("deleted", "CANCELLED") for i in ids), states


@pools(TEST)
def test_a_job_cancelled_outside_gives_its_tasks_to_the_other_worker(slurm_server, slurm_env) -> None:
    with Client(slurm_server.access_file) as client:
        created = _cli(slurm_server, "pool", "create", "--profile", "test", "--number", "2", "--prefetch", "2")
        first, second = map(int, created.stdout.split())
        wait_until(
            lambda: all(w.state == "running" for w in client.workers() if w.worker_id in (first, second)),
            60,
            what="both workers to register",
        )
        task_ids = [client.submit("sleep 4") for _ in range(6)]

        def held_by_first() -> list[int]:
            """The first worker's tasks, once it runs one (read in one listing, so the list is never empty)."""
            held = [t for t in client.tasks("ACR") if t.worker_id == first]
            return [t.task_id for t in held] if any(t.status == Status.RUNNING for t in held) else []

        held = wait_until(held_by_first, 30, what="the first worker to run a task")
        job = next(w.slurm_job_id for w in client.workers() if w.worker_id == first)
        scancel(slurm_env, job)  # well within the 4 s its running task takes
        wait_until(
            lambda: next(w.state for w in client.workers() if w.worker_id == first) in {"stopped", "lost"},
            30,
            what="the cancelled worker to leave",
        )
        wait_until(lambda: _all(client, Status.SUCCEEDED, 6), 60, what="all six tasks to succeed")
        tasks = {t.task_id: t for t in client.tasks()}
        assert held, "the first worker held a running task when its job was cancelled"
        assert [(tasks[t].worker_id, tasks[t].attempts) for t in held] == [(second, 2)] * len(held), tasks
        assert sorted(tasks) == sorted(task_ids)


@pools(TEST)
def test_a_job_killed_outside_is_found_and_counts_a_crash(slurm_server, slurm_env, tmp_path) -> None:
    """A worker killed outright says no goodbye: its closed session (or squeue, whichever comes first) tells the
    server, which requeues the task."""
    workers = Workers(slurm_server, tmp_path)
    with Client(slurm_server.access_file) as client:
        (worker_id,) = client.create_workers(1, provider="slurm", flavor="test", concurrency=1, prefetch=0)
        task_id = client.submit("sleep 30")
        wait_until(lambda: client.task(task_id).status == Status.RUNNING, 60, what="the task to run in the job")
        worker = next(w for w in client.workers() if w.worker_id == worker_id)
        job = worker.slurm_job_id
        os.kill(worker.pid, signal.SIGKILL)  # as the kernel's OOM killer would: the job fails, no goodbye
        wait_until(
            lambda: next(w.state for w in client.workers() if w.worker_id == worker_id) == "lost",
            30,
            what="the server to mark the killed worker lost",
        )
        task = client.task(task_id)
        assert task.status == Status.PENDING and task.crash_count == 1, task
        told = (f"worker {worker_id} was lost: its connection to the server closed", f"Slurm job {job} of worker")
        assert task.reason.startswith(told), task.reason
        workers.start()
        try:
            wait_until(lambda: client.task(task_id).status == Status.RUNNING, 30, what="another worker to take it")
        finally:
            workers.stop_all()


@pools(AUTO)
def test_autoalloc_grows_the_pool_and_idle_workers_leave(slurm_server, slurm_env) -> None:
    with Client(slurm_server.access_file) as client:
        for _ in range(30):
            client.submit("sleep 0.3")
        wait_until(lambda: len(_jobs(client, "auto")) >= 1, 30, what="autoalloc to submit a job")
        seen_live = 0

        def done() -> bool:
            nonlocal seen_live
            pool = next(p for p in client.slurm_pools() if p.name == "auto")
            seen_live = max(seen_live, pool.live)
            assert pool.live <= 2 and pool.queued <= 1, pool
            return _all(client, Status.SUCCEEDED, 30)

        wait_until(done, 90, interval=0.2, what="30 tasks to succeed on autoallocated workers")
        jobs = _jobs(client, "auto")
        assert 1 <= len(jobs) <= 2, jobs
        assert seen_live >= 1
        wait_until(
            lambda: all(w.state == "stopped" for w in client.workers() if w.slurm_pool == "auto"),
            30,
            what="idle workers to leave after the idle timeout",
        )
        wait_until(lambda: not squeue_jobs(slurm_env, jobs), 30, what="their jobs to end")
        assert len(_jobs(client, "auto")) == len(jobs), "no job is submitted once the queue is empty"


@pools(SHORT)
def test_walltime_hands_back_prefetched_tasks_and_skips_tasks_that_do_not_fit(slurm_server, tmp_path) -> None:
    workers = Workers(slurm_server, tmp_path)
    with Client(slurm_server.access_file) as client:
        too_long = client.submit("sleep 1", time_request=600)
        task_ids = [client.submit("sleep 2") for _ in range(12)]
        (worker_id,) = client.create_workers(1, provider="slurm", flavor="short", concurrency=1, prefetch=3)
        wait_until(
            lambda: next(w.state for w in client.workers() if w.worker_id == worker_id) == "stopped",
            90,
            what="the worker to drain and leave before its 1-minute time limit",
        )
        worker = next(w for w in client.workers() if w.worker_id == worker_id)
        assert worker.walltime_end is not None
        tasks = {t.task_id: t for t in client.tasks()}
        assert tasks[too_long].status == Status.PENDING and tasks[too_long].attempts == 0, "600 s never fits"
        assert not [t for t in tasks.values() if t.status == Status.FAILED], "no task lost or failed"
        done = [t for t in task_ids if tasks[t].status == Status.SUCCEEDED]
        returned = [t for t in task_ids if tasks[t].status == Status.PENDING and tasks[t].attempts == 1]
        assert done and returned, tasks
        assert all("of its end" in tasks[t].reason for t in returned), [tasks[t].reason for t in returned]
        workers.start("--concurrency", "2")
        try:
            wait_until(lambda: _all(client, Status.SUCCEEDED, 13), 60, what="a local worker to finish every task")
        finally:
            workers.stop_all()


@pools(TEST + BROKEN.replace("autoalloc = true", "autoalloc = false"))
def test_unknown_profile_and_sbatch_errors_are_clear(slurm_server) -> None:
    channel = open_channel(slurm_server.access)
    with Client(slurm_server.access_file) as client:
        with pytest.raises(
            ClientError, match=r"unknown Slurm pool profile 'nope' \(known: broken, default, test;"
        ) as err:
            client.create_workers(1, provider="slurm", flavor="nope")
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
        unknown = _cli_fails(slurm_server, "workers", "create", "--provider", "slurm", "--profile", "nope")
        assert (unknown.returncode, unknown.stdout) == (1, "")
        assert unknown.stderr == (
            "tqhpc: error: unknown Slurm pool profile 'nope' (known: broken, default, test; "
            "add [pools.NAME] tables to the server's config.toml for more)\n"
        )
        local = _cli_fails(slurm_server, "workers", "create", "--profile", "test")
        assert local.returncode == 2 and local.stderr.startswith(
            "tqhpc workers create: error: --profile names a Slurm pool profile: use it with --provider slurm"
        )
        assert len(local.stderr.splitlines()) == 1, local.stderr
        assert client.workers() == [], "nothing is created for an unknown profile"
        with pytest.raises(ClientError, match=r"sbatch refused the worker job: .*invalid partition") as err:
            client.create_workers(2, provider="slurm", flavor="broken")
        assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert {w.state for w in client.workers() if w.slurm_pool == "broken"} == {"lost"}
        with pytest.raises(ClientError, match="time_request must be") as err:
            client.submit("true", time_request=-1)
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    channel.close()


@pools(TEST + BROKEN)
def test_a_failing_autoalloc_pool_is_paused_and_says_why(slurm_server) -> None:
    with Client(slurm_server.access_file) as client:
        client.submit("true")

        def paused() -> pb.SlurmPool | None:
            pool = next(p for p in client.slurm_pools() if p.name == "broken")
            return pool if pool.paused else None

        pool = wait_until(paused, 30, what="the broken pool to be paused")
        assert pool.failures == 2 and "invalid partition" in pool.pause_reason
    result = _cli(slurm_server, "pool", "list")
    as_json = {p["name"]: p for p in json.loads(_cli(slurm_server, "pool", "list", "--json").stdout)}
    assert as_json["broken"]["paused"] is True and as_json["test"]["max_workers"] == 4
    line = next(line for line in result.stdout.splitlines() if line.startswith("broken"))
    assert "paused" in line and "invalid partition" in line
    assert next(line for line in result.stdout.splitlines() if line.startswith("test")).split()[1] == "off"
    resumed = _cli(slurm_server, "pool", "resume", "broken")
    assert resumed.returncode == 0 and resumed.stdout.strip() == "pool broken: automatic allocation on, not paused"
    with Client(slurm_server.access_file) as client:
        # The task still waits and the partition is still wrong: it submits again, fails twice more, pauses again.
        pool = wait_until(paused, 30, what="the resumed pool to try again and pause")
        assert pool.failures == 2
        with pytest.raises(ClientError, match="no pool profile 'nosuch'") as err:
            client.resume_slurm_pool("nosuch")
        assert err.value.code == grpc.StatusCode.NOT_FOUND
    unknown = subprocess.run(
        tqhpc_command("pool", "resume", "nosuch", "--access", str(slurm_server.access_file)),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert unknown.returncode == 1 and "no pool profile 'nosuch' (known: broken, test)" in unknown.stderr


@pools("")
def test_a_first_time_user_gets_slurm_workers_on_the_default_partition(slurm_server, slurm_env) -> None:
    """No pool profile configured: `workers create --provider slurm` and a seed client's CreateWorker (flavor "")
    submit jobs to the cluster's default partition with its time limit and one CPU per task slot."""
    partition, time_limit = default_partition(slurm_env)
    jobs: list[str] = []
    try:
        with Client(slurm_server.access_file) as client:
            created = _cli(
                slurm_server, "workers", "create", "--provider", "slurm", "--concurrency", "2", "--prefetch", "0"
            )
            (wide,) = map(int, created.stdout.split())
            jobs.append(_job_of(client, wide))
            fields = job_fields(slurm_env, jobs[0])
            assert (fields["Partition"], fields["TimeLimit"], fields["CPUs/Task"]) == (partition, time_limit, "2")
            script = job_script(slurm_env, jobs[0])
            assert " --concurrency 2 --prefetch 0 " in script, script
            assert ("#SBATCH --time=" in script) == (time_limit != "UNLIMITED"), script
            _cli(slurm_server, "worker", "delete", str(wide))  # its two CPUs are the whole node: free them
            (seed,) = client.create_workers(1, provider="slurm")  # what a seed client sends: flavor "", 0, 0
            jobs.append(_job_of(client, seed))
            assert job_fields(slurm_env, jobs[1])["CPUs/Task"] == "1", "concurrency 0 asks for one CPU"
            task_id = client.submit("true")
            wait_until(lambda: client.task(task_id).status == Status.SUCCEEDED, 90, what="the job's worker to run it")
            worker = next(w for w in client.workers() if w.worker_id == seed)
            assert (client.task(task_id).worker_id, worker.slurm_pool, worker.prefetch) == (seed, "default", 0)
        pool = {p["name"]: p for p in json.loads(_cli(slurm_server, "pool", "list", "--json").stdout)}["default"]
        assert (pool["partition"], pool["submitted"], pool["autoalloc"]) == (partition, 2, False), pool
        line = next(
            line for line in _cli(slurm_server, "pool", "list").stdout.splitlines() if line.startswith("default")
        )
        assert line.split()[7:9] == ["none" if time_limit == "UNLIMITED" else time_limit, "2"], line
    finally:
        scancel_all(slurm_env, jobs)


@pools(TEST + ZERO)
def test_jobs_submitted_by_hand_keep_the_profile_prefetch_and_are_counted(slurm_server, slurm_env) -> None:
    jobs: list[str] = []
    try:
        with Client(slurm_server.access_file) as client:
            (first,) = map(int, _cli(slurm_server, "pool", "create", "--profile", "zero").stdout.split())
            jobs.append(_job_of(client, first))
            created = _cli(slurm_server, "workers", "create", "--provider", "slurm", "-p", "zero", "--prefetch", "3")
            (second,) = map(int, created.stdout.split())
            jobs.append(_job_of(client, second))
        first_script, second_script = (job_script(slurm_env, job) for job in jobs)
        assert " --concurrency 1 --prefetch 0 " in first_script, "the profile's prefetch = 0 is kept"
        assert " --concurrency 1 --prefetch 3 " in second_script, "an explicit --prefetch wins over the profile's"
        assert f"--job-name=tqhpc-zero-{second}" in second_script
        pools = {p["name"]: p for p in json.loads(_cli(slurm_server, "pool", "list", "--json").stdout)}
        assert (pools["zero"]["submitted"], pools["test"]["submitted"]) == (2, 0), pools
        assert "default" not in pools, "the default pool is listed once it is used"
        line = next(line for line in _cli(slurm_server, "pool", "list").stdout.splitlines() if line.startswith("zero"))
        assert line.split()[8] == "2", line
    finally:
        scancel_all(slurm_env, jobs)


@pools(BROKEN.replace("[pools.broken]", "[pools.default]").replace("autoalloc = true", "autoalloc = false"))
def test_a_default_table_in_the_config_replaces_the_default_profile(slurm_server) -> None:
    """Its wrong partition shows that it, not the cluster's default partition, made the job."""
    refused = _cli_fails(slurm_server, "workers", "create", "--provider", "slurm")
    assert refused.stderr.startswith("tqhpc: error: sbatch refused the worker job: "), refused.stderr
    assert "invalid partition" in refused.stderr.lower()
    (pool,) = json.loads(_cli(slurm_server, "pool", "list", "--json").stdout)
    assert (pool["name"], pool["partition"], pool["submitted"]) == ("default", "no-such-partition", 0)

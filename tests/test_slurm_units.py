"""Slurm pools without a cluster: profiles, partitions, the job script, walltime arithmetic, the crash limit."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from conftest import start_server, tqhpc_command

from tqhpc import Client
from tqhpc.client import ClientError
from tqhpc.config import ConfigError
from tqhpc.records import WorkerState
from tqhpc.slurm.partitions import Partition, PartitionError, default_partition, parse_partitions
from tqhpc.slurm.profiles import PoolProfile, default_profile, load_profiles, parse_profiles, sbatch_time_seconds
from tqhpc.slurm.script import WorkerJob, render
from tqhpc.status import Status
from tqhpc.store import Database, slurm_jobs, taskflow
from tqhpc.store import tasks as task_ops
from tqhpc.store import workers as worker_ops
from tqhpc.store.taskflow import NewTask
from tqhpc.worker.walltime import Walltime, job_end_time, parse_squeue_time


@pytest.fixture
def db(tmp_path: Path):
    database = Database(tmp_path / "tqhpc.db")
    yield database
    database.close()


def test_a_profile_becomes_the_job_script() -> None:
    profile = parse_profiles(
        {
            "big": {
                "partition": "long",
                "account": "proj42",
                "time_limit": "2-00:00:00",
                "memory": "8G",
                "sbatch_options": ["--qos=high", "--constraint=avx2"],
                "worker_init": "module load python/3.11\nexport OMP_NUM_THREADS=1",
                "idle_timeout": 120,
            }
        },
        "config.toml",
    )["big"]
    script = render(profile, WorkerJob(7, 4, 2, Path("/state/access.toml"), Path("/state/workers/w-7-%j.log")))
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    for expected in (
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --time=2-00:00:00",
        "#SBATCH --partition=long",
        "#SBATCH --account=proj42",
        "#SBATCH --mem=8G",
        "#SBATCH --qos=high",
        "#SBATCH --constraint=avx2",
        "#SBATCH --output=/state/workers/w-7-%j.log",
        "module load python/3.11",
        "export TQHPC_WORKER_ID=7",
        "export TQHPC_ACCESS=/state/access.toml",
    ):
        assert expected in lines, (expected, script)
    assert f"exec {sys.executable} -m tqhpc worker --concurrency 4 --prefetch 2" in script
    assert "--idle-timeout 120 --walltime-margin 60" in script
    # Every #SBATCH line comes before the first command, or sbatch ignores it.
    first_command = next(i for i, line in enumerate(lines) if line and not line.startswith("#"))
    assert max(i for i, line in enumerate(lines) if line.startswith("#SBATCH")) < first_command


def test_the_worker_command_of_a_profile_replaces_the_default() -> None:
    profile = PoolProfile(name="p", worker_command="/opt/venv/bin/tqhpc worker")
    script = render(profile, WorkerJob(1, 1, 0, Path("/a"), Path("/o")))
    assert "exec /opt/venv/bin/tqhpc worker --concurrency 1" in script


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"x": {"partion": "a"}}, "unknown key 'partion' in [pools.x]"),
        ({"x": {"backlog": "2"}}, "backlog in [pools.x] of c.toml must be an integer"),
        ({"x": {"max_workers": -1}}, "must not be negative"),
        ({"x": {"time_limit": "one hour"}}, "must be in sbatch --time form"),
        ({"x": {"sbatch_options": "--qos=a"}}, "must be a list of strings"),
        ({"x": {"partition": "a\n#SBATCH --x"}}, "one line each"),
        ({"bad name": {}}, "pool name 'bad name'"),
    ],
)
def test_bad_profiles_are_refused_with_the_key(table: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=None) as err:
        parse_profiles(table, "c.toml")
    assert message in str(err.value)


def test_a_server_with_a_bad_pool_profile_says_so_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[pools.gpu]\ntime_limt = "1:00:00"\n')
    assert load_profiles(tmp_path / "absent.toml") == {}
    result = subprocess.run(
        tqhpc_command("server", "--state-dir", str(tmp_path / "state"), "--listen", "127.0.0.1:0"),
        capture_output=True, text=True, timeout=60, check=False,
        env={"TQHPC_CONFIG": str(config), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith(f"tqhpc: error: unknown key 'time_limt' in [pools.gpu] of {config} (known: "), lines


def test_walltime_from_the_environment_and_from_squeue_output() -> None:
    assert job_end_time({"SLURM_JOB_END_TIME": "1800000000"}) == 1800000000.0
    assert job_end_time({}) is None
    assert parse_squeue_time("N/A") is None and parse_squeue_time("NONE") is None
    assert parse_squeue_time("2026-11-28T05:20:00") == time.mktime((2026, 11, 28, 5, 20, 0, 0, 0, -1))
    now = time.time()
    walltime = Walltime(end=now + 100, margin=30)
    assert walltime.stop_at == now + 70
    assert 69 < walltime.left() <= 70 and not walltime.due()
    assert Walltime(end=now + 20, margin=30).due()
    assert Walltime(end=None, margin=30).left() == float("inf") and Walltime(None, 30).stop_at is None


def _worker(db: Database, walltime_end: float | None = None, prefetch: int = 0) -> int:
    return db.call(
        lambda c: worker_ops.register(
            c,
            name="w",
            concurrency=1,
            prefetch=prefetch,
            hostname="h",
            pid=1,
            now=time.time(),
            walltime_end=walltime_end,
        )
    ).worker_id


def test_a_task_that_keeps_losing_its_worker_fails_at_the_crash_limit(db: Database) -> None:
    (task_id,) = db.call(lambda c: taskflow.insert_batch(c, [NewTask("sleep 9")], 1.0))
    (idle,) = db.call(lambda c: taskflow.insert_batch(c, [NewTask("true")], 1.0))
    (dependent,) = db.call(lambda c: taskflow.insert_batch(c, [NewTask("echo after", after=(task_id,))], 1.0))
    for attempt in (1, 2, 3):
        worker_id = _worker(db, prefetch=1)  # room for both: it runs one and has accepted the other
        assigned = db.call(lambda c, w=worker_id: worker_ops.ping(c, w, time.time())).tasks
        assert sorted(t.task_id for t in assigned) == sorted([task_id, idle])
        db.call(lambda c, w=worker_id: task_ops.update_status(c, task_id, Status.RUNNING, time.time(), worker_id=w))
        db.call(lambda c, w=worker_id: task_ops.update_status(c, idle, Status.ACCEPTED, time.time(), worker_id=w))
        _, requeued = db.call(
            lambda c, w=worker_id, n=attempt: worker_ops.retire(c, w, WorkerState.LOST, f"lost #{n}", crash_limit=3)
        )
        task = db.call(lambda c: task_ops.get_task(c, task_id))
        assert task.crash_count == attempt
        if attempt < 3:
            assert task.status == Status.PENDING and task_id in requeued
        never_ran = db.call(lambda c: task_ops.get_task(c, idle))
        assert idle in requeued and (never_ran.status, never_ran.crash_count) == (Status.PENDING, 0), never_ran
    assert task.status == Status.FAILED and task_id not in requeued
    assert task.reason == "crash limit reached: its worker was lost 3 times while running it (last: lost #3)"
    assert task.failure == "crash_limit"
    after = db.call(lambda c: task_ops.get_task(c, dependent))
    assert (after.status, after.reason) == (Status.CANCELLED, f"dependency {task_id} failed")


def test_a_deleted_worker_counts_no_crash(db: Database) -> None:
    (task_id,) = db.call(lambda c: taskflow.insert_batch(c, [NewTask("sleep 9")], 1.0))
    worker_id = _worker(db)
    db.call(lambda c: worker_ops.ping(c, worker_id, time.time()))
    db.call(lambda c: task_ops.update_status(c, task_id, Status.RUNNING, time.time(), worker_id=worker_id))
    db.call(lambda c: worker_ops.retire(c, worker_id, WorkerState.DELETED, "deleted", crash_limit=1))
    task = db.call(lambda c: task_ops.get_task(c, task_id))
    assert task.status == Status.PENDING and task.crash_count == 0


def test_only_tasks_that_fit_the_walltime_are_assigned(db: Database) -> None:
    specs = [NewTask("long", time_request=3600), NewTask("short", time_request=60), NewTask("any")]
    ids = db.call(lambda c: taskflow.insert_batch(c, specs, 1.0))
    short_lived = _worker(db, walltime_end=time.time() + 600)
    got = db.call(lambda c: worker_ops.ping(c, short_lived, time.time())).tasks
    assert [t.task_id for t in got] == ids[1:2], "one slot: the 60 s task fits, the 3600 s one does not"
    unbounded = _worker(db)
    db.call(lambda c: worker_ops.update_worker(c, unbounded, concurrency=5, prefetch=None))
    got = db.call(lambda c: worker_ops.ping(c, unbounded, time.time())).tasks
    assert sorted(t.task_id for t in got) == [ids[0], ids[2]]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 1800), ("5:30", 330), ("1:00:00", 3600), ("2-0", 172800), ("1-2:30", 95400), ("1-0:0:10", 86410)],
)
def test_sbatch_time_forms_in_seconds(text: str, seconds: float) -> None:
    assert sbatch_time_seconds(text) == seconds


def test_autoalloc_counts_only_the_pending_tasks_a_pool_could_run(db: Database) -> None:
    pool = PoolProfile("short", time_limit="10", walltime_margin=60, concurrency=2)
    assert pool.task_time == 540
    specs = [
        NewTask("fits"),
        NewTask("declared short", time_request=300),
        NewTask("declared too long", time_request=3600),
        NewTask("too wide", slots=4),
    ]
    db.call(lambda c: taskflow.insert_batch(c, specs, 1.0))
    assert db.call(lambda c: slurm_jobs.pending_task_count(c, pool.concurrency, pool.task_time)) == 2
    assert db.call(slurm_jobs.pending_task_count) == 4


# `scontrol show partition --oneliner` of a cluster with a default partition that sets no limit, and one that does.
SCONTROL_PARTITIONS = """\
PartitionName=debug AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL AllocNodes=ALL Default=YES QoS=N/A \
DefaultTime=NONE DisableRootJobs=NO ExclusiveUser=NO GraceTime=0 Hidden=NO MaxNodes=UNLIMITED MaxTime=UNLIMITED \
MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED Nodes=vm State=UP TotalCPUs=2 TRES=cpu=2,mem=21694M,node=1,billing=2
PartitionName=long AllowGroups=ALL Default=NO DefaultTime=01:00:00 MaxTime=2-00:00:00 Nodes=vm State=UP
PartitionName=short Default=NO DefaultTime=NONE MaxTime=30:00 Nodes=vm State=UP
"""


def test_the_default_partition_and_the_time_limit_a_job_gets_there() -> None:
    partitions = parse_partitions(SCONTROL_PARTITIONS)
    assert partitions == [
        Partition("debug", default=True, time_limit=""),
        Partition("long", default=False, time_limit="01:00:00"),
        Partition("short", default=False, time_limit="30:00"),
    ]
    assert default_partition(partitions) == partitions[0]
    with pytest.raises(PartitionError, match=r"marks no partition as its default \(partitions: long, short\)"):
        default_partition(partitions[1:])
    with pytest.raises(PartitionError, match="marks no partition"):
        default_partition([])
    with pytest.raises(PartitionError, match=r"partition odd: cannot read MaxTime='forever' as a Slurm time"):
        parse_partitions("PartitionName=odd Default=YES DefaultTime=NONE MaxTime=forever\n")


def test_the_default_profile_names_the_partition_and_its_limit_only() -> None:
    unlimited = default_profile(Partition("debug", default=True, time_limit=""))
    assert (unlimited.name, unlimited.partition, unlimited.concurrency) == ("default", "debug", 1)
    assert unlimited.task_time == float("inf"), "no time limit: any declared run time fits"
    script = render(unlimited, WorkerJob(3, 2, 0, Path("/a"), Path("/o")))
    lines = script.splitlines()
    assert "#SBATCH --partition=debug" in lines and "#SBATCH --cpus-per-task=2" in lines
    assert not [line for line in lines if line.startswith("#SBATCH --time")], script
    assert "--concurrency 2 --prefetch 0 " in script
    limited = default_profile(Partition("long", default=True, time_limit="01:00:00"))
    assert "#SBATCH --time=01:00:00" in render(limited, WorkerJob(3, 1, 0, Path("/a"), Path("/o"))).splitlines()
    assert limited.task_time == 3600 - limited.walltime_margin


def test_the_default_profile_on_a_host_without_slurm_says_what_is_missing(tmp_path: Path) -> None:
    no_slurm = tmp_path / "bin"
    no_slurm.mkdir()
    server = start_server(tmp_path / "state", env=dict(os.environ, PATH=str(no_slurm)))
    try:
        with Client(server.access_file) as client:
            with pytest.raises(ClientError) as err:
                client.create_workers(1, provider="slurm")
            assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
            assert str(err.value).endswith(
                "the default pool profile needs the cluster's default partition, but: "
                "scontrol is not installed or not on the server's PATH"
            ), str(err.value)
            assert client.workers() == [], "no worker is created for a request that cannot be met"
    finally:
        server.stop()

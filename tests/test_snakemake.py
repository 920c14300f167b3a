"""`snakemake --executor tqhpc`: the real Snakemake from PyPI runs examples/snakemake on a real server and worker."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest
from busybox_image import MARKER, build_sif
from conftest import ServerProcess, Workers, start_server, wait_until

from snakemake_executor_plugin_tqhpc.tasks import TaskResources, failure_message, stderr_tail, task_resources
from tqhpc import Client
from tqhpc.status import Status
from tqhpc.worker.apptainer import root_without_sys_resource

CHECKOUT = Path(__file__).resolve().parent.parent
EXAMPLE = CHECKOUT / "examples" / "snakemake"
SNAKEMAKE_SECONDS = 120


@pytest.fixture
def workflow(tmp_path: Path) -> Path:
    """A copy of the example workflow: Snakemake writes its results and .snakemake/ beside the Snakefile."""
    target = tmp_path / "workflow"
    target.mkdir()
    shutil.copy(EXAMPLE / "Snakefile", target)  # not the results of a run made in the checkout
    return target


@pytest.fixture
def worker(workers: Workers) -> Workers:
    workers.start("--concurrency", "2")
    return workers


def snakemake_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--executor", "tqhpc", "--jobs", "500", *args]


def snakemake_env(server: ServerProcess | None) -> dict[str, str]:
    """Snakemake finds this checkout's plugin on its module path, however tqhpc was installed into .venv (an
    editable install in setuptools' default mode hides it)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(CHECKOUT), os.environ.get("PYTHONPATH")])))
    if server is not None:
        env["TQHPC_ACCESS"] = str(server.access_file)
    return env


def run_snakemake(workflow: Path, server: ServerProcess | None, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        snakemake_command(*args),
        cwd=workflow,
        env=snakemake_env(server),
        capture_output=True,
        check=False,
        text=True,
        timeout=SNAKEMAKE_SECONDS,
    )


def squares_written(workflow: Path) -> dict[int, int]:
    return {int(path.stem): int(path.read_text()) for path in (workflow / "results" / "squares").glob("*.txt")}


def test_each_job_is_one_named_task_and_the_outputs_are_right(server, worker, client: Client, workflow: Path) -> None:
    result = run_snakemake(workflow, server, "--config", "count=6")

    assert result.returncode == 0, result.stderr
    assert squares_written(workflow) == {i: i * i for i in range(6)}
    assert (workflow / "results" / "total.txt").read_text() == f"{sum(i * i for i in range(6))}\n"
    tasks = client.tasks()
    assert Counter(task.name for task in tasks) == {"square": 6, "total": 1}
    assert {task.status for task in tasks} == {Status.SUCCEEDED}
    assert {task.cwd for task in tasks} == {str(workflow)}
    assert {task.time_request for task in client.tasks(name="square")} == {300.0}  # the rule's runtime=5 (minutes)
    assert client.tasks(name="total")[0].time_request == 0.0  # no runtime declared
    assert {task.timeout for task in tasks} == {0.0}  # a limit only when asked for
    listing = subprocess.run(
        [sys.executable, "-m", "tqhpc", "tasks", "--name", "square", "--access", str(server.access_file)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert [line.split()[-1] for line in listing.splitlines()[1:-1]] == ["square"] * 6  # NAME is the last column


def test_a_failed_job_is_the_rules_failure_with_its_stderr_and_a_rerun_does_only_what_is_missing(
    server, worker, client: Client, workflow: Path
) -> None:
    failed = run_snakemake(workflow, server, "--config", "count=6", "fail=3", "--keep-going")

    assert failed.returncode != 0
    [failed_task] = client.tasks(status="F")
    assert failed_task.name == "square"
    log = failed.stderr
    report = log[log.index("Error in rule square:") :]
    assert f"tqhpc task {failed_task.task_id} failed, exit code 1." in report
    assert "square 3: failing as asked (config fail=3)" in report  # the rule's own stderr, from the task's
    assert f"`tqhpc logs {failed_task.task_id}`" in report
    assert squares_written(workflow) == {i: i * i for i in range(6) if i != 3}
    assert not (workflow / "results" / "total.txt").exists()
    assert len(client.tasks()) == 6  # five squares done, one failed; total never ran

    known = {task.task_id for task in client.tasks()}
    rerun = run_snakemake(workflow, server, "--config", "count=6")

    assert rerun.returncode == 0, rerun.stderr
    assert (workflow / "results" / "total.txt").read_text() == f"{sum(i * i for i in range(6))}\n"
    new_tasks = [task for task in client.tasks() if task.task_id not in known]
    assert sorted(task.name for task in new_tasks) == ["square", "total"]
    assert "2 of 3 steps" in rerun.stderr and "3 of 3 steps (100%) done" in rerun.stderr  # square 3, total, all


def test_settings_name_slots_memory_and_timeout(server, worker, client: Client, workflow: Path) -> None:
    result = subprocess.run(
        snakemake_command(
            "--tqhpc-access",
            str(server.state_dir),  # a state directory, as for --access
            "--tqhpc-name-prefix",
            "sweep-",
            "--tqhpc-timeout-from-runtime",
            "--set-threads",
            "square=2",
            "--set-resources",
            "square:mem_mb=500",
            "square:runtime=2",
            "--config",
            "count=2",
        ),
        cwd=workflow,
        env=snakemake_env(None),  # no TQHPC_ACCESS: the setting alone finds the server
        capture_output=True,
        check=False,
        text=True,
        timeout=SNAKEMAKE_SECONDS,
    )

    assert result.returncode == 0, result.stderr
    squares = client.tasks(name="sweep-square")
    assert len(squares) == 2
    # mem_mb=500 (megabytes) is mem_mib=477 to Snakemake, rounded up: the larger of the two is the limit.
    assert {(t.slots, t.memory_limit, t.time_request, t.timeout) for t in squares} == {(2, 477 << 20, 120.0, 120.0)}
    [total] = client.tasks(name="sweep-total")
    assert (total.slots, total.memory_limit, total.time_request, total.timeout) == (1, 0, 0.0, 0.0)


def test_grouped_jobs_run_as_one_task_per_group(server, worker, client: Client, workflow: Path) -> None:
    result = run_snakemake(
        workflow, server, "--groups", "square=sweep", "--group-components", "sweep=3", "--cores", "2",
        "--config", "count=6",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert squares_written(workflow) == {i: i * i for i in range(6)}
    assert (workflow / "results" / "total.txt").read_text() == f"{sum(i * i for i in range(6))}\n"
    groups = client.tasks(name="sweep_square")
    assert len(groups) == 2  # 3 squares each
    # A group's threads are its jobs' at once (capped by --cores), its runtime theirs one after the other.
    assert {(task.slots, task.time_request) for task in groups} == {(2, 2 * 300.0)}
    assert [task.name for task in client.tasks()] == ["sweep_square", "sweep_square", "total"]


def test_interrupting_snakemake_cancels_its_tasks_and_kills_the_running_ones(
    server, worker, client: Client, workflow: Path
) -> None:
    process = _start_sleeping_workflow(server, workflow)
    try:
        assert len(client.tasks()) == 4
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode != 0
    assert "tqhpc: cancelled 4 task(s)" in stderr
    assert {task.status for task in client.tasks()} == {Status.CANCELLED}
    wait_until(lambda: not _processes_in(workflow), timeout=20, what="the jobs' processes to end")


def test_an_interrupt_during_a_status_check_still_cancels_every_task(
    server, worker, client: Client, workflow: Path
) -> None:
    """Snakemake takes its jobs out of its active list while a status check runs: an interrupt then must still
    cancel them all. The server is stopped so that a check hangs in flight when the interrupt comes."""
    process = _start_sleeping_workflow(server, workflow, "--tqhpc-status-interval", "0.2")
    try:
        # Snakemake's first status check comes 10 s after its start (its default interval, read before the plugin
        # sets its own), then one every 0.2 s.
        time.sleep(11.0)
        server.process.send_signal(signal.SIGSTOP)
        try:
            time.sleep(2.0)  # one check is now waiting for the stopped server
            process.send_signal(signal.SIGINT)
            time.sleep(1.0)
        finally:
            server.process.send_signal(signal.SIGCONT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert "tqhpc: cancelled 4 task(s)" in stderr
    assert {task.status for task in client.tasks()} == {Status.CANCELLED}
    wait_until(lambda: not _processes_in(workflow), timeout=20, what="the jobs' processes to end")


def _start_sleeping_workflow(server: ServerProcess, workflow: Path, *args: str) -> subprocess.Popen[str]:
    """Snakemake on 4 jobs that sleep 300 s, returned once one of their rules runs (its stderr piped)."""
    process = subprocess.Popen(
        snakemake_command("--config", "count=4", "sleep=300", *args),
        cwd=workflow,
        env=snakemake_env(server),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(
            lambda: [p for p in _processes_in(workflow) if _command_line(p)[:1] == ["sleep"]],
            timeout=60,
            what="a job's rule to be running",
        )
    except BaseException:
        process.kill()
        process.wait()
        raise
    return process


def _command_line(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return []


def _processes_in(directory: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        try:
            if process.cwd() == str(directory):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def test_jobs_outlive_a_server_restart(server, worker, client: Client, workflow: Path, tmp_path: Path) -> None:
    log = tmp_path / "snakemake.err"
    with open(log, "w") as stderr:
        process = subprocess.Popen(
            snakemake_command("--config", "count=2", "sleep=8"),
            cwd=workflow,
            env=snakemake_env(server),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        wait_until(lambda: client.tasks(status="R"), timeout=60, what="a job to run")
        server.stop()
        wait_until(lambda: "trying again" in log.read_text(), timeout=30, what="Snakemake to miss the server")
        restarted = start_server(server.state_dir, "--worker-timeout", "3", "--reap-interval", "0.5")
        try:
            process.wait(timeout=SNAKEMAKE_SECONDS)
        finally:
            restarted.stop()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    output = log.read_text()
    assert process.returncode == 0, output
    assert (workflow / "results" / "total.txt").read_text() == "1\n"
    assert "tqhpc: cannot check the jobs' tasks, trying again: cannot reach the tqhpc server" in output
    assert output.count("trying again") == 1  # one warning for the whole outage
    assert "tqhpc: the server answers again" in output


def test_no_access_file_is_one_clear_error(tmp_path: Path, workflow: Path) -> None:
    missing = tmp_path / "nowhere" / "access.toml"

    result = subprocess.run(
        snakemake_command("--tqhpc-access", str(missing)),
        cwd=workflow,
        env=snakemake_env(None),
        capture_output=True,
        check=False,
        text=True,
        timeout=SNAKEMAKE_SECONDS,
    )

    assert result.returncode != 0
    assert f"tqhpc: no access file at {missing}: start `tqhpc server` first" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_status_interval_of_zero_is_one_clear_error(server, workflow: Path) -> None:
    result = run_snakemake(workflow, server, "--tqhpc-status-interval", "0")

    assert result.returncode != 0
    assert "tqhpc: --tqhpc-status-interval must be more than 0 seconds, not 0" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_server_that_does_not_answer_is_one_clear_error(server, workflow: Path) -> None:
    address = server.access.address
    server.stop()

    result = run_snakemake(workflow, server)

    assert result.returncode != 0
    assert f"tqhpc: cannot reach the tqhpc server at {address}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (workflow / "results").exists()


def test_resources_map_to_slots_memory_and_time() -> None:
    assert task_resources(4, {"mem_mib": 954, "mem_mb": 1000, "runtime": 90}, timeout_from_runtime=False) == (
        TaskResources(slots=4, memory_limit=954 << 20, time_request=5400.0, timeout=0.0)
    )
    assert task_resources(1, {"mem_mb": 500, "runtime": 2}, timeout_from_runtime=True) == (
        TaskResources(slots=1, memory_limit=500 * 10**6, time_request=120.0, timeout=120.0)
    )
    # Nothing declared, or values Snakemake left unevaluated: no limits, one slot.
    assert task_resources(0, {"mem_mb": "<TBD>", "runtime": True, "tmpdir": "/tmp"}, timeout_from_runtime=True) == (
        TaskResources(slots=1, memory_limit=0, time_request=0.0, timeout=0.0)
    )


def test_the_failure_message_keeps_the_end_of_stderr() -> None:
    stderr = "".join(f"line {i}\n" for i in range(100))
    assert stderr_tail(stderr) == "\n".join(f"line {i}" for i in range(60, 100))
    assert stderr_tail("x" * 10_000, chars=100) == "…" + "x" * 100
    message = failure_message(7, "failed", 2, "exit_code", "exit code 2", stderr)
    assert message.startswith("tqhpc task 7 failed, exit code 2.\nlast lines of its stderr:\nline 60\n")
    assert message.endswith("line 99\n(whole output: `tqhpc logs 7`) ")
    assert failure_message(8, "failed", None, "timeout", "killed after 60 s", "").startswith(
        "tqhpc task 8 failed, timeout, killed after 60 s.\nit wrote nothing to stderr."
    )


def test_a_job_the_server_refuses_fails_with_the_servers_reason(server, client: Client, workflow: Path) -> None:
    result = run_snakemake(workflow, server, "--set-threads", "square=5000", "--config", "count=1")

    assert result.returncode != 0
    report = result.stderr[result.stderr.index("Error in rule square:") :]
    assert "tqhpc refused the job: task 1 of the batch: slots must be between 1 and 4096, not 5000." in report
    assert "tqhpc: no worker is connected to the server: jobs wait until one starts" in result.stderr
    assert "Traceback" not in result.stderr
    assert client.tasks() == []


CONTAINER_WORKFLOW = """
shell.executable("sh")  # the image is busybox: no bash in it

rule inside:
    output: "inside.txt"
    container: "{image}"
    shell: "cat /marker.txt > {{output}}"
"""


def test_a_rules_container_runs_under_snakemakes_apptainer_deployment(server, worker, client: Client, tmp_path: Path):
    if shutil.which("apptainer") is None:
        pytest.fail("apptainer is not installed: run scripts/install_apptainer.sh as root (scripts/test.sh does)")
    image = build_sif(tmp_path / "image")
    workflow = tmp_path / "containerized"
    workflow.mkdir()
    (workflow / "Snakefile").write_text(CONTAINER_WORKFLOW.format(image=image))

    # Where tqhpc's worker would add --userns by itself (root without CAP_SYS_RESOURCE), Snakemake must be told.
    userns = ["--apptainer-args=--userns"] if root_without_sys_resource() else []
    result = run_snakemake(workflow, server, "--software-deployment-method", "apptainer", *userns)

    assert result.returncode == 0, result.stderr
    assert (workflow / "inside.txt").read_text() == MARKER + "\n"  # read inside the image
    [task] = client.tasks()
    assert (task.name, task.status, task.container) == ("inside", Status.SUCCEEDED, "")  # Snakemake starts it

"""Containers with real Apptainer: tasks in images built offline from busybox, pulls shared between workers, and every
way a container task can fail ending `F` with its reason in stderr, never a worker crash."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from busybox_image import MARKER, build_docker_archive, build_sif
from conftest import output_of, wait_until

from tqhpc import Client, Status


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Built once per test session: a SIF and a docker-archive of the same busybox tree."""
    if shutil.which("apptainer") is None:
        pytest.fail("apptainer is not installed: run scripts/install_apptainer.sh as root (scripts/test.sh does)")
    directory = tmp_path_factory.mktemp("images")
    return {
        "sif": build_sif(directory),
        "archive": build_docker_archive(directory),
        "sandbox": directory / "busybox-root",  # the tree both were made from: a sandbox directory
    }


def _finished(client: Client, task_id: int, timeout: float = 90.0):
    return wait_until(
        lambda: (t := client.task(task_id)).status.terminal and t,
        timeout=timeout,
        what=lambda: f"task {task_id} to end: {client.task(task_id)}",
    )


def _stdout(client: Client, task_id: int) -> str:
    return b"".join(c.data for c in client.logs(task_id) if c.stream == "O").decode()


def _stderr(client: Client, task_id: int) -> str:
    return b"".join(c.data for c in client.logs(task_id) if c.stream == "E").decode()


def _instances() -> str:
    return subprocess.run(["apptainer", "instance", "list"], capture_output=True, text=True, check=False).stdout


def test_task_in_a_sif_sees_the_image_and_its_workdir(client: Client, workers, images, tmp_path: Path) -> None:
    command = "cat /marker.txt; pwd; echo $TQHPC_TASK_ID > written-inside; sleep 0.5"  # long enough to be sampled
    task_id = client.submit(command, str(images["sif"]))
    second = client.submit("cat /marker.txt", str(images["sif"]))
    worker = workers.start("--concurrency", "1")
    task = _finished(client, task_id)
    assert task.status == Status.SUCCEEDED, (task, _stderr(client, task_id))
    workdir = tmp_path  # where the tasks were submitted
    assert _stdout(client, task_id) == f"{MARKER}\n{workdir}\n"
    assert (workdir / "written-inside").read_text() == f"{task_id}\n"  # the task's directory is bound and current
    assert _finished(client, second).status == Status.SUCCEEDED
    assert task.usage.final and task.usage.wall_time >= 0.5 and task.usage.samples >= 1
    assert task.usage.peak_rss > 0  # the apptainer process and the task under it
    log = output_of(worker)
    assert log.count("started apptainer instance") == 1, log  # one instance served both tasks
    name = log.split("started apptainer instance ", 1)[1].split()[0]
    assert name in _instances()
    workers.stop_all()
    assert f"stopped apptainer instance {name}" in output_of(worker)
    assert name not in _instances()


def test_plain_exec_when_instances_are_off(client: Client, workers, images) -> None:
    task_id = client.submit("cat /marker.txt", str(images["sif"]))
    worker = workers.start("--concurrency", "1", "--apptainer-instances", "false")
    task = _finished(client, task_id)
    assert task.status == Status.SUCCEEDED and _stdout(client, task_id) == MARKER + "\n"
    assert "started apptainer instance" not in output_of(worker)


def test_a_task_without_a_container_runs_bare(client: Client, workers, images) -> None:
    bare = client.submit("test -e /etc/debian_version && test ! -e /marker.txt")
    inside = client.submit("test ! -e /etc/debian_version && test -e /marker.txt", str(images["sif"]))
    workers.start("--concurrency", "2")
    assert _finished(client, bare).status == Status.SUCCEEDED
    assert _finished(client, inside).status == Status.SUCCEEDED


def test_a_missing_image_fails_with_a_message_in_stderr(client: Client, workers, images, tmp_path: Path) -> None:
    missing = client.submit("true", str(tmp_path / "no-such-image.sif"))
    worker = workers.start("--concurrency", "1")
    task = _finished(client, missing)
    assert (task.status, task.failure) == (Status.FAILED, "image_missing"), task
    assert "does not exist" in _stderr(client, missing) and "no-such-image.sif" in task.reason
    after = client.submit("cat /marker.txt", str(images["sif"]))  # the worker goes on
    assert _finished(client, after).status == Status.SUCCEEDED
    assert worker.poll() is None


def test_an_image_that_cannot_start_and_a_failed_pull(client: Client, workers, tmp_path: Path) -> None:
    broken = tmp_path / "broken.sif"
    broken.write_text("not an image\n")
    cannot_start = client.submit("true", str(broken))
    bad_pull = client.submit("true", f"docker-archive://{tmp_path}/no-such-archive.tar")
    worker = workers.start("--concurrency", "2")
    task = _finished(client, cannot_start)
    assert (task.status, task.failure, task.exit_code) == (Status.FAILED, "container_start", 255), task
    assert "could not start" in _stderr(client, cannot_start) and "FATAL" in task.reason
    pulled = _finished(client, bad_pull)
    assert (pulled.status, pulled.failure) == (Status.FAILED, "pull_failed"), pulled
    assert "pulling docker-archive://" in _stderr(client, bad_pull)
    bare = client.submit("echo still here")
    assert _finished(client, bare).status == Status.SUCCEEDED and worker.poll() is None


def test_two_workers_on_one_node_share_one_pull(client: Client, workers, images, tmp_path: Path) -> None:
    uri = f"docker-archive://{images['archive']}"
    first = workers.start("--concurrency", "1", "--prefetch", "0")
    second = workers.start("--concurrency", "1", "--prefetch", "0")
    wait_until(lambda: len(client.workers()) == 2, what="both workers to register")
    ids = [client.submit("cat /marker.txt", uri) for _ in range(2)]
    tasks = [_finished(client, task_id, timeout=180) for task_id in ids]
    assert all(t.status == Status.SUCCEEDED for t in tasks), [(t, _stderr(client, t.task_id)) for t in tasks]
    assert all(_stdout(client, task_id) == MARKER + "\n" for task_id in ids)
    assert {t.worker_id for t in tasks} == {w.worker_id for w in client.workers()}  # each worker ran one
    logs = output_of(first) + output_of(second)
    assert logs.count(f"pulling {uri}") == 1, logs
    cache = tmp_path / "scratch" / f"tqhpc-{os.getuid()}" / "images"
    (meta,) = cache.glob("*.json")
    assert json.loads(meta.read_text())["uri"] == uri
    assert len(list(cache.glob("*.sif"))) == 1 and not list(cache.glob(".*.part"))
    # A later task on either worker uses the cached image: still one pull.
    again = client.submit("cat /marker.txt", uri)
    assert _finished(client, again).status == Status.SUCCEEDED
    assert (output_of(first) + output_of(second)).count(f"pulling {uri}") == 1


def test_a_worker_without_apptainer_leaves_container_tasks_to_others(client: Client, workers, images) -> None:
    blind = workers.start("--concurrency", "2", "--apptainer-executable", "/nonexistent/apptainer")
    wait_until(client.workers, what="the worker to register")
    contained = client.submit("cat /marker.txt", str(images["sif"]))
    bare = client.submit("echo bare")
    assert _finished(client, bare).status == Status.SUCCEEDED
    time.sleep(1.5)  # several pings: the container task must still be waiting for a capable worker
    assert client.task(contained).status == Status.PENDING
    (worker,) = client.workers()
    assert worker.container_capable is False and "/nonexistent/apptainer" in worker.container_note
    assert output_of(blind).count("cannot run container tasks") == 1  # reported once, not per task
    workers.start("--concurrency", "1")
    task = _finished(client, contained)
    assert task.status == Status.SUCCEEDED and task.worker_id != worker.worker_id


def test_instances_left_by_a_killed_worker_are_stopped_by_the_next(client: Client, workers, images) -> None:
    first = workers.start("--concurrency", "1")
    task_id = client.submit("true", str(images["sif"]))
    assert _finished(client, task_id).status == Status.SUCCEEDED
    name = output_of(first).split("started apptainer instance ", 1)[1].split()[0]
    first.send_signal(signal.SIGKILL)  # no chance to stop its instance
    first.wait(10)
    assert name in _instances()
    second = workers.start("--concurrency", "1")
    wait_until(lambda: name not in _instances(), timeout=30, what=f"instance {name} to be stopped")
    assert f"stopping apptainer instance {name} left by a worker that is gone" in output_of(second)


@pytest.mark.parametrize("instances", ["true", "false"])
def test_cleanenv_keeps_only_the_task_variables(client: Client, workers, images, instances: str) -> None:
    task_id = client.submit('echo "[$CLEANENV_PROBE] $TQHPC_TASK_ID"', str(images["sif"]))
    env = dict(os.environ, CLEANENV_PROBE="leaked")
    workers.start("--concurrency", "1", "--apptainer-cleanenv", "true", "--apptainer-instances", instances, env=env)
    assert _finished(client, task_id).status == Status.SUCCEEDED
    assert _stdout(client, task_id) == f"[] {task_id}\n"


def test_a_sandbox_directory_runs_as_an_image(client: Client, workers, images) -> None:
    task_id = client.submit("cat /marker.txt", str(images["sandbox"]))
    workers.start("--concurrency", "1")
    task = _finished(client, task_id)
    assert task.status == Status.SUCCEEDED, (task, _stderr(client, task_id))
    assert _stdout(client, task_id) == MARKER + "\n"

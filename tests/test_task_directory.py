"""Where a task runs: the directory it was submitted from (or its --cwd), as under Slurm; a task from a seed client,
which names none, in a scratch directory of its own attempt, removed when the attempt ends. Real server, real
workers, real files; the container case with real Apptainer."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from busybox_image import build_sif
from conftest import ServerProcess, Workers, output_of, start_server, tqhpc_command, wait_until

from tqhpc import Client, Status, TaskSpec
from tqhpc._proto import pb
from tqhpc.channel import sync_stub

SIM = """\
import argparse, json, os
parser = argparse.ArgumentParser()
parser.add_argument("--seed", type=int, required=True)
seed = parser.parse_args().seed
print(json.dumps({"seed": seed, "value": seed * seed, "cwd": os.getcwd()}))
"""


def _project(parent: Path, name: str = "project") -> Path:
    """A user's directory as in the README: sim.py and an out/ directory for its results."""
    project = parent / name
    (project / "out").mkdir(parents=True)
    (project / "sim.py").write_text(SIM)
    return project


def _tqhpc(server: ServerProcess, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TQHPC_ACCESS=str(server.access_file))
    return subprocess.run(
        tqhpc_command(*args), cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def _submitted(result: subprocess.CompletedProcess[str]) -> int:
    assert result.returncode == 0 and result.stdout.strip().isdigit(), result
    return int(result.stdout)


def _finished(client: Client, task_id: int, timeout: float = 60.0):
    return wait_until(
        lambda: (t := client.task(task_id)).status.terminal and t,
        timeout=timeout,
        what=lambda: f"task {task_id} to end: {client.task(task_id)}",
    )


def _out(client: Client, task_id: int, stream: str = "O") -> str:
    return b"".join(c.data for c in client.logs(task_id) if c.stream == stream).decode()


# --- tasks run where they were submitted -----------------------------------------------------------------------


def test_cli_submit_runs_the_task_in_the_submit_directory(server, client: Client, workers, tmp_path: Path) -> None:
    project = _project(tmp_path)
    task_id = _submitted(_tqhpc(server, project, "submit", f"{sys.executable} sim.py --seed 3 > out/3.json"))
    workers.start("--concurrency", "1")
    task = _finished(client, task_id)
    assert task.status == Status.SUCCEEDED, (task, _out(client, task_id, "E"))
    assert json.loads((project / "out" / "3.json").read_text()) == {"seed": 3, "value": 9, "cwd": str(project)}
    assert task.cwd == str(project)
    shown = _tqhpc(server, tmp_path, "task", str(task_id), "--json")
    assert json.loads(shown.stdout)["cwd"] == str(project)
    human = _tqhpc(server, tmp_path, "task", str(task_id)).stdout
    assert any(line.split() == ["cwd", str(project)] for line in human.splitlines()), human


def test_the_client_takes_its_current_directory_at_submit(
    client: Client, workers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = _project(tmp_path)
    (project / "sub").mkdir()
    monkeypatch.chdir(project)
    single = client.submit(f"{sys.executable} sim.py --seed 4 > out/4.json")
    many = client.submit_many([f"{sys.executable} sim.py --seed 5 > out/5.json", TaskSpec("pwd > here.txt", cwd="sub")])
    sweep = client.sweep("pwd > {label}.txt", label=["sweep"], cwd=tmp_path)
    monkeypatch.chdir(tmp_path)  # where the client is afterwards does not matter: the directory went with the task
    workers.start("--concurrency", "2")
    for task_id in (single, *many, *sweep.ids):
        assert _finished(client, task_id).status == Status.SUCCEEDED, _out(client, task_id, "E")
    assert json.loads((project / "out" / "4.json").read_text())["cwd"] == str(project)
    assert json.loads((project / "out" / "5.json").read_text())["cwd"] == str(project)
    assert (project / "sub" / "here.txt").read_text() == f"{project / 'sub'}\n"
    assert (tmp_path / "sweep.txt").read_text() == f"{tmp_path}\n"
    assert [t.cwd for t in client.tasks()] == [str(project), str(project), str(project / "sub"), str(tmp_path)]


def test_cwd_names_another_directory_relative_or_absolute(server, client: Client, workers, tmp_path: Path) -> None:
    project = _project(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    relative = _submitted(_tqhpc(server, project, "submit", "--cwd", "../other", "pwd > relative.txt"))
    absolute = _submitted(_tqhpc(server, tmp_path, "submit", "--cwd", str(project), "--", "touch", "absolute.txt"))
    swept = _tqhpc(server, project, "submit", "--cwd", "out", "--array", "1-2", "touch part-{}")
    assert swept.returncode == 0, swept
    workers.start("--concurrency", "2")
    wait_until(lambda: all(t.status.terminal for t in client.tasks()), what="the tasks")
    assert {t.status for t in client.tasks()} == {Status.SUCCEEDED}
    assert (other / "relative.txt").read_text() == f"{other}\n"
    assert client.task(relative).cwd == str(other)  # made absolute by the client
    assert (project / "absolute.txt").exists() and client.task(absolute).cwd == str(project)
    assert sorted(p.name for p in (project / "out").iterdir()) == ["part-1", "part-2"]


def test_a_missing_or_unusable_cwd_fails_the_task_and_runs_nothing(
    server, client: Client, workers, tmp_path: Path
) -> None:
    project = _project(tmp_path)
    (project / "a-file").write_text("not a directory\n")
    missing = _submitted(_tqhpc(server, project, "submit", "--cwd", "missing", "touch ran-here"))
    not_dir = _submitted(_tqhpc(server, project, "submit", "--cwd", "a-file", "touch ran-here"))
    unreachable = _submitted(_tqhpc(server, project, "submit", "--cwd", "a-file/sub", "touch ran-here"))
    workers.start("--concurrency", "1")
    problems = ((missing, "does not exist"), (not_dir, "is not a directory"), (unreachable, "cannot be reached"))
    for task_id, problem in problems:
        task = _finished(client, task_id)
        assert (task.status, task.failure, task.exit_code) == (Status.FAILED, "cwd", None), task
        assert problem in task.reason and str(project) in task.reason
        assert f"tqhpc: the task's working directory {task.cwd} {problem}" in _out(client, task_id, "E")
    assert not (project / "missing").exists()  # never made for it
    assert not list(tmp_path.rglob("ran-here"))  # and the task ran nowhere else


def test_the_server_refuses_a_relative_cwd(stub) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        stub.SubmitTask(pb.TaskRequest(command="true", cwd="relative/dir"))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "the working directory must be an absolute path, not 'relative/dir'" in refused.value.details()
    batch = pb.TaskBatch(tasks=[pb.TaskRequest(command="true", cwd="/ok"), pb.TaskRequest(command="true", cwd="x")])
    with pytest.raises(grpc.RpcError) as refused:
        stub.SubmitTasks(batch)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "task 2 of the batch: the working directory must be an absolute path" in refused.value.details()
    assert not stub.ListTasks(pb.ListTasksRequest()).tasks  # nothing of the refused batch was queued


def test_submit_from_a_deleted_directory_is_a_one_line_error(server, tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    tqhpc = shutil.which("tqhpc", path=str(Path(sys.executable).parent))
    script = f'cd "{gone}" && rmdir "{gone}" && exec "{tqhpc}" submit true'
    env = dict(os.environ, TQHPC_ACCESS=str(server.access_file))
    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result
    assert (
        result.stderr.startswith("tqhpc: error: the current directory cannot be read")
        and result.stderr.count("\n") == 1
    ), result.stderr


# --- scratch directories for tasks that name none ---------------------------------------------------------------


def _scratch_tasks(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "scratch").glob(f"tqhpc-{os.getuid()}/worker-*/task-*"))


def test_a_seed_task_runs_in_a_scratch_directory_removed_afterwards(
    stub, client: Client, workers, tmp_path: Path
) -> None:
    task_id = stub.SubmitTask(pb.TaskRequest(command="pwd; echo data > left.txt; mkdir -p d/e; touch d/e/f")).task_id
    workers.start("--concurrency", "1")
    task = _finished(client, task_id)
    assert task.status == Status.SUCCEEDED and task.cwd == ""
    ran_in = Path(_out(client, task_id).strip())
    assert ran_in.name == f"task-{task_id}.1"  # this task's first attempt
    assert ran_in.parent.name.startswith(f"worker-{task.worker_id}.")  # inside this worker's own registration
    assert ran_in.parent.parent == tmp_path / "scratch" / f"tqhpc-{os.getuid()}"
    wait_until(lambda: not ran_in.exists(), timeout=10, what=f"{ran_in} to be removed")
    workers.stop_all()
    assert not ran_in.parent.exists()  # the worker's directory went with it


def test_two_attempts_of_a_task_never_share_files(stub, client: Client, server, workers, tmp_path: Path) -> None:
    command = "test -e mark && echo saw-the-earlier-attempt; touch mark; pwd; exit 3"
    task_id = stub.SubmitTask(pb.TaskRequest(command=command, retry=1)).task_id
    workers.start("--concurrency", "1")
    wait_until(lambda: client.task(task_id).status == Status.FAILED, what="both attempts to fail")
    assert client.task(task_id).attempts == 2
    first = (server.state_dir / "logs" / "0000" / f"{task_id}.1.out").read_text()
    second = _out(client, task_id)
    assert "saw" not in first + second
    assert Path(first.strip()).name == f"task-{task_id}.1" and Path(second.strip()).name == f"task-{task_id}.2"


def test_tasks_of_two_servers_with_the_same_id_never_share_files(
    stub, client: Client, server, workers, tmp_path: Path
) -> None:
    other = start_server(tmp_path / "other-state")
    other_workers = Workers(other, tmp_path / "other")  # logs apart, scratch shared with the first server's workers
    (tmp_path / "other").mkdir()
    other_channel, other_stub = sync_stub(other.access)
    try:
        workers.start("--concurrency", "1")
        other_workers.start("--concurrency", "1", "--scratch-dir", str(tmp_path / "scratch"))
        with Client(other.access_file) as other_client:
            wait_until(lambda: client.workers() and other_client.workers(), what="both workers to register")
            command = "echo {0} > mark; sleep 2; cat mark; pwd"
            first = stub.SubmitTask(pb.TaskRequest(command=command.format("first"))).task_id
            second = other_stub.SubmitTask(pb.TaskRequest(command=command.format("second"))).task_id
            assert first == second == 1  # the same task id on both servers, at the same time
            one, two = _finished(client, first), _finished(other_client, second)
            assert one.worker_id == two.worker_id == 1  # and the same worker id
            assert one.status == two.status == Status.SUCCEEDED
            mark_one, dir_one = _out(client, first).split()
            mark_two, dir_two = _out(other_client, second).split()
        assert (mark_one, mark_two) == ("first", "second")
        assert dir_one != dir_two
    finally:
        other_channel.close()
        other_workers.stop_all()
        other.stop()
    assert _scratch_tasks(tmp_path) == []


# --- containers -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sif(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("apptainer") is None:
        pytest.fail("apptainer is not installed: run scripts/install_apptainer.sh as root (scripts/test.sh does)")
    return build_sif(tmp_path_factory.mktemp("image"))


def test_a_container_task_runs_in_its_submit_directory(
    stub, client: Client, workers, sif: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bound and current, with an instance per directory; a path with a comma and a colon binds as it is; a task
    that names no directory runs in its scratch directory, bound too."""
    runs = [tmp_path / "run-a", tmp_path / "run b, c:d"]
    for run in runs:
        run.mkdir()
        (run / "input.txt").write_text(f"input of {run.name}\n")
    monkeypatch.chdir(runs[0])
    command = "pwd; cat input.txt; echo written > made-inside"
    ids = [client.submit(command, str(sif)), client.submit(command, str(sif), cwd=runs[1])]
    missing = client.submit("true", str(sif), cwd=tmp_path / "missing")
    seed = stub.SubmitTask(pb.TaskRequest(command="echo x > f; cat f; pwd", container=str(sif))).task_id
    worker = workers.start("--concurrency", "2")
    for task_id, run in zip(ids, runs, strict=True):
        task = _finished(client, task_id, timeout=90)
        assert task.status == Status.SUCCEEDED, (task, _out(client, task_id, "E"))
        assert _out(client, task_id) == f"{run}\ninput of {run.name}\n"
        assert (run / "made-inside").read_text() == "written\n"
    task = _finished(client, missing)
    assert (task.status, task.failure) == (Status.FAILED, "cwd") and "does not exist" in task.reason
    assert _finished(client, seed).status == Status.SUCCEEDED, _out(client, seed, "E")
    written, ran_in = _out(client, seed).split()
    assert written == "x" and Path(ran_in).name == f"task-{seed}.1"
    wait_until(lambda: not Path(ran_in).exists(), timeout=10, what=f"{ran_in} to be removed")
    log = output_of(worker)
    assert log.count("started apptainer instance") == 3, log  # one per directory, one for the scratch directory


def test_a_container_task_runs_in_its_submit_directory_with_plain_exec(
    client: Client, workers, sif: Path, tmp_path: Path
) -> None:
    run = tmp_path / "plain, exec:dir"
    run.mkdir()
    (run / "input.txt").write_text("plain input\n")
    task_id = client.submit("pwd; cat input.txt", str(sif), cwd=run)
    workers.start("--concurrency", "1", "--apptainer-instances", "false")
    task = _finished(client, task_id, timeout=90)
    assert task.status == Status.SUCCEEDED, (task, _out(client, task_id, "E"))
    assert _out(client, task_id) == f"{run}\nplain input\n"


def test_a_scratch_directory_that_cannot_be_made_fails_the_task(stub, client: Client, workers, tmp_path: Path) -> None:
    not_a_directory = tmp_path / "a-file"
    not_a_directory.write_text("scratch_dir points here by mistake\n")
    task_id = stub.SubmitTask(pb.TaskRequest(command="echo ran")).task_id
    workers.start("--concurrency", "1", "--scratch-dir", str(not_a_directory))
    task = _finished(client, task_id)
    assert (task.status, task.failure, task.exit_code) == (Status.FAILED, "cwd", None), task
    assert task.reason.startswith(f"cannot make a scratch directory for the task in {not_a_directory}/tqhpc-")
    assert "ran" not in _out(client, task_id)


def test_a_directory_removed_after_a_task_ran_there_fails_the_next_task_as_cwd(
    client: Client, workers, tmp_path: Path
) -> None:
    """The worker trusts a directory it just found usable for a moment; one removed meanwhile still fails as cwd."""
    project = _project(tmp_path)
    workers.start("--concurrency", "1")
    first = client.submit("true", cwd=str(project))
    assert _finished(client, first).status == Status.SUCCEEDED
    shutil.rmtree(project)
    second = client.submit("touch ran-here", cwd=str(project))
    task = _finished(client, second)
    assert (task.status, task.failure, task.exit_code) == (Status.FAILED, "cwd", None), task
    assert "does not exist" in task.reason and str(project) in task.reason
    assert not list(tmp_path.rglob("ran-here"))

"""Real server, real worker processes, real shells: the foundation's end-to-end acceptance."""

from __future__ import annotations

import threading
from pathlib import Path

from conftest import wait_until

from tqhpc import Client, Status

TASKS = 300
FAILING = 150


def _command(i: int) -> str:
    if i == FAILING:
        return f"echo 'out {i}'; echo 'err {i}' >&2; exit 3"
    return f'for k in 1 2 3; do echo "out {i} $k"; echo "err {i} $k" >&2; done'


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    best = current = 0
    for _, step in events:
        current += step
        best = max(best, current)
    return best


def test_300_tasks_with_concurrency_2_and_prefetch_2(client: Client, workers) -> None:
    ids = [client.submit(_command(i)) for i in range(TASKS)]
    assert ids == list(range(ids[0], ids[0] + TASKS))
    workers.start("--concurrency", "2", "--prefetch", "2")

    def all_done() -> list | None:
        tasks = client.tasks()
        return tasks if all(t.status.terminal for t in tasks) else None

    tasks = wait_until(all_done, timeout=180, interval=0.5, what="300 tasks to finish")
    by_id = {t.task_id: t for t in tasks}
    assert len(by_id) == TASKS
    for i, task_id in enumerate(ids):
        task = by_id[task_id]
        if i == FAILING:
            assert (task.status, task.exit_code, task.reason) == (Status.FAILED, 3, "exit code 3")
        else:
            assert (task.status, task.exit_code) == (Status.SUCCEEDED, 0), task
        assert task.attempts == 1
    for i in (0, 1, FAILING, 299):  # output, byte for byte, through the server
        chunks = list(client.logs(ids[i]))
        out = b"".join(c.data for c in chunks if c.stream == "O").decode()
        err = b"".join(c.data for c in chunks if c.stream == "E").decode()
        if i == FAILING:
            assert (out, err) == (f"out {i}\n", f"err {i}\n")
        else:
            assert out == "".join(f"out {i} {k}\n" for k in (1, 2, 3))
            assert err == "".join(f"err {i} {k}\n" for k in (1, 2, 3))
    # every file on disk, not only the samples
    logs_dir = workers.server.state_dir / "logs"
    for i, task_id in enumerate(ids):
        expected = f"out {i}\n" if i == FAILING else "".join(f"out {i} {k}\n" for k in (1, 2, 3))
        assert (logs_dir / f"{task_id // 1000:04d}" / f"{task_id}.out").read_text() == expected
    # never more than `concurrency` running at once, and the worker did use both slots
    intervals = [(t.started_at, t.ended_at) for t in tasks]
    assert _max_overlap(intervals) == 2


def test_followers_see_output_live(client: Client, workers, tmp_path: Path) -> None:
    flag = tmp_path / "go-on"
    task_id = client.submit(
        f"echo first; echo warn >&2; while [ ! -e {flag} ]; do sleep 0.02; done; echo second; exit 4"
    )
    workers.start("--concurrency", "1")
    seen: list[list] = [[], []]
    done = [threading.Event(), threading.Event()]

    def follow(index: int) -> None:
        with Client(workers.server.access_file) as own:
            for chunk in own.logs(task_id, follow=True):
                seen[index].append(chunk)
        done[index].set()

    threads = [threading.Thread(target=follow, args=(i,), daemon=True) for i in range(2)]
    for thread in threads:
        thread.start()
    for index in range(2):
        wait_until(lambda i=index: b"first" in b"".join(c.data for c in seen[i]), what="live output")
    assert client.task(task_id).status == Status.RUNNING
    assert not any(event.is_set() for event in done)
    flag.touch()
    for event in done:
        assert event.wait(20), "a follower did not end when the task ended"
    for chunks in seen:
        assert b"".join(c.data for c in chunks if c.stream == "O") == b"first\nsecond\n"
        assert b"".join(c.data for c in chunks if c.stream == "E") == b"warn\n"
    task = client.task(task_id)
    assert (task.status, task.exit_code) == (Status.FAILED, 4)


def test_non_utf8_output_is_kept_byte_for_byte(client: Client, workers) -> None:
    task_id = client.submit(r"printf 'caf\303\251 \377\376 end\n'; printf '\200' >&2")
    workers.start("--concurrency", "1")
    wait_until(lambda: client.task(task_id).status.terminal, what="the task")
    chunks = list(client.logs(task_id))
    assert b"".join(c.data for c in chunks if c.stream == "O") == "café ".encode() + b"\xff\xfe end\n"
    assert b"".join(c.data for c in chunks if c.stream == "E") == b"\x80"
    assert client.task(task_id).status == Status.SUCCEEDED


def test_signals_and_missing_programs_are_reported(client: Client, workers) -> None:
    killed = client.submit("kill -9 $$")
    missing = client.submit("no-such-program-xyz")
    workers.start("--concurrency", "2")
    wait_until(lambda: all(t.status.terminal for t in client.tasks()), what="both tasks")
    task = client.task(killed)
    assert (task.status, task.exit_code, task.reason) == (Status.FAILED, -9, "killed by SIGKILL")
    task = client.task(missing)
    assert (task.status, task.exit_code) == (Status.FAILED, 127)
    assert b"not found" in b"".join(c.data for c in client.logs(missing))


def test_each_task_runs_where_it_was_submitted_in_its_own_process_group(
    client: Client, workers, tmp_path: Path
) -> None:
    ids = [client.submit('echo "$PWD $TQHPC_TASK_ID"; ps -o pgid= -p $$') for _ in range(2)]
    workers.start("--concurrency", "2")
    wait_until(lambda: all(t.status.terminal for t in client.tasks()), what="both tasks")
    outputs = [b"".join(c.data for c in client.logs(i)).decode().split() for i in ids]
    dirs, task_ids, groups = zip(*outputs, strict=True)
    assert set(dirs) == {str(tmp_path)}  # the submitting process's directory, as under Slurm
    assert [int(t) for t in task_ids] == ids
    assert len(set(groups)) == 2


def test_a_container_task_is_never_run_bare(client: Client, workers) -> None:
    # Tasks can run in containers; one whose image cannot be had still never falls back to running bare.
    task_id = client.submit("echo should-not-run", container="/nonexistent/image.sif")
    workers.start("--concurrency", "1")
    wait_until(lambda: client.task(task_id).status.terminal, what="the container task")
    task = client.task(task_id)
    assert task.status == Status.FAILED and task.exit_code is None and task.failure == "image_missing"
    assert "does not exist" in task.reason and "/nonexistent/image.sif" in task.reason
    output = list(client.logs(task_id))
    assert [c.stream for c in output] == ["E"] and b"should-not-run" not in output[0].data


def test_large_output_arrives_whole(client: Client, workers) -> None:
    """About 20 MB on stdout crosses many batches, buffers and messages, and comes back identical."""
    task_id = client.submit("seq 1 3000000")
    workers.start("--concurrency", "1")
    wait_until(lambda: client.task(task_id).status.terminal, timeout=120, what="the large task")
    assert client.task(task_id).status == Status.SUCCEEDED
    expected = "".join(f"{i}\n" for i in range(1, 3_000_001)).encode()
    assert len(expected) > 20_000_000
    assert b"".join(c.data for c in client.logs(task_id)) == expected

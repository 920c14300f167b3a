"""Faults on real processes: a server killed and restarted on its fixed address, deleted workers, partitions.

Whatever fails, no task runs twice at the same time and every task ends succeeded once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest
from conftest import ServerProcess, Workers, output_of, start_server, tqhpc_command, wait_until

from tqhpc import Client, Status
from tqhpc.access import write_access


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _listen_flags(port: int) -> tuple[str, ...]:
    return ("--listen", f"127.0.0.1:{port}", "--worker-timeout", "60", "--reap-interval", "0.5")


def _closing_connections_on(port: int) -> bool:
    """Connections of a killed server still held by the kernel (FIN_WAIT, TIME_WAIT): they block a plain bind."""
    return any(
        c.laddr and c.laddr.port == port and c.status != psutil.CONN_LISTEN for c in psutil.net_connections("tcp")
    )


def test_a_server_killed_with_a_worker_restarts_at_once_on_the_same_address(tmp_path: Path) -> None:
    port = _free_port()
    server = start_server(tmp_path / "state", *_listen_flags(port))
    pool = Workers(server, tmp_path)
    restarted: ServerProcess | None = None
    try:
        # The client's connection is idle when the server dies: the server's side of it closes first and waits
        # in TIME_WAIT, as every idle connection of a crashed server does.
        with Client(server.access_file) as client:
            ids = [client.submit(f"sleep 0.3; echo task {i}") for i in range(12)]
            pool.start("--concurrency", "2")
            wait_until(lambda: client.task(ids[2]).status == Status.SUCCEEDED, what="the first tasks to finish")
            assert server.stop(signal.SIGKILL) == -signal.SIGKILL
            wait_until(lambda: _closing_connections_on(port), what="the crashed server's connections to linger")
        restarted = start_server(server.state_dir, *_listen_flags(port))
        assert restarted.access.address == f"127.0.0.1:{port}"
        with Client(restarted.access_file) as client:
            wait_until(lambda: all(t.status == Status.SUCCEEDED for t in client.tasks()), timeout=40, what="every task")
            for task_id in ids:
                task = client.task(task_id)
                assert (task.attempts, task.crash_count) == (1, 0), task
                assert b"".join(c.data for c in client.logs(task_id)) == f"task {ids.index(task_id)}\n".encode()
            assert [w.state for w in client.workers()] == ["running"]
    finally:
        pool.stop_all()
        for proc in (restarted, server):
            if proc and proc.process.poll() is None:
                proc.stop()


def test_a_live_listener_on_the_address_is_still_refused_clearly(tmp_path: Path) -> None:
    """Reusing an address left by a crash must not let two servers listen on one port."""
    with socket.create_server(("127.0.0.1", 0)) as live:
        live.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # even one that allows reuse itself
        port = live.getsockname()[1]
        result = subprocess.run(
            tqhpc_command("server", "--state-dir", str(tmp_path / "s"), "--listen", f"127.0.0.1:{port}"),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"tqhpc: error: cannot listen on 127.0.0.1:{port}: the address is in use or not local"
    )


def _marked_task(markers: Path, cleanup_seconds: float = 0.6) -> str:
    """A task that notes, with its shell's pid, when it starts, that it is alive (every 0.05 s) and when it ends.

    On SIGTERM it cleans up for a while, still alive, before it exits: a second copy started meanwhile overlaps.
    """
    note = f'echo "$1 $$ $(date +%s.%N)" >> {markers}'
    return (
        f"note() {{ {note}; }}; "
        f"trap 'note term; for i in $(seq {int(cleanup_seconds / 0.05)}); do note alive; sleep 0.05; done; exit 1' "
        "TERM; "
        "note start; for i in $(seq 30); do note alive; sleep 0.05 & wait $!; done; note end"
    )


def _runs(markers: Path) -> list[tuple[float, float, bool]]:
    """Each run of a task: (first note, last note, whether it ended), by the shell's pid."""
    runs: dict[str, list[tuple[str, float]]] = {}
    for line in markers.read_text().splitlines():
        if len(fields := line.split()) == 3:  # a note whose `date` the kill cut short has no time
            kind, pid, when = fields
            runs.setdefault(pid, []).append((kind, float(when)))
    return sorted(
        (min(t for _, t in notes), max(t for _, t in notes), any(k == "end" for k, _ in notes))
        for notes in runs.values()
    )


def test_a_deleted_workers_tasks_run_elsewhere_only_after_it_killed_its_copies(tmp_path: Path) -> None:
    """The worker timeout is 60 s: tasks that move within seconds moved because the worker handed them back."""
    server = start_server(tmp_path / "state", "--worker-timeout", "60", "--reap-interval", "0.5")
    pool = Workers(server, tmp_path)
    try:
        with Client(server.access_file) as client:
            markers = [tmp_path / f"markers-{i}" for i in range(2)]
            ids = [client.submit(_marked_task(m)) for m in markers]
            doomed = pool.start("--concurrency", "2", "--prefetch", "0")
            wait_until(lambda: all(m.exists() for m in markers), what="both tasks to start")
            pool.start("--concurrency", "2", "--prefetch", "0")
            wait_until(lambda: len(client.workers(include_retired=False)) == 2, what="the second worker")
            deleted_at = time.time()
            client.delete_worker(1)
            assert doomed.wait(20) == 0
            wait_until(lambda: all(t.status == Status.SUCCEEDED for t in client.tasks()), timeout=30, what="all")
            for task_id, marker in zip(ids, markers, strict=True):
                first, second = _runs(marker)
                assert not first[2] and second[2]  # the deleted worker's run was cut, the other one ran to its end
                assert first[1] < second[0], f"task {task_id} ran twice at once: {_runs(marker)}"
                assert second[0] - deleted_at < 5.0  # the deleted worker killed it at once and handed it back
                task = client.task(task_id)
                assert (task.status, task.worker_id, task.attempts) == (Status.SUCCEEDED, 2, 2)
            assert [w.state for w in client.workers()] == ["deleted", "running"]
    finally:
        pool.stop_all()
        if server.process.poll() is None:
            server.stop()


def test_a_deleted_worker_that_cannot_answer_keeps_its_task_until_the_worker_timeout(tmp_path: Path) -> None:
    """Frozen, the deleted worker can neither kill nor hand back: its task waits for it to be lost, not longer."""
    server = start_server(tmp_path / "state", "--worker-timeout", "3", "--reap-interval", "0.5")
    pool = Workers(server, tmp_path)
    try:
        with Client(server.access_file) as client:
            marker = tmp_path / "started"
            task_id = client.submit(f"touch {marker}; sleep 2")
            frozen = pool.start("--concurrency", "1")
            wait_until(marker.exists, what="the task to start")
            os.kill(frozen.pid, signal.SIGSTOP)
            try:
                deleted_at = time.monotonic()
                client.delete_worker(1)
                time.sleep(1.5)
                held = client.task(task_id)  # running on the frozen node, whatever the store has heard of it yet
                assert held.status in (Status.ASSIGNED, Status.ACCEPTED, Status.RUNNING) and held.worker_id == 1
                wait_until(lambda: client.task(task_id).status == Status.PENDING, timeout=10, what="the requeue")
                assert time.monotonic() - deleted_at >= 3.0
                assert client.task(task_id).reason == "worker 1 was deleted and then silent for 3 s"
            finally:
                os.kill(frozen.pid, signal.SIGCONT)
            assert frozen.wait(20) == 0  # woken, it learns of its deletion and leaves
            pool.start("--concurrency", "1")
            wait_until(lambda: client.task(task_id).status == Status.SUCCEEDED, what="the task on another worker")
            assert client.task(task_id).attempts == 2
    finally:
        pool.stop_all()
        if server.process.poll() is None:
            server.stop()


class FreezableProxy:
    """A loopback TCP proxy in its own thread; `freeze` stops forwarding both ways without closing anything."""

    def __init__(self, target: str) -> None:
        self.host, port = target.rsplit(":", 1)
        self.target_port = int(port)
        self.forwarding = threading.Event()
        self.forwarding.set()
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.port = 0

        async def serve() -> None:
            server = await asyncio.start_server(self._pipe_pair, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            async with server:
                await server.serve_forever()

        self.thread = threading.Thread(target=lambda: self.loop.run_until_complete(serve()), daemon=True)
        self.thread.start()
        ready.wait(5)

    async def _pipe_pair(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                while not self.forwarding.is_set():
                    await asyncio.sleep(0.05)
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    def freeze(self) -> None:
        self.forwarding.clear()

    def thaw(self) -> None:
        self.forwarding.set()


def _all_succeeded(client: Client) -> bool:
    return all(task.status == Status.SUCCEEDED for task in client.tasks())


def _counting_task(markers: Path, lines: int) -> str:
    """Prints 1..lines, 0.1 s apart, with start/alive/end notes as `_marked_task`."""
    note = f'echo "$1 $$ $(date +%s.%N)" >> {markers}'
    return (
        f"note() {{ {note}; }}; note start; for i in $(seq {lines}); do echo $i; note alive; sleep 0.1; done; note end"
    )


@pytest.mark.parametrize(
    ("worker_timeout", "partition", "lines"),
    [
        pytest.param(6, 10, 100, id="10s-past-a-6s-timeout"),
        # The server's default timeout, and a partition as long: whether the server declares the worker lost just
        # before the network comes back or just after, nothing may be lost or run twice at once. The tasks (45 s)
        # still run when the worker gives up on the server (at 60% of the timeout), so it kills them.
        pytest.param(60, 60, 450, id="60s-at-the-default-timeout"),
    ],
)
def test_a_partition_as_long_as_the_worker_timeout_loses_nothing_and_runs_nothing_twice(
    tmp_path: Path, worker_timeout: int, partition: int, lines: int
) -> None:
    """Cut off from the server for as long as the worker timeout or longer, the worker kills its copies before the
    server requeues them: each task ends S, no two copies of it ever run at once, and its output is that of one whole
    run, in order."""
    server = start_server(tmp_path / "state", "--worker-timeout", str(worker_timeout), "--reap-interval", "0.5")
    proxy = FreezableProxy(server.access.address)
    cut_off = tmp_path / "cut-off"
    cut_off.mkdir()
    write_access(cut_off, dataclasses.replace(server.access, address=f"127.0.0.1:{proxy.port}"))
    server_through_proxy = ServerProcess(cut_off, server.process, server.output)  # its access.toml names the proxy
    pool = Workers(server, tmp_path)
    try:
        with Client(server.access_file) as client:
            markers = [tmp_path / f"markers-{i}" for i in range(2)]
            ids = [client.submit(_counting_task(m, lines)) for m in markers]
            partitioned = Workers(server_through_proxy, cut_off).start("--concurrency", "2", "--prefetch", "0")
            try:
                wait_until(lambda: all(m.exists() for m in markers), what="both tasks to start")
                pool.start("--concurrency", "2", "--prefetch", "0")
                time.sleep(1.0)
                proxy.freeze()
                time.sleep(partition)
                proxy.thaw()
                wait_until(lambda: _all_succeeded(client), timeout=lines / 10 + 30, what="every task to succeed")
                for task_id, marker in zip(ids, markers, strict=True):
                    runs = _runs(marker)
                    for before, after in itertools.pairwise(runs):
                        assert before[1] < after[0], f"task {task_id} ran twice at once: {runs}"
                    output = b"".join(c.data for c in client.logs(task_id)).decode()
                    assert output == "".join(f"{i}\n" for i in range(1, lines + 1)), output
            finally:
                partitioned.terminate()
                partitioned.wait(30)
            assert "heard nothing from the server" in output_of(partitioned)
    finally:
        pool.stop_all()
        server.stop()

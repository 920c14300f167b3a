"""scitq's own worker, as the seed protocol has it behave, gets its tasks done on our server.

That worker reports `A -> C -> S` (or `C -> F`) and never `R`, sends its output with log_type "stdout" / "stderr"
without ever reading SendTaskLogs' answer, and authenticates with `Bearer` (capital B). `SeedWorker` below does the
same with stubs compiled from the seed page alone (test_seed_client's compiler), never with tqhpc's own code, and
runs real `sh -c` processes.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import ServerProcess, wait_until
from test_seed_client import CALL_TIMEOUT, SeedClient, SeedModules, compile_seed, plaintext_server

from tqhpc import Client, Status
from tqhpc.channel import open_channel

PING_INTERVAL = 0.1


@pytest.fixture(scope="module")
def seed_modules(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeedModules]:
    yield from compile_seed(tmp_path_factory.mktemp("seed_stubs"))


def _seed_client(seed_modules: SeedModules, channel: grpc.Channel, authorization: str) -> SeedClient:
    return SeedClient(seed_modules.pb, seed_modules.grpc.TaskQueueStub(channel), (("authorization", authorization),))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """This module's server, in place of conftest's (TLS): scitq's worker speaks plaintext."""
    yield from plaintext_server(tmp_path)


@pytest.fixture
def channel(server: ServerProcess) -> Iterator[grpc.Channel]:
    """Plaintext to this module's --insecure server, as scitq's worker speaks; TLS in modules that use conftest's
    server: the channel follows access.toml, as a client of tqhpc's does."""
    with open_channel(server.access) as opened:
        yield opened


@pytest.fixture
def seed(seed_modules: SeedModules, channel: grpc.Channel, server: ServerProcess) -> SeedClient:
    """A seed client that authenticates as newer scitq does: `Bearer`, capital B."""
    return _seed_client(seed_modules, channel, f"Bearer {server.access.token}")


@dataclass
class SeedWorker:
    """A worker that speaks only the seed protocol, the way scitq's own does.

    It registers, pings every PING_INTERVAL seconds, and for each task it is given (ids it already holds are
    ignored: the server sends A tasks again until accepted) reports C, runs `sh -c COMMAND`, sends the output as
    "stdout" / "stderr" chunks without looking at the answer, and reports S or F. A refused status report is kept
    in `refused` (scitq's worker would only log it) so a test can say what went wrong.
    """

    seed: SeedClient
    workdir: Path
    concurrency: int
    worker_id: int = 0
    held: set[int] = field(default_factory=set)
    most_at_once: int = 0
    refused: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        self.worker_id = self.seed.register("scitq-like", concurrency=self.concurrency)
        self._spawn(self._heartbeat)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _heartbeat(self) -> None:
        while not self._stop.is_set():
            for task in self.seed.ping(self.worker_id).tasks:
                with self._lock:
                    if task.task_id in self.held:
                        continue
                    self.held.add(task.task_id)
                    self.most_at_once = max(self.most_at_once, len(self.held))
                self._spawn(self._run, task.task_id, task.command)
            self._stop.wait(PING_INTERVAL)

    def _report(self, task_id: int, letter: str) -> None:
        try:
            self.seed.set_status(task_id, letter)
        except grpc.RpcError as err:
            self.refused.append(f"{letter} for task {task_id}: {err.details()}")  # type: ignore[attr-defined]

    def _run(self, task_id: int, command: str) -> None:
        self._report(task_id, "C")
        done = subprocess.run(["sh", "-c", command], cwd=self.workdir, capture_output=True, text=True, check=False)
        chunks = [(task_id, "stdout", done.stdout), (task_id, "stderr", done.stderr)]
        messages = [self.seed.pb.TaskLog(task_id=t, log_type=kind, log_text=text) for t, kind, text in chunks if text]
        sent = self.seed.stub.SendTaskLogs.future(iter(messages), metadata=self.seed.metadata, timeout=CALL_TIMEOUT)
        wait_until(sent.done, what="the output to be sent")  # finished, but its answer is never read
        with self._lock:
            self.held.discard(task_id)  # before the report, which lets the server hand out the slot again
        self._report(task_id, "S" if done.returncode == 0 else "F")


@pytest.fixture
def seed_worker(seed: SeedClient, tmp_path: Path) -> Iterator[SeedWorker]:
    worker = SeedWorker(seed, tmp_path, concurrency=2)
    worker.start()
    yield worker
    worker.stop()


def test_a_seed_worker_that_skips_r_gets_all_its_tasks_done(
    seed: SeedClient, seed_worker: SeedWorker, client: Client
) -> None:
    """Five tasks on a worker of concurrency 2: each ends S or F straight from C, with its times, exit code and
    output (sent as "stdout" / "stderr", stored as O / E), and each end frees the slot for the next task."""
    commands = {f"sleep 0.3; echo out-{i}; echo err-{i} >&2": True for i in range(4)}
    commands["sleep 0.3; echo partial; echo broken >&2; exit 3"] = False
    submitted = time.time()
    ids = {seed.submit(command): ok for command, ok in commands.items()}

    def all_ended() -> bool:
        return bool(seed_worker.refused) or all(status in "SF" for status in seed.statuses().values())

    wait_until(all_ended, timeout=30, what=lambda: f"every task to end: {seed.statuses()}")
    assert seed_worker.refused == []
    assert seed.statuses() == {task_id: "S" if ok else "F" for task_id, ok in ids.items()}
    assert seed_worker.most_at_once == 2  # the server never gave it more than its concurrency

    for number, (task_id, ok) in enumerate(ids.items()):
        task = client.task(task_id)
        assert task.status == (Status.SUCCEEDED if ok else Status.FAILED)
        assert task.exit_code == (0 if ok else None)  # the seed's report carries no exit code: S means 0
        assert task.worker_id == seed_worker.worker_id and task.attempts == 1
        assert task.started_at is not None and task.ended_at is not None
        assert submitted <= task.started_at <= task.ended_at
        assert 0.3 <= task.wall_time < 20  # from its acceptance (C), not from the report of its end
        expected = {"O": f"out-{number}\n", "E": f"err-{number}\n"} if ok else {"O": "partial\n", "E": "broken\n"}
        assert seed.logs(task_id) == expected
        assert {chunk.stream: chunk.data for chunk in client.logs(task_id)} == {
            stream: text.encode() for stream, text in expected.items()
        }

    (record,) = client.workers()
    assert (record.worker_id, record.held, record.running) == (seed_worker.worker_id, 0, 0)


def test_list_workers_shows_a_seed_client_only_live_workers(
    seed: SeedClient, seed_worker: SeedWorker, client: Client
) -> None:
    """A deleted worker leaves the seed listing (which has no state to tell it apart); tqhpc can still ask for it."""
    live = seed.register("stays", concurrency=1)
    assert set(seed.workers()) == {seed_worker.worker_id, live}
    seed_worker.stop()
    assert seed.call("DeleteWorker", seed.pb.WorkerId(worker_id=seed_worker.worker_id)).success
    assert set(seed.workers()) == {live}
    assert [w.worker_id for w in client.workers(include_retired=False)] == [live]
    states = {w.worker_id: w.state for w in client.workers()}
    assert states == {seed_worker.worker_id: "deleted", live: "running"}


@pytest.mark.parametrize("scheme", ["bearer", "Bearer", "BEARER", "bEaReR", "Bearer "])
def test_the_bearer_scheme_is_matched_in_any_case(
    seed_modules: SeedModules, channel: grpc.Channel, server: ServerProcess, scheme: str
) -> None:
    seed = _seed_client(seed_modules, channel, f"{scheme} {server.access.token}")
    assert seed.statuses() == {}


def test_the_token_itself_must_match_exactly(
    seed_modules: SeedModules, channel: grpc.Channel, server: ServerProcess
) -> None:
    token = server.access.token
    assert token.swapcase() != token
    for authorization, message in [
        (f"Bearer {token.swapcase()}", "wrong token"),
        (f"Bearer {token}x", "wrong token"),
        (f"Basic {token}", "must be 'bearer <token>'"),
        (token, "must be 'bearer <token>'"),
    ]:
        seed = _seed_client(seed_modules, channel, authorization)
        with pytest.raises(grpc.RpcError) as caught:
            seed.statuses()
        err: Any = caught.value
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED, authorization
        assert message in err.details(), (authorization, err.details())

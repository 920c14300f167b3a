#!/usr/bin/env python3
"""Where tqhpc's server and worker spend their CPU on many short tasks: the throughput case of compare.py (N
`true` tasks in one submit_many, one worker with 2 slots and prefetch 2), with the server and the worker each
started under py-spy (`pip install -e '.[bench]'`), then one table per process:

- CPU milliseconds a task (psutil, the process itself; the tasks' processes aside);
- by category of the innermost Python frame (grpc, protobuf, asyncio, the store and SQLite, psutil, ...);
- by the innermost tqhpc function on the stack (on whose behalf the time went);
- the busiest innermost functions;
- and, after the run, the server's CPU for one unary call alone (a read, and an idle worker's heartbeat).

py-spy attaches to both once they are up and idle and samples them while the tasks run, only threads that are
running (not idle ones), at --rate per second; its raw stacks (flame graph format) are kept in --out. Usage:

    .venv/bin/python benchmarks/profile_throughput.py [--tasks 3000] [--rate 250] [--native] [--out DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psutil
from common import cpu_seconds, running_server, running_worker, stop_process

from tqhpc import Client
from tqhpc._proto import pb, rpc
from tqhpc.access import read_access
from tqhpc.channel import open_channel

FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
CATEGORIES = (  # marks in py-spy's (shortened) file names; the first that matches names the category
    ("grpc", ("grpc/", "cygrpc", "libgrpc", "grpc_")),
    ("protobuf", ("google/protobuf/", "_upb", "libprotobuf", "upb")),
    ("store (SQLite and its Python)", ("tqhpc/store/", "sqlite")),
    ("psutil", ("psutil/",)),
    ("subprocess spawn", ("subprocess.py", "_posixsubprocess")),
    ("asyncio loop", ("asyncio/", "selectors.py", "_asyncio")),
    ("threads", ("threading.py",)),
    ("logging", ("logging/",)),
    ("tqhpc server", ("tqhpc/server/",)),
    ("tqhpc worker", ("tqhpc/worker/",)),
    ("tqhpc other", ("tqhpc/",)),
)


THREAD = re.compile(r'^Thread (?P<tid>\d+) \(\w+\): "(?P<name>.*)"$', re.MULTILINE)


def _py_spy() -> str:
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        raise SystemExit("profile_throughput.py: error: py-spy not found; install it with pip install -e '.[bench]'")
    return spy


def thread_names(pid: int) -> dict[int, str]:
    """Python's names for the process's threads (py-spy dump); grpc's C threads keep their kernel names."""
    names = {}
    for tid in (t.id for t in psutil.Process(pid).threads()):
        with contextlib.suppress(OSError):
            names[tid] = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip() + " (C)"
    dump = subprocess.run([_py_spy(), "dump", "--pid", str(pid)], capture_output=True, text=True, check=False)
    for match in THREAD.finditer(dump.stdout):
        names[int(match["tid"])] = match["name"]
    return names


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of each live thread of the process."""
    return {t.id: t.user_time + t.system_time for t in psutil.Process(pid).threads()}


def thread_table(names: dict[int, str], before: dict[int, float], after: dict[int, float], total: float,
                 tasks: int) -> str:  # fmt: skip
    """CPU ms a task by thread; what threads that came and went in between used is the rest of the total."""
    rows: Counter[str] = Counter()
    for tid, seconds in after.items():
        rows[names.get(tid, "a thread started meanwhile")] += seconds - before.get(tid, 0.0)
    rows["threads that ended meanwhile (by difference)"] = total - sum(rows.values())
    lines = ["| thread | ms a task |", "| --- | ---: |"]
    lines += [f"| {name} | {1000 * seconds / tasks:.3f} |" for name, seconds in rows.most_common()]
    return "\n".join(lines)


def category(file: str) -> str:
    for name, marks in CATEGORIES:
        if any(mark in file for mark in marks):
            return name
    return "other: " + Path(file).name


def read_stacks(path: Path) -> Iterator[tuple[list[tuple[str, str]], int]]:
    """(frames outermost first as (function, file), sample count) from py-spy's raw output."""
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = []
        for part in stack.split(";"):
            match = FRAME.match(part.strip())
            if match:
                frames.append((match["function"], match["file"]))
        if frames:
            yield frames, int(count)


def tables(path: Path, cpu_ms_per_task: float, top: int = 15) -> str:
    by_category: Counter[str] = Counter()
    by_tqhpc: Counter[str] = Counter()
    by_leaf: Counter[str] = Counter()
    total = 0
    for frames, count in read_stacks(path):
        total += count
        function, file = frames[-1]
        by_category[category(file)] += count
        by_leaf[f"{function} ({file})"] += count
        mine = [f for f in frames if "tqhpc/" in f[1]]
        by_tqhpc[f"{mine[-1][0]} ({mine[-1][1]})" if mine else "(no tqhpc frame)"] += count
    if not total:
        return f"no samples in {path}"
    lines = [f"{total} samples; {cpu_ms_per_task:.2f} ms of CPU a task"]
    for title, counts, limit in (
        ("innermost frame's category", by_category, len(by_category)),
        ("innermost tqhpc function", by_tqhpc, top),
        ("innermost function", by_leaf, top),
    ):
        lines.append(f"\n| {title} | share | ms a task |\n| --- | ---: | ---: |")
        for name, count in counts.most_common(limit):
            share = count / total
            lines.append(f"| {name} | {100 * share:.1f}% | {share * cpu_ms_per_task:.3f} |")
    return "\n".join(lines)


@contextmanager
def sampled(pid: int, output: Path, rate: int, native: bool, log: Path) -> Iterator[None]:
    """`py-spy record` attached to `pid` for the duration of the block only (start-up is not profiled)."""
    spy = _py_spy()
    # Native frames need the target paused while its stack is read; Python frames alone can be read without.
    command = [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", str(rate), "-o", str(output),
               *(["--native"] if native else ["--nonblocking"])]  # fmt: skip
    with log.open("wb") as out:
        recorder = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while b"Sampling process" not in log.read_bytes():
            if recorder.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"py-spy could not attach to process {pid}: {log.read_text()[-500:]}")
            time.sleep(0.02)
        yield
        recorder.send_signal(signal.SIGINT)  # py-spy writes its file when interrupted
        recorder.wait(60)
    finally:
        stop_process(recorder)


def rpc_costs(access: Path, server_pid: int, calls: int = 1000) -> str:
    """The server's CPU for one unary call, alone: a read (GetTask) and an idle worker's heartbeat (a write), each
    sent `calls` times one after another over the public protocol."""
    settings = read_access(access)
    metadata = settings.metadata
    with open_channel(settings) as channel:
        stub = rpc.TaskQueueStub(channel)
        me = stub.RegisterWorker(pb.WorkerInfo(name="rpc-cost", concurrency=1, container_capable=False),
                                 metadata=metadata)  # fmt: skip
        requests = {
            "GetTask (a read)": (stub.GetTask, pb.TaskId(task_id=1)),
            "PingAndTakeNewTasks of an idle worker": (stub.PingAndTakeNewTasks, pb.WorkerId(worker_id=me.worker_id)),
        }
        lines = ["| one unary call, alone | server CPU ms a call |", "| --- | ---: |"]
        for name, (method, request) in requests.items():
            before = cpu_seconds(server_pid)
            for _ in range(calls):
                method(request, metadata=metadata)
            lines.append(f"| {name} | {1000 * (cpu_seconds(server_pid) - before) / calls:.3f} |")
        stub.DeleteWorker(pb.WorkerId(worker_id=me.worker_id), metadata=metadata)
    return "\n".join(lines)


def run(tasks: int, out: Path, rate: int, native: bool) -> tuple[float, dict[str, tuple[float, str]], str]:
    """Tasks a second, and for the server and the worker: (CPU ms a task, CPU by thread), both processes sampled
    while the tasks run."""
    with ExitStack() as stack:
        server, access = stack.enter_context(running_server(out / "state"))
        worker = stack.enter_context(
            running_worker(access, out / "scratch", "--concurrency", "2", "--prefetch", "2", log=out / "worker.log")
        )
        client = stack.enter_context(Client(access))
        while not client.workers():
            time.sleep(0.05)
        time.sleep(1.5)
        pids = {"server": server.pid, "worker": worker.pid}
        names = {role: thread_names(pid) for role, pid in pids.items()}
        with (
            sampled(server.pid, out / "server.txt", rate, native, out / "py-spy-server.log"),
            sampled(worker.pid, out / "worker.txt", rate, native, out / "py-spy-worker.log"),
        ):
            before = {role: (cpu_seconds(pid), thread_cpu(pid)) for role, pid in pids.items()}
            start = time.perf_counter()
            ids = client.submit_many(["true"] * tasks)
            while not client.task(ids[-1]).status.terminal:
                time.sleep(0.01)
            while any(letter not in "SFX" for letter in client.letters(ids)):
                time.sleep(0.01)
            seconds = time.perf_counter() - start
            figures = {}
            for role, pid in pids.items():
                total = cpu_seconds(pid) - before[role][0]
                table = thread_table(names[role], before[role][1], thread_cpu(pid), total, tasks)
                figures[role] = (1000 * total / tasks, table)
        costs = rpc_costs(access, server.pid)
    return tasks / seconds, figures, costs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples a second")
    parser.add_argument("--native", action="store_true", help="include C frames (grpc core, SQLite, protobuf)")
    parser.add_argument("--out", type=Path, help="keep the raw stacks and logs here (default: a temporary dir)")
    args = parser.parse_args()
    if args.tasks < 1 or args.rate < 1:
        parser.error("--tasks and --rate must be 1 or more")
    with ExitStack() as stack:
        out = args.out or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tqhpc-profile-")))
        out.mkdir(parents=True, exist_ok=True)
        rate, figures, costs = run(args.tasks, out, args.rate, args.native)
        print(f"{args.tasks} `true` tasks under py-spy: {rate:.0f} tasks/s (profiling slows it)")
        for role, (cpu_ms, by_thread) in figures.items():
            print(f"\n## {role}\n\n{by_thread}\n\n{tables(out / f'{role}.txt', cpu_ms)}")
        print(f"\n## the price of one call\n\n{costs}")
        if args.out:
            print(f"\nraw stacks: {out / 'server.txt'}, {out / 'worker.txt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

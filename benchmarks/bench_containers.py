#!/usr/bin/env python3
"""Instance reuse against plain exec: 100 short container tasks through a real server and real workers.

Both runs use the same server, the same SIF (busybox, built offline) and one worker each with the same concurrency;
the only difference is the worker's `--apptainer-instances` setting. With instances, a worker starts one
`apptainer instance` per image and runs each task with `exec instance://`; without, each task starts a container
of its own. A third peer, the same tasks bare (no container), shows what the container still costs. Usage:

    .venv/bin/python benchmarks/bench_containers.py [--tasks 100] [--concurrency 2]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from busybox_image import build_sif
from common import running_server, tqhpc

from tqhpc import Client


def run_batch(client: Client, access: Path, scratch: Path, tasks: int, concurrency: int, image: str,
              worker_args: list[str]) -> float:  # fmt: skip
    """Seconds from submitting `tasks` tasks to the last one done, through one fresh worker."""
    worker = subprocess.Popen(
        tqhpc("worker", "--access", str(access), "--concurrency", str(concurrency), "--prefetch", str(concurrency),
              "--scratch-dir", str(scratch), "--ping-interval", "0.2", *worker_args),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        before = {w.worker_id for w in client.workers()}
        while not {w.worker_id for w in client.workers() if w.state == "running"} - before:
            time.sleep(0.05)
        start = time.perf_counter()
        ids = [client.submit("echo $TQHPC_TASK_ID", image) for _ in range(tasks)]
        while True:
            if client.task(ids[-1]).status.terminal:
                done = [t for t in client.tasks("SF") if t.task_id in set(ids)]
                if len(done) == tasks:
                    break
            time.sleep(0.02)
        seconds = time.perf_counter() - start
        failed = [t for t in done if t.status.value != "S"]
        if failed:
            raise SystemExit(f"{len(failed)} tasks failed, e.g. {failed[0]}")
        return seconds
    finally:
        worker.terminate()
        worker.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tqhpc-bench-containers-") as tmp:
        root = Path(tmp)
        image = str(build_sif(root))
        with running_server(root / "state") as (_, access), Client(access) as client:
            time.sleep(0.5)
            scratch = root / "scratch"
            batch = (client, access, scratch, args.tasks, args.concurrency)
            plain = run_batch(*batch, image, ["--apptainer-instances", "false"])
            instances = run_batch(*batch, image, ["--apptainer-instances", "true"])
            bare = run_batch(*batch, "", [])
    print(f"{args.tasks} short container tasks, one worker, concurrency {args.concurrency}:")
    print(f"  plain exec (a container per task): {plain:6.2f} s  {args.tasks / plain:7.1f} tasks/s")
    print(f"  exec into a kept instance        : {instances:6.2f} s  {args.tasks / instances:7.1f} tasks/s")
    print(f"  bare, no container (peer)        : {bare:6.2f} s  {args.tasks / bare:7.1f} tasks/s")
    print(f"instances are {plain / instances:.2f}x as fast as plain exec; bare is {instances / bare:.2f}x as fast "
          "as instances")  # fmt: skip


if __name__ == "__main__":
    main()

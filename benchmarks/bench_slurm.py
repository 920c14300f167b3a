#!/usr/bin/env python3
"""Short tasks on Slurm: tqhpc's worker jobs against a Slurm job array, on the same cluster in the same run.

tqhpc: a server with one pool profile, 1000 `sleep 0.1` tasks submitted, then 2 worker jobs created with
CreateWorker (provider "slurm"); the makespan runs from the first submission until every task has succeeded, so
it includes the jobs' start. Peer: the same command as a Slurm job array (`sbatch --array`, chunks within
MaxArraySize), from the first sbatch until squeue lists none of its jobs. A job array of short tasks is slow here
(each element is a job the scheduler starts and cleans up), so by default the array runs a smaller N and its
makespan is extrapolated linearly to the tqhpc task count; `--array-tasks 1000` measures it whole. Usage (as root,
with the cluster of slurm/start-cluster.sh):

    eval "$(slurm/start-cluster.sh .slurm)"
    .venv/bin/python benchmarks/bench_slurm.py [--tasks 1000] [--array-tasks 200]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

from common import running_server

from tqhpc import Client

COMMAND = "sleep 0.1"
POOL = """
[pools.bench]
time_limit = "30:00"
concurrency = 1
prefetch = 4
ping_interval = 0.2
idle_timeout = 0
"""


def max_array_size() -> int:
    out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if line.startswith("MaxArraySize"):
            return int(line.split("=")[1])
    return 1001


def through_tqhpc(tasks: int, workers: int, state: Path) -> float:
    config = state.parent / "config.toml"
    config.write_text(POOL)
    env = dict(os.environ, TQHPC_CONFIG=str(config))
    with (
        running_server(state, "--slurm-poll-interval", "2", env=env) as (_, access),
        Client(access) as client,
    ):
        start = time.perf_counter()
        ids = client.submit_many([COMMAND] * tasks)
        worker_ids = client.create_workers(workers, provider="slurm", flavor="bench", concurrency=1, prefetch=4)
        while True:
            if client.task(ids[-1]).status.terminal and len(client.tasks("SF")) == tasks:
                break
            time.sleep(0.05)
        makespan = time.perf_counter() - start
        failed = client.tasks("F")
        if failed:
            raise SystemExit(f"{len(failed)} tasks failed, e.g. {failed[0]}")
        for worker_id in worker_ids:
            client.delete_worker(worker_id)
    return makespan


def as_job_array(tasks: int, output_dir: Path) -> float:
    chunk = max_array_size() - 1
    start = time.perf_counter()
    job_ids = []
    for first in range(0, tasks, chunk):
        last = min(tasks, first + chunk) - 1
        result = subprocess.run(
            ["sbatch", "--parsable", f"--array=0-{last - first}", "--cpus-per-task=1",
             f"--output={output_dir}/array-%A_%a.out", "--wrap", COMMAND],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        job_ids.append(result.stdout.strip().split(";")[0])
    while True:
        result = subprocess.run(
            ["squeue", "--noheader", "--jobs", ",".join(job_ids), "--format=%i"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if result.returncode == 0 and not result.stdout.strip():
            break
        if result.returncode != 0 and "Invalid job id" not in result.stderr:
            raise SystemExit(f"squeue failed: {result.stderr}")
        time.sleep(0.5)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--array-tasks", type=int, default=200, help="array size of the peer (extrapolated)")
    args = parser.parse_args()
    if not os.environ.get("SLURM_CONF"):
        raise SystemExit('export SLURM_CONF of a running cluster first: eval "$(slurm/start-cluster.sh .slurm)"')
    with tempfile.TemporaryDirectory(prefix="tqhpc-bench-slurm-") as tmp:
        tqhpc_seconds = through_tqhpc(args.tasks, args.workers, Path(tmp) / "state")
        print(f"tqhpc, {args.workers} Slurm worker jobs: {args.tasks} x `{COMMAND}` in {tqhpc_seconds:.1f} s "
              f"({args.tasks / tqhpc_seconds:.1f} tasks/s)", flush=True)  # fmt: skip
        array_seconds = as_job_array(args.array_tasks, Path(tmp))
    per_task = array_seconds / args.array_tasks
    scaled = per_task * args.tasks
    how = "measured" if args.array_tasks == args.tasks else f"extrapolated linearly from {args.array_tasks}"
    print(f"Slurm job array: {args.array_tasks} x `{COMMAND}` in {array_seconds:.1f} s ({1 / per_task:.2f} tasks/s)")
    print(f"job array for {args.tasks} tasks ({how}): {scaled:.0f} s")
    print(f"makespan ratio, job array / tqhpc: {scaled / tqhpc_seconds:.1f}x")
    # Both use the same 2 CPUs; what each spends per task beyond the task's own 0.1 s is the cost of the bridge.
    slots = args.workers
    floor = args.tasks * 0.1 / slots
    tqhpc_overhead = (tqhpc_seconds - floor) * slots / args.tasks
    array_overhead = per_task * slots - 0.1
    print(f"floor ({args.tasks} x 0.1 s on {slots} CPUs): {floor:.0f} s; overhead per task: tqhpc "
          f"{tqhpc_overhead * 1000:.0f} ms, job array {array_overhead * 1000:.0f} ms "
          f"({array_overhead / tqhpc_overhead:.0f}x)")  # fmt: skip


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A Snakemake workflow of many short jobs: through tqhpc, through Slurm's executor plugin, and run locally.

The workflow is examples/snakemake with `count=N` squares and their total (N + 1 jobs). Each run starts from a
fresh copy, and its makespan is the wall time of the `snakemake` command, from its start until it exits with
every output written (checked: the total must be exact).

- tqhpc: `snakemake --executor tqhpc --jobs 500`, one `tqhpc worker --concurrency 2` on a fresh server.
- slurm: `snakemake --executor slurm --jobs 500` (snakemake-executor-plugin-slurm) on the cluster of SLURM_CONF
  (the single-node dev cluster: 2 CPUs, so 2 jobs at a time, as the tqhpc worker). The dev cluster has no
  accounting storage, so `sacct` answers nothing: the plugin is told to use `squeue` (MinJobAge 300 s keeps ended
  jobs listed) and no account, and to check status one second after submitting (its fastest setting; it then
  polls each second while jobs end). Its job step strips every SLURM_* variable (SLURM_CONF too) from the
  environment of the `srun` it runs inside each job, and the dev cluster's configuration is not at the default
  path, so an `srun` on PATH that puts SLURM_CONF back stands in front of the real one.
- local: `snakemake --cores 2`, Snakemake running the jobs itself (no job is a process of its own Snakemake).

Usage (the Slurm part with the dev cluster's SLURM_CONF; `--only tqhpc,local` without it):

    eval "$(slurm/start-cluster.sh .slurm)"
    .venv/bin/python benchmarks/bench_snakemake.py [--jobs 500] [--slurm-jobs 500] [--only tqhpc,slurm,local]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import running_server, running_worker

CHECKOUT = Path(__file__).resolve().parent.parent
EXAMPLE = CHECKOUT / "examples" / "snakemake"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
SLURM_FLAGS = [
    "--executor", "slurm", "--jobs", "500", "--slurm-no-account", "--slurm-status-command", "squeue",
    "--slurm-init-seconds-before-status-checks", "1",
]  # fmt: skip


def run_workflow(directory: Path, squares: int, flags: list[str], env: dict[str, str] | None = None) -> float:
    """Run the example workflow in a fresh copy under `directory`; return its makespan in seconds."""
    workflow = directory / "workflow"
    workflow.mkdir()
    shutil.copy(EXAMPLE / "Snakefile", workflow)  # not the results of a run made in the checkout
    # This checkout's plugin, however tqhpc is installed (an editable install hides it from Snakemake's search).
    env = dict(env or os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CHECKOUT), env.get("PYTHONPATH")]))
    log = directory / "snakemake.log"
    start = time.perf_counter()
    with log.open("w") as output:
        result = subprocess.run(
            [*SNAKEMAKE, *flags, "--config", f"count={squares}"],
            cwd=workflow,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            check=False,
        )
    makespan = time.perf_counter() - start
    total = workflow / "results" / "total.txt"
    expected = f"{sum(i * i for i in range(squares))}\n"
    if result.returncode != 0 or not total.exists() or total.read_text() != expected:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-30:])
        raise SystemExit(f"the workflow failed ({' '.join(flags)}), exit code {result.returncode}:\n{tail}")
    return makespan


def through_tqhpc(directory: Path, squares: int, concurrency: int) -> float:
    with (
        running_server(directory / "state") as (_, access),
        running_worker(access, directory / "scratch", "--concurrency", str(concurrency), log=directory / "worker.log"),
    ):
        env = dict(os.environ, TQHPC_ACCESS=str(access))
        return run_workflow(directory, squares, ["--executor", "tqhpc", "--jobs", "500"], env)


def through_slurm(directory: Path, squares: int) -> float:
    conf = os.environ.get("SLURM_CONF")
    if not conf:
        raise SystemExit('no SLURM_CONF: run `eval "$(slurm/start-cluster.sh .slurm)"` first, or --only tqhpc,local')
    srun = shutil.which("srun")
    if srun is None:
        raise SystemExit("no srun on PATH: is Slurm installed (slurm/install.sh)?")
    shim = directory / "bin"
    shim.mkdir()
    (shim / "srun").write_text(f'#!/bin/sh\nSLURM_CONF={conf} exec {srun} "$@"\n')
    (shim / "srun").chmod(0o755)
    env = dict(os.environ, PATH=f"{shim}{os.pathsep}{os.environ.get('PATH', '')}")
    return run_workflow(directory, squares, SLURM_FLAGS, env)


def locally(directory: Path, squares: int, cores: int) -> float:
    return run_workflow(directory, squares, ["--cores", str(cores)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=500, help="squares in the workflow (it has one job more)")
    parser.add_argument("--slurm-jobs", type=int, default=None, help="squares for the Slurm run (default: --jobs)")
    parser.add_argument("--concurrency", type=int, default=2, help="the tqhpc worker's, and the local --cores")
    parser.add_argument("--only", default="tqhpc,slurm,local", help="which runs, comma-separated")
    args = parser.parse_args()
    wanted = args.only.split(",")
    unknown = set(wanted) - {"tqhpc", "slurm", "local"}
    if unknown:
        parser.error(f"unknown runs: {', '.join(sorted(unknown))}")
    results: dict[str, tuple[int, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-snakemake-") as tmp:
        root = Path(tmp)
        for name in wanted:
            directory = root / name
            directory.mkdir()
            if name == "tqhpc":
                squares = args.jobs
                makespan = through_tqhpc(directory, squares, args.concurrency)
            elif name == "slurm":
                squares = args.slurm_jobs or args.jobs
                makespan = through_slurm(directory, squares)
            else:
                squares = args.jobs
                makespan = locally(directory, squares, args.concurrency)
            results[name] = (squares + 1, makespan)
            print(f"{name}: {squares + 1} jobs in {makespan:.1f} s", flush=True)
    print()
    print(f"{'run':<8} {'jobs':>6} {'makespan':>10} {'per job':>9} {'vs tqhpc':>9}")
    base = results.get("tqhpc")
    for name, (jobs, makespan) in results.items():
        per_job = makespan / jobs
        ratio = f"{per_job / (base[1] / base[0]):.2f}x" if base else "-"
        print(f"{name:<8} {jobs:>6} {makespan:>9.1f}s {per_job:>8.3f}s {ratio:>9}")
    print("(vs tqhpc: time per job relative to tqhpc's; jobs: squares + the total)")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""tqhpc side by side with HyperQueue, Parsl's HighThroughputExecutor and a bare process pool, in one run.

One after another on the same machine, in one invocation, and one table at the end with every figure, the ratios
tqhpc/HyperQueue and tqhpc/Parsl, and the goal each figure is held to:

- throughput: 3,000 and 10,000 `sh -c true` tasks, output kept, one worker with 2 slots (HyperQueue: one worker
  with 2 cores; Parsl: 2 workers; bare: a pool of 2 processes), from the first submission to the last task done;
  tqhpc's server and worker CPU a task (their own processes, the tasks' aside);
- idle dispatch: tasks submitted one at a time to an idle worker, from submit to the task's first line (it writes
  the clock to a file) and to its end as the client sees it, p50 and p99 (tqhpc and HyperQueue);
- scale: N tasks pending that the worker can never run (default 100,000; --million for 1,000,000): submit time,
  the server's peak RSS, idle dispatch of fresh tasks beside them, and the seconds `tqhpc tasks` takes to print
  its first row and its last;
- the server's CPU with 200 connected idle workers, over 20 s.

HyperQueue's server listens on every interface, so it runs only in a network namespace with loopback alone: as
root, this script re-executes itself under `unshare --net` (everything then runs in there, tqhpc too); otherwise
it refuses to run HyperQueue. Setup and run:

    .venv/bin/pip install -e '.[bench]' && .venv/bin/python benchmarks/compare.py
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from comparison import bare_pool, hq_runs, namespace, parsl_runs, tqhpc_runs
from comparison.figures import machine
from comparison.report import PEERS, rows_from, table

NOTES = """\
(1) tqhpc: its server and worker processes; HQ: this whole process, which hosts HyperQueue's server and worker
    (LocalCluster) and the client polling them. The tasks' own processes are not counted for either.
(2) In-process clients that register and then ping each second, as an idle `tqhpc worker` does today; stream
    clients replace them when the worker talks to the server over a stream.
Pending tasks ({kind}): {method}
The machine may be shared: figures are noisy, and only ratios measured in the same run mean much."""
PENDING_METHODS = {
    "container": "they ask for a container and the worker registers without apptainer, so they stay P.",
    "slots": "each takes one slot more than the worker has, so they stay P.",
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="3000,10000", help="throughput sizes, comma-separated")
    parser.add_argument("--only", default=",".join(PEERS), help=f"peers to run, comma-separated ({','.join(PEERS)})")
    parser.add_argument("--dispatch-tasks", type=int, default=200, help="tasks in the idle-dispatch series")
    parser.add_argument("--skip-scale", action="store_true", help="leave out the pending-tasks run")
    parser.add_argument("--scale", type=int, default=100_000, help="tasks pending in the scale run")
    parser.add_argument("--million", action="store_true", help="the scale run with 1,000,000 pending tasks")
    parser.add_argument("--scale-probes", type=int, default=20, help="fresh tasks dispatched beside the pending ones")
    parser.add_argument(
        "--pending-kind",
        choices=sorted(PENDING_METHODS),
        default="container",
        help="how the pending tasks are kept from running (see the notes under the table)",
    )
    parser.add_argument("--idle-workers", type=int, default=200, help="connected idle workers")
    parser.add_argument("--idle-seconds", type=float, default=20.0, help="how long their cost is measured")
    parser.add_argument("--json", type=Path, help="save every raw figure to this file")
    parser.add_argument("--keep", type=Path, help="keep state, logs and outputs in this (new) directory")
    parser.add_argument(namespace.MARK, action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        args.sizes = [int(n) for n in args.tasks.split(",") if n.strip()]
    except ValueError:
        parser.error(f"--tasks takes comma-separated numbers, not {args.tasks!r}")
    if not args.sizes or min(args.sizes) < 1:
        parser.error("--tasks needs at least one size of 1 or more")
    args.peers = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = sorted(set(args.peers) - set(PEERS))
    if unknown or not args.peers:
        parser.error(f"--only takes some of {','.join(PEERS)}; unknown: {','.join(unknown) or '(none given)'}")
    if args.million:
        args.scale = 1_000_000
    for name in ("dispatch_tasks", "scale", "scale_probes", "idle_workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be 1 or more")
    if args.idle_seconds <= 0:
        parser.error("--idle-seconds must be more than 0")
    return args


def isolate_if_needed(args: argparse.Namespace, argv: list[str]) -> None:
    """HyperQueue runs only with loopback alone: move into such a namespace, or refuse."""
    if "hq" not in args.peers or namespace.loopback_only():
        return
    if args.in_namespace:
        sys.exit("compare.py: error: the new network namespace still has interfaces besides a working lo")
    reason = namespace.why_not_reexec()
    if reason:
        sys.exit(
            "compare.py: error: HyperQueue's server listens on every interface, so it runs only in a network "
            f"namespace with loopback alone, and this process cannot make one: {reason}. Run as root, or leave "
            "HyperQueue out with --only tqhpc,parsl,bare."
        )
    namespace.reexec_isolated(Path(__file__).resolve(), argv)


PEER_PACKAGES = {"hq": "hyperqueue", "parsl": "parsl"}


def require_peer_packages(peers: list[str]) -> None:
    """The peers' packages come with the `bench` extra; say so at once rather than after minutes of tqhpc runs."""
    missing = []
    for peer in peers:
        package = PEER_PACKAGES.get(peer)
        if package is None:
            continue
        try:
            importlib.import_module(package)
        except ImportError:
            missing.append(package)
    if missing:
        sys.exit(
            f"compare.py: error: {' and '.join(missing)} cannot be imported: install the peers with "
            f"`{sys.executable} -m pip install -e '.[bench]'`, or leave them out with --only"
        )


class Runner:
    """Runs each measurement in turn, records its figures or its error, and leaves no process behind."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.results: dict[str, Any] = {"errors": {}}

    def run(self, what: str, measure: Callable[[], Any]) -> Any:
        print(f"-- {what} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        try:
            figures = measure()
        except Exception as err:
            self.results["errors"][what] = f"{type(err).__name__}: {err}"
            traceback.print_exc(file=sys.stderr)
            figures = None
        finally:
            self._end_leftovers(what)
        print(f"   {what}: {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
        return figures

    def _end_leftovers(self, what: str) -> None:
        """Every peer cleans up after itself; anything of ours still running is a defect, ended and reported."""
        leftovers = [p for p in psutil.Process().children(recursive=True) if p.is_running()]
        if not leftovers:
            return
        self.results["errors"][f"{what}: leftover processes"] = [" ".join(p.cmdline())[:200] for p in leftovers]
        for process in leftovers:
            process.terminate()
        _, alive = psutil.wait_procs(leftovers, timeout=5)
        for process in alive:
            process.kill()

    def section(self, *keys: str) -> dict[str, Any]:
        node = self.results
        for key in keys:
            node = node.setdefault(key, {})
        return node


def measure_all(args: argparse.Namespace, runner: Runner) -> None:
    setup = tqhpc_runs.Setup(runner.root / "tqhpc")
    for tasks in args.sizes:
        measure_throughput(args.peers, runner, setup, tasks)
    measure_idle_dispatch(args.peers, runner, setup, args.dispatch_tasks)
    if "tqhpc" in args.peers:
        measure_tqhpc_alone(args, runner, setup)


def measure_throughput(peers: list[str], runner: Runner, setup: tqhpc_runs.Setup, tasks: int) -> None:
    """`tasks` trivial tasks through each peer, two at a time."""
    root = runner.root
    section = runner.section("throughput", str(tasks))
    runs: dict[str, Callable[[int], Any]] = {
        "bare": lambda n: bare_pool.throughput(root / "bare", n, 2),
        "tqhpc": lambda n: tqhpc_runs.throughput(setup, n),
        "hq": lambda n: hq_runs.throughput(root / "hq", n, 2),
        "parsl": lambda n: parsl_runs.throughput(root / "parsl", n, 2),
    }
    for peer in PEERS:
        if peer not in peers:
            continue
        figures = runner.run(f"{peer}: {tasks:,} `true` tasks", functools.partial(runs[peer], tasks))
        if figures is not None:
            section[peer] = figures
            print(f"   {figures['tasks_per_s']:,.0f} tasks/s", file=sys.stderr)


def measure_idle_dispatch(peers: list[str], runner: Runner, setup: tqhpc_runs.Setup, count: int) -> None:
    """Submit-to-start latency on idle workers, for the peers that have a server to ask (tqhpc and HQ)."""
    dispatch = runner.section("idle_dispatch")
    runs: dict[str, Callable[[], Any]] = {
        "tqhpc": lambda: tqhpc_runs.idle_dispatch(setup, count),
        "hq": lambda: hq_runs.idle_dispatch(runner.root / "hq", count, 2),
    }
    for peer, run in runs.items():
        if peer not in peers:
            continue
        figures = runner.run(f"{peer}: idle dispatch x{count}", run)
        if figures is not None:
            dispatch[peer] = figures


def measure_tqhpc_alone(args: argparse.Namespace, runner: Runner, setup: tqhpc_runs.Setup) -> None:
    """The figures only tqhpc has: a large pending queue, and the server's CPU with idle workers."""
    if not args.skip_scale:
        figures = runner.run(
            f"tqhpc: {args.scale:,} tasks pending",
            lambda: tqhpc_runs.pending_scale(setup, args.scale, args.scale_probes, args.pending_kind),
        )
        if figures is not None:
            runner.results["pending"] = figures
    figures = runner.run(
        f"tqhpc: server CPU with {args.idle_workers} idle workers",
        lambda: tqhpc_runs.idle_server_cpu(setup, args.idle_workers, args.idle_seconds),
    )
    if figures is not None:
        runner.results["idle_workers"] = figures


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    isolate_if_needed(args, argv)
    require_peer_packages(args.peers)
    # Parsl starts `process_worker_pool.py` and `interchange.py` by name: they live beside this interpreter.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    if args.keep is not None:
        args.keep.mkdir(parents=True)
        work = None
        root = args.keep.resolve()
    else:
        work = tempfile.TemporaryDirectory(prefix="tqhpc-compare-")
        root = Path(work.name)
    runner = Runner(root)
    runner.results["machine"] = machine()
    runner.results["machine"]["loopback_only_namespace"] = namespace.loopback_only()
    runner.results["settings"] = {k: v for k, v in vars(args).items() if k not in ("json", "keep")}
    try:
        measure_all(args, runner)
    finally:
        if work is not None:
            work.cleanup()
    rows = rows_from(runner.results)
    runner.results["rows"] = [row.as_dict() for row in rows]
    info = runner.results["machine"]
    print(f"\nmachine: {info['cpus']} CPUs, {info['memory_gib']} GiB, load at start {info['load_at_start']}; "
          f"peers: {', '.join(args.peers)}\n")  # fmt: skip
    print(table(rows))
    print()
    print(NOTES.format(kind=args.pending_kind, method=PENDING_METHODS[args.pending_kind]))
    pending = runner.results.get("pending", {}).get("dispatch", {})
    for what, missed in [("pending-tasks dispatch", pending.get("missed"))] + [
        (f"{peer} idle dispatch", figures.get("missed")) for peer, figures in runner.results["idle_dispatch"].items()
    ]:
        if missed:
            print(f"stopped early: {what}: {missed}")
    for what, error in runner.results["errors"].items():
        print(f"error: {what}: {error}")
    if args.json is not None:
        args.json.write_text(json.dumps(runner.results, indent=2, default=str) + "\n")
        print(f"raw figures: {args.json}")
    return 1 if runner.results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""tqhpc side by side with HyperQueue, Parsl's HighThroughputExecutor and a bare process pool, in one run.

One after another on the same machine, in one invocation, and one table at the end with every figure, the ratios
tqhpc/HyperQueue and tqhpc/Parsl, and the goal each figure is held to:

- throughput: 3,000 and 10,000 `sh -c true` tasks, output kept, one worker with 2 slots (HyperQueue: one worker
  with 2 cores; Parsl: 2 workers; bare: a pool of 2 processes), from the first submission to the last task done;
  tqhpc's server and worker CPU a task (their own processes, the tasks' aside);
- a seed-only worker: 3,000 `true` tasks through a worker that speaks only the seed's unary RPCs
  (comparison/seed_worker.py), against this checkout's server or, with --server-python, other checkouts' too;
- idle dispatch: tasks submitted one at a time to an idle worker, from submit to the task's first line (it writes
  the clock to a file) and to its end as the client sees it, p50 and p99 (tqhpc and HyperQueue);
- scale: N tasks pending that the worker can never run (default 100,000; --million for 1,000,000): submit time,
  the server's peak RSS, idle dispatch of fresh tasks beside them, and the seconds `tqhpc tasks` takes to print
  its first row and its last;
- the server's CPU with 200 connected idle workers, over 20 s: stream clients that do what an idle `tqhpc worker`
  does on its session (heartbeat reports), and apart from them clients of the seed protocol (unary pings); first,
  the heartbeats a second of one stream client beside a real idle `tqhpc worker`, as the server sees them.

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
from comparison.checkouts import CheckoutError, server_label
from comparison.figures import machine
from comparison.report import PEERS, rows_from, table

FOOTNOTES = {
    "(1)": """\
(1) tqhpc: its server and worker processes; HQ: this whole process, which hosts HyperQueue's server and worker
    (LocalCluster) and the client polling them. The tasks' own processes are not counted for either.""",
    "(2)": """\
(2) Idle workers, all in-process clients of one process, each on a connection of its own. Stream: what an idle
    `tqhpc worker` does on its session (a heartbeat report each heartbeat interval, 5 s, after the previous one
    was acknowledged, the host's state in one every 5 s). Seed protocol: RegisterWorker, then
    PingAndTakeNewTasks with the worker's id alone each ping interval, 1 s.
    Heartbeats a second as the server saw them: one idle `tqhpc worker` and one stream client side by side.""",
    "(3)": """\
(3) comparison/seed_worker.py: RegisterWorker (concurrency 2, prefetch 2), PingAndTakeNewTasks (at once when a
    task ends, else each ping interval), UpdateTaskStatus R then S; the server of the checkout named.""",
}
SHARED_MACHINE = "The machine may be shared: figures are noisy, and only ratios measured in the same run mean much."
CASES = ("throughput", "seed", "dispatch", "scale", "idle")
PENDING_METHODS = {
    "container": "they ask for a container and the worker registers without apptainer, so they stay P.",
    "slots": "each takes one slot more than the worker has, so they stay P.",
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="3000,10000", help="throughput sizes, comma-separated")
    parser.add_argument("--only", default=",".join(PEERS), help=f"peers to run, comma-separated ({','.join(PEERS)})")
    parser.add_argument(
        "--cases",
        default=",".join(CASES),
        help=f"what to measure, comma-separated ({','.join(CASES)}): throughput runs every peer of --only, "
        "dispatch tqhpc and HQ, the others tqhpc alone",
    )
    parser.add_argument("--seed-tasks", type=int, default=3000, help="`true` tasks through the seed-only worker")
    parser.add_argument(
        "--server-python",
        action="append",
        metavar="PATH",
        help="the seed-only worker's case runs against a server started by this interpreter (another checkout's "
        ".venv/bin/python); give it more than once to compare checkouts (default: this one's)",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="run the seed-only worker's case this many times per server, alternating"
    )
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
    parser.add_argument(
        "--heartbeat-seconds",
        type=float,
        default=10.0,
        help="how long an idle `tqhpc worker`'s heartbeats and a stream client's are counted side by side",
    )
    parser.add_argument(
        "--heartbeat-interval",
        type=float,
        default=tqhpc_runs.Setup.heartbeat_interval,
        help="idle heartbeat of the session workers, real and stream clients (default: the worker's own)",
    )
    parser.add_argument("--json", type=Path, help="save every raw figure to this file")
    parser.add_argument("--keep", type=Path, help="keep state, logs and outputs in this (new) directory")
    parser.add_argument(namespace.MARK, action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    check_lists(parser, args)
    check_numbers(parser, args)
    args.servers = {}
    if "seed" in args.case_list and "tqhpc" in args.peers:
        for python in args.server_python or [sys.executable]:
            try:
                args.servers[server_label(python)] = python
            except CheckoutError as err:
                parser.error(f"--server-python: {err}")
    return args


def _names(parser: argparse.ArgumentParser, flag: str, given: str, known: tuple[str, ...]) -> list[str]:
    names = [name.strip() for name in given.split(",") if name.strip()]
    unknown = sorted(set(names) - set(known))
    if unknown or not names:
        parser.error(f"{flag} takes some of {','.join(known)}; unknown: {','.join(unknown) or '(none given)'}")
    return names


def check_lists(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """--tasks, --only and --cases as lists, refused in one line when they name nothing or something unknown."""
    try:
        args.sizes = [int(n) for n in args.tasks.split(",") if n.strip()]
    except ValueError:
        parser.error(f"--tasks takes comma-separated numbers, not {args.tasks!r}")
    if not args.sizes or min(args.sizes) < 1:
        parser.error("--tasks needs at least one size of 1 or more")
    args.peers = _names(parser, "--only", args.only, PEERS)
    args.case_list = _names(parser, "--cases", args.cases, CASES)
    if args.skip_scale and "scale" in args.case_list:
        args.case_list.remove("scale")


def check_numbers(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.million:
        args.scale = 1_000_000
    for name in ("dispatch_tasks", "scale", "scale_probes", "idle_workers", "seed_tasks", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be 1 or more")
    for name in ("idle_seconds", "heartbeat_seconds", "heartbeat_interval"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be more than 0")


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
    setup = tqhpc_runs.Setup(runner.root / "tqhpc", heartbeat_interval=args.heartbeat_interval)
    peers, cases = args.peers, args.case_list
    if "throughput" in cases:
        measure_throughput(args, runner, setup)
    if "tqhpc" in peers and "seed" in cases:
        measure_seed_worker(args, runner, setup)
    if "dispatch" in cases:
        measure_idle_dispatch(args, runner, setup)
    if "tqhpc" in peers:
        measure_tqhpc_alone(args, runner, setup)


def _keep(section: dict[str, Any], key: str, figures: dict[str, Any] | None) -> None:
    """Keep a case's figures, unless it failed (its error is recorded by the runner)."""
    if figures is not None:
        section[key] = figures


def measure_idle_dispatch(args: argparse.Namespace, runner: Runner, setup: tqhpc_runs.Setup) -> None:
    dispatch = runner.section("idle_dispatch")
    count = args.dispatch_tasks
    if "tqhpc" in args.peers:
        _keep(
            dispatch,
            "tqhpc",
            runner.run(f"tqhpc: idle dispatch x{count}", lambda: tqhpc_runs.idle_dispatch(setup, count)),
        )
    if "hq" in args.peers:
        hq_dispatch = functools.partial(hq_runs.idle_dispatch, runner.root / "hq", count, 2)
        _keep(dispatch, "hq", runner.run(f"hq: idle dispatch x{count}", hq_dispatch))


def measure_tqhpc_alone(args: argparse.Namespace, runner: Runner, setup: tqhpc_runs.Setup) -> None:
    """What only tqhpc has figures for: tasks pending at scale, idle workers' cost."""
    if "scale" in args.case_list:
        pending = functools.partial(tqhpc_runs.pending_scale, setup, args.scale, args.scale_probes, args.pending_kind)
        _keep(runner.results, "pending", runner.run(f"tqhpc: {args.scale:,} tasks pending", pending))
    if "idle" in args.case_list:
        idle = functools.partial(
            tqhpc_runs.idle_server_cpu, setup, args.idle_workers, args.idle_seconds, args.heartbeat_seconds
        )
        _keep(
            runner.results, "idle_workers", runner.run(f"tqhpc: server CPU with {args.idle_workers} idle workers", idle)
        )


def measure_throughput(args: argparse.Namespace, runner: Runner, setup: tqhpc_runs.Setup) -> None:
    root = runner.root
    for tasks in args.sizes:
        section = runner.section("throughput", str(tasks))
        runs: dict[str, Callable[[int], Any]] = {
            "bare": lambda n: bare_pool.throughput(root / "bare", n, 2),
            "tqhpc": lambda n: tqhpc_runs.throughput(setup, n),
            "hq": lambda n: hq_runs.throughput(root / "hq", n, 2),
            "parsl": lambda n: parsl_runs.throughput(root / "parsl", n, 2),
        }
        for peer in PEERS:
            if peer in args.peers:
                figures = runner.run(f"{peer}: {tasks:,} `true` tasks", functools.partial(runs[peer], tasks))
                if figures is not None:
                    section[peer] = figures
                    print(f"   {figures['tasks_per_s']:,.0f} tasks/s", file=sys.stderr)


def measure_seed_worker(args: argparse.Namespace, runner: Runner, setup: tqhpc_runs.Setup) -> None:
    """The seed-only worker's throughput against each server, the servers taking turns round after round."""
    tasks = args.seed_tasks
    section = runner.section("seed_worker")
    section["tasks"] = tasks
    runs = section.setdefault("runs", {})
    for round_number in range(1, args.rounds + 1):
        for label, python in args.servers.items():
            figures = runner.run(
                f"tqhpc: seed-only worker, {tasks:,} `true` tasks, server {label}, round {round_number}",
                lambda python=python: tqhpc_runs.throughput(setup, tasks, seed_only=True, server_python=python),
            )
            if figures is not None:
                runs.setdefault(label, []).append(figures)
                print(f"   {figures['tasks_per_s']:,.0f} tasks/s", file=sys.stderr)


def work_directory(keep: Path | None) -> tuple[tempfile.TemporaryDirectory[str] | None, Path]:
    """Where the runs keep their state: `keep` (made new, and kept), else a temporary directory removed at the end."""
    if keep is not None:
        keep.mkdir(parents=True)
        return None, keep.resolve()
    work = tempfile.TemporaryDirectory(prefix="tqhpc-compare-")
    return work, Path(work.name)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    isolate_if_needed(args, argv)
    require_peer_packages(args.peers)
    # Parsl starts `process_worker_pool.py` and `interchange.py` by name: they live beside this interpreter.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    work, root = work_directory(args.keep)
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
    for mark, note in FOOTNOTES.items():
        if any(mark in row.label for row in rows):
            print(note)
    if "pending" in runner.results:
        print(f"Pending tasks ({args.pending_kind}): {PENDING_METHODS[args.pending_kind]}")
    print(SHARED_MACHINE)
    for label, runs in runner.results.get("seed_worker", {}).get("runs", {}).items():
        rates = ", ".join(f"{run['tasks_per_s']:,.0f}" for run in runs)
        print(f"seed-only worker, server {label}, tasks/s round by round: {rates}")
    pending = runner.results.get("pending", {}).get("dispatch", {})
    dispatch = runner.results.get("idle_dispatch", {})
    for what, missed in [("pending-tasks dispatch", pending.get("missed"))] + [
        (f"{peer} idle dispatch", figures.get("missed")) for peer, figures in dispatch.items()
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

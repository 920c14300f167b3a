"""benchmarks/compare.py keeps working: it drives the real tqhpc (server, worker, client, CLI, a seed-only worker and
idle workers on the wire protocol) and the bare pool end to end at tiny sizes, saves every figure, and refuses what
it must refuse."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

COMPARE = Path(__file__).resolve().parent.parent / "benchmarks" / "compare.py"


def compare(*args: str, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(COMPARE), *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def test_compare_measures_tqhpc_and_the_bare_pool_and_saves_every_figure(tmp_path):
    figures_file = tmp_path / "figures.json"
    run = compare(
        "--only", "tqhpc,bare", "--tasks", "20", "--seed-tasks", "20", "--dispatch-tasks", "2", "--scale", "50",
        "--scale-probes", "1", "--idle-workers", "5", "--idle-seconds", "2", "--heartbeat-seconds", "2.5",
        "--heartbeat-interval", "1",
        "--json", str(figures_file),
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "tqhpc/HQ" in run.stdout and "20 `true`: tasks/s" in run.stdout
    assert "server CPU, 5 idle stream workers" in run.stdout and "seed-only worker (3), 20 `true`" in run.stdout
    figures = json.loads(figures_file.read_text())
    assert figures["errors"] == {}
    throughput = figures["throughput"]["20"]
    assert throughput["bare"]["tasks_per_s"] > 0
    assert throughput["tqhpc"]["tasks_per_s"] > 0
    assert throughput["tqhpc"]["server_cpu_ms_per_task"] > 0 and throughput["tqhpc"]["worker_cpu_ms_per_task"] > 0
    dispatch = figures["idle_dispatch"]["tqhpc"]
    assert dispatch["missed"] == ""
    assert dispatch["first_line"]["count"] == 2
    assert 0 < dispatch["first_line"]["p50_ms"] <= dispatch["finished"]["p50_ms"]
    pending = figures["pending"]
    assert pending["dispatch"]["first_line"]["count"] == 1
    assert pending["listing"]["rows"] == 50 + 1  # the pending tasks and the one dispatched beside them
    assert 0 < pending["listing"]["first_row_seconds"] <= pending["listing"]["last_row_seconds"]
    assert pending["server_peak_rss_mib"] > 0
    (seed_runs,) = figures["seed_worker"]["runs"].values()  # this checkout's server, once
    assert [run["succeeded"] for run in seed_runs] == [20]  # every task through the seed-only worker ended S
    assert seed_runs[0]["tasks_per_s"] > 0 and seed_runs[0]["server_cpu_ms_per_task"] > 0
    idle = figures["idle_workers"]
    stream, unary = idle["stream"], idle["unary"]
    assert stream["workers"] == unary["workers"] == 5 and stream["errors"] == unary["errors"] == []
    # Each stream client's heartbeats were acknowledged (one in flight at a time), the first with the host's state
    # and not every one after it; each said goodbye at the end and the server took it.
    assert stream["heartbeats_acked"] == stream["heartbeats_sent"] >= 5 * 2
    assert 5 <= stream["heartbeats_with_stats"] < stream["heartbeats_sent"] and stream["goodbyes_taken"] == 5
    assert stream["heartbeats_acked_per_s"] > 0 and unary["pings_per_s"] > 0
    assert stream["cpu_percent"] > 0 and unary["cpu_percent"] > 0
    # A stream client heartbeats as often as a real idle `tqhpc worker` beside it, as the server counts them.
    check = idle["heartbeat_check"]
    assert check["errors"] == [] and check["tqhpc_worker_heartbeats"] >= 2
    assert abs(check["tqhpc_worker_heartbeats"] - check["stream_client_heartbeats"]) <= 1  # the window cuts a period
    # And sends the host's state as often: now and then, not with every heartbeat.
    assert abs(check["tqhpc_worker_host_states"] - check["stream_client_host_states"]) <= 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tasks", "3000,lots"], "--tasks takes comma-separated numbers"),
        (["--tasks", "0"], "--tasks needs at least one size of 1 or more"),
        (["--only", "tqhpc,slurm"], "unknown: slurm"),
        (["--dispatch-tasks", "0"], "--dispatch-tasks must be 1 or more"),
        (["--idle-seconds", "0"], "--idle-seconds must be more than 0"),
        (["--heartbeat-seconds", "-1"], "--heartbeat-seconds must be more than 0"),
        (["--seed-tasks", "0"], "--seed-tasks must be 1 or more"),
        (["--rounds", "0"], "--rounds must be 1 or more"),
        (["--cases", "seed,speed"], "--cases takes some of throughput,seed,dispatch,scale,idle; unknown: speed"),
        (["--server-python", "/nonexistent/python"], "--server-python: /nonexistent/python cannot be run"),
        (["--server-python", sys._base_executable], "cannot import tqhpc: ModuleNotFoundError"),  # outside the venv
    ],
)
def test_compare_refuses_bad_flags_in_one_line(args, message):
    run = compare(*args)
    assert run.returncode == 2
    assert message in run.stderr and "Traceback" not in run.stderr


def test_compare_refuses_hyperqueue_outside_a_loopback_only_namespace_it_cannot_make():
    """HyperQueue's server listens on every interface: without unshare at hand it must not run at all."""
    run = compare("--only", "hq", env={**os.environ, "PATH": "/nonexistent"})
    assert run.returncode == 1
    assert "runs only in a network namespace with loopback alone" in run.stderr
    assert "unshare and ip not found on PATH" in run.stderr and "--only tqhpc,parsl,bare" in run.stderr
    assert "Traceback" not in run.stderr


def test_compare_says_how_to_install_a_peer_it_cannot_import(tmp_path):
    """A `parsl` that cannot be imported (as on a machine without the bench extra) is named with the fix."""
    broken = tmp_path / "parsl"
    broken.mkdir()
    (broken / "__init__.py").write_text("raise ImportError('not installed')\n")
    run = compare("--only", "parsl", env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert run.returncode == 1
    assert "parsl cannot be imported" in run.stderr and "pip install -e '.[bench]'" in run.stderr
    assert "Traceback" not in run.stderr

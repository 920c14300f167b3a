"""The examples and the README's main command run as a user would run them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from sweep import exact

ROOT = Path(__file__).resolve().parent.parent


def test_sweep_example(server, workers) -> None:
    workers.start("--concurrency", "2")
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "sweep.py"), "--access", str(server.access_file), "--timeout", "120"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "submitted 12 tasks" in result.stdout
    assert "12 of 12 results match the closed form" in result.stdout


def test_the_demo_command(tmp_path) -> None:
    """scripts/demo.sh: server, local worker and sweep, then it stops everything it started."""
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "demo.sh")], capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "12 of 12 results match the closed form" in result.stdout
    assert "12 tasks: 12 succeeded" in result.stdout
    worker_log = (ROOT / ".demo" / "worker.out").read_text()
    assert "stopped: 12 succeeded" in worker_log  # the worker was stopped cleanly, before the server
    leftover = subprocess.run(["pgrep", "-f", str(ROOT / ".demo")], capture_output=True, text=True, check=False)
    assert leftover.stdout == ""


def test_sweep_from_the_cli_example(server, workers, tmp_path) -> None:
    """examples/sweep_cli.sh: the same grid through `tqhpc submit --param`, results collected from stdout."""
    workers.start("--concurrency", "2")
    env = dict(
        os.environ,
        TQHPC_ACCESS=str(server.access_file),
        TQHPC=str(Path(sys.executable).parent / "tqhpc"),
        PYTHON=sys.executable,
    )
    result = subprocess.run(
        ["bash", str(ROOT / "examples" / "sweep_cli.sh"), str(tmp_path)],
        capture_output=True, text=True, timeout=180, check=False, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "submitted 12 tasks" in result.stdout
    assert "collected 12 results" in result.stdout
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert sorted((r["a"], r["b"]) for r in rows) == [(a, b) for a in (1, 2, 3, 4) for b in (0, 0.5, 1)]
    assert all(abs(r["integral"] - exact(r["a"], r["b"])) < 1e-9 for r in rows)


def test_pipeline_example(server, workers, tmp_path) -> None:
    """examples/pipeline.py: simulations, then the combining task that waited for them in W."""
    workers.start("--concurrency", "2")
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "pipeline.py"), "--access", str(server.access_file),
         "--out", str(tmp_path / "parts"), "--parts", "4", "--samples", "20000"],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "which waits for them: waiting" in result.stdout
    assert "from 4 parts, 80000 samples" in result.stdout

"""The examples and the README's main command run as a user would run them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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

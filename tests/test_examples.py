"""The examples and the README's main command run as a user would run them."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import wait_until

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from sweep import exact

from tqhpc import Client, Status

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


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


def _checkout_copy(tmp_path: Path) -> Path:
    """What scripts/demo.sh uses, copied out of the checkout (the demo writes .demo/ beside it), with the checkout's
    bootstrapped .venv: its stamp is current, so the copy's bootstrap step installs nothing."""
    stamp = ROOT / ".venv" / ".tqhpc-installed"
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text().strip() != wanted:
        pytest.fail("the checkout's .venv is not bootstrapped for this pyproject.toml: run scripts/bootstrap.sh")
    copy = tmp_path / "checkout"
    copy.mkdir()
    for name in ("scripts", "examples"):
        shutil.copytree(ROOT / name, copy / name)
    shutil.copy2(ROOT / "pyproject.toml", copy / "pyproject.toml")
    (copy / ".venv").symlink_to(ROOT / ".venv")
    return copy


def test_the_demo_command(tmp_path) -> None:
    """scripts/demo.sh: server, local worker and sweep, then it stops everything it started."""
    copy = _checkout_copy(tmp_path)
    result = subprocess.run(
        ["bash", str(copy / "scripts" / "demo.sh")], capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "12 of 12 results match the closed form" in result.stdout
    assert "12 tasks: 12 succeeded" in result.stdout
    worker_log = (copy / ".demo" / "worker.out").read_text()
    assert "stopped: 12 succeeded" in worker_log  # the worker was stopped cleanly, before the server
    leftover = subprocess.run(["pgrep", "-f", str(copy / ".demo")], capture_output=True, text=True, check=False)
    assert leftover.stdout == ""
    assert not (ROOT / ".demo").exists() or (ROOT / ".demo").stat().st_mtime < copy.stat().st_mtime


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


SIM = """\
import argparse, json
parser = argparse.ArgumentParser()
parser.add_argument("--seed", type=int, required=True)
seed = parser.parse_args().seed
print(json.dumps({"seed": seed, "estimate": seed / 7}))
"""


def _readme_block(heading: str, language: str, index: int = 0) -> str:
    """The index-th ```language block of the README section under `## heading`."""
    section = (ROOT / "README.md").read_text().split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", section, re.S)[index]


def test_the_readme_using_it_block_works_as_written(tmp_path: Path) -> None:
    """The README's first commands, typed as a user would in a directory holding sim.py and out/."""
    block = _readme_block("Using it", "bash")
    documented = [line.split("#", 1)[0].strip() for line in block.splitlines()]
    project = tmp_path / "project"
    (project / "out").mkdir(parents=True)
    (project / "sim.py").write_text(SIM)
    env = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", TMPDIR=str(tmp_path))

    def start(command: str) -> subprocess.Popen[bytes]:
        assert command in documented, f"{command!r} is not in the README's block"
        log = open(tmp_path / f"{command.split()[1]}.out", "wb")  # noqa: SIM115 - the child keeps it
        return subprocess.Popen(shlex.split(command), cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT)

    def run(command: str, documented_as: str | None = None) -> str:
        """Run one line as the shell would split it; `documented_as` is its README form, placeholders and all."""
        assert (documented_as or command) in documented, f"{documented_as or command!r} is not in the README's block"
        result = subprocess.run(
            shlex.split(command), cwd=project, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0 and "Traceback" not in result.stderr, result
        return result.stdout

    server = start("tqhpc server")
    state = Path(os.environ["TQHPC_HOME"])
    wait_until(
        lambda: b"listening" in (tmp_path / "server.out").read_bytes() and (state / "access.toml").exists(),
        what=lambda: f"the server to start: {(tmp_path / 'server.out').read_text()}",
    )
    address = (state / "access.toml").read_text().split('address = "', 1)[1].split('"', 1)[0]
    assert address.rsplit(":", 1)[1] in (tmp_path / "server.out").read_text()  # it prints its address
    worker = start("tqhpc worker --concurrency 8")
    try:
        to_file = int(run("tqhpc submit 'python sim.py --seed 3 > out/3.json'"))
        to_log = int(run("tqhpc submit -- python sim.py --seed 3"))
        with Client() as client:  # the default state directory, as every command above found it
            results = client.wait([to_file, to_log], timeout=60, progress=False)
        assert [r.status for r in results] == [Status.SUCCEEDED, Status.SUCCEEDED], results
        assert json.loads((project / "out" / "3.json").read_text()) == {"seed": 3, "estimate": 3 / 7}

        table = run("tqhpc tasks", "tqhpc tasks [--status F] [--json]")
        assert "2 tasks: 2 succeeded" in table and "sim.py --seed 3" in table
        assert "0 tasks: none" in run("tqhpc tasks --status F", "tqhpc tasks [--status F] [--json]")
        listed = json.loads(run("tqhpc tasks --json", "tqhpc tasks [--status F] [--json]"))
        assert [(t["task_id"], t["status"], t["cwd"]) for t in listed] == [
            (to_file, "S", str(project)), (to_log, "S", str(project))
        ]  # fmt: skip
        record = run(f"tqhpc task {to_file}", "tqhpc task 12 [--json]")
        assert re.search(rf"^cwd\s+{re.escape(str(project))}$", record, re.M), record
        assert json.loads(run(f"tqhpc task {to_log} --json", "tqhpc task 12 [--json]"))["exit_code"] == 0
        expected = json.dumps({"seed": 3, "estimate": 3 / 7}) + "\n"
        assert run(f"tqhpc logs {to_log}", "tqhpc logs 12 [--follow]") == expected
        assert run(f"tqhpc logs {to_log} --follow", "tqhpc logs 12 [--follow]") == expected
        workers = json.loads(run("tqhpc workers --all --json", "tqhpc workers [--all] [--json]"))
        assert [(w["concurrency"], w["state"]) for w in workers] == [(8, "running")]

        # The Python block that follows, run as it stands.
        (project / "hello.py").write_text(_readme_block("Using it", "python"))
        printed = subprocess.run(
            [sys.executable, "hello.py"], cwd=project, env=env, capture_output=True, text=True, timeout=60, check=True
        ).stdout.splitlines()
        assert printed[0] in {s.label for s in Status} and printed[1:] == ["O hello", "succeeded"], printed
    finally:
        for process in (worker, server):  # the worker first, so that it can leave cleanly
            process.send_signal(signal.SIGTERM)
            process.wait(30)

"""The README's Python blocks run as a user would paste them, against a real server and worker, and print what their
comments say.

Each block is taken from README.md by its ```python fence and run as its own interpreter process in an empty
directory; the only change is the access file (`Client()` -> `Client("STATE/access.toml")`), which a user's
default state directory would hold.
"""

from __future__ import annotations

import ast
import itertools
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ServerProcess

from tqhpc import Client

README = Path(__file__).resolve().parent.parent / "README.md"
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)
LABELS_BEFORE_THE_END = {"pending", "assigned", "accepted", "running", "succeeded"}


def readme_python_blocks() -> list[str]:
    return PYTHON_BLOCK.findall(README.read_text())


def run_block(code: str, server: ServerProcess, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run one block with the test server's access file in place of the default lookup."""
    assert code.count("Client()") == 1, "each block opens one Client() whose access file the test substitutes"
    code = code.replace("Client()", f"Client({str(server.access_file)!r})")
    cwd.mkdir()
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=180, check=False
    )


def test_every_python_block_of_the_readme_is_run_here() -> None:
    blocks = readme_python_blocks()
    assert len(blocks) == 3, "a new ```python block in README.md needs its test here"
    assert 'client.submit("echo hello")' in blocks[0]
    assert "client.sweep(" in blocks[1]
    assert "Executor(client)" in blocks[2]


def test_first_steps_print_the_status_and_the_output(server: ServerProcess, workers, tmp_path: Path) -> None:
    workers.start("--concurrency", "1")
    result = run_block(readme_python_blocks()[0], server, tmp_path / "user")
    assert result.returncode == 0 and result.stderr == "", result
    first, *rest = result.stdout.splitlines()
    assert first in LABELS_BEFORE_THE_END, result.stdout
    assert rest == ["O hello", "succeeded"], result.stdout


def test_sweep_block_prints_each_failure_with_its_parameters(server: ServerProcess, workers, tmp_path: Path) -> None:
    """There is no fit.py next to the user, so every fit fails (twice: retry=1) and is printed with its exit code;
    the 10,000 `sim` tasks fail too, so `combine` is cancelled and the wait for it ends."""
    workers.start("--concurrency", "2")
    result = run_block(readme_python_blocks()[1], server, tmp_path / "user")
    assert result.returncode == 0, result
    assert result.stderr == "", result  # sweep.wait() and client.wait() draw no bar off a terminal
    printed = []
    for line in result.stdout.splitlines():
        found = re.fullmatch(r"(\{.*\}) (-?\d+)", line)
        assert found, f"not `params exit_code`: {line!r}"
        printed.append((ast.literal_eval(found[1]), int(found[2])))
    combos = [{"a": a, "b": b} for a, b in itertools.product([1, 2, 3], ["x", "y"])]
    assert [params for params, _ in printed] == combos
    assert all(code != 0 for _, code in printed), printed

    with Client(server.access_file) as client:
        fits = client.tasks(name="fit")
        (combine,) = client.tasks(ids=[fits[-1].task_id + 10_001])
    assert len(fits) == 6 and all(t.retry == 1 for t in fits)
    assert combine.command == "python combine.py"
    assert list(combine.after) == list(range(fits[-1].task_id + 1, combine.task_id))  # 10,000 ids, in order


def test_executor_block_prints_each_square_as_it_ends_then_the_map(server: ServerProcess, workers, tmp_path) -> None:
    workers.start("--concurrency", "2")
    result = run_block(readme_python_blocks()[2], server, tmp_path / "user")
    assert result.returncode == 0 and result.stderr == "", result
    *squares, mapped = result.stdout.splitlines()
    assert sorted(squares) == ["1 1", "2 4", "3 9", "4 16"], result.stdout  # in the order they ended
    assert mapped == "[False, True]"


@pytest.mark.parametrize("data", [b"plain\n", "d\u00e9j\u00e0 \u2713\n".encode(), b"\xff\xfe cut"])
def test_a_log_chunk_offers_its_text(data: bytes) -> None:
    from tqhpc import LogChunk

    chunk = LogChunk(1, "O", data)
    assert chunk.text == data.decode(errors="replace")
    assert chunk.data == data

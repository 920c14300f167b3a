"""The floor: the same `sh -c true` tasks run by a bare pool of processes, no queue at all, output kept in files
(one stdout and one stderr file per task, as HyperQueue and Parsl keep it)."""

from __future__ import annotations

import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .figures import throughput_summary


def throughput(root: Path, tasks: int, processes: int) -> dict[str, float]:
    outputs = root / f"throughput-{tasks}"
    outputs.mkdir(parents=True)

    def run(index: int) -> int:
        with (outputs / f"{index}.out").open("wb") as out, (outputs / f"{index}.err").open("wb") as err:
            return subprocess.run(["/bin/sh", "-c", "true"], stdout=out, stderr=err, check=False).returncode

    start = time.perf_counter()
    with ThreadPoolExecutor(processes) as pool:
        failed = sum(1 for code in pool.map(run, range(tasks)) if code != 0)
    seconds = time.perf_counter() - start
    if failed:
        raise RuntimeError(f"bare pool: {failed} `true` tasks failed")
    return throughput_summary(tasks, seconds, 0.0)

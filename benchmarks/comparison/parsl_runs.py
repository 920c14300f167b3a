"""Parsl's HighThroughputExecutor (PyPI `parsl`): one block on this machine with 2 workers, `true` as a `bash_app`
with its stdout and stderr kept in files. The interchange is bound to loopback (`address="127.0.0.1"`); the
executable `process_worker_pool.py` is found on PATH, so the venv's bin directory must be on it."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from .figures import throughput_summary


def _true_app() -> Callable[..., str]:
    """The app's function, made as if in `__main__` so that Parsl ships it by value: its workers cannot import
    this module."""
    namespace = {"__name__": "__main__"}
    exec('def true_task(stdout="", stderr=""):\n    return "true"\n', namespace)
    return namespace["true_task"]


def throughput(root: Path, tasks: int, workers: int) -> dict[str, float]:
    import parsl
    from parsl.app.app import bash_app
    from parsl.config import Config
    from parsl.executors import HighThroughputExecutor
    from parsl.providers import LocalProvider

    case = root / f"throughput-{tasks}"
    outputs = case / "outputs"
    outputs.mkdir(parents=True)
    executor = HighThroughputExecutor(
        label="htex",
        address="127.0.0.1",
        max_workers_per_node=workers,
        cores_per_worker=1,
        provider=LocalProvider(init_blocks=1, min_blocks=1, max_blocks=1),
    )
    config = Config(executors=[executor], run_dir=str(case / "runinfo"), strategy="none", initialize_logging=False)
    app = bash_app(_true_app(), executors=["htex"])
    dfk = parsl.load(config)
    try:
        for future in [app(stdout=str(outputs / f"warm-{i}.out"), stderr=str(outputs / f"warm-{i}.err"))
                       for i in range(2 * workers)]:  # fmt: skip
            future.result(timeout=120)  # the workers have connected
        start = time.perf_counter()
        futures = [app(stdout=str(outputs / f"{i}.out"), stderr=str(outputs / f"{i}.err")) for i in range(tasks)]
        submitted = time.perf_counter()
        deadline = time.monotonic() + max(120.0, tasks / 10)
        failures = 0
        for future in futures:
            try:
                future.result(timeout=max(1.0, deadline - time.monotonic()))
            except TimeoutError:
                raise RuntimeError("Parsl: the tasks were not finished in time") from None
            except Exception:
                failures += 1
        finished = time.perf_counter()
    finally:
        dfk.cleanup()
        parsl.clear()
    if failures:
        raise RuntimeError(f"Parsl: {failures} of {tasks} `true` tasks failed")
    return throughput_summary(tasks, finished - start, submitted - start)

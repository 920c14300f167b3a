"""The sweep handle: combinations, rendering, and failures re-run alone on a real worker."""

from __future__ import annotations

import pytest

from tqhpc import Client, Status
from tqhpc.sweep import combinations, render


def test_combinations_and_rendering() -> None:
    assert combinations(None, {"a": [1, 2], "b": ["x"]}) == [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]
    assert combinations([{"a": 5}], {}) == [{"a": 5}]
    assert render("run {a} {b} {{literal}}", {"a": 1, "b": "two words"}) == "run 1 'two words' {literal}"
    with pytest.raises(ValueError, match="either a list of parameter dicts or axes"):
        combinations([{"a": 1}], {"b": [1]})
    with pytest.raises(ValueError, match="must be a list of values"):
        combinations(None, {"a": "abc"})
    with pytest.raises(ValueError, match=r"uses \{c\}, which no parameter gives"):
        render("run {c}", {"a": 1})


def test_a_sweep_reports_its_failures_and_reruns_only_them(client: Client, workers) -> None:
    sweep = client.sweep("echo {code}; exit {code}", code=[0, 3, 0], name="codes")
    assert len(sweep) == 3 and [p for p, _ in sweep] == [{"code": 0}, {"code": 3}, {"code": 0}]
    workers.start("--concurrency", "2")
    results = sweep.wait(timeout=60, progress=False)
    assert [r.status for r in results] == [Status.SUCCEEDED, Status.FAILED, Status.SUCCEEDED]
    [(params, failed)] = sweep.failures()
    assert params == {"code": 3} and failed.exit_code == 3 and failed.failure == "exit_code"
    assert failed.usage is not None and failed.usage.exit_code == 3 and failed.usage.final
    assert sweep.stdout(sweep.ids[1]) == b"3\n"
    assert sweep.rerun_failed() == [sweep.ids[1]]
    again = sweep.wait(timeout=60, progress=False)
    assert [r.attempts for r in again] == [1, 2, 1]  # only the failed one ran again
    assert [t.task_id for t in client.tasks(name="codes")] == sweep.ids
    with pytest.raises(ValueError, match="no combination"):
        client.sweep("echo {a}", a=[])

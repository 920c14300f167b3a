"""Ranges typed on the command line are bounded before they are built: a slip of the keyboard gets a one-line error
naming the limit at once, never a hang, a MemoryError or a traceback."""

from __future__ import annotations

import time

import pytest
from test_cli import assert_one_line_error, run

QUICK_SECONDS = 3.0
"""The CLI starts in well under a second; building 10^8 ids first took ten."""


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("submit", "--array", "1-100000000", "echo {}"), "more than 1000000 tasks, the most one sweep may make"),
        (("submit", "--array", "1-600000,1-600000", "echo {}"), "more than 1000000 tasks"),
        (("submit", "--after", "1-100000000", "echo"), "more than 10000, the most one task may wait for"),
        (("submit", "--after", "1-10001", "echo"), "10001 task ids, more than 10000, the most one task may wait for"),
        (("cancel", "1-100000000"), "100000000 task ids, more than 1000000, the most one sweep makes"),
        (("retry", "1-999999,3-5"), "1000002 task ids, more than 1000000"),
        (("wait", "1-100000000"), "more than 1000000"),
        (("wait", "99999999999999999999999"), "task ids are at most 4294967295, not 99999999999999999999999"),
        (("cancel", "4294967296"), "task ids are at most 4294967295"),
        (("submit", "--after", "1-99999999999999999999999", "echo"), "task ids are at most 4294967295"),
    ],
)
def test_oversized_ranges_are_refused_at_once(server, args: tuple[str, ...], expected: str) -> None:
    started = time.monotonic()
    result = run(*args, access=server.access_file)
    assert time.monotonic() - started < QUICK_SECONDS
    assert_one_line_error(result, expected, 2)


def test_ranges_at_the_limits_still_work(server) -> None:
    """The largest id the wire carries is a real (unknown) id, and --after of 10000 ids reaches the server."""
    assert_one_line_error(run("wait", "4294967295", access=server.access_file), "no task 4294967295", 1)
    assert_one_line_error(run("submit", "--after", "1-10000", "echo", access=server.access_file), "no task", 1)

"""Sizes the server accepts in one request, shared with the CLI so that it refuses an oversized range before it
builds it (a typo like `--after 1-100000000` must fail at once, not fill the client's memory first)."""

from __future__ import annotations

MAX_SWEEP_TASKS = 1_000_000
"""Tasks one `--array`, `--each-line` or `--param` sweep may make, and so ids one cancel, retry or wait may name."""
MAX_DEPENDENCIES = 10_000
"""Tasks one task may wait for (`--after`): each is a row the server checks on every finish of them."""
MAX_TASK_ID = 2**32 - 1
"""Task ids travel as uint32: a larger one names no task and cannot even be sent."""

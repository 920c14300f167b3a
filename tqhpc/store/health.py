"""Whether the server's storage takes writes: said once when it starts failing, once when it works again.

A full disk or a database another process holds locked fails every write until it is over, and every worker keeps
sending its reports again meanwhile: logging each refusal (with its traceback) would fill the log, and the disk,
with the same line. So an outage is one line when it starts and one when it ends, with how many requests it refused.
A nearly full disk takes small writes and refuses large ones for a while: the outage ends only once writes have
worked for QUIET_SECONDS without a failure, so that it is not said to end and start again many times.
"""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger("tqhpc.server")

QUIET_SECONDS = 3.0


class StorageHealth:
    """Told of each storage failure and of each write that worked; thread-safe (the store's writer thread tells it
    too)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failing_since: float | None = None
        self._last_failure = float("-inf")
        self._refused = 0

    @property
    def failing(self) -> bool:
        return self._failing_since is not None

    def failed_within(self, seconds: float) -> bool:
        """Whether a write failed in the last `seconds` (or the outage is not over)."""
        return self.failing or time.monotonic() - self._last_failure < seconds

    def failed(self, what: str, err: BaseException) -> None:
        with self._lock:
            self._refused += 1
            self._last_failure = time.monotonic()
            if self._failing_since is not None:
                return
            self._failing_since = self._last_failure
        log.error(
            "the server's storage is failing (%s in %s: %s): writes are refused until it works again; workers keep "
            "their reports and output and send them again meanwhile", type(err).__name__, what, err,
        )  # fmt: skip

    def worked(self) -> None:
        """A write was stored: the outage, if there was one, is over once none failed for QUIET_SECONDS."""
        if self._failing_since is None:
            return
        with self._lock:
            since, refused = self._failing_since, self._refused
            if since is None or time.monotonic() - self._last_failure < QUIET_SECONDS:
                return
            self._failing_since, self._refused = None, 0
        log.warning(
            "the server's storage works again after %.0f s; %d requests were refused meanwhile",
            time.monotonic() - since,
            refused,
        )

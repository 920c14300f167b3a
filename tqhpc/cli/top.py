"""`tqhpc top`: the queue live in the terminal, redrawn about once a second from the server's overview.

One GetOverview call per refresh (counts, recent ends, the latest failures, the workers): the cost is the same with
ten tasks or a million, and nothing is listed task by task. `q` leaves (the terminal is in cbreak mode meanwhile, so
the key needs no Enter), and so does Ctrl-C; the terminal is restored on every way out, SIGTERM and SIGHUP included,
and while the view is suspended with Ctrl-Z.
With stdout not a terminal (a pipe, a file) one snapshot is printed and the command ends, as `top -b -n 1` does.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import termios
import time
import tty
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType

import click
import grpc
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..access import AccessError
from ..client import Client, ClientError, Overview
from ..status import Status
from .options import access_option
from .output import STATUS_STYLE, duration, short
from .units import format_size

FAILURES_SHOWN = 5
CALL_TIMEOUT = 5.0
"""Seconds one overview call may take before the view says the server does not answer."""
QUIT_KEYS = frozenset(b"qQ")
SNAPSHOT_WIDTH = 120
SNAPSHOT_HEIGHT = 200
"""The snapshot printed to a pipe or file: lines up to this wide, and room for this many workers."""


@dataclass
class Reading:
    """The latest answer, or why there is none; a failed refresh keeps showing the last answer under the error."""

    overview: Overview | None = None
    error: str = ""
    at: float = 0.0  # when the overview shown was read (monotonic)


class Watcher:
    """Asks the server for its overview; a server that stops answering is asked again at each refresh, its access
    file read anew, so a server restarted on another port is found again."""

    def __init__(self, access: str | None, name: str) -> None:
        self.access = access
        self.name = name
        self.client: Client | None = None
        self.address = ""
        self.reading = Reading()

    def refresh(self) -> Reading:
        try:
            if self.client is None:
                self.client = Client(self.access, timeout=CALL_TIMEOUT)
                self.address = self.client.access.address
            found = self.client.overview(name=self.name, failures=FAILURES_SHOWN)
        except (ClientError, AccessError) as err:
            self.close()
            self.reading.error = _problem(err)
        else:
            self.reading = Reading(found, "", time.monotonic())
        return self.reading

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


def _problem(err: ClientError | AccessError) -> str:
    """Why the view has no fresh overview, as its red line says it."""
    if isinstance(err, AccessError):
        return f"cannot read the server's access file: {err}"
    if err.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return f"server unreachable: {err}"
    return f"the server refused: {err}"


# --- drawing -----------------------------------------------------------------------------------------------------


def render(reading: Reading, name: str, address: str, width: int, height: int, *, live: bool) -> RenderableType:
    """The whole screen: title, status counts, rate, the latest failures, then as many workers as fit."""
    title = Text.assemble(("tqhpc top", "bold"), f"  {address or 'no server'}")
    if name:
        title.append(f"  sweep {name}", style="bold")
    title.append(f"  {time.strftime('%H:%M:%S')}")
    if live:
        title.append("   q or Ctrl-C to leave", style="dim")
    parts: list[RenderableType] = [title]
    found = reading.overview
    if reading.error:
        parts.append(Text(reading.error, style="bold red"))
        age = "" if found is None else f"; what follows is {time.monotonic() - reading.at:.0f} s old"
        parts.append(Text(f"asking again at each refresh{age}", style="dim"))
    if found is None:
        return Group(*parts)
    parts.append(_counts_line(found))
    parts.append(_rate_line(found))
    parts.append(Text(""))
    parts.append(_failures_table(found, width))
    parts.append(Text(""))
    used = 9 + max(1, len(found.failures))  # the lines above, with the tables' headers
    parts.append(_workers_table(found, max(1, height - used - 4)))
    return Group(*parts)


ALWAYS_COUNTED = frozenset({Status.PENDING, Status.RUNNING, Status.SUCCEEDED, Status.FAILED})
"""Statuses whose count is shown even at 0; the others only when some task has them, so the line fits 80 columns."""


def _counts_line(found: Overview) -> Text:
    line = Text.assemble(("TASKS ", "bold"), f"{found.total:,}")
    for status in Status:
        count = found.counts.get(status, 0)
        if not count and status not in ALWAYS_COUNTED:
            continue
        line.append("  ")
        line.append(f"{status.label} {count:,}", style=STATUS_STYLE[status] if count else "dim")
    return line


def _rate_line(found: Overview) -> Text:
    return Text.assemble(
        ("ENDED ", "bold"),
        f"{found.ended_last_10s / 10:,.1f}/s (last 10 s)   {found.ended_last_60s:,}/min (last minute)",
    )


def _failures_table(found: Overview, width: int) -> RenderableType:
    if not found.failures:
        return Text.assemble(("LATEST FAILURES ", "bold"), ("none", "dim"))
    table = Table(title="LATEST FAILURES", title_justify="left", title_style="bold", box=None)
    for header in ("ID", "ENDED", "FAILURE", "NAME", "WHY"):
        table.add_column(header, no_wrap=True, justify="right" if header == "ID" else "left")
    for failed in found.failures:
        task = failed.task
        kind = task.failure or "failed"
        if task.exit_code is not None:
            kind += f" {task.exit_code}"
        ended = "" if task.ended_at is None else f"{duration(max(0.0, found.server_time - task.ended_at))} ago"
        table.add_row(str(task.task_id), ended, kind, task.name, _why(task.reason, failed.stderr_tail, width))
    return table


def _why(reason: str, stderr_tail: str, width: int) -> Text:
    """The last lines of stderr joined on one line (the error is usually there), else the reason the store keeps
    (a worker lost, a timeout, a missing image...)."""
    text = " | ".join(line.strip() for line in stderr_tail.splitlines()[-2:] if line.strip()) or reason
    return Text(short(text, max(20, width - 40)), style="red")


def _workers_table(found: Overview, rows: int) -> RenderableType:
    if not found.workers:
        return Text.assemble(("WORKERS ", "bold"), ("none live", "dim"))
    table = Table(title=f"WORKERS ({len(found.workers)})", title_justify="left", title_style="bold", box=None)
    headers = ("ID", "NAME", "HOST", "JOB", "STATE", "LOAD", "MEM USED", "MEM AVAIL", "RUNNING", "HELD")
    for header in headers:
        justify = "left" if header in {"NAME", "HOST", "JOB", "STATE"} else "right"
        table.add_column(header, no_wrap=True, justify=justify)
    shown = found.workers if len(found.workers) <= rows else found.workers[: rows - 1]
    for worker in shown:
        stats = worker.stats
        table.add_row(
            str(worker.worker_id),
            worker.name,
            worker.hostname,
            worker.slurm_job_id or "-",
            worker.state,
            f"{stats.load1:.2f}" if stats else "",
            format_size(stats.memory_used) if stats else "",
            format_size(stats.memory_available) if stats else "",
            str(worker.running),
            str(worker.held),
        )
    if len(shown) < len(found.workers):
        table.add_row("", f"... {len(found.workers) - len(shown)} more", *[""] * (len(headers) - 2))
    return table


# --- the terminal ------------------------------------------------------------------------------------------------


class Keys:
    """Keys pressed on a terminal stdin, one at a time without Enter (cbreak mode), and the terminal's own settings
    back on exit, whatever the way out. Without a terminal on stdin there are no keys: only Ctrl-C leaves."""

    def __init__(self) -> None:
        self.fd = sys.stdin.fileno() if sys.stdin is not None and sys.stdin.isatty() else None
        self._saved: list | None = None

    def __enter__(self) -> Keys:
        if self.fd is not None:
            self._saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd, termios.TCSANOW)
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()

    def restore(self) -> None:
        """The terminal as it was before the view (also while the view is suspended with Ctrl-Z)."""
        if self.fd is not None and self._saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)

    def resume(self) -> None:
        """Cbreak mode again after a suspension (the shell may have changed the modes meanwhile)."""
        if self.fd is not None and self._saved is not None:
            tty.setcbreak(self.fd, termios.TCSANOW)

    def quit_within(self, seconds: float) -> bool:
        """Wait up to `seconds` for a key; whether it was one that leaves."""
        if self.fd is None:
            time.sleep(seconds)
            return False
        ready, _, _ = select.select([self.fd], [], [], seconds)
        if not ready:
            return False
        pressed = os.read(self.fd, 64)
        if not pressed:  # the terminal is gone
            self.fd = None
            return True
        return any(byte in QUIT_KEYS for byte in pressed)


class _Leave(Exception):
    """Raised by the SIGTERM and SIGHUP handlers, so that the terminal is restored on the way out."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _Suspend(Exception):
    """Raised by the SIGTSTP handler (Ctrl-Z): the view gives the terminal back before the process stops."""


@contextlib.contextmanager
def _signals_handled() -> Iterator[None]:
    def leave(signum: int, _frame: FrameType | None) -> None:
        raise _Leave(signum)

    def suspend(_signum: int, _frame: FrameType | None) -> None:
        raise _Suspend

    handlers = {signal.SIGTERM: leave, signal.SIGHUP: leave, signal.SIGTSTP: suspend}
    previous = {signum: signal.signal(signum, handler) for signum, handler in handlers.items()}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _stop_here(live: Live, keys: Keys) -> None:
    """Ctrl-Z: the shell's screen and terminal modes back, then stop as a job does; on `fg`, the view again."""
    handler = signal.signal(signal.SIGTSTP, signal.SIG_IGN)  # a second Ctrl-Z meanwhile changes nothing
    try:
        live.stop()
        keys.restore()
        os.kill(os.getpid(), signal.SIGSTOP)  # returns once continued
        keys.resume()
        live.start(refresh=True)
    finally:
        signal.signal(signal.SIGTSTP, handler)


def watch(watcher: Watcher, console: Console, interval: float) -> int:
    """Redraw every `interval` seconds until q, Ctrl-C, SIGTERM or SIGHUP (Ctrl-Z suspends); the exit status."""
    try:
        with _signals_handled(), Keys() as keys, Live(console=console, screen=True, auto_refresh=False) as live:
            while True:
                try:
                    reading = watcher.refresh()
                    live.update(
                        render(reading, watcher.name, watcher.address, console.width, console.height, live=True),
                        refresh=True,
                    )
                    if keys.quit_within(interval):
                        return 0
                except _Suspend:
                    _stop_here(live, keys)
    except KeyboardInterrupt:
        return 0
    except _Leave as left:
        return 128 + left.signum
    finally:
        watcher.close()


@click.command("top")
@access_option
@click.option("--name", default="", help="Follow one sweep: only tasks with this name (`submit --name`).")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.2, max=60),
    default=1.0,
    show_default=True,
    help="Seconds between refreshes.",
)
def top(access: str | None, name: str, interval: float) -> None:
    """Watch the queue live: tasks by status, how fast they end, the latest failures and why, the workers.

    q or Ctrl-C leaves. With stdout not a terminal, prints one snapshot and exits.
    """
    console = Console()
    if not console.is_terminal:
        print_snapshot(access, name)
        return
    status = watch(Watcher(access, name), console, interval)
    if status:
        sys.exit(status)


def print_snapshot(access: str | None, name: str) -> None:
    """One overview as plain lines (no colour, no trailing blanks), for a pipe or a file; errors are raised."""
    with Client(access, timeout=CALL_TIMEOUT) as client:
        reading = Reading(client.overview(name=name, failures=FAILURES_SHOWN), "", time.monotonic())
        address = client.access.address
    plain = Console(width=SNAPSHOT_WIDTH, height=SNAPSHOT_HEIGHT, no_color=True)
    with plain.capture() as captured:
        plain.print(render(reading, name, address, SNAPSHOT_WIDTH, SNAPSHOT_HEIGHT, live=False))
    click.echo("\n".join(line.rstrip() for line in captured.get().splitlines()))


COMMANDS = [top]

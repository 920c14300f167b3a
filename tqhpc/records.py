"""Tasks and workers as plain values: one definition read from SQLite rows by the store, turned into wire
messages by the server, and read back from them by the client, so the three can never drift apart."""

from __future__ import annotations

import dataclasses
import operator
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from google.protobuf.message import Message

from ._proto import pb
from .status import Status


class WorkerState:
    STARTING = "starting"  # created by CreateWorker, not registered yet
    RUNNING = "running"
    DRAINING = "draining"  # heartbeat only, takes no new task
    LOST = "lost"  # stopped pinging; its tasks went back to pending
    DELETED = "deleted"  # stopped by DeleteWorker
    STOPPED = "stopped"  # left by itself after draining

    LIVE = frozenset({STARTING, RUNNING, DRAINING})


class _Record:
    """Conversions shared by the records: from a row, from and to a message, to JSON-ready dicts.

    A listing converts a million records each way, so the conversions follow a plan made once per class (which
    fields exist where, which need a presence check or a type) instead of asking the dataclass machinery per record;
    see `_assemble` for how a record is built without the frozen dataclass's per-field `__setattr__`.
    """

    message_type: type[Message]
    nested: ClassVar[dict[str, type[_Record]]] = {}
    """Fields holding another record (a sub-message on the wire); a store attaches them after reading the row."""
    repeated: ClassVar[dict[str, type[_Record]]] = {}
    """Fields holding a tuple of records (a repeated sub-message)."""

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Self:
        return _row_reader(cls, tuple(row.keys()))(row)

    @classmethod
    def from_rows(cls, rows: Sequence[sqlite3.Row]) -> list[Self]:
        """Rows of one query, read with one plan: the column names are looked at once, not once per row."""
        if not rows:
            return []
        read = _row_reader(cls, tuple(rows[0].keys()))
        return [read(row) for row in rows]

    @classmethod
    def from_message(cls, message: Message) -> Self:
        plan = _plan(cls)
        values = plan.from_wire.values(message)
        for index, name, kind in plan.from_wire.fixups:
            if kind is _OPTIONAL:
                if not message.HasField(name):
                    values[index] = None
            elif kind is _NESTED:
                values[index] = cls.nested[name].from_message(values[index]) if message.HasField(name) else None
            elif kind is _RECORDS:
                values[index] = tuple(cls.repeated[name].from_message(m) for m in values[index])
            else:  # _VALUES: a repeated plain field
                values[index] = tuple(values[index])
        return _assemble(cls, values)

    def to_message(self) -> Any:
        values = {}
        state = self.__dict__
        for name, kind in _plan(type(self)).to_message:
            value = state[name]
            if value is None:
                continue
            if kind is _PLAIN:
                values[name] = value
            elif kind is _STATUS:
                values[name] = value.value if isinstance(value, Status) else value  # a str subclass costs more
            elif kind is _NESTED:
                values[name] = value.to_message()
            elif not value:
                continue  # an empty repeated field: left unset, as setting it to nothing costs time
            elif kind is _RECORDS:
                values[name] = [item.to_message() for item in value]
            else:  # _VALUES
                values[name] = value
        return self.message_type(**values)

    def copy_with(self, **changes: Any) -> Self:
        """`dataclasses.replace` for the hot paths: a listing attaches usage to a million records, and `replace`
        re-runs `__init__` over every field of each."""
        record = object.__new__(type(self))
        state = record.__dict__
        for name, value in self.__dict__.items():
            state[name] = changes.pop(name, value)
        if changes:
            raise TypeError(f"{type(self).__name__} has no field {', '.join(sorted(changes))}")
        return record

    def to_dict(self) -> dict[str, Any]:
        # Flat fields only, so no deep copy (asdict) on the hot path of every ping and listing.
        return {name: value if type(value) in _SCALARS else _plain(value) for name, value in self.__dict__.items()}


# What a conversion plan does with one field.
_PLAIN, _OPTIONAL, _NESTED, _RECORDS, _VALUES, _STATUS = (
    "plain", "optional", "nested", "records", "values", "status"
)  # fmt: skip
_REQUIRED = object()


@dataclass(frozen=True)
class _Factory:
    """A field's `default_factory`, kept apart from a default value that happens to be callable."""

    make: Callable[[], Any]


class _Source:
    """Where a record's field values come from: the fields a row or message has, read in one C call (`attrgetter`
    or `itemgetter` over all of them), and the defaults of the fields it lacks."""

    def __init__(self, cls: type[_Record], getter: Callable[[Any], Any], present: list[int], plan: _Plan) -> None:
        self.getter = getter
        self.single = len(present) == 1  # a getter of one name returns the value, not a 1-tuple
        self.present = present
        missing = [i for i in range(len(plan.names)) if i not in set(present)]
        required = [plan.names[i] for i in missing if plan.defaults[i] is _REQUIRED]
        self.problem = f"{cls.__name__} needs a value for {', '.join(required)}" if required else ""
        self.factories = [(i, plan.defaults[i].make) for i in missing if isinstance(plan.defaults[i], _Factory)]
        self.template = [None if i in set(present) else plan.defaults[i] for i in range(len(plan.names))]
        self.complete = not missing
        self.fixups: tuple[tuple[int, str, str], ...] = ()

    def values(self, source: Any) -> list[Any]:
        """The field values in field order, before any fixup or typing."""
        got = self.getter(source)
        if self.single:
            got = (got,)
        if self.complete:
            return list(got)
        if self.problem:
            raise TypeError(self.problem)
        values = list(self.template)
        for index, value in zip(self.present, got, strict=True):
            values[index] = value
        for index, make in self.factories:
            values[index] = make()
        return values


@dataclass
class _Plan:
    names: tuple[str, ...]
    """The dataclass fields in their order (the order `__init__` sets them in)."""
    defaults: tuple[Any, ...]
    """Each field's default, its _Factory, or _REQUIRED."""
    typed: tuple[tuple[int, Callable[[Any], Any]], ...]
    """Fields stored or sent in another type than the record's: their index, and what converts them."""
    to_message: tuple[tuple[str, str], ...]
    from_wire: _Source = dataclasses.field(init=False)


_PLANS: dict[type, _Plan] = {}


def _plan(cls: type[_Record]) -> _Plan:
    plan = _PLANS.get(cls)
    if plan is None:
        plan = _PLANS[cls] = _make_plan(cls)
    return plan


def _make_plan(cls: type[_Record]) -> _Plan:
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} has __post_init__, which records built by _assemble would skip")
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    names = tuple(f.name for f in fields)
    defaults = tuple(
        _Factory(f.default_factory) if f.default_factory is not dataclasses.MISSING
        else _REQUIRED if f.default is dataclasses.MISSING else f.default
        for f in fields
    )  # fmt: skip
    typed = tuple((index, _TYPES[name]) for index, name in enumerate(names) if name in _TYPES)
    on_wire = cls.message_type.DESCRIPTOR.fields_by_name
    present = [index for index, name in enumerate(names) if name in on_wire]
    fixups = []
    writing = []
    for index in present:
        name = names[index]
        wire = on_wire[name]
        if name in cls.repeated:
            kind = _RECORDS
        elif wire.is_repeated:
            kind = _VALUES
        elif name in cls.nested:
            kind = _NESTED
        elif wire.has_presence:
            kind = _OPTIONAL
        else:
            kind = _PLAIN
        if kind is not _PLAIN:
            fixups.append((index, name, kind))
        writing.append((name, _STATUS if name == "status" else _PLAIN if kind == _OPTIONAL else kind))
    plan = _Plan(names, defaults, typed, tuple(writing))
    plan.from_wire = _Source(cls, operator.attrgetter(*(names[i] for i in present)), present, plan)
    plan.from_wire.fixups = tuple(fixups)
    return plan


def _row_reader(cls: type[_Record], columns: tuple[str, ...]) -> Callable[[sqlite3.Row], Any]:
    """Read rows with these columns into `cls`: fields without a column take their default."""
    key = (cls, columns)
    reader = _ROW_READERS.get(key)
    if reader is None:
        plan = _plan(cls)
        where = {name: index for index, name in enumerate(columns)}
        present = [index for index, name in enumerate(plan.names) if name in where]
        source = _Source(cls, operator.itemgetter(*(where[plan.names[i]] for i in present)), present, plan)

        def reader(row: sqlite3.Row) -> Any:
            return _assemble(cls, source.values(row))

        _ROW_READERS[key] = reader
    return reader


_ROW_READERS: dict[tuple[type, tuple[str, ...]], Callable[[sqlite3.Row], Any]] = {}


def _assemble(cls: type[_Record], values: list[Any]) -> Any:
    """A record from its field values in field order, typed as the fields say.

    The same object `cls(*values)` makes, without calling the frozen dataclass's `__init__`: that sets each field
    through `object.__setattr__` and costs more than reading the row. The fields go into the instance dict in
    `__init__`'s order, so records still share their key table and stay as small as `__init__` makes them.
    """
    plan = _plan(cls)
    for index, convert in plan.typed:
        value = values[index]
        if value is not None:
            values[index] = convert(value)
    record = object.__new__(cls)
    record.__dict__.update(zip(plan.names, values, strict=True))
    return record


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _plain(value: Any) -> Any:
    if isinstance(value, Status):
        return value.value
    if isinstance(value, _Record):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


_STATUS_BY_LETTER = {status.value: status for status in Status}

_TYPES: dict[str, Callable[[Any], Any]] = {
    "status": lambda letter: _STATUS_BY_LETTER.get(letter) or Status(letter),
    "container_capable": bool,  # SQLite keeps these as 0 or 1
    "final": bool,
}
"""Fields stored or sent in another type than the record's (by name: the same in every record)."""


@dataclass(frozen=True)
class ResourceUsage(_Record):
    """What one attempt of a task cost, and where and when it ran."""

    message_type = pb.ResourceUsage

    attempt: int = 0
    worker_id: int = 0
    worker_name: str = ""
    hostname: str = ""
    slurm_job_id: str = ""
    started_at: float = 0.0
    ended_at: float = 0.0
    wall_time: float = 0.0
    cpu_user: float = 0.0
    cpu_system: float = 0.0
    peak_rss: int = 0
    last_rss: int = 0
    read_bytes: int = 0
    write_bytes: int = 0
    exit_code: int | None = None
    samples: int = 0
    final: bool = False
    failure: str = ""
    reason: str = ""  # how an attempt ended that its worker never reported the end of

    @property
    def cpu_time(self) -> float:
        return self.cpu_user + self.cpu_system


@dataclass(frozen=True)
class WorkerStats(_Record):
    """A worker's host at its latest ping."""

    message_type = pb.WorkerStats

    cpu_percent: float = 0.0
    load1: float = 0.0
    load5: float = 0.0
    load15: float = 0.0
    memory_used: int = 0
    memory_available: int = 0
    disk_free: int = 0
    running_tasks: int = 0
    sampled_at: float = 0.0


@dataclass(frozen=True)
class TaskInfo(_Record):
    message_type = pb.Task
    nested = {"usage": ResourceUsage}
    repeated = {"attempt_usage": ResourceUsage}

    task_id: int
    command: str
    container: str
    status: Status
    worker_id: int | None
    exit_code: int | None
    attempts: int
    submitted_at: float
    started_at: float | None
    ended_at: float | None
    reason: str
    # Sweeps, retries, dependencies, slots.
    name: str = ""
    retry: int = 0
    failure_retries: int = 0
    after: tuple[int, ...] = ()
    slots: int = 1
    array_id: str = ""
    timeout: float = 0.0
    memory_limit: int = 0
    failure: str = ""
    usage: ResourceUsage | None = None
    attempt_usage: tuple[ResourceUsage, ...] = ()
    time_request: float = 0.0
    crash_count: int = 0
    cwd: str = ""  # where the task runs; "": a scratch directory per attempt

    @property
    def wall_time(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at


@dataclass(frozen=True)
class WorkerInfo(_Record):
    message_type = pb.Worker
    nested = {"stats": WorkerStats}

    worker_id: int
    name: str
    concurrency: int
    prefetch: int
    state: str
    provider: str
    hostname: str
    last_ping: float | None
    running: int = 0
    held: int = 0
    pid: int | None = None
    created_at: float | None = None
    stats: WorkerStats | None = None
    container_capable: bool | None = None
    container_note: str = ""
    slurm_job_id: str = ""
    slurm_job_state: str = ""
    slurm_pool: str = ""
    walltime_end: float | None = None

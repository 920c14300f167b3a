from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Ack(_message.Message):
    __slots__ = ("success",)
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    success: bool
    def __init__(self, success: _Optional[bool] = ...) -> None: ...

class ListTasksRequest(_message.Message):
    __slots__ = ("status_filter", "name_filter", "task_ids", "after_task_id", "page_size")
    STATUS_FILTER_FIELD_NUMBER: _ClassVar[int]
    NAME_FILTER_FIELD_NUMBER: _ClassVar[int]
    TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    AFTER_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    status_filter: str
    name_filter: str
    task_ids: _containers.RepeatedScalarFieldContainer[int]
    after_task_id: int
    page_size: int
    def __init__(self, status_filter: _Optional[str] = ..., name_filter: _Optional[str] = ..., task_ids: _Optional[_Iterable[int]] = ..., after_task_id: _Optional[int] = ..., page_size: _Optional[int] = ...) -> None: ...

class TaskPage(_message.Message):
    __slots__ = ("tasks", "last")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[Task]
    last: bool
    def __init__(self, tasks: _Optional[_Iterable[_Union[Task, _Mapping]]] = ..., last: _Optional[bool] = ...) -> None: ...

class ListWorkersRequest(_message.Message):
    __slots__ = ("include_retired",)
    INCLUDE_RETIRED_FIELD_NUMBER: _ClassVar[int]
    include_retired: bool
    def __init__(self, include_retired: _Optional[bool] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("task_id", "command", "container", "status", "exit_code", "worker_id", "attempts", "submitted_at", "started_at", "ended_at", "reason", "name", "retry", "failure_retries", "after", "slots", "array_id", "timeout", "memory_limit", "failure", "usage", "attempt_usage", "time_request", "crash_count", "cwd")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    FAILURE_RETRIES_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    ARRAY_ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_LIMIT_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_USAGE_FIELD_NUMBER: _ClassVar[int]
    TIME_REQUEST_FIELD_NUMBER: _ClassVar[int]
    CRASH_COUNT_FIELD_NUMBER: _ClassVar[int]
    CWD_FIELD_NUMBER: _ClassVar[int]
    task_id: int
    command: str
    container: str
    status: str
    exit_code: int
    worker_id: int
    attempts: int
    submitted_at: float
    started_at: float
    ended_at: float
    reason: str
    name: str
    retry: int
    failure_retries: int
    after: _containers.RepeatedScalarFieldContainer[int]
    slots: int
    array_id: str
    timeout: float
    memory_limit: int
    failure: str
    usage: ResourceUsage
    attempt_usage: _containers.RepeatedCompositeFieldContainer[ResourceUsage]
    time_request: float
    crash_count: int
    cwd: str
    def __init__(self, task_id: _Optional[int] = ..., command: _Optional[str] = ..., container: _Optional[str] = ..., status: _Optional[str] = ..., exit_code: _Optional[int] = ..., worker_id: _Optional[int] = ..., attempts: _Optional[int] = ..., submitted_at: _Optional[float] = ..., started_at: _Optional[float] = ..., ended_at: _Optional[float] = ..., reason: _Optional[str] = ..., name: _Optional[str] = ..., retry: _Optional[int] = ..., failure_retries: _Optional[int] = ..., after: _Optional[_Iterable[int]] = ..., slots: _Optional[int] = ..., array_id: _Optional[str] = ..., timeout: _Optional[float] = ..., memory_limit: _Optional[int] = ..., failure: _Optional[str] = ..., usage: _Optional[_Union[ResourceUsage, _Mapping]] = ..., attempt_usage: _Optional[_Iterable[_Union[ResourceUsage, _Mapping]]] = ..., time_request: _Optional[float] = ..., crash_count: _Optional[int] = ..., cwd: _Optional[str] = ...) -> None: ...

class TaskId(_message.Message):
    __slots__ = ("task_id", "snapshot")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    task_id: int
    snapshot: bool
    def __init__(self, task_id: _Optional[int] = ..., snapshot: _Optional[bool] = ...) -> None: ...

class TaskList(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[Task]
    def __init__(self, tasks: _Optional[_Iterable[_Union[Task, _Mapping]]] = ...) -> None: ...

class TaskListAndOther(_message.Message):
    __slots__ = ("tasks", "concurrency", "cancel_task_ids")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    CANCEL_TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[Task]
    concurrency: int
    cancel_task_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, tasks: _Optional[_Iterable[_Union[Task, _Mapping]]] = ..., concurrency: _Optional[int] = ..., cancel_task_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class TaskLog(_message.Message):
    __slots__ = ("task_id", "log_type", "log_text", "log_bytes", "worker_id", "offset")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    LOG_TYPE_FIELD_NUMBER: _ClassVar[int]
    LOG_TEXT_FIELD_NUMBER: _ClassVar[int]
    LOG_BYTES_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    task_id: int
    log_type: str
    log_text: str
    log_bytes: bytes
    worker_id: int
    offset: int
    def __init__(self, task_id: _Optional[int] = ..., log_type: _Optional[str] = ..., log_text: _Optional[str] = ..., log_bytes: _Optional[bytes] = ..., worker_id: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class TaskRequest(_message.Message):
    __slots__ = ("command", "container", "name", "retry", "after", "after_batch_index", "slots", "array_id", "timeout", "memory_limit", "time_request", "cwd")
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    AFTER_BATCH_INDEX_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    ARRAY_ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_LIMIT_FIELD_NUMBER: _ClassVar[int]
    TIME_REQUEST_FIELD_NUMBER: _ClassVar[int]
    CWD_FIELD_NUMBER: _ClassVar[int]
    command: str
    container: str
    name: str
    retry: int
    after: _containers.RepeatedScalarFieldContainer[int]
    after_batch_index: _containers.RepeatedScalarFieldContainer[int]
    slots: int
    array_id: str
    timeout: float
    memory_limit: int
    time_request: float
    cwd: str
    def __init__(self, command: _Optional[str] = ..., container: _Optional[str] = ..., name: _Optional[str] = ..., retry: _Optional[int] = ..., after: _Optional[_Iterable[int]] = ..., after_batch_index: _Optional[_Iterable[int]] = ..., slots: _Optional[int] = ..., array_id: _Optional[str] = ..., timeout: _Optional[float] = ..., memory_limit: _Optional[int] = ..., time_request: _Optional[float] = ..., cwd: _Optional[str] = ...) -> None: ...

class TaskResponse(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: int
    def __init__(self, task_id: _Optional[int] = ...) -> None: ...

class TaskStatusUpdate(_message.Message):
    __slots__ = ("task_id", "new_status", "exit_code", "worker_id", "reason", "usage", "failure")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    NEW_STATUS_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    task_id: int
    new_status: str
    exit_code: int
    worker_id: int
    reason: str
    usage: ResourceUsage
    failure: str
    def __init__(self, task_id: _Optional[int] = ..., new_status: _Optional[str] = ..., exit_code: _Optional[int] = ..., worker_id: _Optional[int] = ..., reason: _Optional[str] = ..., usage: _Optional[_Union[ResourceUsage, _Mapping]] = ..., failure: _Optional[str] = ...) -> None: ...

class Worker(_message.Message):
    __slots__ = ("worker_id", "name", "concurrency", "prefetch", "state", "provider", "hostname", "last_ping", "running", "held", "pid", "created_at", "stats", "container_capable", "container_note", "slurm_job_id", "slurm_job_state", "slurm_pool", "walltime_end")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    PREFETCH_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    LAST_PING_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_CAPABLE_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_NOTE_FIELD_NUMBER: _ClassVar[int]
    SLURM_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SLURM_JOB_STATE_FIELD_NUMBER: _ClassVar[int]
    SLURM_POOL_FIELD_NUMBER: _ClassVar[int]
    WALLTIME_END_FIELD_NUMBER: _ClassVar[int]
    worker_id: int
    name: str
    concurrency: int
    prefetch: int
    state: str
    provider: str
    hostname: str
    last_ping: float
    running: int
    held: int
    pid: int
    created_at: float
    stats: WorkerStats
    container_capable: bool
    container_note: str
    slurm_job_id: str
    slurm_job_state: str
    slurm_pool: str
    walltime_end: float
    def __init__(self, worker_id: _Optional[int] = ..., name: _Optional[str] = ..., concurrency: _Optional[int] = ..., prefetch: _Optional[int] = ..., state: _Optional[str] = ..., provider: _Optional[str] = ..., hostname: _Optional[str] = ..., last_ping: _Optional[float] = ..., running: _Optional[int] = ..., held: _Optional[int] = ..., pid: _Optional[int] = ..., created_at: _Optional[float] = ..., stats: _Optional[_Union[WorkerStats, _Mapping]] = ..., container_capable: _Optional[bool] = ..., container_note: _Optional[str] = ..., slurm_job_id: _Optional[str] = ..., slurm_job_state: _Optional[str] = ..., slurm_pool: _Optional[str] = ..., walltime_end: _Optional[float] = ...) -> None: ...

class WorkerId(_message.Message):
    __slots__ = ("worker_id", "draining", "stats")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    worker_id: int
    draining: bool
    stats: WorkerStats
    def __init__(self, worker_id: _Optional[int] = ..., draining: _Optional[bool] = ..., stats: _Optional[_Union[WorkerStats, _Mapping]] = ...) -> None: ...

class WorkerIds(_message.Message):
    __slots__ = ("worker_ids",)
    WORKER_IDS_FIELD_NUMBER: _ClassVar[int]
    worker_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, worker_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class WorkerInfo(_message.Message):
    __slots__ = ("name", "concurrency", "prefetch", "worker_id", "hostname", "pid", "container_capable", "container_note", "walltime_end")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    PREFETCH_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_CAPABLE_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_NOTE_FIELD_NUMBER: _ClassVar[int]
    WALLTIME_END_FIELD_NUMBER: _ClassVar[int]
    name: str
    concurrency: int
    prefetch: int
    worker_id: int
    hostname: str
    pid: int
    container_capable: bool
    container_note: str
    walltime_end: float
    def __init__(self, name: _Optional[str] = ..., concurrency: _Optional[int] = ..., prefetch: _Optional[int] = ..., worker_id: _Optional[int] = ..., hostname: _Optional[str] = ..., pid: _Optional[int] = ..., container_capable: _Optional[bool] = ..., container_note: _Optional[str] = ..., walltime_end: _Optional[float] = ...) -> None: ...

class WorkerRequest(_message.Message):
    __slots__ = ("provider", "flavor", "number", "concurrency", "prefetch", "step_id", "flavor_id", "region_id", "prefetch_from_profile")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    FLAVOR_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    PREFETCH_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    FLAVOR_ID_FIELD_NUMBER: _ClassVar[int]
    REGION_ID_FIELD_NUMBER: _ClassVar[int]
    PREFETCH_FROM_PROFILE_FIELD_NUMBER: _ClassVar[int]
    provider: str
    flavor: str
    number: int
    concurrency: int
    prefetch: int
    step_id: int
    flavor_id: int
    region_id: int
    prefetch_from_profile: bool
    def __init__(self, provider: _Optional[str] = ..., flavor: _Optional[str] = ..., number: _Optional[int] = ..., concurrency: _Optional[int] = ..., prefetch: _Optional[int] = ..., step_id: _Optional[int] = ..., flavor_id: _Optional[int] = ..., region_id: _Optional[int] = ..., prefetch_from_profile: _Optional[bool] = ...) -> None: ...

class WorkersList(_message.Message):
    __slots__ = ("workers",)
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    workers: _containers.RepeatedCompositeFieldContainer[Worker]
    def __init__(self, workers: _Optional[_Iterable[_Union[Worker, _Mapping]]] = ...) -> None: ...

class TaskRelease(_message.Message):
    __slots__ = ("worker_id", "task_ids", "reason")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    worker_id: int
    task_ids: _containers.RepeatedScalarFieldContainer[int]
    reason: str
    def __init__(self, worker_id: _Optional[int] = ..., task_ids: _Optional[_Iterable[int]] = ..., reason: _Optional[str] = ...) -> None: ...

class WorkerUpdate(_message.Message):
    __slots__ = ("worker_id", "concurrency", "prefetch")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    PREFETCH_FIELD_NUMBER: _ClassVar[int]
    worker_id: int
    concurrency: int
    prefetch: int
    def __init__(self, worker_id: _Optional[int] = ..., concurrency: _Optional[int] = ..., prefetch: _Optional[int] = ...) -> None: ...

class TaskBatch(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[TaskRequest]
    def __init__(self, tasks: _Optional[_Iterable[_Union[TaskRequest, _Mapping]]] = ...) -> None: ...

class TaskIds(_message.Message):
    __slots__ = ("task_ids",)
    TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    task_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, task_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class TaskStatuses(_message.Message):
    __slots__ = ("letters", "exit_codes")
    LETTERS_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODES_FIELD_NUMBER: _ClassVar[int]
    letters: str
    exit_codes: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, letters: _Optional[str] = ..., exit_codes: _Optional[_Iterable[int]] = ...) -> None: ...

class TaskSelection(_message.Message):
    __slots__ = ("task_ids", "name", "status_filter")
    TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FILTER_FIELD_NUMBER: _ClassVar[int]
    task_ids: _containers.RepeatedScalarFieldContainer[int]
    name: str
    status_filter: str
    def __init__(self, task_ids: _Optional[_Iterable[int]] = ..., name: _Optional[str] = ..., status_filter: _Optional[str] = ...) -> None: ...

class ResourceUsage(_message.Message):
    __slots__ = ("attempt", "worker_id", "worker_name", "hostname", "slurm_job_id", "started_at", "ended_at", "wall_time", "cpu_user", "cpu_system", "peak_rss", "last_rss", "read_bytes", "write_bytes", "exit_code", "samples", "final", "failure", "reason")
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_NAME_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    SLURM_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    WALL_TIME_FIELD_NUMBER: _ClassVar[int]
    CPU_USER_FIELD_NUMBER: _ClassVar[int]
    CPU_SYSTEM_FIELD_NUMBER: _ClassVar[int]
    PEAK_RSS_FIELD_NUMBER: _ClassVar[int]
    LAST_RSS_FIELD_NUMBER: _ClassVar[int]
    READ_BYTES_FIELD_NUMBER: _ClassVar[int]
    WRITE_BYTES_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    worker_id: int
    worker_name: str
    hostname: str
    slurm_job_id: str
    started_at: float
    ended_at: float
    wall_time: float
    cpu_user: float
    cpu_system: float
    peak_rss: int
    last_rss: int
    read_bytes: int
    write_bytes: int
    exit_code: int
    samples: int
    final: bool
    failure: str
    reason: str
    def __init__(self, attempt: _Optional[int] = ..., worker_id: _Optional[int] = ..., worker_name: _Optional[str] = ..., hostname: _Optional[str] = ..., slurm_job_id: _Optional[str] = ..., started_at: _Optional[float] = ..., ended_at: _Optional[float] = ..., wall_time: _Optional[float] = ..., cpu_user: _Optional[float] = ..., cpu_system: _Optional[float] = ..., peak_rss: _Optional[int] = ..., last_rss: _Optional[int] = ..., read_bytes: _Optional[int] = ..., write_bytes: _Optional[int] = ..., exit_code: _Optional[int] = ..., samples: _Optional[int] = ..., final: _Optional[bool] = ..., failure: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class WorkerStats(_message.Message):
    __slots__ = ("cpu_percent", "load1", "load5", "load15", "memory_used", "memory_available", "disk_free", "running_tasks", "sampled_at")
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    LOAD1_FIELD_NUMBER: _ClassVar[int]
    LOAD5_FIELD_NUMBER: _ClassVar[int]
    LOAD15_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_FIELD_NUMBER: _ClassVar[int]
    MEMORY_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    DISK_FREE_FIELD_NUMBER: _ClassVar[int]
    RUNNING_TASKS_FIELD_NUMBER: _ClassVar[int]
    SAMPLED_AT_FIELD_NUMBER: _ClassVar[int]
    cpu_percent: float
    load1: float
    load5: float
    load15: float
    memory_used: int
    memory_available: int
    disk_free: int
    running_tasks: int
    sampled_at: float
    def __init__(self, cpu_percent: _Optional[float] = ..., load1: _Optional[float] = ..., load5: _Optional[float] = ..., load15: _Optional[float] = ..., memory_used: _Optional[int] = ..., memory_available: _Optional[int] = ..., disk_free: _Optional[int] = ..., running_tasks: _Optional[int] = ..., sampled_at: _Optional[float] = ...) -> None: ...

class SlurmPoolListRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SlurmPool(_message.Message):
    __slots__ = ("name", "autoalloc", "backlog", "max_workers", "idle_timeout", "partition", "time_limit", "queued", "live", "paused", "pause_reason", "failures", "submitted")
    NAME_FIELD_NUMBER: _ClassVar[int]
    AUTOALLOC_FIELD_NUMBER: _ClassVar[int]
    BACKLOG_FIELD_NUMBER: _ClassVar[int]
    MAX_WORKERS_FIELD_NUMBER: _ClassVar[int]
    IDLE_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    TIME_LIMIT_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    LIVE_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    PAUSE_REASON_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_FIELD_NUMBER: _ClassVar[int]
    name: str
    autoalloc: bool
    backlog: int
    max_workers: int
    idle_timeout: float
    partition: str
    time_limit: str
    queued: int
    live: int
    paused: bool
    pause_reason: str
    failures: int
    submitted: int
    def __init__(self, name: _Optional[str] = ..., autoalloc: _Optional[bool] = ..., backlog: _Optional[int] = ..., max_workers: _Optional[int] = ..., idle_timeout: _Optional[float] = ..., partition: _Optional[str] = ..., time_limit: _Optional[str] = ..., queued: _Optional[int] = ..., live: _Optional[int] = ..., paused: _Optional[bool] = ..., pause_reason: _Optional[str] = ..., failures: _Optional[int] = ..., submitted: _Optional[int] = ...) -> None: ...

class SlurmPoolList(_message.Message):
    __slots__ = ("pools",)
    POOLS_FIELD_NUMBER: _ClassVar[int]
    pools: _containers.RepeatedCompositeFieldContainer[SlurmPool]
    def __init__(self, pools: _Optional[_Iterable[_Union[SlurmPool, _Mapping]]] = ...) -> None: ...

class SlurmPoolName(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class WorkerMessage(_message.Message):
    __slots__ = ("hello", "goodbye", "report")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    GOODBYE_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    hello: WorkerHello
    goodbye: WorkerGoodbye
    report: WorkerReport
    def __init__(self, hello: _Optional[_Union[WorkerHello, _Mapping]] = ..., goodbye: _Optional[_Union[WorkerGoodbye, _Mapping]] = ..., report: _Optional[_Union[WorkerReport, _Mapping]] = ...) -> None: ...

class WorkerReport(_message.Message):
    __slots__ = ("sequence", "updates", "logs", "stats", "released_task_ids", "release_reason")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    LOGS_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    RELEASED_TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    RELEASE_REASON_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    updates: _containers.RepeatedCompositeFieldContainer[TaskStatusUpdate]
    logs: _containers.RepeatedCompositeFieldContainer[TaskLog]
    stats: WorkerStats
    released_task_ids: _containers.RepeatedScalarFieldContainer[int]
    release_reason: str
    def __init__(self, sequence: _Optional[int] = ..., updates: _Optional[_Iterable[_Union[TaskStatusUpdate, _Mapping]]] = ..., logs: _Optional[_Iterable[_Union[TaskLog, _Mapping]]] = ..., stats: _Optional[_Union[WorkerStats, _Mapping]] = ..., released_task_ids: _Optional[_Iterable[int]] = ..., release_reason: _Optional[str] = ...) -> None: ...

class WorkerHello(_message.Message):
    __slots__ = ("worker_id",)
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    worker_id: int
    def __init__(self, worker_id: _Optional[int] = ...) -> None: ...

class WorkerGoodbye(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class ServerMessage(_message.Message):
    __slots__ = ("welcome", "push", "ack")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    PUSH_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    welcome: SessionWelcome
    push: TaskPush
    ack: ReportAck
    def __init__(self, welcome: _Optional[_Union[SessionWelcome, _Mapping]] = ..., push: _Optional[_Union[TaskPush, _Mapping]] = ..., ack: _Optional[_Union[ReportAck, _Mapping]] = ...) -> None: ...

class TaskPush(_message.Message):
    __slots__ = ("tasks", "cancel_task_ids", "concurrency", "prefetch")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    CANCEL_TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    PREFETCH_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[Task]
    cancel_task_ids: _containers.RepeatedScalarFieldContainer[int]
    concurrency: int
    prefetch: int
    def __init__(self, tasks: _Optional[_Iterable[_Union[Task, _Mapping]]] = ..., cancel_task_ids: _Optional[_Iterable[int]] = ..., concurrency: _Optional[int] = ..., prefetch: _Optional[int] = ...) -> None: ...

class ReportAck(_message.Message):
    __slots__ = ("sequence", "refused_task_ids", "refused_reasons", "push")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    REFUSED_TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    REFUSED_REASONS_FIELD_NUMBER: _ClassVar[int]
    PUSH_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    refused_task_ids: _containers.RepeatedScalarFieldContainer[int]
    refused_reasons: _containers.RepeatedScalarFieldContainer[str]
    push: TaskPush
    def __init__(self, sequence: _Optional[int] = ..., refused_task_ids: _Optional[_Iterable[int]] = ..., refused_reasons: _Optional[_Iterable[str]] = ..., push: _Optional[_Union[TaskPush, _Mapping]] = ...) -> None: ...

class SessionWelcome(_message.Message):
    __slots__ = ("worker_id", "heartbeat_seconds")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    worker_id: int
    heartbeat_seconds: float
    def __init__(self, worker_id: _Optional[int] = ..., heartbeat_seconds: _Optional[float] = ...) -> None: ...

class PruneRequest(_message.Message):
    __slots__ = ("older_than_seconds", "name", "status")
    OLDER_THAN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    older_than_seconds: float
    name: str
    status: str
    def __init__(self, older_than_seconds: _Optional[float] = ..., name: _Optional[str] = ..., status: _Optional[str] = ...) -> None: ...

class OverviewRequest(_message.Message):
    __slots__ = ("name", "failures")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    name: str
    failures: int
    def __init__(self, name: _Optional[str] = ..., failures: _Optional[int] = ...) -> None: ...

class OverviewFailure(_message.Message):
    __slots__ = ("task", "stderr_tail")
    TASK_FIELD_NUMBER: _ClassVar[int]
    STDERR_TAIL_FIELD_NUMBER: _ClassVar[int]
    task: Task
    stderr_tail: str
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ..., stderr_tail: _Optional[str] = ...) -> None: ...

class Overview(_message.Message):
    __slots__ = ("counts", "ended_last_10s", "ended_last_60s", "failures", "workers", "server_time")
    class CountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    ENDED_LAST_10S_FIELD_NUMBER: _ClassVar[int]
    ENDED_LAST_60S_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    SERVER_TIME_FIELD_NUMBER: _ClassVar[int]
    counts: _containers.ScalarMap[str, int]
    ended_last_10s: int
    ended_last_60s: int
    failures: _containers.RepeatedCompositeFieldContainer[OverviewFailure]
    workers: _containers.RepeatedCompositeFieldContainer[Worker]
    server_time: float
    def __init__(self, counts: _Optional[_Mapping[str, int]] = ..., ended_last_10s: _Optional[int] = ..., ended_last_60s: _Optional[int] = ..., failures: _Optional[_Iterable[_Union[OverviewFailure, _Mapping]]] = ..., workers: _Optional[_Iterable[_Union[Worker, _Mapping]]] = ..., server_time: _Optional[float] = ...) -> None: ...

class TaskStatsPage(_message.Message):
    __slots__ = ("statuses", "failures", "slots", "memory_limits", "ended_at", "wall_times", "cpu_times", "peak_rss", "final", "usage_failures", "last_task_id", "last")
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_LIMITS_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    WALL_TIMES_FIELD_NUMBER: _ClassVar[int]
    CPU_TIMES_FIELD_NUMBER: _ClassVar[int]
    PEAK_RSS_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    USAGE_FAILURES_FIELD_NUMBER: _ClassVar[int]
    LAST_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    statuses: str
    failures: _containers.RepeatedScalarFieldContainer[str]
    slots: _containers.RepeatedScalarFieldContainer[int]
    memory_limits: _containers.RepeatedScalarFieldContainer[int]
    ended_at: _containers.RepeatedScalarFieldContainer[float]
    wall_times: _containers.RepeatedScalarFieldContainer[float]
    cpu_times: _containers.RepeatedScalarFieldContainer[float]
    peak_rss: _containers.RepeatedScalarFieldContainer[int]
    final: _containers.RepeatedScalarFieldContainer[bool]
    usage_failures: _containers.RepeatedScalarFieldContainer[str]
    last_task_id: int
    last: bool
    def __init__(self, statuses: _Optional[str] = ..., failures: _Optional[_Iterable[str]] = ..., slots: _Optional[_Iterable[int]] = ..., memory_limits: _Optional[_Iterable[int]] = ..., ended_at: _Optional[_Iterable[float]] = ..., wall_times: _Optional[_Iterable[float]] = ..., cpu_times: _Optional[_Iterable[float]] = ..., peak_rss: _Optional[_Iterable[int]] = ..., final: _Optional[_Iterable[bool]] = ..., usage_failures: _Optional[_Iterable[str]] = ..., last_task_id: _Optional[int] = ..., last: _Optional[bool] = ...) -> None: ...

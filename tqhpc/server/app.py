"""`tqhpc server`: lock the state directory, open the store, serve gRPC until SIGTERM/SIGINT, then stop cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc import aio

from ..access import (
    ACCESS_FILE,
    Access,
    AccessError,
    new_token,
    prepare_state_dir,
    read_address_and_token,
    write_access,
)
from ..config import ServerSettings, config_path
from ..records import WorkerState
from ..slurm.profiles import load_profiles
from ..store import Database
from .auth import TokenInterceptor
from .autoalloc import Autoallocator
from .local_provider import LocalProvider
from .logs import LogStore
from .monitoring import OPEN_SERVICES, Monitoring
from .registration import add_service
from .service import TaskQueueService
from .slurm_provider import SlurmProvider
from .statelock import StateDirLock
from .tls import TlsSetupError, fingerprint, load_or_make_identity

log = logging.getLogger("tqhpc.server")

DATABASE_FILE = "tqhpc.db"
PRUNE_EVERY_SECONDS = 60.0
"""How often `prune_after` is applied at most (with the look for lost workers; more often when it is shorter)."""
SERVER_LOG = "server.log"
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
SHUTDOWN_GRACE_SECONDS = 5.0
_WILDCARD_HOSTS = {"", "0.0.0.0", "[::]", "::"}


class ServerStartError(RuntimeError):
    """The server cannot start; the message says why (address in use, state directory held by another server)."""


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Listen:
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit() or int(port) > 65535:
            raise ServerStartError(f"--listen takes HOST:PORT (PORT 0 for any free port), not {text!r}")
        return cls(host, int(port))


class ServerLogHandler(logging.FileHandler):
    """server.log, and stderr for each record the file cannot take (a full disk): nothing said is lost, and no
    `--- Logging error ---` traceback is printed per record. Where the log went is said once each way."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.failing = False
        self._failed_now = False

    def emit(self, record: logging.LogRecord) -> None:
        self._failed_now = False
        super().emit(record)  # calls handleError on a failure
        if self.failing and not self._failed_now:
            self.failing = False
            _to_stderr(f"tqhpc server: writing {self.baseFilename} again")

    def handleError(self, record: logging.LogRecord) -> None:
        self._failed_now = True
        if not self.failing:
            self.failing = True
            _to_stderr(
                f"tqhpc server: cannot write {self.baseFilename} ({sys.exc_info()[1]}); logging here until it can"
            )
        try:
            _to_stderr(self.format(record))
        except Exception:  # a record that cannot even be formatted: say so in one line, not a traceback
            _to_stderr(f"tqhpc server: a log record could not be formatted: {record.msg!r}")


def _to_stderr(line: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


def _setup_logging(state_dir: Path) -> None:
    handler = ServerLogHandler(state_dir / SERVER_LOG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("tqhpc")
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def _previous_token_and_port(state_dir: Path) -> tuple[str | None, int | None]:
    with contextlib.suppress(AccessError, ValueError):
        address, token = read_address_and_token(state_dir / ACCESS_FILE)
        return token, int(address.rpartition(":")[2])
    return None, None


def _can_bind(host: str, port: int) -> bool:
    """Whether gRPC could listen on host:port, asked first so that a port in use is one clear error.

    The probe allows address reuse as gRPC's own listener does: connections a crashed server left in TIME_WAIT on
    the port must not keep its restart off its fixed address, while a live listener there still refuses the bind.
    """
    try:
        infos = socket.getaddrinfo(host.strip("[]") or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return False
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError:
            return False
    return True


class Server:
    """The running server; `start` then `wait`, or `serve()` for the whole life cycle."""

    def __init__(
        self,
        state_dir: Path,
        listen: str | None,
        settings: ServerSettings,
        config: Path | None = None,
        *,
        insecure: bool = False,
    ) -> None:
        self.state_dir = prepare_state_dir(state_dir)
        self.listen = listen
        self.insecure = insecure
        self.certificate: str | None = None
        """The certificate clients pin (PEM); None when serving plaintext."""
        self.settings = settings
        self.config = config or config_path(self.state_dir)
        self.lock = StateDirLock(self.state_dir)
        self.address = ""
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        self.lock.acquire()
        try:
            await self._start_locked()
        except BaseException:
            self.lock.release()
            raise

    async def _start_locked(self) -> None:
        _setup_logging(self.state_dir)
        token, previous_port = _previous_token_and_port(self.state_dir)
        credentials = None if self.insecure else self._credentials()
        self.db = Database(self.state_dir / DATABASE_FILE)
        self.logs = LogStore(self.state_dir / "logs", cap=self.settings.max_task_output)
        self.local = LocalProvider(
            self.state_dir,
            self.state_dir / ACCESS_FILE,
            self.settings.local_worker_ping_interval,
            self._local_worker_exited,
        )
        # Slurm workers and pools, from the [pools.NAME] tables of the same config.toml as the settings and the
        # cluster's default partition.
        profiles = load_profiles(self.config)
        self.slurm = SlurmProvider(
            self.db, profiles, self.state_dir, self.state_dir / ACCESS_FILE, self._slurm_job_ended
        )
        self.service = TaskQueueService(
            self.db,
            self.logs,
            {self.local.name: self.local, self.slurm.name: self.slurm},
            crash_limit=self.settings.crash_limit,
            worker_timeout=self.settings.worker_timeout,
        )
        self.autoalloc = Autoallocator(self.db, self.slurm, self.service.create_workers)
        self.service.pools = self.autoalloc
        self.token = token or new_token()
        self.grpc = aio.server(
            interceptors=[TokenInterceptor(self.token, OPEN_SERVICES)],
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),
                # Workers' keepalive pings (one a minute) must never count as abuse: the answer to abuse closes
                # the connection, and a closed session stream means a dead worker.
                ("grpc.http2.min_ping_interval_without_data_ms", 30_000),
            ],
        )
        add_service(self.service, self.grpc)
        self.monitoring = Monitoring(self.db.health)
        self.monitoring.add_to(self.grpc)
        host, port = self._bind(previous_port, credentials)
        self.address = f"{host}:{port}"
        write_access(self.state_dir, Access(address=self.address, token=self.token, certificate=self.certificate))
        self.lock.record(self.address)
        await self.grpc.start()
        await self.monitoring.start()
        self._reaper = asyncio.create_task(self._reap_lost_workers())
        self._slurm_watch = asyncio.create_task(self._watch_slurm())
        log.info("serving on %s (%s), state in %s", self.address, self.transport, self.state_dir)

    @property
    def transport(self) -> str:
        """How clients talk to us, in words for the startup line and the log."""
        if self.certificate is None:
            return "PLAINTEXT (--insecure): calls and their token cross the network unencrypted"
        return f"TLS, certificate pinned in access.toml, SHA-256 {fingerprint(self.certificate.encode())}"

    def _credentials(self) -> grpc.ServerCredentials:
        try:
            identity = load_or_make_identity(self.state_dir)
        except TlsSetupError as err:
            raise ServerStartError(str(err)) from None
        except OSError as err:  # making a new pair on a full or read-only disk
            raise ServerStartError(
                f"cannot write the server's TLS key in {self.state_dir}: {err.strerror or err}"
            ) from None
        self.certificate = identity.certificate_pem.decode()
        return grpc.ssl_server_credentials([(identity.key_pem, identity.certificate_pem)])

    def _bind(self, previous_port: int | None, credentials: grpc.ServerCredentials | None) -> tuple[str, int]:
        listen = Listen.parse(self.listen) if self.listen else Listen("0.0.0.0", 0)
        candidates = [listen.port]
        if listen.port == 0 and previous_port:
            candidates.insert(0, previous_port)  # "any free port": the last one, so running workers find us again
        for port in candidates:
            if port and not _can_bind(listen.host, port):
                continue  # asked first: gRPC core would print a log line of its own for a port it cannot bind
            try:
                address = f"{listen.host}:{port}"
                if credentials is None:
                    bound = self.grpc.add_insecure_port(address)
                else:
                    bound = self.grpc.add_secure_port(address, credentials)
            except RuntimeError:
                continue
            if bound:
                host = socket.gethostname() if listen.host in _WILDCARD_HOSTS else listen.host
                return host, bound
        raise ServerStartError(f"cannot listen on {listen.host}:{listen.port}: the address is in use or not local")

    async def _reap_lost_workers(self) -> None:
        pruned_at = time.monotonic()
        while True:
            await asyncio.sleep(self.settings.reap_interval)
            try:
                await self.service.mark_lost_workers(self.settings.worker_timeout)
            except (sqlite3.Error, OSError) as err:
                self.db.health.failed("looking for lost workers", err)
            except Exception:
                log.exception("looking for lost workers failed")
            every = min(PRUNE_EVERY_SECONDS, self.settings.prune_after)
            if self.settings.prune_after and time.monotonic() - pruned_at >= every:
                pruned_at = time.monotonic()
                try:
                    await self.service.prune(time.time() - self.settings.prune_after)
                except (sqlite3.Error, OSError) as err:
                    self.db.health.failed("pruning ended tasks", err)
                except Exception:
                    log.exception("pruning ended tasks failed")

    async def _watch_slurm(self) -> None:
        """The reconciliation loop: squeue against live Slurm workers, then automatic allocation."""
        while True:
            await asyncio.sleep(self.settings.slurm_poll_interval)
            try:
                await self.slurm.reconcile()
            except (sqlite3.Error, OSError) as err:
                self.db.health.failed("looking at the Slurm jobs of workers", err)
            except Exception:
                log.exception("looking at the Slurm jobs of workers failed")
            try:
                await self.autoalloc.tick()
            except (sqlite3.Error, OSError) as err:
                self.db.health.failed("automatic allocation", err)
            except Exception:
                log.exception("automatic allocation failed")

    async def _slurm_job_ended(self, worker_id: int, reason: str) -> None:
        with contextlib.suppress(RuntimeError):  # the database is already closed at shutdown
            await self.service.retire_if_live(worker_id, WorkerState.LOST, reason)

    async def _local_worker_exited(self, worker_id: int, code: int) -> None:
        reason = f"local worker {worker_id} exited with code {code}; see workers/worker-{worker_id}.log"
        with contextlib.suppress(RuntimeError):  # the database is already closed at shutdown
            await self.service.retire_if_live(worker_id, WorkerState.LOST, reason)

    def request_stop(self) -> None:
        self._stopping.set()

    async def wait(self) -> None:
        await self._stopping.wait()
        await self.stop()

    async def stop(self) -> None:
        """Local workers drain first while we still answer them, then RPCs finish, then the store commits."""
        log.info("stopping")
        await self.monitoring.stop()
        await self.local.close(SHUTDOWN_GRACE_SECONDS)  # they say goodbye on their sessions as they leave
        self.service.sessions.close_all()  # the streams we end now say nothing about the workers
        await self.grpc.stop(SHUTDOWN_GRACE_SECONDS)
        await self.service.sessions.settle()
        self._reaper.cancel()
        self._slurm_watch.cancel()
        await asyncio.gather(self._reaper, self._slurm_watch, return_exceptions=True)
        self.db.close()
        self.lock.release()
        log.info("stopped")


async def serve(
    state_dir: Path,
    listen: str | None,
    settings: ServerSettings,
    *,
    config: Path | None = None,
    announce: bool = True,
    insecure: bool = False,
) -> None:
    server = Server(state_dir, listen, settings, config, insecure=insecure)
    await server.start()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, server.request_stop)
    if announce:
        print(f"tqhpc server listening on {server.address}: {server.transport}", flush=True)
        print(f"state directory: {server.state_dir} (access file: {server.state_dir / ACCESS_FILE})", flush=True)
    await server.wait()

"""The standard gRPC health service and server reflection, for a site's monitoring and for grpcurl.

Both answer without the token (see auth.OPEN_SERVICES): health says only SERVING or NOT_SERVING, and reflection only
the service's schema, which is the published `proto/taskqueue.proto`; every call of TaskQueue itself still needs the
token. Health follows the storage: NOT_SERVING while the store refuses writes (a full disk, a database held locked;
see store/health.py), SERVING again once it works, and NOT_SERVING from the moment the server begins to stop.
"""

from __future__ import annotations

import asyncio
import contextlib

from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ..store.health import StorageHealth
from .registration import SERVICE

OPEN_SERVICES = frozenset({health.SERVICE_NAME, reflection.SERVICE_NAME})
"""Services any caller may use, token or not."""
WATCH_SECONDS = 1.0
"""How often the storage's state is looked at to update the health status."""

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Monitoring:
    """The health servicer kept in step with the storage, and reflection of every service the server has."""

    def __init__(self, storage: StorageHealth) -> None:
        self.storage = storage
        self.health = health.aio.HealthServicer()
        self._status: int | None = None
        self._watch: asyncio.Task[None] | None = None

    def add_to(self, server: aio.Server) -> None:
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection((SERVICE.full_name, health.SERVICE_NAME, reflection.SERVICE_NAME), server)

    async def start(self) -> None:
        await self._update()
        self._watch = asyncio.create_task(self._follow_storage())

    async def _update(self) -> None:
        status = NOT_SERVING if self.storage.failing else SERVING
        if status != self._status:
            self._status = status
            # "" is the server as a whole, as health probes ask by default; the service by name for those that ask.
            for service in (health.OVERALL_HEALTH, SERVICE.full_name):
                await self.health.set(service, status)

    async def _follow_storage(self) -> None:
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            await self._update()

    async def stop(self) -> None:
        """NOT_SERVING from now on: a server that stops takes no new work, whatever its storage."""
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        await self.health.enter_graceful_shutdown()

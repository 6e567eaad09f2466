"""Builders shared by the worker tests."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from byteleap.crypto import WorkerKey
from byteleap.protocol.inventory import GpuInfo, HostInfo, Inventory
from byteleap.sessions.worker_agent import WorkerAgent
from workers.backends.numpy_backend import NumpyBackend
from workers.backends.select import advertise_devices
from workers.compute import ChallengeExecutor
from workers.jobs.manager import JobManager
from workers.runtime import LinkSettings, WorkerRuntime

MINER_HOTKEY = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"


def host() -> HostInfo:
    return HostInfo(
        hostname="gpu-host-1",
        cpu_model="Test CPU",
        cpu_count_logical=2,
        memory_total_bytes=8 << 30,
        memory_available_bytes=4 << 30,
    )


def inventory(*uuids: str) -> Inventory:
    gpus = [
        GpuInfo(index=i, name="NVIDIA H100 80GB HBM3", uuid=uuid, memory_total_mib=81559)
        for i, uuid in enumerate(uuids)
    ]
    return Inventory(host=host(), gpus=gpus, backends=["numpy"])


@dataclass
class Worker:
    key: WorkerKey
    runtime: WorkerRuntime
    task: asyncio.Task[None]
    device_uuid: str


@contextlib.asynccontextmanager
async def running_worker(
    url: str,
    key: WorkerKey | None = None,
    *,
    join_token: str | None = None,
    jobs: JobManager | None = None,
    backend_type: type[NumpyBackend] = NumpyBackend,
) -> AsyncIterator[Worker]:
    """A real worker runtime on the NumPy backend (or a subclass that misbehaves); with ``jobs``
    it also runs renters' jobs."""
    key = key or WorkerKey.generate()
    backend = backend_type.for_worker(key.public_key, "Test CPU", threads=1)
    advertised = advertise_devices(inventory(), backend)
    runner = jobs.runner if jobs is not None else None
    agent = WorkerAgent(
        key,
        advertised,
        agent_version="test",
        join_token=join_token,
        job_runner=runner.name if runner is not None else None,
    )
    runtime = WorkerRuntime(
        agent,
        ChallengeExecutor(backend, key, clock=time.perf_counter),
        LinkSettings(
            url=url,
            max_message_bytes=1 << 24,
            connect_timeout_s=5,
            reconnect_min_s=0.05,
            reconnect_max_s=0.2,
        ),
        rng=random.Random(0),
        jobs=jobs,
    )
    task = asyncio.create_task(runtime.run())
    try:
        yield Worker(key, runtime, task, backend.devices()[0].uuid)
    finally:
        runtime.request_exit()
        await asyncio.wait_for(task, 30)

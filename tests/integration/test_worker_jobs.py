"""A real worker runtime running renters' jobs (subprocess runner, real processes), driven over a
real websocket by a test server that plays the miner."""

from __future__ import annotations

import asyncio
import hashlib
import json
import struct
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from byteleap.protocol import codec
from byteleap.protocol.common import Message
from byteleap.protocol.worker_link.jobs import (
    ArtifactChunk,
    ArtifactQuery,
    JobAccepted,
    JobLogs,
    JobLogsQuery,
    JobRefused,
    JobResult,
    JobResultQuery,
    JobSpec,
    JobStatus,
    JobStatusQuery,
    JobSubmit,
)
from byteleap.protocol.worker_link.leases import LeaseAck, LeaseStart, LeaseStop
from byteleap.protocol.worker_link.session import ErrorReply, Heartbeat
from tests.support.fake_miner import FakeMiner, recv
from tests.support.worker import running_worker
from workers.jobs.manager import JobManager
from workers.jobs.subprocess_runner import SubprocessRunner

PY = sys.executable


@pytest.fixture
async def miner() -> AsyncIterator[FakeMiner]:
    fake = FakeMiner()
    async with serve(fake.handler, "127.0.0.1", 0) as server:
        fake.server = server
        yield fake


def jobs_in(tmp_path: Path) -> JobManager:
    return JobManager(
        SubprocessRunner(stop_timeout_s=1.0),
        tmp_path / "jobs",
        max_output_bytes=1 << 16,
        max_artifact_bytes=1 << 20,
    )


def py(code: str, timeout_s: int = 120) -> JobSpec:
    return JobSpec(image="local", command=[PY, "-c", code], timeout_s=timeout_s)


class Requests:
    """Numbered job requests over one connection."""

    def __init__(self, ws: ServerConnection, lease: str) -> None:
        self.ws = ws
        self.lease = lease
        self.n = 0

    async def ask(self, kind: type[Any], job_id: str, reply: type[Any], **kw: Any) -> Any:
        self.n += 1
        request = kind(request_id=f"r{self.n}", lease_id=self.lease, job_id=job_id, **kw)
        await self.ws.send(codec.encode(request))
        while True:
            answer = await recv(self.ws, Message)
            if isinstance(answer, Heartbeat):
                continue
            assert isinstance(answer, reply), answer
            assert answer.request_id == request.request_id
            return answer

    async def until_final(self, job_id: str) -> JobStatus:
        for _ in range(600):
            status: JobStatus = await self.ask(JobStatusQuery, job_id, JobStatus)
            if status.job.final:
                return status
            await asyncio.sleep(0.05)
        raise AssertionError(f"job {job_id} did not finish")


async def lease(ws: ServerConnection, lease_id: str, gpu: str) -> None:
    await ws.send(codec.encode(LeaseStart(lease_id=lease_id, gpu_uuids=[gpu], ends_at=2**31)))
    assert (await recv(ws, LeaseAck)).accepted


async def test_a_leased_worker_runs_a_job_and_serves_its_logs_and_artifacts(
    miner: FakeMiner, tmp_path: Path
) -> None:
    async with running_worker(miner.url, jobs=jobs_in(tmp_path)) as worker:
        ws, _ = await miner.accept()
        requests = Requests(ws, "L1")
        # before the lease: refused, typed
        refused = await requests.ask(JobSubmit, "early", JobRefused, spec=py("pass"))
        assert refused.reason == "not_leased"
        await lease(ws, "L1", worker.device_uuid)
        code = (
            "import os; print(os.environ['CUDA_VISIBLE_DEVICES']); "
            "open('output/answer.txt', 'w').write('42')"
        )
        accepted = await requests.ask(JobSubmit, "j1", JobAccepted, spec=py(code))
        assert accepted.job.state in ("queued", "running")
        status = await requests.until_final("j1")
        assert (status.job.state, status.job.exit_code) == ("succeeded", 0)
        logs = await requests.ask(JobLogsQuery, "j1", JobLogs)
        assert logs.logs.stdout == f"{worker.device_uuid}\n".encode()  # the leased GPU only
        result = await requests.ask(JobResultQuery, "j1", JobResult)
        (artifact,) = result.artifacts
        assert artifact.sha256 == hashlib.sha256(b"42").digest()
        chunk = await requests.ask(ArtifactQuery, "j1", ArtifactChunk, name="answer.txt")
        assert (chunk.data, chunk.eof) == (b"42", True)
        # another lease id is not this worker's
        other = Requests(ws, "L2")
        refused = await other.ask(JobSubmit, "j2", JobRefused, spec=py("pass"))
        assert refused.reason == "not_leased"


async def test_a_job_keeps_running_across_a_reconnect(miner: FakeMiner, tmp_path: Path) -> None:
    marker = tmp_path / "go"
    code = (
        "import os, time\n"
        "print('started', flush=True)\n"
        f"while not os.path.exists({str(marker)!r}): time.sleep(0.02)\n"
        "print('done', flush=True)\n"
    )
    async with running_worker(miner.url, jobs=jobs_in(tmp_path)) as worker:
        ws, _ = await miner.accept()
        await lease(ws, "L1", worker.device_uuid)
        await Requests(ws, "L1").ask(JobSubmit, "long", JobAccepted, spec=py(code))
        await ws.close()
        ws2, _ = await miner.accept()  # the worker reconnects by itself
        requests = Requests(ws2, "L1")
        status = await requests.ask(JobStatusQuery, "long", JobStatus)
        assert status.job.state == "running"
        marker.touch()
        final = await requests.until_final("long")
        assert final.job.state == "succeeded"
        logs = await requests.ask(JobLogsQuery, "long", JobLogs)
        assert logs.logs.stdout == b"started\ndone\n" and logs.logs.finished


async def test_a_lease_stop_cancels_its_jobs_and_results_stay_readable(
    miner: FakeMiner, tmp_path: Path
) -> None:
    async with running_worker(miner.url, jobs=jobs_in(tmp_path)) as worker:
        ws, _ = await miner.accept()
        await lease(ws, "L1", worker.device_uuid)
        requests = Requests(ws, "L1")
        await requests.ask(
            JobSubmit, "forever", JobAccepted, spec=py("import time; time.sleep(600)")
        )
        for _ in range(200):
            if (await requests.ask(JobStatusQuery, "forever", JobStatus)).job.state == "running":
                break
            await asyncio.sleep(0.02)
        await ws.send(codec.encode(LeaseStop(lease_id="L1", reason="renter done")))
        assert (await recv(ws, LeaseAck)).accepted
        final = await requests.until_final("forever")
        assert final.job.state == "cancelled"
        # the lease is over: no new jobs, but its results can still be read
        refused = await requests.ask(JobSubmit, "late", JobRefused, spec=py("pass"))
        assert refused.reason == "not_leased"
        assert (await requests.ask(JobResultQuery, "forever", JobResult)).job.state == "cancelled"


async def test_a_worker_without_a_runner_refuses_jobs_and_bad_job_frames_get_typed_errors(
    miner: FakeMiner,
) -> None:
    async with running_worker(miner.url) as worker:
        ws, _ = await miner.accept()
        await lease(ws, "L1", worker.device_uuid)
        requests = Requests(ws, "L1")
        refused = await requests.ask(JobSubmit, "j", JobRefused, spec=py("pass"))
        assert refused.reason == "runner_disabled"
        # a job that reserves the GPU variables never decodes: a typed error, the link lives
        frame = codec.encode(JobSubmit(request_id="rx", lease_id="L1", job_id="j", spec=py("x")))
        (length,) = struct.unpack_from("<I", frame, 4)
        header = json.loads(frame[8 : 8 + length])
        header["spec"]["env"] = {"CUDA_VISIBLE_DEVICES": "0"}
        body = json.dumps(header).encode()
        await ws.send(frame[:4] + struct.pack("<I", len(body)) + body + frame[8 + length :])
        error = await recv(ws, ErrorReply)
        assert error.code == "malformed"
        status = await requests.ask(JobStatusQuery, "j", JobRefused)
        assert status.reason == "unknown_job"

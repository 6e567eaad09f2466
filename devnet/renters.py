"""The devnet's simulated renters: real API keys, real leases, real jobs, through the real API.

Each renter gets its key from the validator's own ``byteleap-validator renters add`` (the key is
kept in memory only and never logged), then walks the path a person with ``curl`` would
(docs/renting-gpus.md): list capacity, lease one GPU (the validator picks the worker), run a small
``python -c`` job on it, wait for the job to end, read its stdout and artifacts, and terminate
the lease, which makes the lease's end receipt. The lease is held for at least
:data:`MIN_LEASE_S`: receipts bill whole seconds, so a lease ended within the second it began
would earn nothing, and a few seconds also take in one interval receipt of the devnet's pace.

Nothing here decides anything: a refusal the devnet cannot wait out (no capacity, a failed job,
an API error) ends the renter phase with a :class:`RenterFailed` that names the renter, the step
and the API's own error code and message.

:func:`job_spec` and :class:`RenterOutcome` are pure, so the job a renter sends and what the
report says about it are tested without a network.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from byteleap.errors import ByteLeapError
from devnet.processes import child_environment
from devnet.specs import RenterSpec

#: how long a lease is booked for: the renter terminates it long before
LEASE_HOURS = 0.05
#: the least device memory a renter asks for. An honest devnet device reports the host's memory;
#: a sybil's claims report a small shared device (``cheats.SYBIL_DEVICE_MIB``), and so does a
#: phantom_busy miner's honest companion, so a renter never lands on a cheating worker the
#: validator verified (it runs no jobs)
MIN_VRAM_MIB = 1024
#: the job's own timeout on the worker
JOB_TIMEOUT_S = 60
#: the least time a renter holds its lease, from its start (see the module docstring)
MIN_LEASE_S = 6.0
#: the file the job writes below its output directory (the subprocess runner's ``output/``,
#: relative to the job's working directory)
ARTIFACT = "result.txt"
#: seconds between two looks at a job, or two tries at a lease the validator cannot give yet
POLL_S = 0.5
#: the whole renter phase of one renter, from its first request to its terminated lease
RENTER_DEADLINE_S = 60.0
#: ``byteleap-validator renters add`` (a Python start-up and one transaction)
ADD_TIMEOUT_S = 60.0
#: API error codes that can clear up by themselves (a worker busy with a challenge, say)
RETRYABLE = frozenset({"no_capacity", "lease_start_failed", "too_many_requests"})
FINAL_JOB_STATES = frozenset({"succeeded", "failed", "cancelled", "timed_out"})

Note = Callable[[str], None]


class RenterFailed(ByteLeapError):
    """A renter could not finish; the message names the renter, the step and the cause."""

    code = "devnet_renter"


class RenterApiError(ByteLeapError):
    """An error answer of the renter API (``{"error": {"code", "message"}}``)."""

    code = "renter_api"

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.api_code = code


def error_of(status: int, body: bytes) -> RenterApiError:
    """The API's error from a non-2xx answer (whatever the body holds)."""
    try:
        error = json.loads(body)["error"]
        return RenterApiError(status, str(error["code"]), str(error["message"]))
    except (ValueError, KeyError, TypeError):
        text = body.decode("utf-8", "replace").strip()[:200]
        return RenterApiError(status, "http_error", text or "no body")


def job_spec(renter: str, python: str = sys.executable) -> dict[str, Any]:
    """The job a renter submits: a ``python -c`` that prints a line and writes it to
    ``output/result.txt``. The subprocess runner gives the job only its own variables (no
    ``PATH``), so the interpreter is named by its absolute path."""
    script = (
        "import os, pathlib; "
        "text = f\"{os.environ['DEVNET_RENTER']}: sum of squares 1..1000 = "
        '{sum(i * i for i in range(1, 1001))}"; '
        f"pathlib.Path('output', {ARTIFACT!r}).write_text(text + '\\n'); "
        "print(text)"
    )
    return {
        "image": "devnet/subprocess",  # the subprocess runner runs the command, not an image
        "command": [python, "-c", script],
        "env": {"DEVNET_RENTER": renter},
        "timeout_s": JOB_TIMEOUT_S,
    }


def expected_stdout(renter: str) -> str:
    """What the job of :func:`job_spec` prints."""
    return f"{renter}: sum of squares 1..1000 = {sum(i * i for i in range(1, 1001))}\n"


@dataclass(frozen=True)
class RenterOutcome:
    """What one renter did, for the report."""

    renter: str
    lease_id: str
    miner_hotkey: str
    worker_pubkey: str
    gpus: int
    price_per_gpu_hour: float
    job_id: str
    job_state: str
    exit_code: int | None
    stdout: str
    artifacts: tuple[str, ...]
    #: the lease's status and cost once terminated
    lease_status: str
    cost: float

    def to_dict(self, miner_uids: Mapping[str, int]) -> dict[str, Any]:
        return {
            "renter": self.renter,
            "lease_id": self.lease_id,
            "miner_uid": miner_uids.get(self.miner_hotkey),
            "miner_hotkey": self.miner_hotkey,
            "worker": self.worker_pubkey,
            "gpus": self.gpus,
            "price_per_gpu_hour": self.price_per_gpu_hour,
            "job_id": self.job_id,
            "job_state": self.job_state,
            "exit_code": self.exit_code,
            "stdout": self.stdout,
            "artifacts": list(self.artifacts),
            "lease_status": self.lease_status,
            "cost": round(self.cost, 6),
        }


# --------------------------------------------------------------------------- keys


async def create_key(spec: RenterSpec, environ: Mapping[str, str] | None = None) -> str:
    """Run ``byteleap-validator renters add`` for ``spec`` and return the key it prints."""
    env = child_environment(os.environ if environ is None else environ, spec.env)
    process = await asyncio.create_subprocess_exec(
        *spec.add_argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), ADD_TIMEOUT_S)
    except BaseException:  # a timeout, or the devnet stopping: leave no process behind
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    lines = [line.strip() for line in out.decode("utf-8", "replace").splitlines()]
    key = next((line for line in reversed(lines) if line), "")
    if process.returncode != 0 or not key:
        tail = err.decode("utf-8", "replace").strip().splitlines()[-5:]
        raise RenterFailed(
            f"{spec.name}: `byteleap-validator renters add {spec.name}` exited with code "
            f"{process.returncode}" + (f": {' / '.join(tail)}" if tail else "")
        )
    return key


async def create_keys(specs: Sequence[RenterSpec]) -> dict[str, str]:
    """Every renter's key, one command after the other (each is one write to the database)."""
    return {spec.name: await create_key(spec) for spec in specs}


# --------------------------------------------------------------------------- the API


class RenterApi:
    """The renter API as one renter sees it (its key on every request)."""

    def __init__(self, base_url: str, key: str, *, timeout_s: float = 30.0) -> None:
        self.http = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=timeout_s,
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        try:
            response = await self.http.request(method, "/v1" + path, json=body)
        except httpx.HTTPError as exc:
            raise RenterApiError(0, "unreachable", f"{method} /v1{path}: {exc!r}") from None
        if response.is_error:
            raise error_of(response.status_code, response.content)
        return response

    async def json(self, method: str, path: str, body: Any = None) -> Any:
        return (await self.request(method, path, body)).json()


def _capacity_text(capacity: Mapping[str, Any]) -> str:
    lines = capacity.get("gpus") or []
    return ", ".join(
        f"{line['count']} x {line['model']} at {line['price_per_gpu_hour']:g}/GPU-hour"
        for line in lines
    )


class SimulatedRenter:
    """One renter's walk through the API (see the module docstring)."""

    def __init__(
        self,
        name: str,
        api: RenterApi,
        *,
        note: Note,
        miner_names: Mapping[str, str],
        deadline_s: float = RENTER_DEADLINE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.api = api
        self.note = note
        self.miner_names = miner_names
        self.clock = clock
        self.deadline = clock() + deadline_s
        self.deadline_s = deadline_s

    def _fail(self, step: str, cause: str) -> RenterFailed:
        return RenterFailed(f"{self.name}: {step}: {cause}")

    def _late(self) -> bool:
        return self.clock() > self.deadline

    async def capacity(self) -> Mapping[str, Any]:
        while True:
            try:
                capacity: Mapping[str, Any] = await self.api.json("GET", "/capacity")
            except RenterApiError as exc:
                raise self._fail("listing capacity", exc.message) from None
            if capacity.get("gpus"):
                return capacity
            if self._late():
                raise self._fail(
                    "listing capacity",
                    f"no capacity: the validator listed no leasable GPU for "
                    f"{self.deadline_s:.0f} s (a GPU is leasable once its worker is online, idle, "
                    "unleased and verified by a challenge)",
                )
            await asyncio.sleep(POLL_S)

    async def lease(self, max_price: float) -> Mapping[str, Any]:
        body = {
            "count": 1,
            "min_vram_mib": MIN_VRAM_MIB,
            "duration_hours": LEASE_HOURS,
            "max_price_per_gpu_hour": max_price,
        }
        while True:
            try:
                lease: Mapping[str, Any] = await self.api.json("POST", "/leases", body)
                return lease
            except RenterApiError as exc:
                if exc.api_code not in RETRYABLE or self._late():
                    raise self._fail("creating a lease of 1 GPU", exc.message) from None
            await asyncio.sleep(POLL_S)

    async def wait_for_job(self, lease_id: str, job_id: str) -> Mapping[str, Any]:
        while True:
            job: Mapping[str, Any] = await self.api.json("GET", f"/leases/{lease_id}/jobs/{job_id}")
            if job["state"] in FINAL_JOB_STATES:
                return job
            if self._late():
                raise self._fail(
                    f"waiting for job {job_id}",
                    f"still {job['state']} after {self.deadline_s:.0f} s",
                )
            await asyncio.sleep(POLL_S)

    async def run(self) -> RenterOutcome:
        capacity = await self.capacity()
        self.note(f"{self.name}: capacity {_capacity_text(capacity)}")
        max_price = max(line["price_per_gpu_hour"] for line in capacity["gpus"])
        lease = await self.lease(max_price)
        leased_at = self.clock()
        lease_id = lease["id"]
        miner = self.miner_names.get(lease["miner_hotkey"], lease["miner_hotkey"][:8])
        self.note(
            f"{self.name}: lease {lease_id[:14]}… {lease['status']} on {miner} "
            f"(worker {lease['worker_pubkey'][:8]}), {lease['gpus']} GPU at "
            f"{lease['price_per_gpu_hour']:g}/GPU-hour"
        )
        try:
            job = await self.api.json("POST", f"/leases/{lease_id}/jobs", job_spec(self.name))
            job_id = job["id"]
            self.note(f"{self.name}: job {job_id} submitted to lease {lease_id[:14]}…")
            job = await self.wait_for_job(lease_id, job_id)
            logs = await self.api.request("GET", f"/leases/{lease_id}/jobs/{job_id}/logs")
            stdout = logs.content.decode("utf-8", "replace")
            result = await self.api.json("GET", f"/leases/{lease_id}/jobs/{job_id}/result")
            artifacts = tuple(a["name"] for a in result["artifacts"])
            self.note(
                f"{self.name}: job {job_id} {job['state']}, exit code {job['exit_code']}, "
                f"stdout {stdout.strip()[:80]!r}, artifacts {', '.join(artifacts) or 'none'}"
            )
        except RenterApiError as exc:
            await self._terminate_quietly(lease_id)
            raise self._fail(f"running a job on lease {lease_id}", exc.message) from None
        except RenterFailed:
            await self._terminate_quietly(lease_id)
            raise
        held = self.clock() - leased_at
        if held < MIN_LEASE_S:
            await asyncio.sleep(MIN_LEASE_S - held)
        try:
            ended = await self.api.json("DELETE", f"/leases/{lease_id}")
        except RenterApiError as exc:
            raise self._fail(f"terminating lease {lease_id}", exc.message) from None
        self.note(
            f"{self.name}: lease {lease_id[:14]}… {ended['status']} "
            f"({ended['end_reason'] or 'no reason'}), cost {ended['cost']:.6f}"
        )
        return RenterOutcome(
            renter=self.name,
            lease_id=lease_id,
            miner_hotkey=lease["miner_hotkey"],
            worker_pubkey=lease["worker_pubkey"],
            gpus=lease["gpus"],
            price_per_gpu_hour=lease["price_per_gpu_hour"],
            job_id=job_id,
            job_state=job["state"],
            exit_code=job["exit_code"],
            stdout=stdout,
            artifacts=artifacts,
            lease_status=ended["status"],
            cost=float(ended["cost"]),
        )

    async def _terminate_quietly(self, lease_id: str) -> None:
        """End the lease after a failure (the failure is what gets reported)."""
        with contextlib.suppress(RenterApiError):
            await self.api.request("DELETE", f"/leases/{lease_id}")


async def rent_all(
    specs: Sequence[RenterSpec],
    keys: Mapping[str, str],
    api_url: str,
    *,
    note: Note,
    miner_names: Mapping[str, str],
) -> list[RenterOutcome]:
    """Every renter at once (the validator gives each its own worker). The first renter that
    fails stops the others and is what is raised."""

    async def one(spec: RenterSpec) -> RenterOutcome:
        api = RenterApi(api_url, keys[spec.name])
        try:
            return await SimulatedRenter(spec.name, api, note=note, miner_names=miner_names).run()
        finally:
            await api.aclose()

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(spec)) for spec in specs]
    except* RenterFailed as failed:
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]


__all__ = [
    "RenterApiError",
    "RenterFailed",
    "RenterOutcome",
    "create_key",
    "create_keys",
    "expected_stdout",
    "job_spec",
    "rent_all",
]

"""Exact verification of revealed rows in a process pool, so rounds never block the event loop.

Each GPU of a challenge is verified on its own (SPEC 4.4) as one
:class:`~byteleap.sessions.round_records.VerifyJob`: plain,
picklable data in, a :class:`VerifyReport` out. The job runs
:func:`byteleap.challenge.verify.verify_openings` in a child process started with ``forkserver``
(``spawn`` where that is missing): never ``fork``, which would copy the daemon's event loop,
sockets and threads into the child.

A verdict of fraud travels back as a :class:`VerifyReport` with the ``FraudReason`` value rather
than as the exception: ``VerificationFailed`` carries keyword-only fields that pickling would
lose. A crashed or killed pool process is *our* failure, not the worker's:
:meth:`VerifierPool.verify` raises :class:`byteleap.errors.TransientError` (scored as excused) and
the pool is rebuilt for the next job.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from byteleap.challenge.params import Binding
from byteleap.challenge.reference import OpenedRow
from byteleap.challenge.verify import Commitment, verify_openings
from byteleap.errors import FraudReason, TransientError, VerificationFailed
from byteleap.sessions.round_records import VerifyJob, VerifyReport

HASH_BYTES = 32


def _split_proof(stage: int, row: int, proof: bytes) -> tuple[bytes, ...]:
    if len(proof) % HASH_BYTES:
        raise VerificationFailed(
            FraudReason.BAD_PROOF_LENGTH,
            f"proof is {len(proof)} bytes, not a multiple of {HASH_BYTES}",
            stage=stage,
            row=row,
        )
    return tuple(proof[i : i + HASH_BYTES] for i in range(0, len(proof), HASH_BYTES))


def verify_job(job: VerifyJob) -> VerifyReport:
    """Verify one GPU's reveal (runs in a pool process; also callable in-process)."""
    started = time.perf_counter()
    try:
        openings = [
            OpenedRow(stage, row, values, _split_proof(stage, row, proof))
            for stage, row, values, proof in job.openings
        ]
        binding = Binding(
            miner_hotkey=job.miner_hotkey, worker_pubkey=job.worker_pubkey, gpu_uuid=job.gpu_uuid
        )
        commitment = Commitment(binding, job.seed, job.params, job.roots)
        checked = verify_openings(commitment, job.samples, openings, entries=job.entries)
    except VerificationFailed as exc:
        return VerifyReport(0, time.perf_counter() - started, exc.reason, exc.message)
    return VerifyReport(checked, time.perf_counter() - started)


def pool_context() -> multiprocessing.context.BaseContext:
    """``forkserver`` where the platform has it, else ``spawn``; never ``fork``."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


class VerifierPool:
    """A small process pool that runs :class:`VerifyJob`\\ s.

    ``fn`` is the function run in the child (``verify_job``; tests pass others). It must be a
    module-level function, because the child imports it by name.
    """

    def __init__(
        self,
        processes: int,
        *,
        fn: Callable[[VerifyJob], VerifyReport] = verify_job,
        context: multiprocessing.context.BaseContext | None = None,
    ) -> None:
        if processes < 1:
            raise ValueError("processes must be >= 1")
        self.processes = processes
        self.fn = fn
        self.context = context or pool_context()
        self._pool: ProcessPoolExecutor | None = None
        self.crashes = 0

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.processes, mp_context=self.context)
        return self._pool

    async def verify(self, job: VerifyJob) -> VerifyReport:
        """Run ``job`` in the pool; ``TransientError`` when the pool process died."""
        pool = self._executor()
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(pool, self.fn, job)
        except BrokenProcessPool:
            self.crashes += 1
            if self._pool is pool:  # the first job to notice replaces the pool
                self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
            raise TransientError("a verification process died; the challenge is excused") from None
        except Exception as exc:  # our own bug in the verifier: never blamed on the worker
            raise TransientError(f"verification failed on our side: {exc!r}") from exc

    async def verify_all(self, jobs: Sequence[VerifyJob]) -> list[VerifyReport | TransientError]:
        """Verify several GPUs side by side; a crash is returned in place of its report."""

        async def one(job: VerifyJob) -> VerifyReport | TransientError:
            try:
                return await self.verify(job)
            except TransientError as exc:
                return exc

        return list(await asyncio.gather(*(one(job) for job in jobs)))

    def close(self) -> None:
        """Stop the pool processes (pending jobs are cancelled)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


__all__ = ["VerifierPool", "pool_context", "verify_job"]

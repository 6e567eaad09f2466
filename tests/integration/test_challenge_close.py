"""Closing a challenge survives a failing database: the validator retries until the verdict is
stored, and never stores it twice (a real SqlStore on SQLite, with failures injected in front).

The chaos suite shows the same through a real PostgreSQL outage; these cases pin the two edges
that outage cannot aim at: an attempt that failed before the commit, and one that committed and
then reported a failure (the connection dropped after COMMIT)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from byteleap.chain import NeuronView
from byteleap.challenge.params import CPU_DEFAULT
from byteleap.config.challenge import ChallengeSection
from byteleap.errors import Outcome, StorageError
from neurons.validator import challenger as challenger_module
from neurons.validator.challenger import Challenger
from neurons.validator.store import SqlStore, open_store
from neurons.validator.store.records import (
    ChallengeOpen,
    ChallengeVerdict,
    GpuSnapshot,
    WorkerSnapshot,
)
from neurons.validator.verification import VerifierPool

T0 = datetime(2026, 5, 1, 12, tzinfo=UTC)
MINER = "5Miner-close-retry"
PUBKEY = "ab" * 32


class FlakyStore:
    """A real store whose ``close_challenges`` fails the first ``failures`` times: before the
    write, or (``after_commit``) after it went through."""

    def __init__(self, store: SqlStore, failures: int, *, after_commit: bool = False) -> None:
        self.store = store
        self.failures = failures
        self.after_commit = after_commit
        self.close_calls = 0
        self.third_call = asyncio.Event()

    async def close_challenges(self, verdicts: Sequence[ChallengeVerdict]) -> None:
        self.close_calls += 1
        if self.close_calls >= 3:
            self.third_call.set()
        if self.failures > 0:
            self.failures -= 1
            if self.after_commit:
                await self.store.close_challenges(verdicts)
            raise StorageError("injected: the database went away")
        await self.store.close_challenges(verdicts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


@pytest.fixture(name="store")
async def store_fixture(tmp_path: Path) -> AsyncIterator[SqlStore]:
    store = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'v.db'}", auto_upgrade=True)
    await store.sync_miners(T0, [NeuronView(1, MINER, "5Cold", 1.0, False)])
    snapshot = WorkerSnapshot(PUBKEY, "idle", (GpuSnapshot("CPU-1", "cpu", 1024),))
    await store.record_inventory(T0, MINER, [snapshot], bucket_seconds=300)
    await store.open_challenge(
        ChallengeOpen(
            challenge_id="c-1",
            miner_hotkey=MINER,
            worker_pubkey=PUBKEY,
            gpu_uuids=("CPU-1",),
            gpu_models={"CPU-1": "cpu"},
            params=CPU_DEFAULT,
            seed=bytes(32),
            dispatched_at=T0,
            deadline_at=T0 + timedelta(seconds=30),
        )
    )
    try:
        yield store
    finally:
        await store.close()


def challenger_on(store: Any) -> Challenger:
    return Challenger(
        store=store,
        connect=lambda *_: None,  # type: ignore[arg-type]  # never dispatches here
        verifier=VerifierPool(1),  # no process starts until a job is submitted
        section=ChallengeSection(),
        wall_clock=lambda: T0,
    )


VERDICT = ChallengeVerdict("c-1", "CPU-1", T0 + timedelta(seconds=5), Outcome.TIMEOUT, "timeout")


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(challenger_module, "CLOSE_RETRY_FIRST_S", 0.01)
    monkeypatch.setattr(challenger_module, "CLOSE_RETRY_MAX_S", 0.02)


async def test_the_verdict_is_stored_once_the_database_is_back(store: SqlStore) -> None:
    flaky = FlakyStore(store, failures=4)
    await challenger_on(flaky)._close([VERDICT])
    assert flaky.close_calls == 5
    (row,) = await store.challenge("c-1")
    assert (row.status, row.outcome, row.failure) == ("closed", Outcome.TIMEOUT, "timeout")


async def test_an_attempt_that_committed_is_not_repeated(store: SqlStore) -> None:
    flaky = FlakyStore(store, failures=1, after_commit=True)
    await challenger_on(flaky)._close([VERDICT])
    # the read-back saw the row closed, so no second close (which the store would refuse)
    assert flaky.close_calls == 1
    (row,) = await store.challenge("c-1")
    assert row.status == "closed"


async def test_shutdown_stops_the_retries_and_leaves_the_row_for_the_restart(
    store: SqlStore,
) -> None:
    flaky = FlakyStore(store, failures=10**6)
    task = asyncio.create_task(challenger_on(flaky)._close([VERDICT]))
    await asyncio.wait_for(flaky.third_call.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (row,) = await store.challenge("c-1")
    assert row.status == "dispatched"
    assert await store.close_in_flight(T0 + timedelta(minutes=1), "restart") == 1
    (row,) = await store.challenge("c-1")
    assert (row.status, row.outcome) == ("closed", Outcome.EXCUSED)

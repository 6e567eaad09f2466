"""SIGKILL a worker, the miner or the validator while a challenge is in flight.

Each test runs a real devchain, miner, worker and validator (SQLite), waits until the validator
has verified the worker once, then waits for the worker's ``challenge_started`` log line (the
challenge is dispatched and being computed, and no commit exists yet) and kills one process
with SIGKILL. What is asserted is what docs/protocol.md and docs/storage.md promise:

- a link that fails before the commit is **excused** with failure ``link`` (never a timeout,
  never fraud): the worker or miner going away is not proof of anything;
- a validator that dies leaves its in-flight rows open; the next start closes them as
  **excused** with failure ``restart``, and every row committed before the kill is still there;
- afterwards the network recovers on its own: the restarted process is challenged and verified
  again, and no challenge is closed twice or left open.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from byteleap.errors import Outcome
from neurons.validator.store import ChallengeRow, SqlStore
from tests.support.network import (
    Network,
    assert_no_double_close,
    challenges,
    eventually,
    network,
    row_of,
    running,
    started_challenge,
    utc_now,
    verified_after,
    worker_uuid,
)

pytestmark = [pytest.mark.chaos, pytest.mark.e2e, pytest.mark.slow]

EPOCH = utc_now().replace(year=2000)


async def closed_row(
    net: Network, store: SqlStore, challenge_id: str, timeout: float = 60.0
) -> ChallengeRow:
    async def closed() -> ChallengeRow | None:
        row = await row_of(store, challenge_id)
        return row if row is not None and row.status == "closed" else None

    return await eventually(closed, timeout, f"challenge {challenge_id} to be closed", net)


async def assert_all_closed(net: Network, store: SqlStore) -> None:
    """After a graceful stop of the validator, no challenge row is open."""
    rows = await challenges(store)
    open_rows = [(r.challenge_id, r.status) for r in rows if r.status != "closed"]
    assert not open_rows, f"rows left open: {open_rows}\n{net.logs()}"
    assert all(r.outcome is not None and r.closed_at is not None for r in rows)


def test_a_worker_killed_mid_challenge_is_excused_and_verified_again(tmp_path: Path) -> None:
    net = network(tmp_path)

    async def scenario() -> None:
        net.miner.start()
        worker = net.workers[0].start()
        await worker_uuid(net)
        net.validator.start()
        store = await net.store()
        try:
            await verified_after(net, store, EPOCH)
            seen = len(worker.events("challenge_started"))
            challenge_id = await started_challenge(net, worker, seen)
            row = await row_of(store, challenge_id)
            assert row is not None and row.status == "dispatched", row
            worker.kill9()
            killed_at = utc_now()

            row = await closed_row(net, store, challenge_id)
            assert row.outcome is Outcome.EXCUSED, row
            assert row.failure == "link", row
            assert row.throughput_flops is None

            worker.start()
            again = await verified_after(net, store, killed_at)
            assert again.worker_pubkey == row.worker_pubkey
            assert again.gpu_uuid == row.gpu_uuid

            net.validator.stop()
            assert net.validator.popen is not None and net.validator.popen.returncode == 0
            await assert_all_closed(net, store)
            assert_no_double_close(net)
        finally:
            await store.close()

    with running(net):
        asyncio.run(scenario())


def test_a_miner_killed_mid_challenge_is_excused_and_its_workers_come_back(
    tmp_path: Path,
) -> None:
    net = network(tmp_path)

    async def scenario() -> None:
        net.miner.start()
        worker = net.workers[0].start()
        uuid = await worker_uuid(net)
        net.validator.start()
        store = await net.store()
        try:
            await verified_after(net, store, EPOCH)
            seen = len(worker.events("challenge_started"))
            challenge_id = await started_challenge(net, worker, seen)
            connected = len(worker.events("connected"))
            row = await row_of(store, challenge_id)
            assert row is not None and row.status == "dispatched", row
            net.miner.kill9()
            killed_at = utc_now()

            row = await closed_row(net, store, challenge_id)
            assert row.outcome is Outcome.EXCUSED, row
            assert row.failure == "link", row

            net.miner.start()
            # the same worker process reconnects on its own, with the same device
            assert await worker_uuid(net) == uuid
            assert worker.alive() and worker.starts == 1
            assert len(worker.events("connected")) > connected
            again = await verified_after(net, store, killed_at)
            assert again.gpu_uuid == uuid

            net.validator.stop()
            await assert_all_closed(net, store)
            assert_no_double_close(net)
        finally:
            await store.close()

    with running(net):
        asyncio.run(scenario())


def test_a_validator_killed_mid_challenge_loses_nothing_and_excuses_the_rest(
    tmp_path: Path,
) -> None:
    net = network(tmp_path)

    async def scenario() -> None:
        net.miner.start()
        worker = net.workers[0].start()
        await worker_uuid(net)
        net.validator.start()
        store = await net.store()
        try:
            await verified_after(net, store, EPOCH)
            seen = len(worker.events("challenge_started"))
            challenge_id = await started_challenge(net, worker, seen)
            net.validator.kill9()
            killed_at = utc_now()

            # what was committed before the kill, read after it: nothing is missing
            before = await challenges(store)
            in_flight = [r for r in before if r.status != "closed"]
            assert [r.challenge_id for r in in_flight] == [challenge_id], before
            committed = [r for r in before if r.status == "closed"]
            assert any(r.outcome is Outcome.VERIFIED for r in committed)
            submissions = await store.weight_submissions(limit=1000)
            miners = await store.miners()

            net.validator.start()
            row = await closed_row(net, store, challenge_id)
            assert row.outcome is Outcome.EXCUSED, row
            assert row.failure == "restart", row
            assert row.closed_at is not None and row.closed_at >= killed_at
            assert net.validator.events("in_flight_closed")[-1]["challenges"] == 1

            # rounds resume
            again = await verified_after(net, store, killed_at)
            assert again.worker_pubkey == row.worker_pubkey

            after = {(r.challenge_id, r.gpu_uuid): r for r in await challenges(store)}
            for old in committed:  # closed rows are never touched again
                assert after[(old.challenge_id, old.gpu_uuid)] == old
            kept = await store.weight_submissions(limit=1000)
            assert {s.id for s in submissions} <= {s.id for s in kept}
            assert {m.hotkey for m in miners} <= {m.hotkey for m in await store.miners()}

            net.validator.stop()
            await assert_all_closed(net, store)
            assert_no_double_close(net)
        finally:
            await store.close()

    with running(net):
        asyncio.run(scenario())

"""The validator's rounds against a real miner and real workers on 127.0.0.1.

Everything is real but the chain (a devchain file): the miner daemon (``MinerDaemon``: worker hub
and validator API), worker runtimes with the NumPy backend (some wrapped to cheat or stall), the
validator's signed HTTP client, the process pool, and a ``SqlStore`` on SQLite or PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import generate_latest

from byteleap.aliases import Clock
from byteleap.challenge.params import Binding, ChallengeParams
from byteleap.challenge.reference import OpenedRow, ProverRun
from byteleap.config import ValidatorConfig
from byteleap.crypto import WorkerKey
from byteleap.errors import Outcome
from neurons.chain import DevChainClient
from neurons.validator.daemon import ValidatorDaemon
from neurons.validator.store import SqlStore, open_store
from tests.support.rounds import Net, WallClock, running_miner, until
from tests.support.worker import running_worker as support_worker
from tests.wallets import make_wallet
from workers.backends.base import Abandoned, Device, ShouldStop
from workers.backends.numpy_backend import NumpyBackend

CPU_PARAMS = ChallengeParams(m=64, n=64, k=64, v=15, stages=3)


# --------------------------------------------------------------------------- workers


class TamperingBackend(NumpyBackend):
    """Computes honestly, then reveals rows with one bit flipped."""

    def open(
        self, device: Device, run: ProverRun, stage: int, rows: Sequence[int]
    ) -> list[OpenedRow]:
        opened = super().open(device, run, stage, rows)
        return [replace(o, values=bytes([o.values[0] ^ 1]) + o.values[1:]) for o in opened]


class StalledBackend(NumpyBackend):
    """Never finishes a challenge (until it is told to stop)."""

    def run(
        self,
        device: Device,
        binding: Binding,
        seed: bytes,
        params: ChallengeParams,
        *,
        clock: Clock,
        should_stop: ShouldStop | None = None,
    ) -> ProverRun:
        while not (should_stop is not None and should_stop()):
            time.sleep(0.02)
        raise Abandoned("stopped")


class LazyBackend(NumpyBackend):
    """Commits random roots at once without computing anything."""

    def run(
        self,
        device: Device,
        binding: Binding,
        seed: bytes,
        params: ChallengeParams,
        *,
        clock: Clock,
        should_stop: ShouldStop | None = None,
    ) -> ProverRun:
        run = ProverRun(binding=binding, seed=seed, params=params)
        run.roots = [os.urandom(32) for _ in range(params.stages)]
        return run


@contextlib.asynccontextmanager
async def running_worker(
    url: str, key: WorkerKey, backend_type: type[NumpyBackend] = NumpyBackend
) -> AsyncIterator[str]:
    """A real worker runtime linked to the miner at ``url``; yields its CPU device's UUID."""
    async with support_worker(url, key, backend_type=backend_type) as worker:
        yield worker.device_uuid


def validator_config(net: Net, url: str, **challenge: Any) -> ValidatorConfig:
    return ValidatorConfig.model_validate(
        {
            "wallet": {"name": "validator", "hotkey": "default", "path": str(net.root / "wallets")},
            "chain": {"network": f"devchain:{net.chain_file}", "sync_interval_s": 1},
            "database": {"url": url},
            "challenge": {
                "interval_s": 3600,
                "jitter": 0,
                "plan_interval_s": 0.2,
                # CPU devices, sized to take about 4 s: a deadline of 6 s and the round trip
                "cpu_workers": True,
                "cpu_expected_flops": CPU_PARAMS.flops / 4.0,
                "reveal_timeout_s": 10,
                "verifier_processes": 1,
                "cpu": CPU_PARAMS.model_dump(),
                "sampling": {"stages": 2, "rows": 8, "columns": 4},
                **challenge,
            },
            "miners": {"poll_interval_s": 1, "request_timeout_s": 5},
            "scoring": {"weights_interval_blocks": 8, "weights_check_interval_s": 0.5},
            "paths": {"data_dir": str(net.root / "validator")},
            "metrics": {"enabled": False},
            "api": {"port": 0},  # the renter API on a free port (8093 may be taken)
        }
    )


@contextlib.asynccontextmanager
async def validator(
    net: Net, store: SqlStore, clock: WallClock | None = None, **challenge: Any
) -> AsyncIterator[ValidatorDaemon]:
    """The validator's daemon object (its loops not started), after its start-up steps."""
    cfg = validator_config(net, "sqlite+aiosqlite:///unused.db", **challenge)
    chain = DevChainClient(net.chain, net.validator_hotkey)
    daemon = ValidatorDaemon(
        cfg,
        signer=net.validator_wallet,
        hotkey=net.validator_hotkey,
        store=store,
        chain=chain,
        rng=random.Random(0),
        wall_clock=clock or WallClock(),
    )
    await daemon.start()
    try:
        yield daemon
    finally:
        await daemon.shutdown()


async def sqlite_store(net: Net) -> SqlStore:
    return await open_store(f"sqlite+aiosqlite:///{net.root / 'validator.db'}", auto_upgrade=True)


async def worker_online(daemon: ValidatorDaemon, pubkey: str) -> bool:
    await daemon.sync.sync()
    await daemon.poll_once()
    workers = await daemon.store.workers(datetime.now(UTC))
    return any(w.worker_pubkey == pubkey and w.online and w.state == "idle" for w in workers)


def outcomes(results: Sequence[Any]) -> list[tuple[Outcome, str | None]]:
    return [(v.outcome, v.failure) for r in results for v in r.verdicts]


# --------------------------------------------------------------------------- the rounds


async def test_an_honest_worker_is_verified_stored_and_weighted(
    net: Net, database_url: str
) -> None:
    key = WorkerKey.generate()
    clock = WallClock()
    store = await open_store(database_url, auto_upgrade=True)
    try:
        async with (
            running_miner(net, "honest", [key]) as miner,
            running_worker(miner.workers_url, key) as device,
            validator(net, store, clock) as daemon,
        ):
            pubkey = key.public_key.hex()
            await until(lambda: worker_online(daemon, pubkey), what="the worker polled online")
            (miner_row,) = [m for m in await store.miners() if m.hotkey == miner.hotkey]
            assert miner_row.endpoint == f"http://127.0.0.1:{miner.api_port}"

            (result,) = await daemon.challenge_round()
            assert result.planned.gpu_uuids == (device,)
            assert result.planned.params == CPU_PARAMS
            (verdict,) = result.verdicts
            assert verdict.outcome is Outcome.VERIFIED, verdict
            assert verdict.throughput_flops is not None and verdict.throughput_flops > 0
            assert verdict.checked_entries == 2 * 8 * 4
            (row,) = await store.challenge(result.challenge_id)
            assert row.status == "closed" and row.outcome is Outcome.VERIFIED
            assert row.roots is not None and len(row.roots) == CPU_PARAMS.stages
            assert row.throughput_flops == pytest.approx(verdict.throughput_flops)
            assert row.elapsed_s is not None and row.elapsed_s > 0
            assert row.throughput_flops == pytest.approx(CPU_PARAMS.flops / row.elapsed_s)
            assert row.gpu_model == "CPU Test CPU"
            # every epoch challenges every idle worker again, whenever it starts
            (again,) = await daemon.challenge_round()
            assert (
                again.planned.gpu_uuids == (device,) and again.challenge_id != result.challenge_id
            )

            clock.skip_bucket()  # the poll's availability bucket is complete
            attempt = await daemon.weights.submit()
            submission = attempt.submission
            assert submission.status == "set", submission.reason
            assert submission.uids == (miner.uid,) and submission.weights == (1.0,)
            latest = net.chain.latest_weights()
            validator_uid = net.chain.metagraph().require(net.validator_hotkey).uid
            assert latest[validator_uid].weights == {miner.uid: 65535}
            (stored, *_) = await store.weight_submissions()
            assert stored.status == "set" and stored.block == latest[validator_uid].block
            assert stored.inputs["miners"][miner.hotkey]["challenge_raw"] > 0

            text = generate_latest(daemon.metrics.registry).decode()
            assert 'byteleap_validator_challenges_total{failure="none",outcome="verified"} 2.0' in (
                text
            )
            assert 'byteleap_validator_weights_submissions_total{status="set"} 1.0' in text
            assert 'byteleap_validator_polls_total{result="ok"}' in text
            assert 'byteleap_validator_db_seconds_count{operation="open_challenges"} 2.0' in text
    finally:
        await store.close()


async def test_tampered_openings_are_fraud_with_the_reason(net: Net) -> None:
    key = WorkerKey.generate()
    store = await sqlite_store(net)
    try:
        async with (
            running_miner(net, "cheater", [key]) as miner,
            running_worker(miner.workers_url, key, TamperingBackend),
            validator(net, store) as daemon,
        ):
            await until(lambda: worker_online(daemon, key.public_key.hex()))
            (result,) = await daemon.challenge_round()
            assert outcomes([result]) == [(Outcome.FRAUD, "bad_proof")]
            (row,) = await store.challenge(result.challenge_id)
            assert row.outcome is Outcome.FRAUD and row.failure == "bad_proof"
            assert row.throughput_flops is None
            assert row.detail and "bad_proof" in row.detail
            vector = await daemon.weights.compute()
            assert vector.result.explain(miner.hotkey).fraud_locked
    finally:
        await store.close()


async def test_a_commit_faster_than_the_hardware_is_impossible_throughput(net: Net) -> None:
    key = WorkerKey.generate()
    store = await sqlite_store(net)
    huge = ChallengeParams(m=4096, n=4096, k=4096, v=15, stages=100)  # 13.7 PFLOP
    try:
        async with (
            running_miner(net, "lazy", [key]) as miner,
            running_worker(miner.workers_url, key, LazyBackend),
            validator(net, store, cpu=huge.model_dump()) as daemon,
        ):
            await until(lambda: worker_online(daemon, key.public_key.hex()))
            (result,) = await daemon.challenge_round()
            assert result.planned.params == huge
            assert outcomes([result]) == [(Outcome.FRAUD, "impossible_throughput")]
            (row,) = await store.challenge(result.challenge_id)
            assert row.failure == "impossible_throughput" and "TFLOP/s" in (row.detail or "")
            assert row.roots is None  # judged at the commit: nothing was revealed
    finally:
        await store.close()


async def test_a_worker_that_never_commits_times_out(net: Net) -> None:
    key = WorkerKey.generate()
    store = await sqlite_store(net)
    try:
        async with (
            running_miner(net, "stalled", [key]) as miner,
            running_worker(miner.workers_url, key, StalledBackend),
            validator(net, store, cpu_expected_flops=CPU_PARAMS.flops / 1.0) as daemon,
        ):
            await until(lambda: worker_online(daemon, key.public_key.hex()))
            (result,) = await daemon.challenge_round()
            assert result.planned.sizing.deadline_s < 1.5 + 1.0 + 1e-9  # 1.5 x 1 s + round trip
            assert outcomes([result]) == [(Outcome.TIMEOUT, "timeout")]
            (row,) = await store.challenge(result.challenge_id)
            assert row.status == "closed" and row.outcome is Outcome.TIMEOUT
            assert row.roots is None and row.throughput_flops is None
    finally:
        await store.close()


async def test_a_miner_that_went_down_is_excused_then_seen_offline(net: Net) -> None:
    key = WorkerKey.generate()
    store = await sqlite_store(net)
    try:
        async with validator(net, store) as daemon:
            async with (
                running_miner(net, "flaky", [key]) as miner,
                running_worker(miner.workers_url, key),
            ):
                await until(lambda: worker_online(daemon, key.public_key.hex()))
                plan = await daemon.plan_once()
                (planned,) = plan.challenges
            # the miner is gone (its port is closed) when the challenge is dispatched
            result = await daemon.challenger.run(planned)
            assert result is not None
            assert outcomes([result]) == [(Outcome.EXCUSED, "link")]
            (row,) = await store.challenge(result.challenge_id)
            assert row.outcome is Outcome.EXCUSED and row.failure == "link"
            # the next poll fails, the worker goes offline and is no longer planned
            summary = await daemon.poll_once()
            assert miner.hotkey in summary.failed
            assert "link" in summary.failed[miner.hotkey]
            (w,) = await store.workers(datetime.now(UTC))
            assert not w.online
            plan = await daemon.plan_once()
            assert plan.challenges == ()
    finally:
        await store.close()


async def test_a_restart_closes_in_flight_challenges_as_excused(
    net: Net, database_url: str
) -> None:
    key = WorkerKey.generate()
    store = await open_store(database_url, auto_upgrade=True)
    try:
        async with (
            running_miner(net, "slowpoke", [key]) as miner,
            running_worker(miner.workers_url, key, StalledBackend),
        ):
            async with validator(net, store) as daemon:
                await until(lambda: worker_online(daemon, key.public_key.hex()))
                (planned,) = (await daemon.plan_once()).challenges
                task = asyncio.create_task(daemon.challenger.run(planned))

                async def dispatched() -> bool:
                    rows = await store.recent_challenges()
                    return any(r.status == "dispatched" for r in rows)

                await until(dispatched, what="the challenge stored as dispatched")
                task.cancel()  # the validator dies mid-challenge
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            (row,) = await store.recent_challenges()
            assert row.status == "dispatched"
            async with validator(net, store) as restarted:  # start() closes what was in flight
                (row,) = await store.recent_challenges()
                assert row.status == "closed" and row.outcome is Outcome.EXCUSED
                assert row.detail == "validator restarted"
                workers = await restarted.store.workers(datetime.now(UTC))
                assert not any(w.in_flight for w in workers)
    finally:
        await store.close()


@pytest.mark.slow
async def test_the_daemon_runs_its_loops_and_sets_weights(net: Net) -> None:
    key = WorkerKey.generate()
    url = f"sqlite+aiosqlite:///{net.root / 'daemon.db'}"
    store = await open_store(url, auto_upgrade=True)
    seen: list[Any] = []
    try:
        async with (
            running_miner(net, "steady", [key]) as miner,
            running_worker(miner.workers_url, key),
        ):
            cfg = validator_config(net, url, interval_s=2.0)  # the first epoch within 2 s
            clock = WallClock()
            daemon = ValidatorDaemon(
                cfg,
                signer=net.validator_wallet,
                hotkey=net.validator_hotkey,
                store=store,
                chain=DevChainClient(net.chain, net.validator_hotkey),
                rng=random.Random(1),
                wall_clock=clock,
                on_challenge=seen.append,
            )
            stop = asyncio.Event()
            task = asyncio.create_task(daemon.run(stop))

            async def verified() -> bool:
                if task.done():
                    task.result()
                return bool(seen)

            await until(verified, 60, "a challenge run by the daemon's loop")
            clock.skip_bucket()  # the polls' availability bucket is complete

            async def weights_set() -> bool:
                if task.done():
                    task.result()
                return any(s.status == "set" for s in await store.weight_submissions())

            await until(weights_set, 90, "weights set by the daemon")
            stop.set()
            await asyncio.wait_for(task, 30)
        assert outcomes(seen)[0] == (Outcome.VERIFIED, None)
        submissions = await store.weight_submissions()
        # the first attempt came before any challenge was verified: skipped, with its reason
        assert submissions[-1].status == "skipped" and submissions[-1].reason
        sets = [s for s in submissions if s.status == "set"]
        assert sets and all(s.uids == (miner.uid,) and s.block is not None for s in sets)
        validator_uid = net.chain.metagraph().require(net.validator_hotkey).uid
        assert net.chain.latest_weights()[validator_uid].weights == {miner.uid: 65535}
        since = datetime.now(UTC) - timedelta(hours=1)
        (tally,) = [t for t in await store.tally(since) if t.miner_hotkey == miner.hotkey]
        assert tally.by_outcome.get("verified", 0) >= 1
    finally:
        await store.close()


async def test_an_unregistered_validator_does_not_start(net: Net) -> None:
    wallet, hotkey = make_wallet(net.root / "wallets", "stranger")
    store = await sqlite_store(net)
    try:
        daemon = ValidatorDaemon(
            validator_config(net, "sqlite+aiosqlite:///unused.db"),
            signer=wallet,
            hotkey=hotkey,
            store=store,
            chain=DevChainClient(net.chain, hotkey),
        )
        from byteleap.chain import NotRegistered

        with pytest.raises(NotRegistered, match="not registered"):
            await daemon.run(asyncio.Event())
        assert await store.miners() == []  # nothing was stored for a validator that cannot run
    finally:
        await store.close()

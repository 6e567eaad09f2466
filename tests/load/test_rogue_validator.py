"""Rogue validator hotkeys flood the miner's HTTP API while an honest validator keeps working.

Three rogues, all registered on the devchain: one with a validator permit and stake (admitted,
so only its per-hotkey token bucket stops it), one without a permit, and anonymous callers
sending unsigned requests or replaying one signed request. They hammer ``GET /inventory`` and
``POST /challenge`` from several concurrent connections. Meanwhile the honest validator (its own
hotkey, its own bucket) reads the inventory and runs whole challenges against a real worker.

Asserted: every honest request succeeds during the flood; the rogues get 401 (unsigned,
replayed), 403 (no permit) and 429 (over the rate), nothing else and never a 5xx; the miner's
resident memory grows by less than 150 MB.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import bittensor as bt
import httpx
import pytest
from bittensor import http_auth

from byteleap.crypto import WorkerKey
from byteleap.protocol import codec
from byteleap.protocol.miner_api.challenges import ChallengeRequest
from tests.support.honest import SMALL, challenge_and_verify
from tests.support.network import Network, network, running, worker_uuid
from tests.wallets import coldkey_of, make_wallet

pytestmark = [pytest.mark.load, pytest.mark.e2e, pytest.mark.slow]

FLOOD_S = 10.0
CONNECTIONS = 4
MEMORY_BOUND = 150 * 1024 * 1024


def challenge_body(uuid: str) -> bytes:
    """A valid challenge for a worker that is not connected (409 once admitted). Aimed at the
    honest worker instead, an admitted rogue would keep it busy and the honest validator's
    challenges would be answered 409 busy (excused): see docs/operations.md."""
    request = ChallengeRequest(
        challenge_id="rogue",
        worker_pubkey=WorkerKey.generate().public_key.hex(),
        gpu_uuids=[uuid],
        seed=bytes(32),
        params=SMALL,
        deadline_ms=1000,
    )
    return codec.encode(request)


async def flood(
    net: Network, wallets: dict[str, bt.Wallet], body: bytes, until: float
) -> Counter[tuple[str, int]]:
    """Requests until ``until``; a count of (rogue, status)."""
    seen: Counter[tuple[str, int]] = Counter()
    replayed = http_auth.sign(wallets["permit"], method="GET", path="/inventory",
                              receiver_ss58=net.miner_hotkey)  # fmt: skip

    async def one(http: httpx.AsyncClient, n: int) -> None:
        kind = ("permit", "no_permit", "unsigned", "replay")[n % 4]
        post = n % 3 == 0
        method, path, content = ("POST", "/challenge", body) if post else ("GET", "/inventory", b"")
        if kind in ("permit", "no_permit"):
            headers = http_auth.sign(wallets[kind], method=method, path=path, body=content,
                                     receiver_ss58=net.miner_hotkey)  # fmt: skip
        elif kind == "replay":
            method, path, content, headers = "GET", "/inventory", b"", dict(replayed)
        else:
            headers = {}
        response = await http.request(method, path, content=content, headers=headers)
        seen[(kind, response.status_code)] += 1

    async def connection(start: int) -> None:
        async with httpx.AsyncClient(base_url=net.base_url, timeout=30) as http:
            n = start
            while time.monotonic() < until:
                await one(http, n)
                n += 1

    await asyncio.gather(*(connection(i) for i in range(CONNECTIONS)))
    return seen


def test_rogue_validators_are_refused_and_the_honest_one_is_served(tmp_path: Path) -> None:
    net = network(tmp_path)
    permit, permit_hotkey = make_wallet(tmp_path / "wallets", "rogue-permit")
    no_permit, no_permit_hotkey = make_wallet(tmp_path / "wallets", "rogue-no-permit")
    net.chain.register(permit_hotkey, coldkey_of(permit), stake=5_000.0, validator_permit=True)
    net.chain.register(no_permit_hotkey, coldkey_of(no_permit))
    wallets = {"permit": permit, "no_permit": no_permit}

    async def scenario() -> None:
        net.miner.start()
        net.workers[0].start()
        uuid = await worker_uuid(net)
        # the miner has synced the metagraph with the rogues in it
        await asyncio.sleep(1.5)
        async with net.client() as client:
            assert await challenge_and_verify(client, net, uuid, "warm-up") > 0
        rss_before = net.miner.rss()
        until = time.monotonic() + FLOOD_S
        flooding = asyncio.create_task(flood(net, wallets, challenge_body(uuid), until))

        served = 0
        async with net.client() as client:
            while time.monotonic() < until:
                inventory = await client.inventory()
                assert [w.gpus[0].uuid for w in inventory.workers] == [uuid]
                assert await challenge_and_verify(client, net, uuid, f"honest-{served}") > 0
                served += 1
                await asyncio.sleep(0.3)  # an honest validator stays well inside its own rate
        seen = await flooding
        rss_after = net.miner.rss()

        statuses = {status for _, status in seen}
        assert statuses <= {200, 401, 403, 409, 429}, seen
        by_kind: dict[str, set[int]] = {}
        for (kind, status), _ in seen.items():
            by_kind.setdefault(kind, set()).add(status)
        assert by_kind["unsigned"] == {401}, seen
        assert by_kind["no_permit"] == {403}, seen
        assert 401 in by_kind["replay"] and by_kind["replay"] <= {200, 401, 429}, seen
        assert 429 in by_kind["permit"], seen  # its own bucket runs dry
        assert served >= 3, served
        assert net.miner.alive()
        grown = rss_after - rss_before
        assert grown < MEMORY_BOUND, f"the miner grew by {grown / 2**20:.0f} MiB"
        print(
            f"rogue validators: {sum(seen.values())} requests {dict(seen)}; honest rounds "
            f"served: {served}; miner RSS {rss_before / 2**20:.0f} -> {rss_after / 2**20:.0f} MiB"
        )

    with running(net):
        asyncio.run(scenario())

"""A rogue worker floods the miner's websocket while an honest worker keeps working.

The rogue holds a valid, authorized key, so it passes the handshake like any worker. It then
sends as fast as it can, reconnecting whenever the miner closes it: garbage binary and text
frames, valid messages nobody asked for (lease acks, challenge commits for unknown
challenges), and now and then a frame over the miner's size limit. The honest worker is a real
``byteleap-worker`` process on the same miner, and an honest validator challenges it through
the miner's HTTP API during the whole flood.

Asserted: the rogue is rate-limited (``rate_limited`` error replies) and disconnected (close
1008 for abuse, 1009 for an oversized frame); every honest challenge during the flood is
verified exactly; the honest worker's heartbeats keep being taken (it is listed throughout,
its last heartbeat moves on, and it never had to reconnect); the miner's resident memory grows
by less than 150 MB.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from byteleap.crypto import WorkerKey
from byteleap.protocol import codec
from byteleap.protocol.handshake import make_register
from byteleap.protocol.worker_link.challenges import ChallengeCommit, GpuCommit
from byteleap.protocol.worker_link.leases import LeaseAck
from byteleap.protocol.worker_link.session import ErrorReply, Hello, Welcome
from tests.support.honest import challenge_and_verify
from tests.support.network import network, running, worker_uuid
from tests.support.worker import inventory

pytestmark = [pytest.mark.load, pytest.mark.e2e, pytest.mark.slow]

FLOOD_S = 12.0
MAX_MESSAGE = 1 << 20
#: one frame over the miner's limit every this many messages
OVERSIZED_EVERY = 400
MEMORY_BOUND = 150 * 1024 * 1024


def decoded(data: bytes | str) -> object:
    return codec.decode(data, codec.MINER_TO_WORKER, max_bytes=MAX_MESSAGE)


async def flood(url: str, key: WorkerKey, until: float) -> tuple[Counter[int], Counter[str], int]:
    """Flood until ``until`` (monotonic), reconnecting whenever the miner closes the link; the
    close codes seen, the error codes received, and the number of messages sent.

    Connections take turns: valid messages nobody asked for (over the rate limit), garbage
    frames (malformed), and a few messages followed by one frame over the size limit.
    """
    closes: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    sent = 0
    unsolicited = [
        codec.encode(LeaseAck(lease_id="no-such-lease", accepted=True)),
        codec.encode(
            ChallengeCommit(
                challenge_id="never-dispatched",
                gpus=[GpuCommit.create(key, "never-dispatched", "GPU-rogue", bytes(32), [1.0])],
            )
        ),
    ]
    garbage: list[bytes | str] = [
        os.urandom(300),
        b"BLP1" + os.urandom(60),
        "{not json",
        '{"type":"heartbeat"}',
    ]
    oversized = b"BLP1" + bytes(MAX_MESSAGE + 1024)
    turn = 0
    while time.monotonic() < until:
        turn += 1
        async with connect(url, max_size=None, open_timeout=10) as ws:
            hello = decoded(await ws.recv())
            assert isinstance(hello, Hello)
            register = make_register(key, hello, agent_version="rogue",
                                     inventory=inventory("GPU-rogue"))  # fmt: skip
            await ws.send(codec.encode(register))
            answer = decoded(await ws.recv())
            if isinstance(answer, ErrorReply):
                # the miner has not finished closing our previous connection yet: the key
                # still has a live session, so back off like a real worker would
                assert answer.code == "forbidden", answer
                await asyncio.sleep(0.2)
                continue
            assert isinstance(answer, Welcome), answer

            async def drain(ws: ClientConnection = ws) -> None:
                async for data in ws:
                    reply = decoded(data)
                    if isinstance(reply, ErrorReply):
                        errors[reply.code] += 1

            reader = asyncio.create_task(drain())
            count = 0
            try:
                while time.monotonic() < until:
                    count += 1
                    frame: bytes | str
                    if turn % 3 == 0 and count == 50:
                        frame = oversized
                    elif turn % 3 == 1:
                        frame = unsolicited[count % len(unsolicited)]
                    else:
                        frame = garbage[count % len(garbage)]
                    await ws.send(frame)
                    sent += 1
                    if count % 10 == 0:
                        await asyncio.sleep(0)  # let the reader see replies and the close
            except ConnectionClosed:
                pass
            finally:
                if time.monotonic() >= until:
                    await ws.close()
                await asyncio.wait({reader}, timeout=10)
                reader.cancel()
            if ws.close_code is not None and time.monotonic() < until:
                closes[ws.close_code] += 1
    return closes, errors, sent


def test_a_rogue_worker_is_throttled_and_the_honest_one_keeps_working(tmp_path: Path) -> None:
    rogue = WorkerKey.generate()
    net = network(
        tmp_path,
        authorized=[rogue.public_key.hex()],
        miner={
            "workers": {
                "max_message_bytes": MAX_MESSAGE,
                "heartbeat_timeout_s": 6.0,  # a heartbeat every 2 s, dropped after 6 s silent
            }
        },
    )
    honest = net.workers[0]
    pubkey = net.worker_keys[0].public_key.hex()
    url = f"ws://127.0.0.1:{net.workers_port}/worker"

    async def scenario() -> None:
        net.miner.start()
        honest.start()
        uuid = await worker_uuid(net)
        async with net.client() as client:
            assert await challenge_and_verify(client, net, uuid, "warm-up") > 0
        rss_before = net.miner.rss()
        connects = len(honest.events("connected"))
        until = time.monotonic() + FLOOD_S
        flooding = asyncio.create_task(flood(url, rogue, until))

        verified, heartbeats = 0, []
        async with net.client() as client:
            while time.monotonic() < until:
                checked = await challenge_and_verify(client, net, uuid, f"during-{verified}")
                assert checked == 3 * 16 * 4
                verified += 1
                inventory = await client.inventory()
                (me,) = [w for w in inventory.workers if w.worker_pubkey == pubkey]
                heartbeats.append(me.last_heartbeat)
                await asyncio.sleep(0.5)
        closes, errors, sent = await flooding
        rss_after = net.miner.rss()

        assert verified >= 3, verified
        assert heartbeats[-1] > heartbeats[0], heartbeats  # heartbeats kept being taken
        assert len(honest.events("connected")) == connects, "the honest worker was dropped"
        assert errors["rate_limited"] > 0, (errors, closes, sent)
        assert closes[1008] > 0, (errors, closes, sent)  # closed for abuse
        assert closes[1009] > 0, (errors, closes, sent)  # closed for an oversized frame
        assert net.miner.alive()
        grown = rss_after - rss_before
        assert grown < MEMORY_BOUND, f"the miner grew by {grown / 2**20:.0f} MiB"
        print(
            f"rogue worker: {sent} messages, closes {dict(closes)}, error replies {dict(errors)}; "
            f"honest challenges verified: {verified}; miner RSS "
            f"{rss_before / 2**20:.0f} -> {rss_after / 2**20:.0f} MiB"
        )

    with running(net):
        asyncio.run(scenario())

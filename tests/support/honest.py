"""What an honest validator does during a flood: a whole challenge, checked exactly."""

from __future__ import annotations

import os
import random

from byteleap.challenge.params import Binding, ChallengeParams, SamplingParams
from byteleap.challenge.reference import OpenedRow
from byteleap.challenge.verify import Commitment, draw_sample, verify_openings
from byteleap.protocol.miner_api.challenges import ChallengeRequest, OpeningsRequest
from byteleap.protocol.worker_link.challenges import OpeningRequest
from neurons.common.miner_client import MinerClient
from tests.support.network import Network

SMALL = ChallengeParams(m=128, n=128, k=128, v=15, stages=3)


async def challenge_and_verify(
    client: MinerClient, net: Network, uuid: str, challenge_id: str, worker: int = 0
) -> int:
    """Challenge worker ``worker`` through the miner, reveal, and verify every sampled entry;
    the number of entries checked (raises on any failure)."""
    key = net.worker_keys[worker].public_key
    seed = os.urandom(32)
    request = ChallengeRequest(
        challenge_id=challenge_id,
        worker_pubkey=key.hex(),
        gpu_uuids=[uuid],
        seed=seed,
        params=SMALL,
        deadline_ms=60_000,
    )
    response = await client.challenge(request)  # checks the miner's signature too
    (gpu,) = response.gpus
    assert gpu.verify(key, challenge_id)
    samples = draw_sample(SMALL, SamplingParams(), random.Random(challenge_id))
    openings = [OpeningRequest(gpu_uuid=uuid, stage=s.stage, rows=list(s.rows)) for s in samples]
    revealed = await client.reveal(
        OpeningsRequest(challenge_id=challenge_id, worker_pubkey=key.hex(), openings=openings)
    )
    binding = Binding(miner_hotkey=net.miner_hotkey, worker_pubkey=key, gpu_uuid=uuid)
    commitment = Commitment(binding, seed, SMALL, tuple(gpu.root_list()))
    rows = [OpenedRow(o.stage, o.row, o.values, tuple(o.proof_list())) for o in revealed.openings]
    return verify_openings(commitment, samples, rows)

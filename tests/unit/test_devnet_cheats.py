"""Every devnet cheat produces evidence the exact verifier rejects for the expected reason."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable

import pytest

from byteleap.challenge.params import Binding, ChallengeParams, SamplingParams
from byteleap.challenge.reference import RowOpening
from byteleap.challenge.verify import Commitment, draw_sample, verify_openings
from byteleap.crypto import WorkerKey
from byteleap.errors import FraudReason, VerificationFailed
from byteleap.protocol.inventory import HostInfo, Inventory
from byteleap.protocol.worker_link import (
    ChallengeDispatch,
    GpuCommit,
    OpeningRequest,
    RevealRequest,
)
from neurons.devnet.cheats import (
    EXPECTED_FAILURES,
    MODES,
    PHANTOM_MODEL,
    Cheat,
    CheatingExecutor,
    CheatMode,
    claimed_devices,
    claimed_inventory,
    mode_for,
)
from workers.backends.base import Abandoned
from workers.backends.numpy_backend import NumpyBackend

HOTKEY = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
PARAMS = ChallengeParams(m=64, n=32, k=48, v=15, stages=4)
SEED = bytes(range(32))


def executor_for(
    cheat: Cheat, *, clock: Callable[[], float] | None = None
) -> tuple[CheatingExecutor, WorkerKey]:
    key = WorkerKey.from_seed(bytes([7]) * 32)
    backend = NumpyBackend.for_worker(key.public_key, "Test CPU", threads=1)
    claimed = claimed_devices(cheat.mode, backend.devices()[0], key.public_key)
    executor = CheatingExecutor(
        backend,
        key,
        clock=clock or itertools.count().__next__,
        cheat=cheat,
        claimed=claimed,
        rng=random.Random(3),
    )
    return executor, key


async def verdicts(cheat: Cheat, params: ChallengeParams = PARAMS) -> dict[str, object]:
    """Run one challenge on every claimed device and verify it as the validator would:
    ``uuid -> entries checked`` when it passes, ``uuid -> FraudReason`` when it is rejected."""
    executor, key = executor_for(cheat)
    uuids = list(executor.devices())
    dispatch = ChallengeDispatch(
        challenge_id="c-1", seed=SEED, params=params, gpu_uuids=uuids, deadline_ms=60_000
    )
    commits: tuple[GpuCommit, ...] = await executor.run(dispatch, HOTKEY)
    assert [c.gpu_uuid for c in commits] == uuids
    out: dict[str, object] = {}
    for commit in commits:
        assert commit.verify(key.public_key, "c-1"), "cheaters sign their commitments properly"
        samples = draw_sample(params, SamplingParams(), random.Random(11))
        request = RevealRequest(
            challenge_id="c-1",
            openings=[
                OpeningRequest(gpu_uuid=commit.gpu_uuid, stage=s.stage, rows=list(s.rows))
                for s in samples
            ],
        )
        revealed = await executor.open(request)
        binding = Binding(
            miner_hotkey=HOTKEY, worker_pubkey=key.public_key, gpu_uuid=commit.gpu_uuid
        )
        commitment = Commitment(binding, SEED, params, tuple(commit.root_list()))
        openings = [RowOpening(o.stage, o.row, o.values, tuple(o.proof_list())) for o in revealed]
        try:
            out[commit.gpu_uuid] = verify_openings(commitment, samples, openings)
        except VerificationFailed as exc:
            out[commit.gpu_uuid] = exc.reason
    return out


def test_cheaters_take_the_modes_in_turn() -> None:
    assert [mode_for(i) for i in range(6)] == [*MODES, MODES[0], MODES[1]]
    assert set(MODES) == set(CheatMode) == set(EXPECTED_FAILURES)


async def test_fake_rows_are_caught_by_their_merkle_paths() -> None:
    (reason,) = (await verdicts(Cheat(CheatMode.FAKE_ROWS))).values()
    assert reason is FraudReason.BAD_PROOF
    assert reason.value in EXPECTED_FAILURES[CheatMode.FAKE_ROWS]


async def test_skipped_stages_are_caught_by_the_exact_entries() -> None:
    (reason,) = (await verdicts(Cheat(CheatMode.SKIPPED_STAGES))).values()
    assert reason is FraudReason.WRONG_ENTRY
    assert reason.value in EXPECTED_FAILURES[CheatMode.SKIPPED_STAGES]


async def test_skipped_stages_commit_stage_zero_honestly() -> None:
    """Only the later stages are made up: opening stage 0 alone passes."""
    executor, key = executor_for(Cheat(CheatMode.SKIPPED_STAGES))
    (uuid,) = executor.devices()
    dispatch = ChallengeDispatch(
        challenge_id="c-0", seed=SEED, params=PARAMS, gpu_uuids=[uuid], deadline_ms=60_000
    )
    (commit,) = await executor.run(dispatch, HOTKEY)
    sample = tuple(
        s for s in draw_sample(PARAMS, SamplingParams(), random.Random(1)) if s.stage == 0
    )
    revealed = await executor.open(
        RevealRequest(
            challenge_id="c-0",
            openings=[OpeningRequest(gpu_uuid=uuid, stage=0, rows=list(sample[0].rows))],
        )
    )
    binding = Binding(miner_hotkey=HOTKEY, worker_pubkey=key.public_key, gpu_uuid=uuid)
    commitment = Commitment(binding, SEED, PARAMS, tuple(commit.root_list()))
    openings = [RowOpening(o.stage, o.row, o.values, tuple(o.proof_list())) for o in revealed]
    assert verify_openings(commitment, sample, openings) == 16 * 4


async def test_copied_roots_pass_on_the_computed_device_and_fail_on_the_copy() -> None:
    result = await verdicts(Cheat(CheatMode.COPIED_ROOTS))
    computed, copy = result.values()
    assert computed == 4 * 16 * 4  # the device it really computed verifies
    assert copy is FraudReason.WRONG_ENTRY


async def test_a_phantom_gpu_commits_garbage() -> None:
    (reason,) = (await verdicts(Cheat(CheatMode.PHANTOM_GPU))).values()
    assert reason is FraudReason.BAD_PROOF
    assert reason.value in EXPECTED_FAILURES[CheatMode.PHANTOM_GPU]


async def test_a_silent_phantom_gpu_never_commits() -> None:
    """It holds the challenge past its deadline and gives it up: the validator sees a timeout."""
    executor, _ = executor_for(Cheat(CheatMode.PHANTOM_GPU, never_commit=True))
    (uuid,) = executor.devices()
    dispatch = ChallengeDispatch(
        challenge_id="c-2", seed=SEED, params=PARAMS, gpu_uuids=[uuid], deadline_ms=3_000
    )
    with pytest.raises(Abandoned):
        await executor.run(dispatch, HOTKEY)
    assert "timeout" in EXPECTED_FAILURES[CheatMode.PHANTOM_GPU]


def test_never_commit_is_a_phantom_variant_only() -> None:
    with pytest.raises(ValueError, match="phantom_gpu only"):
        Cheat(CheatMode.FAKE_ROWS, never_commit=True)


def host() -> HostInfo:
    return HostInfo(
        hostname="devnet",
        cpu_model="Test CPU",
        cpu_count_logical=2,
        memory_total_bytes=8 << 30,
        memory_available_bytes=4 << 30,
    )


@pytest.mark.parametrize("mode", list(CheatMode))
def test_claimed_devices_make_a_valid_inventory(mode: CheatMode) -> None:
    key = WorkerKey.from_seed(bytes([9]) * 32)
    real = NumpyBackend.for_worker(key.public_key, "Test CPU").devices()[0]
    claimed = claimed_devices(mode, real, key.public_key)
    inventory = claimed_inventory(Inventory(host=host(), gpus=[], backends=["numpy"]), claimed)
    assert [gpu.uuid for gpu in inventory.gpus] == [d.uuid for d in claimed]
    if mode is CheatMode.PHANTOM_GPU:
        assert inventory.gpus[0].name == PHANTOM_MODEL
        assert inventory.gpus[0].uuid.startswith("GPU-")
        assert real.uuid not in {gpu.uuid for gpu in inventory.gpus}
    else:
        assert inventory.gpus[0].uuid == real.uuid
    assert len(claimed) == (2 if mode is CheatMode.COPIED_ROOTS else 1)

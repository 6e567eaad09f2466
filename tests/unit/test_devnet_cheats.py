"""Every devnet cheat produces evidence the exact verifier rejects for the expected reason, or
(sybil) honest evidence served one claim after another by one shared device, or (cpu_as_gpu,
ambiguous_model) no commit at all, or (late_excuse) "busy" only after the deadline, or
(phantom_busy) "busy" always, beside an honest companion."""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from byteleap.challenge.params import Binding, ChallengeParams, SamplingParams
from byteleap.challenge.reference import OpenedRow
from byteleap.challenge.verify import Commitment, draw_sample, verify_openings
from byteleap.crypto import WorkerKey
from byteleap.errors import FraudReason, VerificationFailed
from byteleap.hardware import CPU_MODEL, UNKNOWN, identify
from byteleap.protocol import codec
from byteleap.protocol.common import MAX_GPUS
from byteleap.protocol.inventory import GpuInfo, HostInfo, Inventory
from byteleap.protocol.worker_link.challenges import (
    ChallengeDispatch,
    GpuCommit,
    OpeningRequest,
    RevealRequest,
)
from byteleap.protocol.worker_link.leases import LeaseAck, LeaseStart
from byteleap.protocol.worker_link.session import Heartbeat, Hello, Unavailable, Welcome
from byteleap.sessions.agent_events import AgentTick, ChallengeFinished, Connected, Received, Send
from devnet.cheat_devices import AlwaysBusyAgent, SharedDevice, claimed_devices, claimed_inventory
from devnet.cheat_modes import (
    AMBIGUOUS_MODEL,
    BOUNDED_MODES,
    COMPANION_DEVICE_MIB,
    CPU_AS_GPU_MODEL,
    DESCRIPTIONS,
    EXCUSE_MODES,
    EXPECTED_FAILURES,
    FRAUD_MODES,
    LATE_EXCUSE_S,
    MODEL_MODES,
    MODES,
    PHANTOM_BUSY_CLAIMS,
    PHANTOM_MODEL,
    SYBIL_DEVICE_MIB,
    Cheat,
    CheatMode,
    mode_for,
)
from devnet.cheats import CheatingExecutor
from workers.backends.base import Abandoned
from workers.backends.numpy_backend import NumpyBackend

HOTKEY = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
PARAMS = ChallengeParams(m=64, n=32, k=48, v=15, stages=4)
SEED = bytes(range(32))


def executor_for(
    cheat: Cheat,
    *,
    clock: Callable[[], float] | None = None,
    seed: int = 7,
    pace_flops: float | None = None,
) -> tuple[CheatingExecutor, WorkerKey]:
    key = WorkerKey.from_seed(bytes([seed]) * 32)
    backend = NumpyBackend.for_worker(key.public_key, "Test CPU", threads=1, pace_flops=pace_flops)
    claimed = claimed_devices(
        cheat.mode,
        backend.devices()[0],
        key.public_key,
        claims=cheat.claims,
        companion=cheat.companion,
    )
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
    return await verify_all(executor, key, params)


async def verify_all(
    executor: CheatingExecutor, key: WorkerKey, params: ChallengeParams = PARAMS
) -> dict[str, object]:
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
        openings = [OpenedRow(o.stage, o.row, o.values, tuple(o.proof_list())) for o in revealed]
        try:
            out[commit.gpu_uuid] = verify_openings(commitment, samples, openings)
        except VerificationFailed as exc:
            out[commit.gpu_uuid] = exc.reason
    return out


def test_cheaters_take_the_fraud_modes_in_turn() -> None:
    assert [mode_for(i) for i in range(6)] == [*FRAUD_MODES, FRAUD_MODES[0], FRAUD_MODES[1]]
    assert set(MODES) == set(CheatMode) == set(EXPECTED_FAILURES) == set(DESCRIPTIONS)
    groups = [set(FRAUD_MODES), set(MODEL_MODES), {CheatMode.SYBIL}, set(EXCUSE_MODES)]
    assert set().union(*groups) == set(MODES)
    assert sum(len(g) for g in groups) == len(MODES)  # every mode in exactly one group
    # a device that never answers, or queues claims, only ever misses: a timeout, or "busy"
    # still holding an earlier challenge when the next epoch comes (no lease explains that)
    for mode in (CheatMode.SYBIL, *MODEL_MODES):
        assert EXPECTED_FAILURES[mode] == {"timeout", "unexplained_busy"}
    # every excuse a miner makes without a lease to explain it is a missed challenge, never fraud
    for mode in EXCUSE_MODES:
        assert EXPECTED_FAILURES[mode] <= {"timeout", "unexplained_busy"}
    # the modes that may earn something, each within its own bound
    assert {CheatMode.SYBIL, CheatMode.PHANTOM_BUSY, CheatMode.RECEIPT_MINT} == BOUNDED_MODES


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
    openings = [OpenedRow(o.stage, o.row, o.values, tuple(o.proof_list())) for o in revealed]
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


def test_claims_and_the_device_lock_belong_to_sybil_only(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shared device's lock"):
        Cheat(CheatMode.SYBIL, claims=2)
    with pytest.raises(ValueError, match="sybil and phantom_busy only"):
        Cheat(CheatMode.FAKE_ROWS, claims=2)
    with pytest.raises(ValueError, match="sybil only"):
        Cheat(CheatMode.CPU_AS_GPU, device_lock=tmp_path / "x.lock")
    with pytest.raises(ValueError, match=f"at most {MAX_GPUS}"):
        Cheat(CheatMode.PHANTOM_BUSY, claims=MAX_GPUS + 1)
    with pytest.raises(ValueError, match="at least one"):
        Cheat(CheatMode.SYBIL, claims=0, device_lock=tmp_path / "x.lock")
    sybil = Cheat(CheatMode.SYBIL, claims=2, device_lock=tmp_path / "x.lock")
    assert sybil.label == "sybil (2 claims)" and not sybil.silent
    assert Cheat(CheatMode.CPU_AS_GPU).silent and Cheat(CheatMode.AMBIGUOUS_MODEL).silent


def test_the_new_modes_take_only_their_own_options() -> None:
    busy = Cheat(CheatMode.PHANTOM_BUSY, claims=PHANTOM_BUSY_CLAIMS)
    assert busy.always_busy and busy.label == f"phantom_busy ({PHANTOM_BUSY_CLAIMS} claims)"
    companion = Cheat(CheatMode.PHANTOM_BUSY, companion=True)
    assert not companion.always_busy and companion.label == "phantom_busy (honest companion)"
    with pytest.raises(ValueError, match="companion"):
        Cheat(CheatMode.PHANTOM_BUSY, claims=2, companion=True)
    with pytest.raises(ValueError, match="companion"):
        Cheat(CheatMode.SYBIL, device_lock=Path("x.lock"), companion=True)
    late = Cheat(CheatMode.LATE_EXCUSE)
    assert not late.silent and not late.always_busy and late.label == "late_excuse"
    # a receipt_mint miner's workers are production workers: the cheat is its colluder's
    with pytest.raises(ValueError, match="runs no cheating worker"):
        Cheat(CheatMode.RECEIPT_MINT)


# --------------------------------------------------------------------------- excuses


async def test_a_late_excuse_says_busy_only_after_the_deadline() -> None:
    """It computes nothing, holds the challenge until just past its deadline, then gives it
    up: the agent answers an abandoned challenge "busy", and the validator, whose deadline ran
    from before the worker got the challenge, sees an answer after its deadline."""
    executor, _ = executor_for(Cheat(CheatMode.LATE_EXCUSE), clock=time.perf_counter)
    (uuid,) = executor.devices()
    gpu_sized = ChallengeParams(m=8192, n=8192, k=8192, v=15, stages=500)
    dispatch = ChallengeDispatch(
        challenge_id="c-5", seed=SEED, params=gpu_sized, gpu_uuids=[uuid], deadline_ms=300
    )
    began = time.perf_counter()
    with pytest.raises(Abandoned, match="busy, after the deadline"):
        await executor.run(dispatch, HOTKEY)
    waited = time.perf_counter() - began
    assert 0.3 + LATE_EXCUSE_S - 0.01 <= waited < 0.3 + LATE_EXCUSE_S + 1.0
    assert "timeout" in EXPECTED_FAILURES[CheatMode.LATE_EXCUSE]


async def test_a_late_excuse_gives_up_at_once_when_stopped() -> None:
    executor, _ = executor_for(Cheat(CheatMode.LATE_EXCUSE), clock=time.perf_counter)
    (uuid,) = executor.devices()
    dispatch = ChallengeDispatch(
        challenge_id="c-6", seed=SEED, params=PARAMS, gpu_uuids=[uuid], deadline_ms=60_000
    )
    task = asyncio.create_task(executor.run(dispatch, HOTKEY))
    await asyncio.sleep(0.1)
    executor.stop()
    with pytest.raises(Abandoned):
        await asyncio.wait_for(task, 2)


def busy_agent() -> tuple[AlwaysBusyAgent, list[str]]:
    key = WorkerKey.from_seed(bytes([8]) * 32)
    real = NumpyBackend.for_worker(key.public_key, "Test CPU").devices()[0]
    claimed = claimed_devices(
        CheatMode.PHANTOM_BUSY, real, key.public_key, claims=PHANTOM_BUSY_CLAIMS
    )
    inventory = claimed_inventory(Inventory(host=host(), gpus=[], backends=["numpy"]), claimed)
    agent = AlwaysBusyAgent(key, inventory, agent_version="0.1.0")
    hello = Hello(nonce=bytes(range(32)), miner_hotkey=HOTKEY, heartbeat_interval_s=5.0)
    agent.handle(Connected(0.0))
    agent.handle(Received(codec.encode(hello), 0.0))
    agent.handle(Received(codec.encode(Welcome(session_id="s1")), 0.0))
    return agent, [d.uuid for d in claimed]


def sent(instructions: Sequence[object]) -> list[object]:
    return [i.message for i in instructions if isinstance(i, Send)]


def test_a_phantom_busy_worker_is_always_busy_and_never_computes() -> None:
    agent, uuids = busy_agent()
    assert len(uuids) == len(set(uuids)) == PHANTOM_BUSY_CLAIMS == MAX_GPUS
    assert all(uuid.startswith("CPU-") for uuid in uuids)
    # its heartbeats say busy, with nothing running; its inventory lists every claimed device
    (beat,) = [m for m in sent(agent.handle(AgentTick(10.0))) if isinstance(m, Heartbeat)]
    assert beat.state == "busy" and agent.running is None
    assert [gpu.uuid for gpu in agent.inventory.gpus] == uuids
    # a challenge is refused as busy at once: no RunChallenge, nothing kept to reveal
    challenge = ChallengeDispatch(
        challenge_id="c-7", seed=SEED, params=PARAMS, gpu_uuids=uuids[:2], deadline_ms=5_000
    )
    out = agent.handle(Received(codec.encode(challenge), 11.0))
    assert sent(out) == [Unavailable(challenge_id="c-7", leased=False)]
    assert len(out) == 1 and agent.running is None and not agent.kept
    assert agent.handle(ChallengeFinished("c-7", abandoned=True)) == []  # nothing was running
    # a lease is taken like an honest worker's, and then it says leased
    start = LeaseStart(lease_id="l-1", gpu_uuids=uuids[:1], ends_at=2_000_000_000)
    acks = sent(agent.handle(Received(codec.encode(start), 12.0)))
    assert LeaseAck(lease_id="l-1", accepted=True) in acks
    assert agent.state == "leased"
    out = agent.handle(Received(codec.encode(challenge), 13.0))
    assert sent(out) == [Unavailable(challenge_id="c-7", leased=True)]


async def test_a_phantom_busy_companion_computes_honestly_on_a_small_device() -> None:
    """The honest worker beside the busy one: every challenge verifies, and its one device is
    too small for a renter's request, so no renter lands on a worker that runs no jobs."""
    cheat = Cheat(CheatMode.PHANTOM_BUSY, companion=True)
    result = await verdicts(cheat)
    assert list(result.values()) == [4 * 16 * 4]
    executor, _ = executor_for(cheat)
    (device,) = executor.devices().values()
    assert device.memory_total_bytes == COMPANION_DEVICE_MIB * 2**20


# --------------------------------------------------------------------------- sybil


async def test_every_sybil_claim_is_computed_honestly_and_verifies(tmp_path: Path) -> None:
    """A sybil does the work of every claim: each one, bound to its own UUID, verifies."""
    cheat = Cheat(CheatMode.SYBIL, claims=3, device_lock=tmp_path / "device.lock")
    executor, key = executor_for(cheat)
    uuids = list(executor.devices())
    assert len(uuids) == len(set(uuids)) == 3
    assert all(uuid.startswith("CPU-") for uuid in uuids)
    result = await verify_all(executor, key)
    assert list(result.values()) == [4 * 16 * 4] * 3
    ledger = SharedDevice(tmp_path / "device.lock").ledger()
    assert [entry["claim"] for entry in ledger] == uuids  # one run per claim, in order
    assert {entry["challenge_id"] for entry in ledger} == {"c-1"}


def test_the_shared_device_serves_one_holder_at_a_time_across_threads(tmp_path: Path) -> None:
    """Two holders (each with its own open file, as two processes have) never overlap."""
    device = SharedDevice(tmp_path / "devices" / "shared.lock", poll_s=0.001)
    inside: list[int] = []
    overlaps: list[int] = []
    start = threading.Barrier(2)

    def hold(name: str) -> None:
        start.wait()
        for i in range(5):
            with device.serving(f"{name}-{i}", "c"):
                inside.append(1)
                if len(inside) > 1:
                    overlaps.append(1)
                time.sleep(0.01)
                inside.pop()

    threads = [threading.Thread(target=hold, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert overlaps == []
    ledger = device.ledger()
    assert len(ledger) == 10
    for before, after in itertools.pairwise(ledger):
        assert before["ended"] <= after["began"]  # served one after another


async def test_two_sybil_executors_queue_on_the_shared_device(tmp_path: Path) -> None:
    """Two workers' claims dispatched at the same moment: the paced runs do not overlap, so the
    second commit comes about one device-run after the first. This is what makes it late."""
    lock = tmp_path / "device.lock"
    pace = PARAMS.flops / 0.3  # each paced run takes 0.3 s
    first, key_a = executor_for(
        Cheat(CheatMode.SYBIL, device_lock=lock),
        seed=1,
        pace_flops=pace,
        clock=time.perf_counter,
    )
    second, key_b = executor_for(
        Cheat(CheatMode.SYBIL, device_lock=lock),
        seed=2,
        pace_flops=pace,
        clock=time.perf_counter,
    )
    finished: dict[str, float] = {}

    async def run(executor: CheatingExecutor, name: str) -> tuple[GpuCommit, ...]:
        dispatch = ChallengeDispatch(
            challenge_id=f"c-{name}",
            seed=SEED,
            params=PARAMS,
            gpu_uuids=list(executor.devices()),
            deadline_ms=60_000,
        )
        commits = await executor.run(dispatch, HOTKEY)
        finished[name] = time.perf_counter()
        return commits

    began = time.perf_counter()
    commits_a, commits_b = await asyncio.gather(run(first, "a"), run(second, "b"))
    first_done, last_done = sorted(finished.values())
    assert first_done - began >= 0.3 - 0.01
    assert last_done - began >= 0.6 - 0.01  # queued behind the other
    ledger = SharedDevice(lock).ledger()
    assert len(ledger) == 2 and ledger[0]["ended"] <= ledger[1]["began"]
    assert commits_a[0].verify(key_a.public_key, "c-a")
    assert commits_b[0].verify(key_b.public_key, "c-b")


async def test_a_sybil_waiting_for_the_device_gives_up_when_stopped(tmp_path: Path) -> None:
    lock = tmp_path / "device.lock"
    executor, _ = executor_for(Cheat(CheatMode.SYBIL, device_lock=lock))
    (uuid,) = executor.devices()
    dispatch = ChallengeDispatch(
        challenge_id="c-3", seed=SEED, params=PARAMS, gpu_uuids=[uuid], deadline_ms=60_000
    )
    holder = SharedDevice(lock)
    with holder.serving("someone else", "c-0"):
        task = asyncio.create_task(executor.run(dispatch, HOTKEY))
        await asyncio.sleep(0.1)
        assert not task.done()  # queued behind the holder
        executor.stop()
        with pytest.raises(Abandoned):
            await asyncio.wait_for(task, 5)
    assert [entry["claim"] for entry in holder.ledger()] == ["someone else"]


# --------------------------------------------------------------------------- model claims


@pytest.mark.parametrize("mode", list(MODEL_MODES))
async def test_a_cpu_claiming_a_gpu_model_never_commits_and_computes_nothing(
    mode: CheatMode,
) -> None:
    """It holds the challenge past its deadline without computing (a GPU-sized product would
    only burn the devnet's CPU) and gives it up: the validator sees a timeout."""
    executor, _ = executor_for(Cheat(mode))
    (uuid,) = executor.devices()
    gpu_sized = ChallengeParams(m=8192, n=8192, k=8192, v=15, stages=500)
    dispatch = ChallengeDispatch(
        challenge_id="c-4", seed=SEED, params=gpu_sized, gpu_uuids=[uuid], deadline_ms=200
    )
    began = time.perf_counter()
    with pytest.raises(Abandoned, match="never committed"):
        await executor.run(dispatch, HOTKEY)
    assert time.perf_counter() - began < 5  # waited past the deadline, computed nothing
    assert "timeout" in EXPECTED_FAILURES[mode]


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
    claims = 2 if mode is CheatMode.SYBIL else 1
    claimed = claimed_devices(mode, real, key.public_key, claims=claims)
    if mode is CheatMode.PHANTOM_BUSY:
        # the busy worker lists the most devices one worker may list, all valid and distinct
        busy = claimed_devices(mode, real, key.public_key, claims=PHANTOM_BUSY_CLAIMS)
        listed = claimed_inventory(Inventory(host=host(), gpus=[], backends=["numpy"]), busy)
        assert len(listed.gpus) == PHANTOM_BUSY_CLAIMS and listed.gpus[0].uuid == real.uuid
        assert listed.backends == ["numpy"]
    inventory = claimed_inventory(Inventory(host=host(), gpus=[], backends=["numpy"]), claimed)
    assert [gpu.uuid for gpu in inventory.gpus] == [d.uuid for d in claimed]
    gpu_modes = {CheatMode.PHANTOM_GPU, *MODEL_MODES}
    if mode in gpu_modes:
        assert inventory.gpus[0].uuid.startswith("GPU-")
        assert real.uuid not in {gpu.uuid for gpu in inventory.gpus}
        assert inventory.backends == ["cupy"]
    else:
        assert inventory.gpus[0].uuid == real.uuid
        assert all(gpu.uuid.startswith("CPU-") for gpu in inventory.gpus)
    if mode is CheatMode.PHANTOM_GPU:
        assert inventory.gpus[0].name == PHANTOM_MODEL
    assert len(claimed) == (2 if mode in (CheatMode.COPIED_ROOTS, CheatMode.SYBIL) else 1)


def test_the_claimed_gpus_are_what_the_validators_catalogue_expects() -> None:
    """cpu_as_gpu is a real, consistent H200 claim (so it gets a full GPU challenge); the
    ambiguous name is ``unknown``; sybil claims are CPU devices."""
    key = WorkerKey.from_seed(bytes([5]) * 32)
    real = NumpyBackend.for_worker(key.public_key, "Test CPU").devices()[0]
    empty = Inventory(host=host(), gpus=[], backends=["numpy"])

    def gpus(mode: CheatMode, claims: int = 1) -> list[GpuInfo]:
        devices = claimed_devices(mode, real, key.public_key, claims=claims)
        return list(claimed_inventory(empty, devices).gpus)

    (h200,) = gpus(CheatMode.CPU_AS_GPU)
    assert (h200.name, h200.memory_total_mib, h200.compute_capability) == (
        CPU_AS_GPU_MODEL,
        143_771,
        "9.0",
    )
    identity = identify(h200.uuid, h200.name, h200.memory_total_mib, h200.compute_capability)
    assert identity.model_id.startswith("h200") and identity.unverifiable is None
    (odd,) = gpus(CheatMode.AMBIGUOUS_MODEL)
    assert (odd.name, odd.memory_total_mib, odd.compute_capability) == (
        AMBIGUOUS_MODEL,
        24_576,
        "8.6",
    )
    assert identify(odd.uuid, odd.name, odd.memory_total_mib).model_id == UNKNOWN
    sybil = gpus(CheatMode.SYBIL, claims=3)
    assert len({g.uuid for g in sybil}) == 3
    for gpu in sybil:
        assert identify(gpu.uuid, gpu.name).model_id == CPU_MODEL
        assert gpu.memory_total_mib == SYBIL_DEVICE_MIB
    # every worker's claims are its own: another key claims other UUIDs
    other = WorkerKey.from_seed(bytes([6]) * 32)
    theirs = claimed_devices(CheatMode.SYBIL, real, other.public_key, claims=3)
    assert {d.uuid for d in theirs[1:]}.isdisjoint({g.uuid for g in sybil})

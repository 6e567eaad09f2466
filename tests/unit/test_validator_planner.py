"""The epoch planner: when epochs start, who is challenged, who is left out and why, how hard."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from byteleap.challenge.params import GPU_DEFAULT, ChallengeParams
from byteleap.challenge.sizing import CalibrationSettings, ExpectedRates, calibrate
from byteleap.config.challenge import ChallengeSection
from byteleap.hardware import CATALOGUE, CPU_MODEL, UNKNOWN, slowest_backend_flops
from byteleap.sessions.round_planner import (
    EpochPlan,
    EpochPlanner,
    Skip,
    challenge_devices,
    deadline_ms,
)
from neurons.validator.store.records import GpuSnapshot, WorkerRow

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MINER = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
OTHER = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"
H100 = "NVIDIA H100 80GB HBM3"
A100 = "NVIDIA A100-SXM4-80GB"


def gpu(n: int, model: str = H100, memory: int = 81559, cc: str | None = "9.0") -> GpuSnapshot:
    return GpuSnapshot(
        uuid=f"GPU-{n:08d}-0000-0000-0000-000000000000",
        model=model,
        memory_mib=memory,
        compute_capability=cc,
    )


def cpu(n: int = 0, name: str = "CPU Test CPU") -> GpuSnapshot:
    return GpuSnapshot(uuid=f"CPU-{n:032x}", model=name, memory_mib=8192)


def worker(n: int = 1, **overrides: Any) -> WorkerRow:
    values: dict[str, Any] = {
        "miner_hotkey": MINER,
        "miner_uid": 3,
        "endpoint": "http://127.0.0.1:8092",
        "worker_pubkey": f"{n:064x}",
        "state": "idle",
        "online": True,
        "last_seen": NOW,
        "gpus": (gpu(n),),
    }
    values.update(overrides)
    return WorkerRow(**values)


def section(**overrides: Any) -> ChallengeSection:
    return ChallengeSection(**overrides)


def rates(s: ChallengeSection | None = None, samples: list[Any] | None = None) -> ExpectedRates:
    s = s or section()
    return calibrate(
        samples or [],
        CalibrationSettings(
            cpu_expected_flops=s.cpu_expected_flops,
            unknown_flops=s.unknown_flops,
            percentile=s.calibration_percentile,
            min_miners=s.calibration_min_miners,
            min_samples=s.calibration_min_samples,
            floor=s.calibration_floor,
        ),
    )


def plan(workers: list[WorkerRow], s: ChallengeSection | None = None, **kw: Any) -> EpochPlan:
    s = s or section()
    kw.setdefault("rates", rates(s))
    return EpochPlanner(s, random.Random(7)).plan(workers, **kw)


# --------------------------------------------------------------------------- epoch starts


def test_epoch_starts_are_random_within_the_jitter_and_never_repeat() -> None:
    s = section(interval_s=600.0, jitter=0.25)
    p = EpochPlanner(s, random.Random(1))
    starts = [NOW]
    for _ in range(200):
        starts.append(p.next_epoch_at(starts[-1]))
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    assert all(450.0 <= g <= 750.0 for g in gaps)
    assert len({round(g, 6) for g in gaps}) == len(gaps)  # drawn afresh every time
    assert min(gaps) < 500 and max(gaps) > 700  # the whole range is used


def test_the_first_epoch_falls_within_one_interval() -> None:
    p = EpochPlanner(section(interval_s=600.0), random.Random(2))
    first = p.first_epoch_at(NOW)
    assert NOW <= first <= NOW + timedelta(seconds=600)


# --------------------------------------------------------------------------- who is challenged


def test_every_idle_worker_of_every_miner_is_in_one_epoch() -> None:
    workers = [worker(n) for n in range(1, 6)] + [
        worker(n, miner_hotkey=OTHER, miner_uid=4) for n in range(6, 9)
    ]
    epoch = plan(workers)
    assert {c.worker_pubkey for c in epoch.challenges} == {w.worker_pubkey for w in workers}
    assert set(epoch.by_miner()) == {MINER, OTHER}
    assert len(epoch.by_miner()[OTHER]) == 3
    assert epoch.gpus == 8


def test_epoch_order_is_shuffled() -> None:
    workers = [worker(n) for n in range(1, 30)]
    orders = {
        tuple(
            c.worker_pubkey
            for c in EpochPlanner(section(), random.Random(seed))
            .plan(workers, rates=rates())
            .challenges
        )
        for seed in range(5)
    }
    assert len(orders) > 1


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"online": False}, Skip.OFFLINE),
        ({"in_flight": True}, Skip.IN_FLIGHT),
        ({"endpoint": None}, Skip.NO_ENDPOINT),
        ({"gpus": ()}, Skip.NO_DEVICES),
    ],
)
def test_skip_reasons(overrides: dict[str, Any], reason: Skip) -> None:
    w = worker(1, **overrides)
    epoch = plan([w])
    assert epoch.challenges == ()
    assert epoch.skipped == {(MINER, w.worker_pubkey): reason}


@pytest.mark.parametrize("state", ["busy", "leased"])
def test_busy_or_leased_without_a_known_lease_is_challenged_all_the_same(state: str) -> None:
    w = worker(1, state=state)
    (planned,) = plan([w]).challenges
    assert planned.worker_pubkey == w.worker_pubkey
    explained = plan([w], leased={(MINER, w.worker_pubkey)})
    assert explained.challenges == ()
    assert explained.skipped == {(MINER, w.worker_pubkey): Skip.LEASED}


def test_leased_and_in_flight_workers_given_by_the_daemon_are_skipped() -> None:
    a, b, c = worker(1), worker(2), worker(3)
    epoch = plan([a, b, c], leased={(MINER, a.worker_pubkey)}, in_flight={(MINER, b.worker_pubkey)})
    assert [p.worker_pubkey for p in epoch.challenges] == [c.worker_pubkey]
    assert epoch.skipped[(MINER, a.worker_pubkey)] is Skip.LEASED
    assert epoch.skipped[(MINER, b.worker_pubkey)] is Skip.IN_FLIGHT


def test_gpus_claimed_first_by_someone_else_are_not_challenged() -> None:
    w = worker(1, gpus=(gpu(1), gpu(2)), conflicted_gpus=frozenset({gpu(1).uuid}))
    (planned,) = plan([w]).challenges
    assert planned.gpu_uuids == (gpu(2).uuid,)


# --------------------------------------------------------------------------- CPU devices


def test_cpu_devices_are_left_out_in_production() -> None:
    w = worker(1, gpus=(cpu(1),))
    epoch = plan([w])
    assert epoch.challenges == ()
    assert epoch.skipped[(MINER, w.worker_pubkey)] is Skip.CPU_DISABLED


def test_cpu_devices_get_the_cpu_parameters_where_enabled() -> None:
    cpu_params = ChallengeParams(m=128, n=96, k=64, v=15, stages=3)
    s = section(cpu_workers=True, cpu=cpu_params.model_dump(), cpu_expected_flops=1e9)
    (planned,) = plan([worker(1, gpus=(cpu(1),))], s).challenges
    assert planned.sizing.device_class == "cpu" and planned.model_id == CPU_MODEL
    assert planned.params == cpu_params
    assert planned.sizing.expected_s == pytest.approx(cpu_params.flops / 1e9)
    assert planned.sizing.deadline_s == pytest.approx(1.5 * cpu_params.flops / 1e9)


def test_a_cpu_device_named_like_an_h200_is_still_a_cpu() -> None:
    s = section(cpu_workers=True)
    (planned,) = plan([worker(1, gpus=(cpu(1, "NVIDIA H200 141GB HBM3e"),))], s).challenges
    assert planned.model_id == CPU_MODEL
    assert planned.params == s.cpu


# --------------------------------------------------------------------------- catalogue checks


def test_a_gpu_whose_memory_contradicts_its_model_is_unverifiable() -> None:
    w = worker(1, gpus=(gpu(1, H100, memory=24576), gpu(2)))
    epoch = plan([w])
    (planned,) = epoch.challenges
    assert planned.gpu_uuids == (gpu(2).uuid,)
    why = epoch.unverifiable[(MINER, w.worker_pubkey, gpu(1).uuid)]
    assert "24576" in why


def test_a_worker_of_only_unverifiable_gpus_is_skipped_with_the_reason() -> None:
    w = worker(1, gpus=(gpu(1, H100, cc="8.6"),))
    epoch = plan([w])
    assert epoch.skipped[(MINER, w.worker_pubkey)] is Skip.UNVERIFIABLE
    assert "8.6" in epoch.unverifiable[(MINER, w.worker_pubkey, gpu(1).uuid)]


def test_a_worker_mixing_models_is_skipped() -> None:
    w = worker(1, gpus=(gpu(1), gpu(2, A100, memory=81920, cc="8.0")))
    epoch = plan([w])
    assert epoch.skipped[(MINER, w.worker_pubkey)] is Skip.MIXED_MODELS


def test_an_ambiguous_name_is_unknown_and_sized_as_a_slow_card() -> None:
    w = worker(1, gpus=(gpu(1, "NVIDIA GeForce RTX 3090 H200", memory=24576, cc="8.6"),))
    s = section()
    (planned,) = plan([w], s).challenges
    assert planned.model_id == UNKNOWN
    assert planned.sizing.expected_flops == slowest_backend_flops()
    assert planned.sizing.expected_s == pytest.approx(s.target_seconds, rel=0.2)


def test_challenge_devices_names_each_identity() -> None:
    choice = challenge_devices(worker(1, gpus=(gpu(1), gpu(2))), cpu_workers=False)
    assert choice.skip is None and choice.model_id == "h100-sxm"
    assert set(choice.identities) == {gpu(1).uuid, gpu(2).uuid}


# --------------------------------------------------------------------------- sizing


@pytest.mark.parametrize(
    ("name", "memory", "cc", "model_id"),
    [
        (H100, 81559, "9.0", "h100-sxm"),
        (A100, 81920, "8.0", "a100-sxm"),
        ("NVIDIA GeForce RTX 4090", 24564, "8.9", "rtx-4090"),
        ("Tesla T4", 15360, "7.5", "t4"),
    ],
)
def test_gpu_stages_are_sized_to_the_target_at_the_catalogue_figure(
    name: str, memory: int, cc: str, model_id: str
) -> None:
    s = section(target_seconds=10.0)
    (planned,) = plan([worker(1, gpus=(gpu(1, name, memory, cc),))], s).challenges
    rate = CATALOGUE[model_id].backend_flops
    stages = max(1, round(rate * 10.0 / GPU_DEFAULT.flops_per_stage))
    assert planned.model_id == model_id
    assert planned.params == GPU_DEFAULT.model_copy(update={"stages": stages})
    assert planned.sizing.expected_s == pytest.approx(planned.params.flops / rate)
    assert planned.sizing.deadline_s == pytest.approx(1.5 * planned.sizing.expected_s)


def test_the_deadline_adds_the_miners_round_trip_up_to_the_grace() -> None:
    s = section(deadline_grace_s=1.0)
    (near,) = plan([worker(1)], s, round_trips={MINER: 0.2}).challenges
    (far,) = plan([worker(1)], s, round_trips={MINER: 30.0}).challenges
    assert near.sizing.deadline_s == pytest.approx(1.5 * near.sizing.expected_s + 0.2)
    assert far.sizing.deadline_s == pytest.approx(1.5 * far.sizing.expected_s + 1.0)


def test_one_card_cannot_answer_two_claims_of_its_own_model() -> None:
    """Deadlines run from the epoch's first dispatch. A card behind two claims finishes the
    second 2 x its time after it: late, even with the largest round trip allowed; an honest
    claim dispatched at the very end of the spread is still in time."""
    s = section()
    (planned,) = plan([worker(1)], s, round_trips={MINER: 5.0}).challenges
    expected, deadline = planned.sizing.expected_s, planned.sizing.deadline_s
    assert planned.sizing.round_trip_s == s.deadline_grace_s
    assert 2 * expected > deadline
    assert s.epoch_spread_s + expected <= deadline


def test_calibrated_rates_size_the_challenge() -> None:
    s = section()
    fast = CATALOGUE["h100-sxm"].backend_flops * 1.2
    samples = [(f"5miner{i}", "h100-sxm", fast) for i in range(5) for _ in range(12)]
    (planned,) = plan([worker(1)], s, rates=rates(s, samples)).challenges
    assert planned.sizing.expected_flops == pytest.approx(fast)


def test_deadline_ms_rounds_up() -> None:
    (planned,) = plan([worker(1)]).challenges
    assert deadline_ms(planned.sizing) >= 1
    assert deadline_ms(planned.sizing) / 1000 >= planned.sizing.deadline_s


def test_planned_challenges_carry_what_the_dispatch_needs() -> None:
    w = worker(1, gpus=(gpu(1, A100, 81920, "8.0"),))
    (planned,) = plan([w]).challenges
    assert planned.miner_hotkey == MINER and planned.miner_uid == 3
    assert planned.endpoint == "http://127.0.0.1:8092"
    assert planned.gpu_models == {gpu(1).uuid: A100}
    assert planned.identities[gpu(1).uuid].model_id == "a100-sxm"


def test_device_notes_tell_the_operator_why_a_gpu_is_left_out() -> None:
    from byteleap.sessions.round_planner import device_notes

    liar = gpu(1, H100, memory=24576)
    ambiguous = gpu(2, "NVIDIA GeForce RTX 3090 H200", memory=24576, cc="8.6")
    claimed = gpu(3)
    notes = device_notes(
        worker(1, gpus=(liar, claimed), conflicted_gpus=frozenset({claimed.uuid})),
        cpu_workers=False,
    )
    assert "unverifiable" in notes[liar.uuid] and "24576" in notes[liar.uuid]
    assert "claimed this UUID first" in notes[claimed.uuid]
    (unknown,) = device_notes(worker(2, gpus=(ambiguous,)), cpu_workers=False).values()
    assert unknown.startswith("challenged as 'unknown'")
    (off,) = device_notes(worker(3, gpus=(cpu(1),)), cpu_workers=False).values()
    assert "cpu_workers is false" in off
    assert device_notes(worker(3, gpus=(cpu(1),)), cpu_workers=True) == {}
    mixed = device_notes(worker(4, gpus=(gpu(4), gpu(5, A100, 81920, "8.0"))), cpu_workers=False)
    assert all("mixes models (a100-sxm, h100-sxm)" in n for n in mixed.values())
    assert device_notes(worker(5), cpu_workers=False) == {}

"""Exact verification: honest work passes, every kind of cheating fails with its typed reason."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import numpy as np
import pytest

from byteleap.challenge.generate import matrix_a, matrix_b
from byteleap.challenge.merkle import build_levels, leaf_hash, merkle_root, proof, root_from_proof
from byteleap.challenge.params import (
    CPU_DEFAULT,
    Binding,
    ChallengeParams,
    SamplingParams,
    stages_for_target,
)
from byteleap.challenge.reference import (
    OpenedRow,
    ProverRun,
    canonical_product,
    open_rows,
    recompute_rows,
    row_leaves,
    run_reference,
)
from byteleap.challenge.timing import check_plausible, peak_for, throughput
from byteleap.challenge.verify import (
    Commitment,
    StageSample,
    draw_sample,
    verifier_operations,
    verify_openings,
)
from byteleap.errors import FraudReason, Outcome, VerificationFailed, outcome_of

HOTKEY = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
OTHER_HOTKEY = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"
BINDING = Binding(miner_hotkey=HOTKEY, worker_pubkey=bytes(range(32)), gpu_uuid="GPU-aaaa")
SEED = bytes(range(100, 132))
PARAMS = ChallengeParams(m=64, n=32, k=48, v=15, stages=4)
SAMPLING = SamplingParams(stages=4, rows=8, columns=4)


@pytest.fixture(scope="module")
def honest() -> ProverRun:
    return run_reference(BINDING, SEED, PARAMS)


def commitment_of(run: ProverRun, binding: Binding = BINDING) -> Commitment:
    return Commitment(binding, SEED, PARAMS, tuple(run.roots))


def reveal(run: ProverRun, samples: tuple[StageSample, ...]) -> list[OpenedRow]:
    out: list[OpenedRow] = []
    for sample in samples:
        out += open_rows(run, sample.stage, sample.rows)
    return out


def reason_of(commitment: Commitment, samples, openings) -> FraudReason:
    with pytest.raises(VerificationFailed) as caught:
        verify_openings(commitment, samples, openings)
    assert outcome_of(caught.value) is Outcome.FRAUD
    return caught.value.reason


def samples_with(stage: int, rows: tuple[int, ...], columns: int = 4) -> tuple[StageSample, ...]:
    return (StageSample(stage, rows, tuple(tuple(range(columns)) for _ in rows)),)


def test_honest_worker_verifies(honest: ProverRun) -> None:
    for seed in range(5):
        samples = draw_sample(PARAMS, SAMPLING, random.Random(seed))
        checked = verify_openings(commitment_of(honest), samples, reveal(honest, samples))
        assert checked == 4 * 8 * 4


def test_a_single_flipped_entry_is_fraud(honest: ProverRun) -> None:
    samples = samples_with(2, (5,), columns=PARAMS.n)
    (opening,) = reveal(honest, samples)
    values = bytearray(opening.values)
    values[4 * 7] ^= 1  # entry (5, 7), lowest bit
    # a worker that commits to the flipped row keeps the Merkle proof consistent ...
    leaves = list(honest.leaves[2])
    leaves[5] = leaf_hash(2, 5, bytes(values))
    levels = build_levels(leaves)
    roots = list(honest.roots)
    roots[2] = levels[-1][0]
    cheat = Commitment(BINDING, SEED, PARAMS, tuple(roots))
    forged = OpenedRow(2, 5, bytes(values), proof(levels, 5))
    # ... and is still caught on the exact value of the entry
    with pytest.raises(VerificationFailed) as caught:
        verify_openings(cheat, samples, [forged])
    assert caught.value.reason is FraudReason.WRONG_ENTRY
    assert (caught.value.stage, caught.value.row, caught.value.column) == (2, 5, 7)
    # without recommitting, the same flip breaks the Merkle path
    assert reason_of(commitment_of(honest), samples, [replace(opening, values=bytes(values))]) is (
        FraudReason.BAD_PROOF
    )


def test_a_swapped_row_is_fraud(honest: ProverRun) -> None:
    samples = samples_with(1, (3,))
    (row3,) = reveal(honest, samples)
    (row4,) = open_rows(honest, 1, [4])
    # serving row 4's values and path at position 3: the leaf binds the index
    assert (
        reason_of(commitment_of(honest), samples, [replace(row4, row=3)]) is FraudReason.BAD_PROOF
    )
    # committing a tree with rows 3 and 4 swapped: Merkle is consistent, the entries are not

    def swap(stage: int, product: np.ndarray) -> np.ndarray:
        if stage == 1:
            product = product.copy()
            product[[3, 4]] = product[[4, 3]]
        return product

    swapped = run_reference(BINDING, SEED, PARAMS, transform=swap)
    values = {3: row4.values}
    opening = open_rows(swapped, 1, [3], values=values)
    assert reason_of(commitment_of(swapped), samples, opening) is FraudReason.WRONG_ENTRY
    assert row3.values != row4.values


def test_a_row_from_the_wrong_stage_is_fraud(honest: ProverRun) -> None:
    samples = samples_with(3, (9,))
    (other_stage,) = open_rows(honest, 2, [9])
    assert reason_of(commitment_of(honest), samples, [replace(other_stage, stage=3)]) is (
        FraudReason.BAD_PROOF
    )
    # roots committed in the wrong order: every stage key after the swap is different
    roots = list(honest.roots)
    roots[1], roots[2] = roots[2], roots[1]
    misordered = Commitment(BINDING, SEED, PARAMS, tuple(roots))
    samples = samples_with(2, (0,))
    opening = open_rows(honest, 1, [0])  # the rows that really belong to root_1 (now at index 2)
    opening = [replace(o, stage=2) for o in opening]
    reason = reason_of(misordered, samples, opening)
    assert reason in (FraudReason.BAD_PROOF, FraudReason.WRONG_ENTRY)


def test_a_forged_path_is_fraud(honest: ProverRun) -> None:
    samples = samples_with(0, (12,))
    (opening,) = reveal(honest, samples)
    forged = tuple(bytes([i]) * 32 for i in range(PARAMS.depth))
    assert reason_of(commitment_of(honest), samples, [replace(opening, proof=forged)]) is (
        FraudReason.BAD_PROOF
    )
    short_sibling = (*opening.proof[:-1], opening.proof[-1][:31])
    assert reason_of(commitment_of(honest), samples, [replace(opening, proof=short_sibling)]) is (
        FraudReason.BAD_PROOF
    )


def test_a_truncated_or_padded_path_is_fraud(honest: ProverRun) -> None:
    samples = samples_with(0, (12,))
    (opening,) = reveal(honest, samples)
    truncated = replace(opening, proof=opening.proof[:-1])
    padded = replace(opening, proof=(*opening.proof, bytes(32)))
    for bad in (truncated, padded):
        assert reason_of(commitment_of(honest), samples, [bad]) is FraudReason.BAD_PROOF_LENGTH


@pytest.mark.parametrize(
    "field,value",
    [
        ("gpu_uuid", "GPU-bbbb"),
        ("worker_pubkey", bytes(range(1, 33))),
        ("miner_hotkey", OTHER_HOTKEY),
    ],
)
def test_roots_computed_for_another_gpu_worker_or_miner_are_fraud(field: str, value) -> None:
    other = run_reference(BINDING.model_copy(update={field: value}), SEED, PARAMS)
    copied = commitment_of(other, binding=BINDING)  # claimed for BINDING, computed for another
    samples = draw_sample(PARAMS, SAMPLING, random.Random(7))
    assert reason_of(copied, samples, reveal(other, samples)) is FraudReason.WRONG_ENTRY


def test_a_skipped_stage_with_a_garbage_root_is_fraud(honest: ProverRun) -> None:
    # the worker computes stage 0, commits random bytes for stage 1, and keys stage 2 from them
    garbage = bytes([0xAB]) * 32
    lazy = ProverRun(BINDING, SEED, PARAMS)
    lazy.roots = [honest.roots[0], garbage]
    lazy.leaves = [honest.leaves[0], [bytes(32)] * PARAMS.m]
    for stage in (2, 3):  # from here on it computes honestly, keyed by the garbage root
        key = lazy.key(stage)
        product = canonical_product(matrix_a(np, key, PARAMS), matrix_b(np, key, PARAMS))
        leaves = row_leaves(stage, product)
        lazy.leaves.append(leaves)
        lazy.roots.append(merkle_root(leaves))
    assert lazy.roots[2] != honest.roots[2]
    commitment = commitment_of(lazy)
    # stages 2 and 3 are consistent with the garbage root and verify; stage 1 cannot be opened
    later = samples_with(2, (1, 2)) + samples_with(3, (4,))
    verify_openings(commitment, later, reveal(lazy, later))
    skipped = samples_with(1, (6,))
    fake = [OpenedRow(1, 6, bytes(4 * PARAMS.n), tuple([bytes(32)] * PARAMS.depth))]
    assert reason_of(commitment, skipped, fake) is FraudReason.BAD_PROOF


def test_missing_extra_and_misshapen_openings_are_fraud(honest: ProverRun) -> None:
    samples = samples_with(0, (1, 2))
    openings = reveal(honest, samples)
    assert reason_of(commitment_of(honest), samples, openings[:1]) is FraudReason.MISSING_OPENING
    extra = [*openings, *open_rows(honest, 0, [3])]
    assert reason_of(commitment_of(honest), samples, extra) is FraudReason.UNREQUESTED_OPENING
    twice = [*openings, openings[0]]
    assert reason_of(commitment_of(honest), samples, twice) is FraudReason.UNREQUESTED_OPENING
    short = [replace(openings[0], values=openings[0].values[:-4]), openings[1]]
    assert reason_of(commitment_of(honest), samples, short) is FraudReason.BAD_ROW_SHAPE
    few_roots = Commitment(BINDING, SEED, PARAMS, tuple(honest.roots[:-1]))
    assert reason_of(few_roots, samples, openings) is FraudReason.BAD_COMMIT_SHAPE
    bad_root = Commitment(BINDING, SEED, PARAMS, (*honest.roots[:-1], b"x"))
    assert reason_of(bad_root, samples, openings) is FraudReason.BAD_COMMIT_SHAPE


def test_detection_probability_of_skipping_rows_matches_the_formula() -> None:
    """A worker that fakes a fraction f of every stage's rows (committing them consistently) is
    caught per sampled stage with probability about 1 - (1 - f)**s."""
    params = ChallengeParams(m=256, n=8, k=16, v=15, stages=1)
    f, s, trials = 0.125, 8, 600
    rng = random.Random(20261122)
    faked = set(rng.sample(range(params.m), int(f * params.m)))

    def fake_rows(stage: int, product: np.ndarray) -> np.ndarray:
        product = product.copy()
        product[sorted(faked)] += 1  # every entry of a faked row is off by one
        return product

    cheat = run_reference(BINDING, SEED, params, transform=fake_rows)
    commitment = Commitment(BINDING, SEED, params, tuple(cheat.roots))
    product = fake_rows(0, np.zeros((params.m, params.n), dtype="<i4"))  # offsets only
    truth = recompute_rows(cheat, 0, list(range(params.m)))
    levels = build_levels(cheat.leaves[0])
    served = {
        row: (np.frombuffer(truth[row], dtype="<i4") + product[row]).astype("<i4").tobytes()
        for row in range(params.m)
    }
    caught = 0
    for _ in range(trials):
        samples = draw_sample(params, SamplingParams(stages=1, rows=s, columns=1), rng)
        openings = [OpenedRow(0, r, served[r], proof(levels, r)) for r in samples[0].rows]
        try:
            verify_openings(commitment, samples, openings)
        except VerificationFailed as exc:
            assert exc.reason is FraudReason.WRONG_ENTRY
            assert exc.row in faked
            caught += 1
    expected = 1 - (1 - f) ** s
    sigma = math.sqrt(expected * (1 - expected) / trials)
    # sampling rows without replacement catches slightly more often than the with-replacement
    # formula; the difference here (about 0.003) is far inside the 4-sigma band
    assert abs(caught / trials - expected) < 4 * sigma


def test_merkle_paths_reject_out_of_range_indices() -> None:
    leaves = [bytes([i]) * 32 for i in range(8)]
    levels = build_levels(leaves)
    root = levels[-1][0]
    assert root_from_proof(leaves[5], 5, proof(levels, 5), 3) == root
    assert root_from_proof(leaves[5], 13, proof(levels, 5), 3) is None
    assert root_from_proof(leaves[5], -1, proof(levels, 5), 3) is None
    with pytest.raises(ValueError):
        build_levels(leaves[:6])
    with pytest.raises(IndexError):
        proof(levels, 8)


def test_sampling_is_distinct_clamped_and_reproducible() -> None:
    params = ChallengeParams(m=4, n=3, k=8, v=3, stages=2)
    samples = draw_sample(params, SamplingParams(stages=4, rows=16, columns=4), random.Random(1))
    assert [s.stage for s in samples] == [0, 1]
    for sample in samples:
        assert sample.rows == (0, 1, 2, 3)
        assert all(cols == (0, 1, 2) for cols in sample.columns)
    a = draw_sample(CPU_DEFAULT, SamplingParams(), random.Random(42))
    b = draw_sample(CPU_DEFAULT, SamplingParams(), random.Random(42))
    assert a == b
    assert all(len(set(s.rows)) == 16 for s in a)


def test_params_enforce_exactness_and_shape() -> None:
    with pytest.raises(ValueError, match="power of two"):
        ChallengeParams(m=100, n=8, k=8, v=1, stages=1)
    with pytest.raises(ValueError, match="2\\*\\*24"):
        ChallengeParams(m=8, n=8, k=65_536, v=16, stages=1)
    with pytest.raises(ValueError):
        ChallengeParams(m=8, n=8, k=8, v=1, stages=1, extra=1)  # type: ignore[call-arg]
    assert stages_for_target(CPU_DEFAULT, 1e9, 1.0).stages == round(1e9 / (2 * 256**3))


def test_throughput_and_the_impossible_speed_check() -> None:
    params = ChallengeParams(m=8192, n=8192, k=8192, v=15, stages=100)
    assert throughput(params, 2.0) == pytest.approx(params.flops / 2.0)
    assert peak_for("NVIDIA H100 80GB HBM3") == pytest.approx(494.7e12)
    assert peak_for("NVIDIA H100 PCIe") == pytest.approx(378e12)
    assert peak_for("Some Future Accelerator") is None
    limit = 1.1 * 1979e12  # the H100's int8 dense peak
    honest_seconds = params.flops / 300e12
    assert check_plausible(params, honest_seconds, limit, "H100") == pytest.approx(300e12)
    # int8 with int32 accumulation is exact: three times TF32 dense is an optimised worker
    int8_seconds = params.flops / (3 * 494.7e12)
    assert check_plausible(params, int8_seconds, limit, "H100") == pytest.approx(3 * 494.7e12)
    too_fast = params.flops / (1.2 * 1979e12)
    with pytest.raises(VerificationFailed) as caught:
        check_plausible(params, too_fast, limit, "H100")
    assert caught.value.reason is FraudReason.IMPOSSIBLE_THROUGHPUT
    with pytest.raises(VerificationFailed):
        check_plausible(params, 0.0, limit, "H100")


def test_verifier_work_is_a_tiny_fraction_of_the_workers() -> None:
    gpu = ChallengeParams(m=8192, n=8192, k=8192, v=15, stages=1)
    assert gpu.flops / verifier_operations(gpu, SamplingParams()) > 1e5

"""What the devnet reads from the validator and reports: rounds, tallies, weights, the JSON."""

from __future__ import annotations

import io
import json
import math
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console

from byteleap.challenge.params import CPU_DEFAULT
from byteleap.errors import Outcome
from byteleap.protocol.common import MAX_GPUS
from devnet.cheat_modes import CheatMode
from devnet.observe import (
    Observed,
    ValidatorView,
    bucket_end,
    first_weights_after,
    rounds_done,
    snapshot,
    submission_for,
    validator_view,
)
from devnet.plan import build_plan
from devnet.prepare import NeuronIdentity
from devnet.progress import LineProgress, RunStatus, render
from devnet.renters import RenterOutcome
from devnet.report import (
    agreement,
    cosine,
    final_report,
    render_checks,
    render_renters,
    render_table,
    render_validators,
)
from devnet.report_checks import AGREEMENT_TARGET, checks, honest_weight_per_device, problems
from devnet.specs import DevnetOptions, Plan
from neurons.chain import WeightsRecord
from neurons.validator.store.records import ChallengeRow, MinerTally, WeightSubmission, WorkerRow

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def small_plan(tmp_path: Path) -> tuple[Plan, dict[str, NeuronIdentity]]:
    ports = iter(range(30_000, 30_100))
    plan = build_plan(
        DevnetOptions(miners=2, workers=1, cheaters=2, rounds=2),
        tmp_path,
        ports=lambda: next(ports),
        rng=random.Random(2),
    )
    identities = {
        m.name: NeuronIdentity(uid=i + 1, hotkey=f"5Hotkey{m.name}", coldkey=f"5Cold{i}")
        for i, m in enumerate(plan.miners)
    }
    return plan, identities


def row(
    worker: str, challenge: str, outcome: Outcome | None, *, miner: str = "5Hotkeyminer-1"
) -> ChallengeRow:
    closed = outcome is not None
    return ChallengeRow(
        challenge_id=challenge,
        miner_hotkey=miner,
        worker_pubkey=worker,
        gpu_uuid="CPU-x",
        gpu_model="CPU",
        params=CPU_DEFAULT,
        seed=bytes(32),
        dispatched_at=T0,
        deadline_at=T0 + timedelta(seconds=5),
        status="closed" if closed else "dispatched",
        closed_at=T0 + timedelta(seconds=1) if closed else None,
        outcome=outcome,
        failure="wrong_entry" if outcome is Outcome.FRAUD else None,
    )


def weights(block: int, at: float, values: dict[int, int]) -> WeightsRecord:
    return WeightsRecord(
        id=block,
        validator_uid=0,
        hotkey="5Validator",
        block=block,
        version_key=1,
        uids=tuple(values),
        values=tuple(values.values()),
        submitted_at=at,
    )


def test_a_round_counts_scored_challenges_of_every_honest_worker() -> None:
    a, b = "a" * 64, "b" * 64
    rows = [
        row(a, "1", Outcome.VERIFIED),
        row(a, "1", Outcome.VERIFIED),  # a second GPU of the same challenge counts once
        row(a, "2", Outcome.VERIFIED),
        row(a, "3", None),  # still in flight
        row(b, "4", Outcome.EXCUSED),  # says nothing about the worker
        row(b, "5", Outcome.TIMEOUT),
    ]
    assert rounds_done(rows, [a, b]) == 1
    assert rounds_done(rows, [a]) == 2
    assert rounds_done(rows, [a, "c" * 64]) == 0
    assert rounds_done([], []) == 0


def test_the_final_weights_are_the_first_vector_after_the_last_round() -> None:
    records = [weights(10, 100.0, {1: 1}), weights(18, 102.0, {1: 1}), weights(26, 104.0, {1: 1})]
    assert first_weights_after(records, 101.0) is records[1]
    assert first_weights_after(records, 102.0) is records[1]
    assert first_weights_after(records, 104.5) is None


def test_a_worker_counts_for_availability_once_its_bucket_has_ended() -> None:
    assert bucket_end(119.5, 60) == 120
    assert bucket_end(120.0, 60) == 180  # a bucket that just began is not complete
    assert bucket_end(1_000.0, 300) == 1_200


def observed(plan: Plan, ids: dict[str, NeuronIdentity]) -> Observed:
    honest = ids["miner-1"].hotkey
    tallies = [
        MinerTally(honest, {"verified": 3}, {}),
        MinerTally(ids["miner-2"].hotkey, {"verified": 2, "excused": 1}, {}),
        MinerTally(ids["cheater-1"].hotkey, {"fraud": 3}, {"bad_proof": 3}),
        MinerTally(ids["cheater-2"].hotkey, {"fraud": 2, "timeout": 1}, {"wrong_entry": 2}),
    ]
    worker = plan.miners[0].workers[0]
    workers = [
        WorkerRow(
            miner_hotkey=honest,
            miner_uid=1,
            endpoint=None,
            worker_pubkey=worker.pubkey,
            state="idle",
            online=True,
            last_seen=T0,
            gpus=(),
        )
    ]
    return Observed(
        challenges=[row(worker.pubkey, "1", Outcome.FRAUD, miner=ids["cheater-1"].hotkey)],
        tallies=tallies,
        workers=workers,
        weights=[weights(40, 1.0, {1: 40_000, 2: 20_000, 3: 0})],
        block=44,
    )


def test_the_report_has_the_documented_shape(tmp_path: Path) -> None:
    plan, ids = small_plan(tmp_path)
    snap = snapshot(plan, ids, observed(plan, ids))
    report = json.loads(json.dumps(final_report(snap, duration_s=42.04)))
    assert set(report) == {
        "miners",
        "renters",
        "validators",
        "agreement",
        "colluders",
        "weights_block",
        "duration_s",
    }
    assert report["weights_block"] == 40 and report["duration_s"] == 42.0
    assert report["renters"] == [] and report["colluders"] == []
    assert report["validators"] == [] and report["agreement"] is None
    keys = {"uid", "hotkey", "cheater", "cheat", "verified", "failed", "failures", "weight"}
    keys |= {"lease_revenue", "challenge_share", "lease_share", "devices", "excused"}
    assert all(set(m) == keys for m in report["miners"])
    honest1, honest2, cheat1, cheat2 = report["miners"]
    assert honest2["weight"] == 20_000 / 60_000 and honest2["verified"] == 2
    assert honest1 == {
        "uid": 1,
        "hotkey": "5Hotkeyminer-1",
        "cheater": False,
        "cheat": None,
        "devices": 1,
        "verified": 3,
        "failed": 0,
        "excused": 0,
        "failures": {},
        "lease_revenue": None,  # no stored explanation of block 40 was read
        "challenge_share": None,
        "lease_share": None,
        "weight": 40_000 / 60_000,
    }
    assert cheat1["cheat"] == CheatMode.FAKE_ROWS.value and cheat1["cheater"] is True
    assert cheat1["failures"] == {"bad_proof": 3} and cheat1["failed"] == 3
    assert cheat2["cheat"] == "skipped_stages"
    assert cheat2["failed"] == 3 and cheat2["weight"] == 0.0
    assert problems(report) == []
    assert snap.workers_online == 1 and snap.workers_total == 4
    assert snap.recent[0].outcome == "fraud" and snap.recent[0].miner == "cheater-1"


def test_problems_name_a_cheater_with_weight_and_honest_weights_that_do_not_sum_to_one(
    tmp_path: Path,
) -> None:
    plan, ids = small_plan(tmp_path)
    data = observed(plan, ids)
    bad = Observed(
        challenges=data.challenges,
        tallies=data.tallies,
        workers=data.workers,
        weights=[weights(40, 1.0, {1: 30_000, 2: 20_000, 3: 10_000})],
    )
    report = final_report(snapshot(plan, ids, bad), duration_s=1.0)
    found = problems(report)
    assert any("cheater uid 3" in p for p in found)
    assert any("sum to 0.833333" in p for p in found)


def test_an_honest_miner_never_verified_is_a_problem(tmp_path: Path) -> None:
    plan, ids = small_plan(tmp_path)
    data = observed(plan, ids)
    starved = Observed(tallies=[t for t in data.tallies if t.miner_hotkey != "5Hotkeyminer-2"])
    report = final_report(snapshot(plan, ids, starved), duration_s=1.0)
    assert "honest uid 2 (honest) has no verified challenge" in problems(report)
    assert report["weights_block"] is None


def test_the_table_and_the_live_view_show_every_miner(tmp_path: Path) -> None:
    plan, ids = small_plan(tmp_path)
    snap = snapshot(plan, ids, observed(plan, ids))
    console = Console(file=io.StringIO(), width=160)
    names = {m.uid: m.name for m in snap.miners}
    console.print(render_table(final_report(snap, duration_s=3.0), names=names))
    console.print(render(snap, RunStatus("challenging", 3.0, 8, 9), ["network up"]))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    for name in ("miner-1", "miner-2", "cheater-1", "cheater-2", "fake_rows", "bad_proof 3"):
        assert name in text
    assert "processes 8/9" in text


def test_the_line_view_says_each_change_once(tmp_path: Path) -> None:
    plan, ids = small_plan(tmp_path)
    snap = snapshot(plan, ids, observed(plan, ids))
    console = Console(file=io.StringIO(), width=200)
    progress = LineProgress(console)
    progress.update(snap, RunStatus("challenging", 1.0, 9, 9))
    progress.update(snap, RunStatus("challenging", 2.0, 9, 9))
    lines = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert lines.count("devnet: 9/9 processes running") == 1
    assert lines.count("devnet: cheater-1: first bad_proof") == 1
    assert any(line.startswith("devnet: weights at block 40") for line in lines)


# --------------------------------------------------------------------------- leases


def explained(plan: Plan, ids: dict[str, NeuronIdentity], *, block: int = 40) -> WeightSubmission:
    """The validator's stored submission of the vector at ``block``: miner-1 leased."""

    def miner(revenue: float, challenge: float, lease: float) -> dict[str, object]:
        return {"lease_revenue": revenue, "challenge_share": challenge, "lease_share": lease}

    return WeightSubmission(
        submitted_at=T0,
        status="set",
        uids=(1, 2, 3),
        weights=(0.8, 0.2, 0.0),
        inputs={
            "miners": {
                ids["miner-1"].hotkey: miner(0.0025, 0.5, 1.0),
                ids["miner-2"].hotkey: miner(0.0, 0.5, 0.0),
                ids["cheater-1"].hotkey: miner(0.0, 0.0, 0.0),
                # cheater-2 was not scored at all
            }
        },
        block=block,
    )


def outcome(miner_hotkey: str, exit_code: int | None = 0) -> RenterOutcome:
    return RenterOutcome(
        renter="renter-1",
        lease_id="lease-" + "a" * 32,
        miner_hotkey=miner_hotkey,
        worker_pubkey="ab" * 32,
        gpus=1,
        price_per_gpu_hour=1.0,
        job_id="job-0123456789abcdef",
        job_state="succeeded" if exit_code == 0 else "failed",
        exit_code=exit_code,
        stdout="renter-1: hello\n",
        artifacts=("result.txt",),
        lease_status="ended",
        cost=0.0017,
    )


def leased_report(
    plan: Plan,
    ids: dict[str, NeuronIdentity],
    submission: WeightSubmission,
    exit_code: int | None = 0,
) -> dict[str, object]:
    data = replace(observed(plan, ids), submissions=[submission])
    uids = {identity.hotkey: identity.uid for identity in ids.values()}
    renters = [outcome(ids["miner-1"].hotkey, exit_code).to_dict(uids)]
    return final_report(snapshot(plan, ids, data), duration_s=5.0, renters=renters)


def test_lease_figures_come_from_the_validators_explanation_of_the_same_vector(
    tmp_path: Path,
) -> None:
    plan, ids = small_plan(tmp_path)
    report = json.loads(json.dumps(leased_report(plan, ids, explained(plan, ids))))
    honest1, honest2, cheat1, cheat2 = report["miners"]
    assert cheat1["lease_revenue"] == 0.0 and cheat1["challenge_share"] == 0.0
    assert (honest1["lease_revenue"], honest1["lease_share"]) == (0.0025, 1.0)
    assert honest1["challenge_share"] == 0.5 and honest2["lease_revenue"] == 0.0
    assert cheat2["lease_revenue"] == 0.0  # not scored: nothing earned
    (renter,) = report["renters"]
    assert renter["miner_uid"] == 1 and renter["exit_code"] == 0
    assert problems(report) == []
    # the explanation of another vector (or of a failed attempt) is not this vector's
    other = replace(explained(plan, ids), block=32)
    assert leased_report(plan, ids, other)["miners"][0]["lease_revenue"] is None  # type: ignore[index]
    failed = replace(explained(plan, ids), status="failed")
    assert submission_for([failed, other], weights(40, 1.0, {1: 1})) is None


def test_problems_name_a_failed_job_a_cheater_with_revenue_and_uncounted_leases(
    tmp_path: Path,
) -> None:
    plan, ids = small_plan(tmp_path)
    found = problems(leased_report(plan, ids, explained(plan, ids), exit_code=2))
    assert found == ["renter-1's job job-0123456789abcdef ended failed with exit code 2"]

    paid_cheater = explained(plan, ids)
    miners = dict(paid_cheater.inputs["miners"])
    miners[ids["cheater-1"].hotkey] = {"lease_revenue": 0.5}
    miners[ids["miner-1"].hotkey] = {"lease_revenue": 0.0}
    found = problems(leased_report(plan, ids, replace(paid_cheater, inputs={"miners": miners})))
    assert "cheater uid 3 (fake_rows) earned lease revenue 0.500000" in found
    assert "1 lease(s) ran, but no honest miner has lease revenue" in found

    unexplained = replace(explained(plan, ids), block=8)
    assert problems(leased_report(plan, ids, unexplained)) == [
        "the validator's explanation of the final weights could not be read"
    ]


def test_the_tables_show_lease_revenue_and_what_each_renter_did(tmp_path: Path) -> None:
    plan, ids = small_plan(tmp_path)
    report = leased_report(plan, ids, explained(plan, ids))
    names = {identity.uid: name for name, identity in ids.items()}
    console = Console(file=io.StringIO(), width=220)
    console.print(render_table(report, names=names))
    renters = render_renters(report, names=names)
    assert renters is not None
    console.print(renters)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    for expected in ("lease revenue", "0.002500", "lease share", "1.0000", "renter-1"):
        assert expected in text
    assert "job-0123456789abcdef" in text and "succeeded" in text and "0.001700" in text
    assert render_renters(final_report(snapshot(plan, ids, Observed()), duration_s=1.0)) is None


def test_the_line_view_shows_the_lease_revenue_behind_a_weight_vector(tmp_path: Path) -> None:
    plan, ids = small_plan(tmp_path)
    data = replace(observed(plan, ids), submissions=[explained(plan, ids)])
    console = Console(file=io.StringIO(), width=300)
    LineProgress(console).update(snapshot(plan, ids, data), RunStatus("renting", 1.0, 9, 9))
    lines = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    (line,) = [x for x in lines if x.startswith("devnet: weights at block 40")]
    assert line.endswith("(lease revenue: miner-1 0.002500)")


# ------------------------------------------------------------------- sybils and model claims


def cheats_plan(tmp_path: Path) -> tuple[Plan, dict[str, NeuronIdentity]]:
    ports = iter(range(31_000, 31_100))
    plan = build_plan(
        DevnetOptions(
            miners=2,
            workers=1,
            cheaters=0,
            rounds=2,
            cheats=(CheatMode.SYBIL, CheatMode.CPU_AS_GPU, CheatMode.AMBIGUOUS_MODEL),
        ),
        tmp_path,
        ports=lambda: next(ports),
        rng=random.Random(5),
    )
    identities = {
        m.name: NeuronIdentity(uid=i + 1, hotkey=f"5Hotkey{m.name}", coldkey=f"5Cold{i}")
        for i, m in enumerate(plan.miners)
    }
    return plan, identities


def cheats_report(
    tmp_path: Path, values: dict[int, int], *, leased_by: str | None = None
) -> dict[str, object]:
    plan, ids = cheats_plan(tmp_path)
    tallies = [
        MinerTally(ids["miner-1"].hotkey, {"verified": 3}, {}),
        MinerTally(ids["miner-2"].hotkey, {"verified": 3}, {}),
        MinerTally(ids["cheater-1"].hotkey, {"verified": 1, "timeout": 8}, {"timeout": 8}),
        MinerTally(ids["cheater-2"].hotkey, {"verified": 1, "timeout": 2}, {"timeout": 2}),
        MinerTally(ids["cheater-3"].hotkey, {"timeout": 1}, {"timeout": 1}),
        MinerTally(ids["cheater-4"].hotkey, {"timeout": 1}, {"timeout": 1}),
    ]
    data = Observed(tallies=tallies, weights=[weights(60, 1.0, values)])
    uids = {identity.hotkey: identity.uid for identity in ids.values()}
    renters = [outcome(ids[leased_by].hotkey).to_dict(uids)] if leased_by else []
    return final_report(snapshot(plan, ids, data), duration_s=9.0, renters=renters)


def test_the_report_counts_each_miners_claimed_devices(tmp_path: Path) -> None:
    report = cheats_report(tmp_path, {1: 3, 2: 3, 3: 1, 4: 1})
    miners = report["miners"]
    assert isinstance(miners, list)
    assert [(m["cheat"], m["devices"]) for m in miners] == [
        (None, 1),
        (None, 1),
        ("sybil", 3),  # two workers: 2 + 1 claims
        ("sybil", 1),
        ("cpu_as_gpu", 1),
        ("ambiguous_model", 1),
    ]


def test_a_sybil_may_earn_up_to_an_honest_weight_per_device(tmp_path: Path) -> None:
    # honest: 0.375 per device; each sybil 0.125 in all
    report = cheats_report(tmp_path, {1: 3, 2: 3, 3: 1, 4: 1})
    assert problems(report) == []
    assert honest_weight_per_device(report) == 0.375
    verdict = {c.what: c for c in checks(report)}
    assert verdict["uid 3 (sybil): weight <= honest per device"].ok
    assert verdict["uid 5 (cpu_as_gpu): weight 0"].ok
    assert verdict["uid 6 (ambiguous_model): never leased"].ok
    assert verdict["honest + sybil weights sum to 1"].ok


def test_a_sybil_above_an_honest_device_is_a_problem(tmp_path: Path) -> None:
    # the sybil with three claims weighs 0.5, an honest device 0.25
    report = cheats_report(tmp_path, {1: 1, 2: 1, 3: 2})
    found = problems(report)
    assert len(found) == 1, found
    assert found[0].startswith("sybil uid 3 (sybil) weighs 0.500000 with 3 claimed devices")
    # within the tolerance it passes: one honest device's worth, and a little
    report = cheats_report(tmp_path, {1: 100, 2: 100, 3: 103})
    assert problems(report) == []


def test_a_model_cheater_with_weight_or_a_lease_is_a_problem(tmp_path: Path) -> None:
    report = cheats_report(tmp_path, {1: 3, 2: 3, 5: 1})
    assert "cheater uid 5 (cpu_as_gpu) kept weight 0.142857" in problems(report)
    leased = cheats_report(tmp_path, {1: 3, 2: 3}, leased_by="cheater-4")
    assert "cheater uid 6 (ambiguous_model) was leased by renter-1" in problems(leased)


def test_the_checks_table_says_what_passed_and_what_failed(tmp_path: Path) -> None:
    report = cheats_report(tmp_path, {1: 1, 2: 1, 3: 2})
    console = Console(file=io.StringIO(), width=200)
    console.print(render_checks(report))
    console.print(render_table(report))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "uid 3 (sybil): weight <= honest per device" in text and "FAIL" in text
    assert "uid 5 (cpu_as_gpu): never leased" in text and "pass" in text
    assert "devices" in text


# --------------------------------------------------------------------------- agreement


def test_cosine_compares_weight_vectors_over_the_union_of_their_uids() -> None:
    assert cosine({1: 0.5, 2: 0.5}, {1: 0.5, 2: 0.5}) == pytest.approx(1.0)
    assert cosine({1: 1.0, 2: 3.0}, {1: 2.0, 2: 6.0}) == pytest.approx(1.0)  # scale does not matter
    assert cosine({1: 1.0}, {2: 1.0}) == 0.0  # disjoint uids: nothing in common
    # a uid missing on one side counts 0 there
    assert cosine({1: 1.0, 2: 1.0}, {1: 1.0}) == pytest.approx(1 / math.sqrt(2))
    assert cosine({1: 0.8, 2: 0.2}, {1: 0.8, 2: 0.2, 9: 0.0}) == pytest.approx(1.0)
    # zero vectors: two agree (neither weighs anyone), one against anything does not
    assert cosine({}, {}) == 1.0 and cosine({1: 0.0}, {2: 0.0}) == 1.0
    assert cosine({1: 0.0}, {1: 1.0}) == 0.0 and cosine({}, {3: 0.2}) == 0.0


def test_agreement_is_the_smallest_pairwise_cosine() -> None:
    a, b, c = {1: 1.0, 2: 0.0}, {1: 1.0, 2: 1.0}, {1: 0.0, 2: 1.0}
    assert agreement([]) is None and agreement([a]) is None
    assert agreement([a, a]) == pytest.approx(1.0)
    assert agreement([a, b]) == pytest.approx(cosine(a, b))
    assert agreement([a, b, c]) == 0.0  # a and c are orthogonal
    assert agreement([b, a, c]) == agreement([c, b, a])


def view(name: str, uid: int, stake: float, weights: dict[int, float]) -> ValidatorView:
    return ValidatorView(
        name=name,
        uid=uid,
        hotkey=f"5{name}",
        stake=stake,
        weights_block=40,
        weights=weights,
        lease_shares=None,
    )


def test_each_validators_vector_and_their_agreement_are_in_the_report(tmp_path: Path) -> None:
    plan, ids = small_plan(tmp_path)
    snap = snapshot(plan, ids, observed(plan, ids))
    views = [
        view("validator", 0, 10_000.0, {1: 0.6, 2: 0.4, 3: 0.0}),
        view("validator-2", 9, 5_000.0, {1: 0.55, 2: 0.45}),
    ]
    report = json.loads(json.dumps(final_report(snap, duration_s=1.0, validators=views)))
    first, second = report["validators"]
    assert first == {
        "name": "validator",
        "hotkey": "5validator",
        "uid": 0,
        "stake": 10_000.0,
        "weights_block": 40,
        "weights": {"1": 0.6, "2": 0.4, "3": 0.0},
        "lease_shares": None,
    }
    assert second["weights"] == {"1": 0.55, "2": 0.45}
    assert report["agreement"] == round(cosine({1: 0.6, 2: 0.4}, {1: 0.55, 2: 0.45}), 6)
    verdict = {c.what: c for c in checks(report)}
    assert verdict["2 validators agree"].ok and problems(report) == []
    # validators that disagree fail the run
    views[1] = view("validator-2", 9, 5_000.0, {1: 0.1, 2: 0.9})
    report = final_report(snap, duration_s=1.0, validators=views)
    assert report["agreement"] < AGREEMENT_TARGET
    (found,) = problems(report)
    assert found.startswith("the validators' weight vectors disagree")
    # one validator agrees with nobody: no check
    report = final_report(snap, duration_s=1.0, validators=views[:1])
    assert report["agreement"] is None
    assert not any("agree" in c.what for c in checks(report))


def test_the_table_shows_every_validators_weights_and_their_agreement(tmp_path: Path) -> None:
    plan, ids = small_plan(tmp_path)
    snap = snapshot(plan, ids, observed(plan, ids))
    views = [
        view("validator", 0, 10_000.0, {1: 0.6, 2: 0.4}),
        view("validator-2", 9, 5_000.0, {1: 0.55, 2: 0.45}),
    ]
    report = final_report(snap, duration_s=1.0, validators=views)
    console = Console(file=io.StringIO(), width=260)
    console.print(render_table(report, names={1: "miner-1"}))
    table = render_validators(report)
    assert table is not None
    console.print(table)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "weight (validator)" in text and "weight (validator-2)" in text
    assert "0.5500" in text and "agreement" in text and "10,000" in text and "0.6667" in text
    assert render_validators(final_report(snap, duration_s=1.0, validators=views[:1])) is None


def test_a_validator_view_takes_its_vector_and_its_explained_lease_shares(tmp_path: Path) -> None:
    plan, ids = small_plan(tmp_path)
    record = weights(40, 1.0, {1: 40_000, 2: 20_000, 3: 0})
    data = replace(observed(plan, ids), submissions=[explained(plan, ids)])
    me = NeuronIdentity(uid=7, hotkey="5V", coldkey="5C", stake=5_000.0)
    shown = validator_view("validator-2", me, snapshot(plan, ids, data, weights=record), record)
    assert (shown.uid, shown.stake, shown.weights_block) == (7, 5_000.0, 40)
    assert shown.weights == {1: 40_000 / 60_000, 2: 20_000 / 60_000, 3: 0.0}
    assert shown.lease_shares == {1: 1.0, 2: 0.0, 3: 0.0, 4: 0.0}
    unexplained = validator_view("v", me, snapshot(plan, ids, observed(plan, ids)), record)
    assert unexplained.lease_shares is None
    assert validator_view("v", me, snapshot(plan, ids, Observed()), None).weights == {}


# --------------------------------------------------------------------------- excuse modes


def excuse_plan(tmp_path: Path) -> tuple[Plan, dict[str, NeuronIdentity]]:
    ports = iter(range(32_000, 32_100))
    plan = build_plan(
        DevnetOptions(
            miners=2,
            workers=1,
            cheaters=0,
            rounds=2,
            validators=2,
            cheats=(CheatMode.LATE_EXCUSE, CheatMode.PHANTOM_BUSY, CheatMode.RECEIPT_MINT),
        ),
        tmp_path,
        ports=lambda: next(ports),
        rng=random.Random(6),
    )
    identities = {
        m.name: NeuronIdentity(uid=i + 3, hotkey=f"5Hotkey{m.name}", coldkey=f"5Cold{i}")
        for i, m in enumerate(plan.miners)
    }
    return plan, identities


def excuse_report(
    tmp_path: Path,
    values: dict[int, int],
    *,
    late: dict[str, int] | None = None,
    late_verified: int = 0,
    mint_shares: tuple[float | None, float | None] = (0.05, 0.05),
    billed: int = 12,
) -> dict[str, object]:
    """miner-1 (uid 3), miner-2 (4), late_excuse (5), phantom_busy (6), receipt_mint (7); two
    validators and a colluder with 1,000 of 16,000 stake (a share of 0.0625)."""
    plan, ids = excuse_plan(tmp_path)
    late = {"timeout": 3} if late is None else late
    tallies = [
        MinerTally(ids["miner-1"].hotkey, {"verified": 3}, {}),
        MinerTally(ids["miner-2"].hotkey, {"verified": 3}, {}),
        MinerTally(
            ids["cheater-1"].hotkey,
            {"verified": late_verified, "timeout": sum(late.values())},
            late,
        ),
        MinerTally(
            ids["cheater-2"].hotkey, {"verified": 3, "timeout": 40}, {"unexplained_busy": 40}
        ),
        MinerTally(ids["cheater-3"].hotkey, {"verified": 3}, {}),
    ]
    data = Observed(tallies=tallies, weights=[weights(60, 1.0, values)])
    snap = snapshot(plan, ids, data)
    record = weights(60, 1.0, values)
    views = [
        ValidatorView(
            name=name,
            uid=uid,
            hotkey=f"5{name}",
            stake=stake,
            weights_block=60,
            weights=record.shares(),
            lease_shares=None if share is None else {3: 0.9, 7: share},
        )
        for name, uid, stake, share in (
            ("validator", 0, 10_000.0, mint_shares[0]),
            ("validator-2", 1, 5_000.0, mint_shares[1]),
        )
    ]
    colluder = {
        "name": "colluder-1",
        "hotkey": "5Colluder",
        "uid": 2,
        "stake": 1_000.0,
        "stake_share": 0.0625,
        "miner_uid": 7,
        "leases": 1,
        "receipts": 3,
        "billed_gpu_s": billed,
        "errors": {} if billed else {"lease_start": 2},
    }
    return final_report(snap, duration_s=9.0, validators=views, colluders=[colluder])


def test_the_excuse_and_collusion_cheats_pass_when_judged_as_spec_5_5_says(
    tmp_path: Path,
) -> None:
    report = excuse_report(tmp_path, {3: 40, 4: 40, 6: 8, 7: 12})
    assert problems(report) == []
    verdict = {c.what: c for c in checks(report)}
    assert verdict["uid 5 (late_excuse): weight 0"].ok
    assert verdict["uid 5 (late_excuse): late excuses are timeouts"].ok
    assert verdict["uid 5 (late_excuse): no lease revenue"].ok
    assert verdict["uid 6 (phantom_busy): weight <= one honest device"].ok
    assert verdict["uid 7 (receipt_mint): colluder minted receipts"].ok
    mint = verdict["uid 7 (receipt_mint): lease share <= colluder's stake share"]
    assert mint.ok and "0.0625" in mint.detail
    assert verdict["honest + phantom_busy/receipt_mint weights sum to 1"].ok
    assert verdict["2 validators agree"].ok
    # with several validators a late excuse may also find the worker busy for another one
    report = excuse_report(tmp_path, {3: 1, 4: 1}, late={"timeout": 2, "unexplained_busy": 2})
    assert problems(report) == []


def test_a_late_excuse_that_is_excused_or_verified_is_a_problem(tmp_path: Path) -> None:
    # every late "busy" excused: no timeout at all (busy claims of another validator's are not
    # the late excuse)
    for late in ({}, {"unexplained_busy": 3}):
        found = problems(excuse_report(tmp_path, {3: 1, 4: 1}, late=late))
        assert found == [
            "late_excuse uid 5 (late_excuse) has no timeout: no late excuse was scored as one"
        ]
    found = problems(excuse_report(tmp_path, {3: 1, 4: 1}, late={"timeout": 1, "bad_proof": 1}))
    assert found == ["late_excuse uid 5 (late_excuse) has failures other than timeouts: bad_proof"]
    found = problems(excuse_report(tmp_path, {3: 1, 4: 1}, late_verified=2))
    assert found == ["late_excuse uid 5 (late_excuse) was verified 2 times"]
    found = problems(excuse_report(tmp_path, {3: 1, 4: 1, 5: 1}))
    assert "cheater uid 5 (late_excuse) kept weight 0.333333" in found


def test_busy_devices_that_lift_a_miner_above_one_honest_device_are_a_problem(
    tmp_path: Path,
) -> None:
    found = problems(excuse_report(tmp_path, {3: 1, 4: 1, 6: 2}))
    assert len(found) == 1, found
    assert found[0].startswith("phantom_busy uid 6 (phantom_busy) weighs 0.500000")
    assert f"its {MAX_GPUS} busy devices lifted it" in found[0]


def test_minted_receipts_worth_more_than_the_colluders_stake_are_a_problem(
    tmp_path: Path,
) -> None:
    found = problems(excuse_report(tmp_path, {3: 1, 4: 1}, mint_shares=(0.05, 0.4)))
    assert found == [
        "receipt_mint uid 7 (receipt_mint) has lease share 0.400000 in validator-2's weights, "
        "more than colluder-1's stake share 0.062500 + 0.02"
    ]
    found = problems(excuse_report(tmp_path, {3: 1, 4: 1}, mint_shares=(0.05, None)))
    assert found == ["the explanation of validator-2's final weights could not be read"]
    found = problems(excuse_report(tmp_path, {3: 1, 4: 1}, billed=0))
    assert found == [
        "colluder-1 minted no receipt that bills anything for uid 7 (receipt_mint) "
        "(refusals: lease_start 2)"
    ]

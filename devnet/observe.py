"""What the devnet shows: the validator's verdicts (from its database) and weights (from the chain).

The devnet decides nothing itself. It reads the validator's store through the same interface the
validator writes it with (:class:`neurons.validator.store.records.ValidatorStore`; SQLite in WAL
mode lets it read while the validator writes) and the weight vectors from the devchain, and turns
them into a :class:`Snapshot`. :func:`snapshot` is pure, so what the live view and the final report
say is tested without a network.

Each miner's lease revenue and its challenge and lease shares come from the validator's own
explanation of the weight vector shown: the inputs it stored with the submission that set it.
With several validators, each one's store is read on its own (one :class:`Observed` and one
:class:`Snapshot` each); the report lists each one's vector (:class:`ValidatorView`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from byteleap.errors import ByteLeapError, Outcome, TransientError
from devnet.cheat_modes import CheatMode
from devnet.colluder import read_ledger
from devnet.prepare import Network, NeuronIdentity
from devnet.specs import ColluderSpec, Plan
from neurons.chain import WeightsRecord
from neurons.validator.store.records import (
    ChallengeRow,
    MinerTally,
    WeightSubmission,
    WorkerRow,
)

#: outcomes that count towards a round (an excused challenge says nothing about the worker)
SCORED = frozenset({Outcome.VERIFIED, Outcome.FRAUD, Outcome.TIMEOUT})
#: how many recent verdicts the live view lists
RECENT = 8


@dataclass(frozen=True)
class Observed:
    """One read of the validator's store (plus the devchain's weights)."""

    challenges: Sequence[ChallengeRow] = ()
    tallies: Sequence[MinerTally] = ()
    workers: Sequence[WorkerRow] = ()
    submissions: Sequence[WeightSubmission] = ()
    weights: Sequence[WeightsRecord] = ()
    block: int = 0


@dataclass(frozen=True)
class MinerState:
    name: str
    uid: int
    hotkey: str
    cheat: CheatMode | None
    workers: int
    workers_online: int
    #: the devices its workers claim
    devices: int = 0
    verified: int = 0
    fraud: int = 0
    timeout: int = 0
    excused: int = 0
    #: failure type (FraudReason value, ``timeout``, ...) -> count, over fraud and timeouts
    failures: Mapping[str, int] = field(default_factory=dict)
    weight: float | None = None
    #: from the validator's explanation of the weight vector (None: not read yet)
    lease_revenue: float | None = None
    challenge_share: float | None = None
    lease_share: float | None = None

    @property
    def failed(self) -> int:
        return self.fraud + self.timeout


@dataclass(frozen=True)
class LiveVerdict:
    """One closed challenge of one GPU, for the live view."""

    closed_at: datetime
    miner: str
    worker: str
    outcome: str
    failure: str | None
    detail: str | None


@dataclass(frozen=True)
class Snapshot:
    block: int
    rounds: int
    rounds_done: int
    miners: tuple[MinerState, ...]
    recent: tuple[LiveVerdict, ...]
    #: the devchain's newest vector of this validator
    weights_block: int | None
    #: the validator's newest submission: status and, when it set none, why
    last_submission: str | None
    #: whether the validator's stored explanation of the weight vector was found
    explained: bool = False

    @property
    def workers_online(self) -> int:
        return sum(m.workers_online for m in self.miners)

    @property
    def workers_total(self) -> int:
        return sum(m.workers for m in self.miners)


@dataclass(frozen=True)
class ValidatorView:
    """One validator's final weight vector, for the report (``validators`` in the JSON)."""

    name: str
    uid: int
    hotkey: str
    stake: float
    weights_block: int | None
    #: uid -> its share of the vector (the u16 values normalised to sum 1)
    weights: Mapping[int, float]
    #: miner uid -> its lease share in the validator's explanation of the vector (None: the
    #: explanation could not be read)
    lease_shares: Mapping[int, float] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "hotkey": self.hotkey,
            "uid": self.uid,
            "stake": self.stake,
            "weights_block": self.weights_block,
            "weights": {str(uid): share for uid, share in sorted(self.weights.items())},
            "lease_shares": None
            if self.lease_shares is None
            else {str(uid): share for uid, share in sorted(self.lease_shares.items())},
        }


def validator_view(
    name: str, identity: NeuronIdentity, snap: Snapshot, weights: WeightsRecord | None
) -> ValidatorView:
    """What ``snap`` (one validator's snapshot, taken with ``weights``) says of its vector."""
    return ValidatorView(
        name=name,
        uid=identity.uid,
        hotkey=identity.hotkey,
        stake=identity.stake,
        weights_block=weights.block if weights is not None else None,
        weights=weights.shares() if weights is not None else {},
        lease_shares={m.uid: m.lease_share or 0.0 for m in snap.miners} if snap.explained else None,
    )


def scored_per_worker(challenges: Sequence[ChallengeRow]) -> Counter[str]:
    """Closed, scored challenges per worker public key (a multi-GPU challenge counts once)."""
    seen = {
        (row.worker_pubkey, row.challenge_id)
        for row in challenges
        if row.status == "closed" and row.outcome in SCORED
    }
    return Counter(worker for worker, _ in seen)


def rounds_done(challenges: Sequence[ChallengeRow], honest_workers: Sequence[str]) -> int:
    """Rounds every honest worker has finished: the fewest scored challenges among them."""
    counts = scored_per_worker(challenges)
    return min((counts[w] for w in honest_workers), default=0)


def first_weights_after(records: Sequence[WeightsRecord], when: float) -> WeightsRecord | None:
    """The oldest weight vector submitted at or after ``when`` (a wall-clock timestamp)."""
    return next((r for r in records if r.submitted_at >= when), None)


def submission_for(
    submissions: Sequence[WeightSubmission], weights: WeightsRecord
) -> WeightSubmission | None:
    """The validator's stored submission that set ``weights`` on the chain (same block)."""
    return next((s for s in submissions if s.status == "set" and s.block == weights.block), None)


def _explanations(submission: WeightSubmission | None) -> Mapping[str, Mapping[str, Any]]:
    miners = submission.inputs.get("miners") if submission is not None else None
    if not isinstance(miners, Mapping):
        return {}
    return {k: v for k, v in miners.items() if isinstance(v, Mapping)}


def _number(explanation: Mapping[str, Any] | None, key: str) -> float:
    value = explanation.get(key) if explanation is not None else None
    return float(value) if isinstance(value, int | float) else 0.0


def _describe(submission: WeightSubmission) -> str:
    text: str = submission.status
    if submission.block is not None:
        text += f" at block {submission.block}"
    if submission.reason:
        text += f": {submission.reason}"
    return text


def snapshot(
    plan: Plan,
    miners: Mapping[str, NeuronIdentity],
    observed: Observed,
    *,
    weights: WeightsRecord | None = None,
) -> Snapshot:
    """The state to show. ``weights`` picks the vector to report (default: the newest)."""
    if weights is None and observed.weights:
        weights = observed.weights[-1]
    shares = weights.shares() if weights is not None else {}
    submission = submission_for(observed.submissions, weights) if weights is not None else None
    explanations = _explanations(submission)
    tallies = {t.miner_hotkey: t for t in observed.tallies}
    online = {w.worker_pubkey for w in observed.workers if w.online}
    names = {identity.hotkey: name for name, identity in miners.items()}
    states = []
    for spec in plan.miners:
        identity = miners[spec.name]
        tally = tallies.get(identity.hotkey)
        by_outcome = tally.by_outcome if tally else {}
        explanation = explanations.get(identity.hotkey)
        explained = submission is not None
        states.append(
            MinerState(
                name=spec.name,
                uid=identity.uid,
                hotkey=identity.hotkey,
                cheat=spec.cheat,
                workers=len(spec.workers),
                workers_online=sum(1 for w in spec.workers if w.pubkey in online),
                devices=spec.devices,
                verified=by_outcome.get(Outcome.VERIFIED, 0),
                fraud=by_outcome.get(Outcome.FRAUD, 0),
                timeout=by_outcome.get(Outcome.TIMEOUT, 0),
                excused=by_outcome.get(Outcome.EXCUSED, 0),
                failures=dict(sorted(tally.by_failure.items())) if tally else {},
                weight=shares.get(identity.uid, 0.0) if weights is not None else None,
                lease_revenue=_number(explanation, "lease_revenue") if explained else None,
                challenge_share=_number(explanation, "challenge_share") if explained else None,
                lease_share=_number(explanation, "lease_share") if explained else None,
            )
        )
    closed = sorted(
        (row for row in observed.challenges if row.closed_at is not None and row.outcome),
        key=lambda row: row.closed_at or row.dispatched_at,
        reverse=True,
    )
    recent = tuple(
        LiveVerdict(
            closed_at=row.closed_at or row.dispatched_at,
            miner=names.get(row.miner_hotkey, row.miner_hotkey[:8]),
            worker=row.worker_pubkey[:8],
            outcome=str(row.outcome),
            failure=row.failure,
            detail=row.detail,
        )
        for row in closed[:RECENT]
    )
    honest = [w.pubkey for w in plan.honest_workers]
    return Snapshot(
        block=observed.block,
        rounds=plan.rounds,
        rounds_done=rounds_done(observed.challenges, honest),
        miners=tuple(states),
        recent=recent,
        weights_block=weights.block if weights is not None else None,
        last_submission=_describe(observed.submissions[0]) if observed.submissions else None,
        explained=submission is not None,
    )


#: the newest challenge rows read per poll (a devnet closes a few hundred at most)
CHALLENGE_ROWS = 20_000


#: the newest weight submissions read per poll (the final vector's is among them)
SUBMISSION_ROWS = 10


class StoreReader:
    """Reads one validator's store (opened on its database URL once it exists) and its weights
    on the devchain (``uid``; default: the first validator's)."""

    def __init__(self, url: str, uid: int | None = None, name: str = "validator") -> None:
        self.url = url
        self.uid = uid
        self.name = name
        self.store: Any = None
        self.last_error: str | None = None
        self._last = Observed()

    async def ready(self) -> bool:
        """Open the store; False while the validator has not created its schema yet."""
        if self.store is not None:
            return True
        from neurons.validator.store import open_store

        store = None
        try:
            # no auto_upgrade: the schema is the validator's to create; until it is at head,
            # open_store raises StorageError and the validator is still starting
            store = await open_store(self.url, pool_size=2)
            await store.miners()
        except Exception as exc:  # the database may not even exist yet
            self.last_error = exc.message if isinstance(exc, ByteLeapError) else repr(exc)
            if store is not None:
                await store.close()
            return False
        self.store = store
        return True

    async def read(self, network: Network, since: datetime) -> Observed:
        chain = network.chain
        weights = chain.weights_history(self.uid if self.uid is not None else network.validator.uid)
        block = chain.current_block()
        if self.store is None:
            return Observed(weights=weights, block=block)
        store = self.store
        try:
            self._last = Observed(
                challenges=await store.recent_challenges(limit=CHALLENGE_ROWS),
                tallies=await store.tally(since),
                workers=await store.workers(datetime.now(UTC)),
                submissions=await store.weight_submissions(limit=SUBMISSION_ROWS),
            )
        except TransientError as exc:  # a busy database: show the last good read again
            self.last_error = exc.message
        return replace(self._last, weights=weights, block=block)

    async def close(self) -> None:
        if self.store is not None:
            await self.store.close()
            self.store = None


def bucket_end(when: float, bucket_seconds: int) -> float:
    """When the availability bucket that ``when`` falls in is complete (buckets count from the
    Unix epoch, as in ``byteleap.scoring.availability``)."""
    return (math.floor(when / bucket_seconds) + 1) * bucket_seconds


def colluder_report(spec: ColluderSpec, network: Network) -> dict[str, Any]:
    """A colluding validator, for the report: its stake share and what its ledger says."""
    identity = network.colluders[spec.name]
    ledger = read_ledger(spec.ledger)
    total = network.total_stake
    return {
        "name": spec.name,
        "hotkey": identity.hotkey,
        "uid": identity.uid,
        "stake": identity.stake,
        "stake_share": round(identity.stake / total, 6) if total else 0.0,
        "miner_uid": network.miners[spec.miner].uid,
        "leases": ledger.leases,
        "receipts": ledger.receipts,
        "billed_gpu_s": ledger.billed_gpu_s,
        "errors": dict(ledger.errors),
    }

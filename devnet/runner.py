"""``byteleap devnet`` from start to finish.

1. Plan the network and put it on disk (wallets, worker keys, configs, the devchain with every
   hotkey registered).
2. Start every process through its real command line: the validator, the miners, the workers.
3. Watch: read the validator's store and the devchain twice a second and show it. A child that
   exits, or a network that does not come up in time, stops the run with that child's log tail.
4. A round is done when every honest worker has that many scored challenges (verified, fraud or
   timeout; an excused challenge says nothing about a worker).
5. With renters: their API keys are made (``byteleap-validator renters add``) as soon as the
   validator's database is up; after the last round every renter leases one GPU, runs a job on
   it and terminates the lease (:mod:`devnet.renters`).
6. Then wait for every validator's next weight vector on the devchain (after the renters are
   done and one receipt collection later) and report them, with each validator's own
   explanation of its vector (lease revenue, challenge and lease shares), and how well the
   validators agree.
7. Stop every child (SIGTERM, then SIGKILL), also on Ctrl-C or an error, and remove the run
   directory unless asked to keep it.

With several validators (``--validators``), each one's store is read on its own: a round is done
when every validator has scored every honest worker that many times. With receipt_mint
cheaters, their colluding validators are told to start (a file each) when the rounds are done,
and the renters wait until every colluder has leased its miner's workers, so that no renter is
given a worker that runs no jobs; the final vectors come after the validators could collect a
minted receipt that bills something.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from devnet.colluder import read_ledger
from devnet.failures import Limits, not_up, too_slow
from devnet.observe import (
    Snapshot,
    StoreReader,
    bucket_end,
    colluder_report,
    snapshot,
    submission_for,
    validator_view,
)
from devnet.observe import first_weights_after as weights_after
from devnet.prepare import Network, prepare
from devnet.processes import (
    DevnetFailed,
    Interrupted,
    ProcessGroup,
    blame_exited,
    stop_on_signals,
)
from devnet.progress import Progress, RunStatus
from devnet.renters import RenterFailed, RenterOutcome, create_keys, rent_all
from devnet.report import (
    final_report,
)
from devnet.specs import Plan
from neurons.chain import WeightsRecord

#: seconds between two reads of the network's state
POLL_S = 0.5
#: seconds the final vector's stored explanation may lag behind the vector on the chain
EXPLANATION_WAIT_S = 10.0
#: seconds the renters wait for the colluders to lease their miners' workers (and the final
#: weights for a minted receipt that bills something) before the run goes on without them
COLLUDER_WAIT_S = 30.0


@dataclass(frozen=True)
class Result:
    snapshot: Snapshot
    report: dict[str, Any]


class Devnet:
    """One run. :meth:`run` returns the final state and report, or raises DevnetFailed or
    Interrupted; either way every child is stopped."""

    def __init__(
        self,
        plan: Plan,
        progress: Progress,
        *,
        limits: Limits | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.plan = plan
        self.progress = progress
        self.limits = limits or Limits()
        self.clock = clock
        self.exit_codes: dict[str, int] = {}
        #: what each renter did, once the renter phase is over
        self.renters: list[RenterOutcome] = []
        self._tasks: list[asyncio.Task[Any]] = []
        #: each validator's final weight vector, once the run has one
        self._finals: list[WeightsRecord] = []

    async def run(self) -> Result:
        started = self.clock()
        since = datetime.now(UTC)
        plan = self.plan
        network = prepare(plan)
        who = ", ".join(
            f"{validator.name} uid {identity.uid} (stake {identity.stake:,.0f})"
            for validator, identity in zip(plan.validators, network.validators, strict=True)
        )
        self.progress.note(
            f"devchain at {plan.chain_path}; {who}; {len(plan.miners)} miners, "
            f"{len(plan.workers)} workers"
        )
        for colluder in plan.colluders:
            identity = network.colluders[colluder.name]
            self.progress.note(
                f"{colluder.name} uid {identity.uid} (stake {identity.stake:,.0f}) colludes "
                f"with {colluder.miner}"
            )
        stop = asyncio.Event()
        readers = [
            StoreReader(validator.database_url, identity.uid, validator.name)
            for validator, identity in zip(plan.validators, network.validators, strict=True)
        ]
        group = ProcessGroup()
        try:
            with stop_on_signals(asyncio.get_running_loop(), stop):
                # every child starts before anything here starts a thread (see processes.py)
                for spec in plan.processes():
                    group.start(spec)
                snaps = await self._watch(plan, network, group, readers, stop, started, since)
            duration = self.clock() - started
            self.progress.note("stopping every process")
            self.exit_codes = group.stop()
            snaps = await self._still_pictures(plan, network, readers, since, snaps)
        finally:
            await self._cancel_tasks()
            for reader in readers:
                await reader.close()
            self.progress.close()
            network.chain.close()
            self.exit_codes = group.stop()
        uids = {identity.hotkey: identity.uid for identity in network.miners.values()}
        renters = [outcome.to_dict(uids) for outcome in self.renters]
        views = [
            validator_view(spec.name, identity, snap, final)
            for spec, identity, snap, final in zip(
                plan.validators, network.validators, snaps, self._finals, strict=True
            )
        ]
        colluders = [colluder_report(spec, network) for spec in plan.colluders]
        report = final_report(
            snaps[0], duration_s=duration, renters=renters, validators=views, colluders=colluders
        )
        return Result(snaps[0], report)

    async def _cancel_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        self._tasks.clear()

    def _task(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.append(task)
        return task

    async def _rent(
        self, plan: Plan, network: Network, keys: asyncio.Task[dict[str, str]]
    ) -> list[RenterOutcome]:
        assert plan.renter_api_url is not None
        names = {identity.hotkey: name for name, identity in network.miners.items()}
        return await rent_all(
            plan.renters,
            await keys,
            plan.renter_api_url,
            note=self.progress.note,
            miner_names=names,
        )

    def _renters_failed(self, plan: Plan, group: ProcessGroup, exc: BaseException) -> DevnetFailed:
        validator = next(c for c in group.children if c.name == plan.validator.name)
        if isinstance(exc, RenterFailed):
            message = f"the renter phase failed: {exc.message}"
        else:
            message = f"the renter phase failed: {exc!r}"
        return DevnetFailed(message, process=validator.name, log=validator.tail())

    async def _still_pictures(
        self,
        plan: Plan,
        network: Network,
        readers: list[StoreReader],
        since: datetime,
        last: list[Snapshot],
    ) -> list[Snapshot]:
        """The final counts of every validator, read once nothing writes any more (so the
        tallies of every miner come from one unchanging database), with the weights the run
        ended on."""
        out = []
        for reader, snap in zip(readers, last, strict=True):
            try:
                observed = await reader.read(network, since)
            except Exception:  # the last live snapshot is still a fair answer
                out.append(snap)
                continue
            record = next((w for w in observed.weights if w.block == snap.weights_block), None)
            out.append(snapshot(plan, network.miners, observed, weights=record) if record else snap)
        return out

    def _colluders_leased(self, plan: Plan) -> bool:
        """Whether every colluder has leased every worker of its miner."""
        workers = {m.name: len(m.workers) for m in plan.miners}
        return all(read_ledger(c.ledger).leases >= workers[c.miner] for c in plan.colluders)

    def _first_minted(self, plan: Plan) -> float | None:
        """When the last colluder to do so had its first billing receipt countersigned."""
        times = [read_ledger(c.ledger).first_billed_at for c in plan.colluders]
        return None if any(t is None for t in times) else max(t for t in times if t is not None)

    async def _watch(
        self,
        plan: Plan,
        network: Network,
        group: ProcessGroup,
        readers: list[StoreReader],
        stop: asyncio.Event,
        started: float,
        since: datetime,
    ) -> list[Snapshot]:
        total = len(plan.processes())
        up_at: float | None = None
        # wall clock (compared with the chain's timestamps): the final weights are each
        # validator's first vector submitted after the last round, after the renters (and one
        # receipt collection more), after a receipt the colluders minted could be collected, and
        # after the end of the first availability bucket in which every worker was online (else
        # a miner that came up a second late could still have availability 0 in that vector)
        done_at: float | None = None
        counted_at: float | None = None
        rented_at: float | None = None if plan.renters else 0.0
        # the colluders (receipt_mint): told to start after the rounds; the renters wait for
        # their leases, and the final weights for their first billing receipt
        colluding_since: float | None = None
        colluded_at: float | None = None if plan.colluders else 0.0
        minted_at: float | None = None if plan.colluders else 0.0
        keys: asyncio.Task[dict[str, str]] | None = None
        renting: asyncio.Task[list[RenterOutcome]] | None = None
        final_seen: float | None = None
        while True:
            if stop.is_set():
                raise Interrupted
            exited = group.exited()
            if exited:
                raise blame_exited(exited)
            elapsed = self.clock() - started
            for reader in readers:
                await reader.ready()
            observed = [await reader.read(network, since) for reader in readers]
            snaps = [snapshot(plan, network.miners, o) for o in observed]
            # a round counts once every validator has scored every honest worker
            snap = replace(snaps[0], rounds_done=min(s.rounds_done for s in snaps))
            ready = all(reader.store is not None for reader in readers)
            notes = []
            if keys is None and plan.renters and readers[0].store is not None:
                # the validator's schema exists: its own command can add the renters now
                keys = self._task(create_keys(plan.renters))
            if up_at is None and ready:
                if snap.workers_online == snap.workers_total:
                    up_at = elapsed
                    counted_at = bucket_end(time.time(), plan.bucket_seconds)
                    notes.append(f"network up after {elapsed:.1f} s")
                elif elapsed > self.limits.start_s:
                    raise not_up(plan, network, group, readers, snap, self.limits)
            elif up_at is None and elapsed > self.limits.start_s:
                raise not_up(plan, network, group, readers, snap, self.limits)
            if done_at is None and snap.rounds_done >= plan.rounds:
                done_at = time.time()
                then = "renting" if plan.renters else "waiting for weights"
                if plan.colluders:
                    then = "starting the colluders"
                notes.append(f"{plan.rounds} rounds done at {elapsed:.0f} s; {then}")
            if done_at is not None and colluding_since is None and plan.colluders:
                colluding_since = elapsed
                for colluder in plan.colluders:
                    colluder.start_file.parent.mkdir(parents=True, exist_ok=True)
                    colluder.start_file.touch()
            if colluding_since is not None and colluded_at is None:
                waited = elapsed - colluding_since
                if self._colluders_leased(plan):
                    colluded_at = time.time()
                    notes.append(f"the colluders leased their miners' workers at {elapsed:.0f} s")
                elif waited > COLLUDER_WAIT_S:
                    colluded_at = time.time()
                    notes.append(
                        f"the colluders did not lease every worker within {COLLUDER_WAIT_S:.0f} s "
                        "(see their ledgers); going on"
                    )
            if minted_at is None and colluded_at is not None:
                first = self._first_minted(plan)
                if first is not None:
                    minted_at = first + plan.receipt_poll_s
                    notes.append("the colluders' first billing receipts are countersigned")
                elif colluding_since is not None and elapsed - colluding_since > COLLUDER_WAIT_S:
                    minted_at = 0.0
                    notes.append("no colluder minted a billing receipt; going on")
            if (
                done_at is not None
                and keys is not None
                and colluded_at is not None
                and renting is None
            ):
                renting = self._task(self._rent(plan, network, keys))
            if renting is not None and rented_at is None and renting.done():
                if renting.cancelled() or renting.exception() is not None:
                    raise self._renters_failed(
                        plan, group, renting.exception() or asyncio.CancelledError()
                    )
                self.renters = renting.result()
                rented_at = time.time()
                notes.append(
                    f"{len(self.renters)} renter(s) done at {elapsed:.0f} s; waiting for the "
                    "receipts to be counted and for weights"
                )
            if (
                done_at is not None
                and counted_at is not None
                and rented_at is not None
                and minted_at is not None
            ):
                counted = rented_at + plan.receipt_poll_s if plan.renters else 0.0
                after = max(done_at, counted_at, counted, minted_at)
                finals = [weights_after(o.weights, after) for o in observed]
                if all(final is not None for final in finals):
                    final_seen = final_seen if final_seen is not None else elapsed
                    explained = all(
                        final is not None and submission_for(o.submissions, final) is not None
                        for o, final in zip(observed, finals, strict=True)
                    )
                    if explained or elapsed - final_seen > EXPLANATION_WAIT_S:
                        self._finals = [final for final in finals if final is not None]
                        result = [
                            snapshot(plan, network.miners, o, weights=final)
                            for o, final in zip(observed, self._finals, strict=True)
                        ]
                        shown = replace(result[0], rounds_done=snap.rounds_done)
                        self.progress.update(shown, self._status("done", elapsed, group, total))
                        for note in notes:
                            self.progress.note(note)
                        if len(result) > 1:
                            blocks = ", ".join(
                                f"{r.name} block {f.block}"
                                for r, f in zip(readers, self._finals, strict=True)
                            )
                            self.progress.note(f"final weights: {blocks}")
                        return result
            phase = (
                "starting"
                if up_at is None
                else "challenging"
                if done_at is None
                else "colluding"
                if colluded_at is None
                else "renting"
                if rented_at is None
                else "waiting for weights"
            )
            self.progress.update(snap, self._status(phase, elapsed, group, total))
            for note in notes:
                self.progress.note(note)
            if elapsed > self.limits.total_s:
                raise too_slow(
                    plan, group, readers, observed, snap, done_at is not None, self.limits
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=POLL_S)

    def _status(self, phase: str, elapsed: float, group: ProcessGroup, total: int) -> RunStatus:
        return RunStatus(phase, elapsed, group.running(), total)

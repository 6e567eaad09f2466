"""Why a devnet run failed, in words: the start-up and run time limits (:class:`Limits`), the
process that did not come up in time, and the honest workers or validators that were too slow.
"""

from __future__ import annotations

from dataclasses import dataclass

from devnet.observe import Observed, Snapshot, StoreReader, scored_per_worker
from devnet.prepare import Network
from devnet.processes import DevnetFailed, ProcessGroup
from devnet.specs import Plan


@dataclass(frozen=True)
class Limits:
    #: the validator's database readable and every worker online within this
    start_s: float = 90.0
    #: the whole run, start-up included
    total_s: float = 300.0


def behind(plan: Plan, observed: Observed, needed: int, who: str = "") -> list[str]:
    counts = scored_per_worker(observed.challenges)
    return [
        f"{w.name} ({counts[w.pubkey]}/{needed}{who})"
        for w in plan.honest_workers
        if counts[w.pubkey] < needed
    ]


def not_up(
    plan: Plan,
    network: Network,
    group: ProcessGroup,
    readers: list[StoreReader],
    snap: Snapshot,
    limits: Limits,
) -> DevnetFailed:
    by_name = {child.name: child for child in group.children}
    for reader in readers:
        if reader.store is None:
            child = by_name[reader.name]
            why = f": {reader.last_error}" if reader.last_error else ""
            return DevnetFailed(
                f"the database of {reader.name} is not readable after {limits.start_s:.0f} s{why}",
                process=child.name,
                log=child.tail(),
            )
    online = {m.name: m.workers_online for m in snap.miners}
    for miner in plan.miners:
        if online[miner.name] < len(miner.workers):
            child = by_name[miner.workers[0].name]
            return DevnetFailed(
                f"{miner.name} has {online[miner.name]}/{len(miner.workers)} workers online "
                f"in the validator's view after {limits.start_s:.0f} s (the log of "
                f"{miner.name} is {miner.process.log_path})",
                process=child.name,
                log=child.tail(),
            )
    return DevnetFailed("the network did not come up")  # pragma: no cover


def too_slow(
    plan: Plan,
    group: ProcessGroup,
    readers: list[StoreReader],
    observed: list[Observed],
    snap: Snapshot,
    rounds_finished: bool,
    limits: Limits,
) -> DevnetFailed:
    limit = f"{limits.total_s:.0f} s"
    validator = next(c for c in group.children if c.name == plan.validator.name)
    several = len(readers) > 1
    if not rounds_finished:
        behind = ", ".join(
            item
            for reader, o in zip(readers, observed, strict=True)
            for item in behind(plan, o, plan.rounds, f" by {reader.name}" if several else "")
        )
        message = (
            f"not every honest worker finished {plan.rounds} rounds within {limit}; "
            f"behind: {behind}"
        )
    else:
        message = (
            f"the validator set no weights after the last round within {limit} "
            f"(its last submission: {snap.last_submission or 'none'})"
        )
        if several:
            message = f"not every validator set weights after the last round within {limit}"
    return DevnetFailed(message, process=validator.name, log=validator.tail())

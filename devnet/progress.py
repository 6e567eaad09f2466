"""The devnet's progress on stderr: a live rich view on a terminal, plain lines elsewhere.

Both take the same :class:`~devnet.observe.Snapshot` updates. The live view redraws a
table (per miner: workers online, verified, fraud by reason, timeouts, excused, lease revenue,
current weight) with the newest verdicts under it. The line view, for logs and CI, prints only
what changed: processes up, workers online, each finished round, each new kind of failure, each
weight vector (with the lease revenue behind it, once there is any). The renters' steps come as
notes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from devnet.observe import MinerState, Snapshot


@dataclass(frozen=True)
class RunStatus:
    """What the runner knows beyond the validator's state."""

    phase: str
    elapsed_s: float
    processes_up: int
    processes_total: int


class Progress(Protocol):
    def note(self, text: str) -> None:
        """Something happened that the snapshot does not show (a process started, ...)."""

    def update(self, snap: Snapshot, status: RunStatus) -> None: ...

    def close(self) -> None: ...


def _kind(miner: MinerState) -> Text:
    if miner.cheat is None:
        return Text("honest", style="green")
    return Text(miner.cheat.value, style="red")


def _fraud(miner: MinerState) -> str:
    kinds = [f"{kind} {n}" for kind, n in miner.failures.items() if kind != "timeout"]
    return ", ".join(kinds) if kinds else str(miner.fraud or "-")


def render(snap: Snapshot, status: RunStatus, notes: list[str]) -> RenderableType:
    header = Text.assemble(
        ("ByteLeap devnet", "bold"),
        f"  {status.phase}  ·  block {snap.block}  ·  round "
        f"{min(snap.rounds_done, snap.rounds)}/{snap.rounds}",
        f"  ·  {status.elapsed_s:.0f} s  ·  processes {status.processes_up}/"
        f"{status.processes_total}  ·  workers online {snap.workers_online}/"
        f"{snap.workers_total}",
    )
    table = Table(expand=False)
    table.add_column("uid", justify="right")
    table.add_column("miner", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("workers", justify="right")
    table.add_column("devices", justify="right")
    table.add_column("verified", justify="right")
    table.add_column("fraud")
    table.add_column("timeout", justify="right")
    table.add_column("excused", justify="right")
    table.add_column("lease revenue", justify="right")
    table.add_column("weight", justify="right", no_wrap=True)
    for m in snap.miners:
        table.add_row(
            str(m.uid),
            m.name,
            _kind(m),
            f"{m.workers_online}/{m.workers}",
            str(m.devices),
            str(m.verified),
            _fraud(m),
            str(m.timeout),
            str(m.excused),
            "-" if m.lease_revenue is None else f"{m.lease_revenue:.6f}",
            "-" if m.weight is None else f"{m.weight:.4f}",
        )
    weights = (
        f"weights on chain: block {snap.weights_block}"
        if snap.weights_block is not None
        else "weights on chain: none yet"
    )
    if snap.last_submission:
        weights += f"  (validator's last submission: {snap.last_submission})"
    verdicts = Text()
    for v in snap.recent:
        style = {"verified": "green", "fraud": "red", "timeout": "yellow"}.get(v.outcome, "dim")
        verdicts.append(f"{v.closed_at:%H:%M:%S}  {v.miner:<10} worker {v.worker}  ")
        verdicts.append(v.outcome, style=style)
        if v.failure:
            verdicts.append(f" {v.failure}")
        verdicts.append("\n")
    parts: list[RenderableType] = [header, table, Text(weights)]
    if snap.recent:
        parts += [Text("recent verdicts", style="bold"), verdicts]
    parts += [Text(note, style="dim") for note in notes[-3:]]
    return Group(*parts)


class LiveProgress:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.notes: list[str] = []
        self._live = Live(console=console, refresh_per_second=4, transient=False)
        self._live.start()

    def note(self, text: str) -> None:
        self.notes.append(text)

    def update(self, snap: Snapshot, status: RunStatus) -> None:
        self._live.update(render(snap, status, self.notes))

    def close(self) -> None:
        self._live.stop()


class LineProgress:
    """One line per change, for non-terminals (and ``--json``, on stderr)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._up = -1
        self._online = -1
        self._rounds = 0
        self._weights: int | None = None
        self._failures: set[tuple[str, str]] = set()

    def _say(self, text: str) -> None:
        self.console.print(f"devnet: {text}", highlight=False, soft_wrap=True)

    def note(self, text: str) -> None:
        self._say(text)

    def update(self, snap: Snapshot, status: RunStatus) -> None:
        if status.processes_up != self._up:
            self._up = status.processes_up
            self._say(f"{status.processes_up}/{status.processes_total} processes running")
        if snap.workers_online != self._online:
            self._online = snap.workers_online
            self._say(f"{snap.workers_online}/{snap.workers_total} workers online")
        for m in snap.miners:
            for kind in m.failures:
                if (m.name, kind) not in self._failures:
                    self._failures.add((m.name, kind))
                    self._say(f"{m.name}: first {kind}")
        while self._rounds < min(snap.rounds_done, snap.rounds):
            self._rounds += 1
            counts = ", ".join(f"{m.name} {m.verified}/{m.failed}" for m in snap.miners)
            self._say(f"round {self._rounds}/{snap.rounds} done (verified/failed: {counts})")
        if snap.weights_block is not None and snap.weights_block != self._weights:
            self._weights = snap.weights_block
            shares = ", ".join(
                f"{m.name} {m.weight:.3f}" for m in snap.miners if m.weight is not None
            )
            earned = ", ".join(
                f"{m.name} {m.lease_revenue:.6f}" for m in snap.miners if m.lease_revenue
            )
            if earned:
                shares += f" (lease revenue: {earned})"
            self._say(f"weights at block {snap.weights_block}: {shares}")

    def close(self) -> None:
        pass


class NoProgress:
    def note(self, text: str) -> None:
        pass

    def update(self, snap: Snapshot, status: RunStatus) -> None:
        pass

    def close(self) -> None:
        pass

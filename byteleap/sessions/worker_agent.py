"""The worker's link logic as a state machine with no I/O.

``WorkerAgent.handle(event) -> list[AgentInstruction]`` is synchronous and deterministic (the clock
arrives inside events). The asyncio runtime (``workers.runtime``) moves bytes and runs the compute
the instructions ask for, then feeds the results back as new events. Everything that can go wrong
on the link (handshake order, duplicate challenges, reveals for unknown challenges, leases arriving
mid-challenge) is decided here and tested with plain objects.

What survives a reconnect: the lease state, finished challenges kept for their reveal, commits
that finished while the link was down (sent as soon as the miner welcomes us again), and jobs
(kept by the runtime's job manager, which this agent only routes requests to).

Jobs: a ``JobSubmit`` is served only for the lease the worker holds, and only when a runner is
configured; otherwise the agent answers ``JobRefused`` itself (``not_leased``,
``runner_disabled``). Other job requests (status, logs, results, artifacts, cancel) go to the job
manager for any lease, which answers ``unknown_job`` for jobs it does not have, so a renter can
still collect the results of a lease that just ended. A lease stop cancels the lease's jobs; a
new lease starting discards the finished jobs of earlier leases.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from byteleap.crypto import WorkerKey
from byteleap.errors import ByteLeapError, MalformedMessage, ProtocolError, WorkerFailure
from byteleap.protocol import codec
from byteleap.protocol.common import Message
from byteleap.protocol.handshake import make_register
from byteleap.protocol.inventory import Inventory
from byteleap.protocol.worker_link.challenges import (
    ChallengeCommit,
    ChallengeDispatch,
    Reveal,
    RevealRequest,
)
from byteleap.protocol.worker_link.jobs import (
    ArtifactQuery,
    JobCancel,
    JobLogsQuery,
    JobRefusal,
    JobRefused,
    JobResultQuery,
    JobStatusQuery,
    JobSubmit,
)
from byteleap.protocol.worker_link.leases import LeaseAck, LeaseStart, LeaseStop
from byteleap.protocol.worker_link.session import (
    ErrorReply,
    Heartbeat,
    HeartbeatAck,
    Hello,
    Unavailable,
    Welcome,
    WorkerState,
)
from byteleap.sessions.agent_events import (
    AgentEvent,
    AgentInstruction,
    AgentTick,
    CancelJobs,
    ChallengeFinished,
    CloseLink,
    Connected,
    Disconnected,
    HandleJob,
    InventoryChanged,
    LogEvent,
    OpenRows,
    PurgeJobs,
    Received,
    RowsOpened,
    RunChallenge,
    Send,
    StopChallenge,
)

#: job requests other than a submit: answered by the job manager for any lease
_JOB_QUERIES = (JobCancel, JobStatusQuery, JobLogsQuery, JobResultQuery, ArtifactQuery)

#: finished challenges kept for their reveal; older ones are dropped first
MAX_KEPT_RUNS = 8


class LinkPhase(StrEnum):
    DISCONNECTED = "disconnected"
    AWAIT_HELLO = "await_hello"
    AWAIT_WELCOME = "await_welcome"
    READY = "ready"


# --------------------------------------------------------------------------- the agent


@dataclass
class WorkerLease:
    lease_id: str
    gpu_uuids: tuple[str, ...]
    ends_at: int


class WorkerAgent:
    def __init__(
        self,
        key: WorkerKey,
        inventory: Inventory,
        *,
        agent_version: str,
        gpu_uuids: Callable[[], set[str]] | None = None,
        join_token: str | None = None,
        expected_miner_hotkey: str | None = None,
        max_message_bytes: int = 16 * 1024 * 1024,
        inventory_every: int = 6,
        job_runner: str | None = None,
    ) -> None:
        """``job_runner`` names the configured job runner; ``None`` refuses every job."""
        self.key = key
        self.inventory = inventory
        self.agent_version = agent_version
        self._gpu_uuids = gpu_uuids or (lambda: {gpu.uuid for gpu in self.inventory.gpus})
        self.join_token = join_token
        self.expected_miner_hotkey = expected_miner_hotkey
        self.max_message_bytes = max_message_bytes
        self.inventory_every = inventory_every
        self.job_runner = job_runner

        self.phase = LinkPhase.DISCONNECTED
        self.session_id: str | None = None
        self.miner_hotkey: str | None = None
        self.heartbeat_interval = 10.0
        self.next_heartbeat = 0.0
        self.seq = 0
        self.last_acked = -1
        self.connects = 0

        self.lease: WorkerLease | None = None
        self.running: ChallengeDispatch | None = None
        self.kept: OrderedDict[str, ChallengeDispatch] = OrderedDict()
        self.unsent: list[ChallengeCommit] = []
        self.opening: set[str] = set()

    # ------------------------------------------------------------------ public surface

    @property
    def state(self) -> WorkerState:
        if self.lease is not None:
            return "leased"
        return "busy" if self.running is not None else "idle"

    def handle(self, event: AgentEvent) -> list[AgentInstruction]:
        match event:
            case Connected():
                return self._connected()
            case Disconnected(reason=reason):
                return self._disconnected(reason)
            case Received(data=data, now=now):
                return self._received(data, now)
            case AgentTick(now=now):
                return self._tick(now)
            case InventoryChanged(inventory=inventory):
                self.inventory = inventory
                return []
            case ChallengeFinished():
                return self._challenge_finished(event)
            case RowsOpened():
                return self._rows_opened(event)
        raise TypeError(f"unknown event {event!r}")  # pragma: no cover

    def shutdown(self) -> list[AgentInstruction]:
        """Abandon the running challenge and stop every job, cleanly."""
        out: list[AgentInstruction] = [CancelJobs(None)] if self.job_runner is not None else []
        if self.running is not None:
            out.append(StopChallenge(self.running.challenge_id))
        return out

    # ------------------------------------------------------------------ link lifecycle

    def _connected(self) -> list[AgentInstruction]:
        self.phase = LinkPhase.AWAIT_HELLO
        self.connects += 1
        return []

    def _disconnected(self, reason: str) -> list[AgentInstruction]:
        was = self.phase
        self.phase = LinkPhase.DISCONNECTED
        self.session_id = None
        if was is LinkPhase.DISCONNECTED:
            return []
        return [LogEvent("WARNING", "link_lost", {"reason": reason, "state": self.state})]

    def _received(self, data: bytes | str, now: float) -> list[AgentInstruction]:
        try:
            message = codec.decode(data, codec.MINER_TO_WORKER, max_bytes=self.max_message_bytes)
        except ProtocolError as exc:
            return [
                Send(codec.error_reply_for(exc)),
                LogEvent("WARNING", "bad_message_from_miner", {"error": exc.message}),
            ]
        if self.phase is LinkPhase.AWAIT_HELLO:
            if isinstance(message, Hello):
                return self._hello(message, now)
            return [CloseLink(f"expected hello, got {message.type}")]
        if self.phase is LinkPhase.AWAIT_WELCOME:
            if isinstance(message, Welcome):
                return self._welcome(message, now)
            if isinstance(message, ErrorReply):
                return [
                    LogEvent(
                        "ERROR",
                        "registration_refused",
                        {"code": message.code, "reason": message.message},
                    ),
                    CloseLink(f"registration refused: {message.message}"),
                ]
            return [CloseLink(f"expected welcome, got {message.type}")]
        if self.phase is not LinkPhase.READY:
            return []
        match message:
            case HeartbeatAck(seq=seq):
                self.last_acked = max(self.last_acked, seq)
                return []
            case ChallengeDispatch():
                return self._dispatch(message)
            case RevealRequest():
                return self._reveal_request(message)
            case LeaseStart():
                return self._lease_start(message)
            case LeaseStop():
                return self._lease_stop(message)
            case JobSubmit():
                return self._job_submit(message)
            case _ if isinstance(message, _JOB_QUERIES):
                return [HandleJob(message)]
            case ErrorReply():
                return [
                    LogEvent(
                        "WARNING", "miner_error", {"code": message.code, "reason": message.message}
                    )
                ]
        return [
            Send(
                self._refuse(
                    MalformedMessage(f"unexpected {message.type} on a ready link"), message.type
                )
            )
        ]

    def _hello(self, hello: Hello, now: float) -> list[AgentInstruction]:
        if self.expected_miner_hotkey and hello.miner_hotkey != self.expected_miner_hotkey:
            return [CloseLink(f"miner hotkey {hello.miner_hotkey} is not the configured one")]
        self.miner_hotkey = hello.miner_hotkey
        self.heartbeat_interval = hello.heartbeat_interval_s
        self.phase = LinkPhase.AWAIT_WELCOME
        register = make_register(
            self.key,
            hello,
            agent_version=self.agent_version,
            inventory=self.inventory,
            join_token=self.join_token,
        )
        return [Send(register)]

    def _welcome(self, welcome: Welcome, now: float) -> list[AgentInstruction]:
        self.phase = LinkPhase.READY
        self.session_id = welcome.session_id
        # the key is pinned now: a join token is single-use and must not be sent again
        self.join_token = None
        self.next_heartbeat = now
        out: list[AgentInstruction] = [
            LogEvent(
                "INFO", "registered", {"session": welcome.session_id, "miner": self.miner_hotkey}
            )
        ]
        out += [Send(commit) for commit in self.unsent]
        self.unsent.clear()
        return out + self._tick(now)

    def _tick(self, now: float) -> list[AgentInstruction]:
        if self.phase is not LinkPhase.READY or now < self.next_heartbeat:
            return []
        self.next_heartbeat = now + self.heartbeat_interval
        seq = self.seq
        self.seq += 1
        with_inventory = seq % self.inventory_every == 0
        beat = Heartbeat(
            seq=seq, state=self.state, inventory=self.inventory if with_inventory else None
        )
        return [Send(beat)]

    # ------------------------------------------------------------------ challenges

    def _refuse(self, exc: ByteLeapError, in_reply_to: str) -> ErrorReply:
        return codec.error_reply_for(exc, in_reply_to=in_reply_to)

    def _dispatch(self, dispatch: ChallengeDispatch) -> list[AgentInstruction]:
        cid = dispatch.challenge_id
        if self.lease is not None:
            return [Send(Unavailable(challenge_id=cid, leased=True))]
        if self.running is not None or cid in self.kept:
            return [Send(Unavailable(challenge_id=cid, leased=False))]
        unknown = sorted(set(dispatch.gpu_uuids) - self._gpu_uuids())
        if unknown:
            exc = MalformedMessage(f"this worker has no GPU {', '.join(unknown)}")
            return [Send(self._refuse(exc, cid))]
        self.running = dispatch
        return [
            LogEvent(
                "INFO",
                "challenge_started",
                {
                    "challenge": cid,
                    "gpus": len(dispatch.gpu_uuids),
                    "stages": dispatch.params.stages,
                },
            ),
            RunChallenge(dispatch),
        ]

    def _challenge_finished(self, event: ChallengeFinished) -> list[AgentInstruction]:
        running = self.running
        if running is None or running.challenge_id != event.challenge_id:
            return []
        self.running = None
        cid = event.challenge_id
        if event.abandoned:
            leased = self.lease is not None
            reply = Unavailable(challenge_id=cid, leased=leased)
            return [
                *self._deliver(reply),
                LogEvent("INFO", "challenge_abandoned", {"challenge": cid}),
            ]
        if event.error is not None:
            return [
                *self._deliver(self._refuse(event.error, cid)),
                LogEvent(
                    "ERROR", "challenge_failed", {"challenge": cid, "error": event.error.message}
                ),
            ]
        commit = ChallengeCommit(challenge_id=cid, gpus=list(event.commits))
        self.kept[cid] = running
        while len(self.kept) > MAX_KEPT_RUNS:
            self.kept.popitem(last=False)
        if self.phase is not LinkPhase.READY:
            self.unsent.append(commit)
            return [LogEvent("INFO", "commit_queued_until_reconnect", {"challenge": cid})]
        return [Send(commit), LogEvent("INFO", "challenge_committed", {"challenge": cid})]

    def _deliver(self, message: Message) -> list[AgentInstruction]:
        return [Send(message)] if self.phase is LinkPhase.READY else []

    def _reveal_request(self, request: RevealRequest) -> list[AgentInstruction]:
        cid = request.challenge_id
        dispatch = self.kept.get(cid)
        if dispatch is None:
            # lost (restart) or never committed here: the worker cannot reveal, which the
            # validator scores as a missed challenge
            missing = WorkerFailure(f"no committed challenge {cid} on this worker")
            return [Send(self._refuse(missing, cid))]
        bad = [o.gpu_uuid for o in request.openings if o.gpu_uuid not in dispatch.gpu_uuids]
        bad += [
            f"{o.gpu_uuid}/stage {o.stage}"
            for o in request.openings
            if o.stage >= dispatch.params.stages or max(o.rows) >= dispatch.params.m
        ]
        if bad:
            exc2 = MalformedMessage(f"cannot open {', '.join(bad)} of challenge {cid}")
            return [Send(self._refuse(exc2, cid))]
        if cid in self.opening:
            return []
        self.opening.add(cid)
        return [OpenRows(request)]

    def _rows_opened(self, event: RowsOpened) -> list[AgentInstruction]:
        self.opening.discard(event.challenge_id)
        if event.error is not None:
            return self._deliver(self._refuse(event.error, event.challenge_id))
        reveal = Reveal(challenge_id=event.challenge_id, openings=list(event.openings))
        return self._deliver(reveal)

    # ------------------------------------------------------------------ leases

    def _lease_start(self, start: LeaseStart) -> list[AgentInstruction]:
        if self.lease is not None and self.lease.lease_id != start.lease_id:
            ack = LeaseAck(
                lease_id=start.lease_id,
                accepted=False,
                reason=f"already leased under {self.lease.lease_id}",
            )
            return [Send(ack)]
        unknown = sorted(set(start.gpu_uuids) - self._gpu_uuids())
        if unknown:
            ack = LeaseAck(
                lease_id=start.lease_id, accepted=False, reason=f"unknown GPU {', '.join(unknown)}"
            )
            return [Send(ack)]
        self.lease = WorkerLease(start.lease_id, tuple(start.gpu_uuids), start.ends_at)
        out: list[AgentInstruction] = []
        if self.job_runner is not None:
            out.append(PurgeJobs(start.lease_id))
        if self.running is not None:
            out.append(StopChallenge(self.running.challenge_id))
        out.append(Send(LeaseAck(lease_id=start.lease_id, accepted=True)))
        out.append(LogEvent("INFO", "lease_started", {"lease": start.lease_id}))
        return out

    def _lease_stop(self, stop: LeaseStop) -> list[AgentInstruction]:
        if self.lease is None or self.lease.lease_id != stop.lease_id:
            ack = LeaseAck(lease_id=stop.lease_id, accepted=False, reason="no such lease")
            return [Send(ack)]
        self.lease = None
        out: list[AgentInstruction] = [CancelJobs(stop.lease_id)] if self.job_runner else []
        return [
            *out,
            Send(LeaseAck(lease_id=stop.lease_id, accepted=True)),
            LogEvent("INFO", "lease_stopped", {"lease": stop.lease_id, "reason": stop.reason}),
        ]

    # ------------------------------------------------------------------ jobs

    def _job_submit(self, submit: JobSubmit) -> list[AgentInstruction]:
        def refuse(reason: JobRefusal, message: str) -> list[AgentInstruction]:
            refused = JobRefused(
                request_id=submit.request_id,
                lease_id=submit.lease_id,
                job_id=submit.job_id,
                reason=reason,
                message=message,
            )
            return [Send(refused)]

        if self.job_runner is None:
            return refuse("runner_disabled", "this worker runs no jobs (jobs.runner: none)")
        if self.lease is None or self.lease.lease_id != submit.lease_id:
            held = f"lease {self.lease.lease_id}" if self.lease else "no lease"
            return refuse("not_leased", f"this worker holds {held}")
        return [HandleJob(submit, self.lease.gpu_uuids)]

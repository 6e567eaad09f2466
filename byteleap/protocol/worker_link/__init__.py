"""Messages on the worker <-> miner websocket (SPEC 2 and 4), by purpose.

Flow of one connection (the worker dials out, so it works behind NAT)::

    miner  -> worker   Hello(nonce, miner_hotkey, heartbeat_interval_s)
    worker -> miner    Register(worker_pubkey, signature over the nonce, inventory, ...)
    miner  -> worker   Welcome(session_id)          (or ErrorReply, then close)
    worker -> miner    Heartbeat(seq, state, inventory?)    every heartbeat_interval_s
    miner  -> worker   HeartbeatAck(seq)
    miner  -> worker   ChallengeDispatch     -> ChallengeCommit | Unavailable | ErrorReply
    miner  -> worker   RevealRequest         -> Reveal | ErrorReply
    miner  -> worker   LeaseStart, LeaseStop -> LeaseAck
    miner  -> worker   JobSubmit             -> JobAccepted | JobRefused     (leased workers only)
    miner  -> worker   JobCancel, JobStatusQuery -> JobStatus | JobRefused
    miner  -> worker   JobLogsQuery          -> JobLogs | JobRefused
    miner  -> worker   JobResultQuery        -> JobResult | JobRefused
    miner  -> worker   ArtifactQuery         -> ArtifactChunk | JobRefused

* :mod:`.session`: handshake, heartbeats, failure replies, ``WorkerState``;
* :mod:`.challenges`: challenge dispatch, commitments, reveals;
* :mod:`.leases`: lease start and stop;
* :mod:`.jobs`: job requests and their answers.

This package holds only the unions the codec decodes with; import a message from its module.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from byteleap.protocol.worker_link.challenges import (
    ChallengeCommit,
    ChallengeDispatch,
    Reveal,
    RevealRequest,
)
from byteleap.protocol.worker_link.jobs import (
    ArtifactChunk,
    ArtifactQuery,
    JobAccepted,
    JobCancel,
    JobLogs,
    JobLogsQuery,
    JobRefused,
    JobResult,
    JobResultQuery,
    JobStatus,
    JobStatusQuery,
    JobSubmit,
)
from byteleap.protocol.worker_link.leases import LeaseAck, LeaseStart, LeaseStop
from byteleap.protocol.worker_link.session import (
    ErrorReply,
    Heartbeat,
    HeartbeatAck,
    Hello,
    Register,
    Unavailable,
    Welcome,
)

MinerToWorker = Annotated[
    Hello
    | Welcome
    | HeartbeatAck
    | ChallengeDispatch
    | RevealRequest
    | LeaseStart
    | LeaseStop
    | JobSubmit
    | JobCancel
    | JobStatusQuery
    | JobLogsQuery
    | JobResultQuery
    | ArtifactQuery
    | ErrorReply,
    Field(discriminator="type"),
]
"""Everything a worker may receive."""

WorkerToMiner = Annotated[
    Register
    | Heartbeat
    | ChallengeCommit
    | Reveal
    | LeaseAck
    | JobAccepted
    | JobRefused
    | JobStatus
    | JobLogs
    | JobResult
    | ArtifactChunk
    | Unavailable
    | ErrorReply,
    Field(discriminator="type"),
]
"""Everything a miner may receive from a worker."""

WorkerLinkMessage = Annotated[
    Hello
    | Register
    | Welcome
    | Heartbeat
    | HeartbeatAck
    | ChallengeDispatch
    | ChallengeCommit
    | RevealRequest
    | Reveal
    | LeaseStart
    | LeaseStop
    | LeaseAck
    | JobSubmit
    | JobCancel
    | JobStatusQuery
    | JobLogsQuery
    | JobResultQuery
    | ArtifactQuery
    | JobAccepted
    | JobRefused
    | JobStatus
    | JobLogs
    | JobResult
    | ArtifactChunk
    | ErrorReply
    | Unavailable,
    Field(discriminator="type"),
]
"""Every message of the worker link, either direction."""

__all__ = ["MinerToWorker", "WorkerLinkMessage", "WorkerToMiner"]

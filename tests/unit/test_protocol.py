"""The codec: round trips for every message, and hostile input that must only ever raise
``ProtocolError`` subclasses (never crash a process with anything else)."""

from __future__ import annotations

import json
import string
import struct
import typing
from operator import attrgetter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter

from byteleap.challenge.params import MAX_DIM, MAX_STAGES, ChallengeParams
from byteleap.errors import MalformedMessage, MessageTooLarge, ProtocolError, UnsupportedVersion
from byteleap.protocol import codec
from byteleap.protocol.codec import (
    MAGIC,
    MAX_HEADER_BYTES,
    MAX_JSON_DEPTH,
    MINER_RESPONSE,
    MINER_TO_WORKER,
    VALIDATOR_API,
    VALIDATOR_REQUEST,
    WORKER_LINK,
    WORKER_TO_MINER,
    decode,
    encode,
    encode_text,
)
from byteleap.protocol.common import MAX_UNIX_SECONDS, PROTOCOL_VERSION, Message
from byteleap.protocol.inventory import DiskInfo, GpuInfo, HostInfo, Inventory
from byteleap.protocol.miner_api import MinerResponse, ValidatorApiMessage, ValidatorRequest
from byteleap.protocol.miner_api.challenges import (
    ChallengeRequest,
    ChallengeResponse,
    EpochFailure,
    EpochRequest,
    OpeningsRequest,
    OpeningsResponse,
)
from byteleap.protocol.miner_api.errors import ApiError
from byteleap.protocol.miner_api.forward import (
    ForwardRequest,
    ForwardResponse,
    LeaseStatusRequest,
    LeaseStatusResponse,
)
from byteleap.protocol.miner_api.inventory import (
    GpuSummary,
    HealthResponse,
    InventoryResponse,
    WorkerSummary,
)
from byteleap.protocol.miner_api.receipts import (
    Receipt,
    ReceiptPage,
    ReceiptSubmitRequest,
    ReceiptSubmitResponse,
    SignedReceipt,
)
from byteleap.protocol.worker_link import MinerToWorker, WorkerLinkMessage, WorkerToMiner
from byteleap.protocol.worker_link.challenges import (
    ChallengeCommit,
    ChallengeDispatch,
    GpuCommit,
    OpeningRequest,
    Reveal,
    RevealRequest,
    RowOpening,
)
from byteleap.protocol.worker_link.jobs import (
    ArtifactChunk,
    ArtifactInfo,
    ArtifactQuery,
    JobAccepted,
    JobCancel,
    JobInfo,
    JobLimits,
    JobLogs,
    JobLogSlice,
    JobLogsQuery,
    JobRefused,
    JobResult,
    JobResultQuery,
    JobSpec,
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

LIMIT = 1 << 20
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------- strategies

PRINTABLE = st.characters(min_codepoint=0x21, max_codepoint=0x7E)


def tokens(max_size: int = 40) -> st.SearchStrategy[str]:
    return st.text(PRINTABLE, min_size=1, max_size=max_size)


def finite(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(min_value=lo, max_value=hi, allow_nan=False, allow_infinity=False)


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


identifiers = st.text(
    st.sampled_from(string.ascii_letters + string.digits + "._:-"), min_size=1, max_size=40
)
free_text = st.text(max_size=40)  # any code point but surrogates, control characters included
names = st.text(min_size=1, max_size=30)
b32 = st.binary(min_size=32, max_size=32)
signatures = st.binary(min_size=64, max_size=64)
u63 = st.integers(0, 2**63 - 1)
capabilities = st.from_regex(r"[0-9]{1,3}\.[0-9]{1,3}", fullmatch=True)
backends = st.lists(st.from_regex(r"[a-z0-9_.-]{1,10}", fullmatch=True), max_size=3)
states = st.sampled_from(["idle", "busy", "leased"])
gpu_lists = st.lists(tokens(), min_size=1, max_size=4, unique=True)
stages = st.integers(0, MAX_STAGES - 1)
rows = st.integers(0, MAX_DIM - 1)

gpu_infos = st.builds(
    GpuInfo,
    index=st.integers(0, 1023),
    name=names,
    uuid=tokens(),
    serial=optional(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20)),
    pci_bus_id=optional(st.text(PRINTABLE, max_size=20)),
    memory_total_mib=st.integers(0, 2**40),
    memory_used_mib=optional(st.integers(0, 2**40)),
    utilization_pct=optional(finite(0, 100)),
    temperature_c=optional(finite(-100, 300)),
    power_draw_w=optional(finite(0, 100_000)),
    power_limit_w=optional(finite(0, 100_000)),
    sm_clock_mhz=optional(st.integers(0, 100_000)),
    mem_clock_mhz=optional(st.integers(0, 100_000)),
    compute_capability=optional(capabilities),
    driver_version=optional(st.text(PRINTABLE, max_size=20)),
    cuda_version=optional(st.text(PRINTABLE, max_size=20)),
)
hosts = st.builds(
    HostInfo,
    hostname=st.text(max_size=30),
    cpu_model=st.text(max_size=30),
    cpu_count_physical=optional(st.integers(0, 1024)),
    cpu_count_logical=st.integers(1, 1024),
    load_avg=st.lists(finite(0, 1000), max_size=3),
    memory_total_bytes=u63,
    memory_available_bytes=u63,
    disks=st.lists(
        st.builds(DiskInfo, mount=st.text(max_size=20), total_bytes=u63, free_bytes=u63),
        max_size=2,
    ),
    network_interfaces=st.lists(tokens(16), max_size=3),
    uptime_s=finite(0, 1e9),
    os=st.text(max_size=20),
    kernel=st.text(max_size=20),
)
inventories = st.builds(
    Inventory,
    host=hosts,
    gpus=st.lists(gpu_infos, max_size=3, unique_by=(lambda g: g.uuid, lambda g: g.index)),
    backends=backends,
)
params = st.builds(
    ChallengeParams,
    m=st.sampled_from([2, 4, 256, 8192, MAX_DIM]),
    n=st.integers(1, MAX_DIM),
    k=st.integers(1, 4096),
    v=st.integers(1, 15),
    stages=st.integers(1, MAX_STAGES),
)
gpu_commits = st.builds(
    GpuCommit,
    gpu_uuid=tokens(),
    roots=st.binary(max_size=32 * 6),
    stage_ms=st.lists(finite(0, 1e7), max_size=6),
    signature=signatures,
)
opening_requests = st.builds(
    OpeningRequest,
    gpu_uuid=tokens(),
    stage=stages,
    rows=st.lists(rows, min_size=1, max_size=8, unique=True),
)
row_openings = st.builds(
    RowOpening,
    gpu_uuid=tokens(),
    stage=stages,
    row=rows,
    values=st.binary(max_size=64),
    proof=st.binary(max_size=96),
)
unique_commits = st.lists(gpu_commits, min_size=1, max_size=3, unique_by=lambda g: g.gpu_uuid)
unique_requests = st.lists(
    opening_requests, min_size=1, max_size=4, unique_by=lambda o: (o.gpu_uuid, o.stage)
)
unique_openings = st.lists(
    row_openings, max_size=4, unique_by=lambda o: (o.gpu_uuid, o.stage, o.row)
)
pubkey_hex = b32.map(bytes.hex)
gpu_summaries = st.builds(
    GpuSummary,
    uuid=tokens(),
    name=names,
    memory_total_mib=st.integers(0, 2**40),
    compute_capability=optional(capabilities),
)
worker_summaries = st.builds(
    WorkerSummary,
    worker_pubkey=pubkey_hex,
    state=states,
    gpus=st.lists(gpu_summaries, max_size=3, unique_by=lambda g: g.uuid),
    last_heartbeat=finite(0, 1e10),
    agent_version=optional(names),
    backends=backends,
)

job_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)
artifact_names = st.from_regex(
    r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,8}(/[A-Za-z0-9_-]{1,8}){0,2}", fullmatch=True
)
counts = st.integers(0, 2**40)
times = optional(finite(0, 4e9))
job_specs = st.builds(
    JobSpec,
    image=st.from_regex(r"[a-z0-9][a-z0-9._/:@-]{0,30}", fullmatch=True),
    command=st.lists(
        st.text(st.characters(exclude_characters="\0", exclude_categories=["Cs"]), max_size=20),
        max_size=4,
    ),
    env=st.dictionaries(
        st.from_regex(r"[A-Z_][A-Z0-9_]{0,10}", fullmatch=True).filter(
            lambda k: k not in ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES")
        ),
        st.text(st.characters(exclude_characters="\0\r\n", exclude_categories=["Cs"]), max_size=20),
        max_size=3,
    ),
    timeout_s=st.integers(1, 30 * 24 * 3600),
    limits=st.builds(
        JobLimits,
        memory_bytes=optional(st.integers(4 << 20, 2**50)),
        cpu_millis=optional(st.integers(10, 1_000_000)),
        pids=optional(st.integers(16, 4_194_304)),
        network=st.sampled_from(["none", "bridge"]),
    ),
)
job_states = st.sampled_from(["queued", "running", "succeeded", "failed", "cancelled", "timed_out"])
job_infos = st.builds(
    JobInfo,
    job_id=job_ids,
    state=job_states,
    exit_code=optional(st.integers(-(2**31), 2**31 - 1)),
    submitted_at=times,
    started_at=times,
    ended_at=times,
    stdout_bytes=counts,
    stderr_bytes=counts,
    stdout_truncated=st.booleans(),
    stderr_truncated=st.booleans(),
    cancel_requested=st.booleans(),
    error=free_text,
)
artifact_infos = st.builds(ArtifactInfo, name=artifact_names, size=counts, sha256=b32)
unique_artifacts = st.lists(artifact_infos, max_size=3, unique_by=lambda a: a.name)
log_slices = st.builds(
    JobLogSlice,
    stdout_offset=counts,
    stdout=st.binary(max_size=40),
    stdout_total=counts,
    stderr_offset=counts,
    stderr=st.binary(max_size=40),
    stderr_total=counts,
    finished=st.booleans(),
)
refusals = st.sampled_from(
    ["unknown_lease", "lease_ended", "not_leased", "runner_disabled", "duplicate_job",
     "too_many_jobs", "invalid_job", "unknown_job", "unknown_artifact"]
)  # fmt: skip
job_query = {"request_id": identifiers, "lease_id": identifiers, "job_id": job_ids}


@st.composite
def receipts(draw: st.DrawFn) -> Receipt:
    uuids = sorted(draw(gpu_lists))
    start = draw(st.integers(0, MAX_UNIX_SECONDS))
    end = draw(st.integers(start, MAX_UNIX_SECONDS))
    return Receipt(
        netuid=draw(st.integers(0, 65_535)),
        lease_id=draw(identifiers),
        seq=draw(u63),
        kind=draw(st.sampled_from(["start", "hourly", "end"])),
        validator_hotkey=draw(tokens(64)),
        miner_hotkey=draw(tokens(64)),
        worker_pubkey=draw(pubkey_hex),
        gpu_uuids=uuids,
        gpus=len(uuids),
        price_per_gpu_hour_micros=draw(st.integers(0, 10**15)),
        period_start=start,
        period_end=end,
        issued_at=draw(st.integers(end, MAX_UNIX_SECONDS)),
    )


signed_receipts = st.builds(
    SignedReceipt, receipt=receipts(), validator_signature=signatures, miner_signature=signatures
)


@st.composite
def receipt_pages(draw: st.DrawFn) -> ReceiptPage:
    page = draw(st.lists(signed_receipts, max_size=3))
    cursors = sorted(
        draw(st.lists(st.integers(1, 2**40), min_size=len(page), max_size=len(page), unique=True))
    )
    return ReceiptPage(
        miner_hotkey=draw(tokens(64)),
        receipts=page,
        cursors=cursors,
        next_cursor=cursors[-1] if cursors else draw(st.integers(0, 2**40)),
        more=draw(st.booleans()),
    )


STRATEGIES: dict[type[Message], st.SearchStrategy[Any]] = {
    Hello: st.builds(
        Hello, nonce=b32, miner_hotkey=tokens(64), heartbeat_interval_s=finite(0.05, 3600)
    ),
    Register: st.builds(
        Register,
        worker_pubkey=b32,
        signature=signatures,
        agent_version=names,
        join_token=optional(tokens(64)),
        inventory=inventories,
    ),
    Welcome: st.builds(Welcome, session_id=identifiers),
    Heartbeat: st.builds(Heartbeat, seq=u63, state=states, inventory=optional(inventories)),
    HeartbeatAck: st.builds(HeartbeatAck, seq=u63),
    ChallengeDispatch: st.builds(
        ChallengeDispatch,
        challenge_id=identifiers,
        seed=b32,
        params=params,
        gpu_uuids=gpu_lists,
        deadline_ms=st.integers(1, 3_600_000),
    ),
    ChallengeCommit: st.builds(ChallengeCommit, challenge_id=identifiers, gpus=unique_commits),
    RevealRequest: st.builds(RevealRequest, challenge_id=identifiers, openings=unique_requests),
    Reveal: st.builds(Reveal, challenge_id=identifiers, openings=unique_openings),
    LeaseStart: st.builds(
        LeaseStart,
        lease_id=identifiers,
        gpu_uuids=gpu_lists,
        ends_at=st.integers(0, MAX_UNIX_SECONDS),
    ),
    LeaseStop: st.builds(LeaseStop, lease_id=identifiers, reason=free_text),
    LeaseAck: st.builds(LeaseAck, lease_id=identifiers, accepted=st.booleans(), reason=free_text),
    ErrorReply: st.builds(
        ErrorReply,
        code=st.from_regex(r"[a-z0-9_.]{1,20}", fullmatch=True),
        message=free_text,
        in_reply_to=optional(tokens()),
    ),
    Unavailable: st.builds(Unavailable, challenge_id=identifiers, leased=st.booleans()),
    InventoryResponse: st.builds(
        InventoryResponse,
        miner_hotkey=tokens(64),
        workers=st.lists(worker_summaries, max_size=3, unique_by=lambda w: w.worker_pubkey),
    ),
    ChallengeRequest: st.builds(
        ChallengeRequest,
        challenge_id=identifiers,
        worker_pubkey=pubkey_hex,
        gpu_uuids=gpu_lists,
        seed=b32,
        params=params,
        deadline_ms=st.integers(1, 3_600_000),
    ),
    ChallengeResponse: st.builds(
        ChallengeResponse,
        challenge_id=identifiers,
        miner_hotkey=tokens(64),
        worker_pubkey=pubkey_hex,
        gpus=unique_commits,
        miner_signature=signatures,
    ),
    EpochRequest: st.builds(
        EpochRequest,
        epoch_id=identifiers,
        challenges=st.lists(
            st.builds(
                ChallengeRequest,
                challenge_id=identifiers,
                worker_pubkey=pubkey_hex,
                gpu_uuids=gpu_lists,
                seed=b32,
                params=params,
                deadline_ms=st.integers(1, 3_600_000),
            ),
            min_size=1,
            max_size=3,
            unique_by=(lambda c: c.challenge_id, lambda c: c.worker_pubkey),
        ),
    ),
    EpochFailure: st.builds(
        EpochFailure,
        challenge_id=identifiers,
        code=st.from_regex(r"[a-z0-9_.]{1,20}", fullmatch=True),
        message=free_text,
    ),
    OpeningsRequest: st.builds(
        OpeningsRequest,
        challenge_id=identifiers,
        worker_pubkey=pubkey_hex,
        openings=unique_requests,
    ),
    OpeningsResponse: st.builds(
        OpeningsResponse, challenge_id=identifiers, openings=unique_openings
    ),
    LeaseStatusRequest: st.builds(LeaseStatusRequest, lease_id=identifiers),
    LeaseStatusResponse: st.builds(
        LeaseStatusResponse,
        lease_id=identifiers,
        state=st.sampled_from(["starting", "active", "ended", "unknown"]),
        worker_pubkey=optional(pubkey_hex),
        gpu_uuids=st.lists(tokens(), max_size=3, unique=True),
        ends_at=optional(st.integers(0, MAX_UNIX_SECONDS)),
    ),
    HealthResponse: st.builds(
        HealthResponse,
        status=st.sampled_from(["ok", "degraded"]),
        miner_hotkey=tokens(64),
        version=names,
        workers_connected=st.integers(0, 4096),
        uptime_s=finite(0, 1e9),
    ),
    ApiError: st.builds(
        ApiError, code=st.from_regex(r"[a-z0-9_.]{1,20}", fullmatch=True), message=free_text
    ),
    JobSubmit: st.builds(JobSubmit, spec=job_specs, **job_query),
    JobCancel: st.builds(JobCancel, **job_query),
    JobStatusQuery: st.builds(JobStatusQuery, **job_query),
    JobLogsQuery: st.builds(
        JobLogsQuery,
        stdout_offset=counts,
        stderr_offset=counts,
        limit=st.integers(1, 4 << 20),
        **job_query,
    ),
    JobResultQuery: st.builds(JobResultQuery, **job_query),
    ArtifactQuery: st.builds(
        ArtifactQuery,
        name=artifact_names,
        offset=counts,
        limit=st.integers(1, 4 << 20),
        **job_query,
    ),
    JobAccepted: st.builds(
        JobAccepted, request_id=identifiers, lease_id=identifiers, job=job_infos
    ),
    JobRefused: st.builds(JobRefused, reason=refusals, message=free_text, **job_query),
    JobStatus: st.builds(JobStatus, request_id=identifiers, lease_id=identifiers, job=job_infos),
    JobLogs: st.builds(JobLogs, logs=log_slices, **job_query),
    JobResult: st.builds(
        JobResult,
        request_id=identifiers,
        lease_id=identifiers,
        job=job_infos,
        artifacts=unique_artifacts,
        artifacts_omitted=counts,
    ),
    ArtifactChunk: st.builds(
        ArtifactChunk,
        artifact=artifact_infos,
        offset=counts,
        data=st.binary(max_size=40),
        eof=st.booleans(),
        **job_query,
    ),
    ReceiptSubmitRequest: st.builds(
        ReceiptSubmitRequest, receipt=receipts(), validator_signature=signatures
    ),
    ReceiptSubmitResponse: st.builds(
        ReceiptSubmitResponse, signed=signed_receipts, cursor=st.integers(1, 2**40)
    ),
    ReceiptPage: receipt_pages(),
}


def _envelope(
    cls: type[ForwardRequest | ForwardResponse], inner: tuple[type[Message], ...]
) -> st.SearchStrategy[Any]:
    """An envelope around any of ``inner``, naming the same lease as its message."""
    return st.tuples(st.one_of(*(STRATEGIES[c] for c in inner)), pubkey_hex).map(
        lambda pair: cls(worker_pubkey=pair[1], lease_id=pair[0].lease_id, message=pair[0])
    )


STRATEGIES[ForwardRequest] = _envelope(
    ForwardRequest,
    (LeaseStart, LeaseStop, JobSubmit, JobCancel, JobStatusQuery, JobLogsQuery, JobResultQuery,
     ArtifactQuery),
)  # fmt: skip
STRATEGIES[ForwardResponse] = _envelope(
    ForwardResponse,
    (LeaseAck, JobAccepted, JobRefused, JobStatus, JobLogs, JobResult, ArtifactChunk),
)

any_message = st.one_of(*STRATEGIES.values())


def members(union: Any) -> set[type[BaseModel]]:
    """The classes of an ``Annotated[A | B | …, Field(discriminator=…)]`` union."""
    inner = typing.get_args(union)[0]
    return set(typing.get_args(inner))


LINK = members(WorkerLinkMessage)
API = members(ValidatorApiMessage)


def adapter_for(cls: type[Message]) -> TypeAdapter[Any]:
    return WORKER_LINK if cls in LINK else VALIDATOR_API


def has_bytes(value: Any) -> bool:
    if isinstance(value, bytes):
        return True
    if isinstance(value, dict):
        return any(has_bytes(item) for item in value.values())
    if isinstance(value, list):
        return any(has_bytes(item) for item in value)
    return False


def split(frame: bytes) -> tuple[dict[str, Any], bytes]:
    (length,) = struct.unpack_from("<I", frame, 4)
    return json.loads(frame[8 : 8 + length]), frame[8 + length :]


def reframe(header: Any, blobs: bytes = b"", *, raw: bytes | None = None) -> bytes:
    body = raw if raw is not None else json.dumps(header).encode()
    return MAGIC + struct.pack("<I", len(body)) + body + blobs


def decodes_safely(data: bytes | str, adapter: TypeAdapter[Any]) -> Message | None:
    """Decode hostile input: a ProtocolError is fine, and so is a *valid* message, which must then
    survive its own round trip. Any other exception escapes and fails the test."""
    try:
        message = decode(data, adapter, max_bytes=LIMIT)
    except ProtocolError:
        return None
    assert isinstance(message, Message)
    assert decode(encode(message), adapter, max_bytes=LIMIT) == message
    return message


# --------------------------------------------------------------------------- coverage


def test_every_message_has_a_strategy_and_unique_type() -> None:
    assert set(STRATEGIES) == LINK | API
    assert not LINK & API
    tags = [cls.message_type() for cls in STRATEGIES]
    assert len(tags) == len(set(tags))


def test_directional_unions_partition_the_link() -> None:
    to_worker, to_miner = members(MinerToWorker), members(WorkerToMiner)
    assert to_worker | to_miner == LINK
    assert to_worker & to_miner == {ErrorReply}
    requests, responses = members(ValidatorRequest), members(MinerResponse)
    assert requests | responses == API
    assert not requests & responses


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("cls", sorted(STRATEGIES, key=attrgetter("__name__")))
@FAST
@given(data=st.data())
def test_round_trip(cls: type[Message], data: st.DataObject) -> None:
    message = data.draw(STRATEGIES[cls])
    frame = encode(message)
    assert frame[:4] == MAGIC
    decoded = decode(frame, adapter_for(cls), max_bytes=LIMIT)
    assert type(decoded) is cls
    assert decoded == message
    # the exact-class adapter works as well as the union
    assert decode(frame, TypeAdapter(cls), max_bytes=LIMIT) == message
    if has_bytes(message.model_dump()):
        with pytest.raises(TypeError):
            encode_text(message)
    else:
        text = encode_text(message)
        assert decode(text, adapter_for(cls), max_bytes=LIMIT) == message


@FAST
@given(message=st.one_of(STRATEGIES[Reveal], STRATEGIES[ChallengeCommit], STRATEGIES[Register]))
def test_bytes_travel_as_raw_blobs(message: Message) -> None:
    frame = encode(message)
    header, tail = split(frame)
    flat: list[bytes] = []

    def collect(value: Any) -> None:
        if isinstance(value, bytes):
            flat.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                collect(item)
        elif isinstance(value, list):
            for item in value:
                collect(item)

    collect(message.model_dump())
    assert tail == b"".join(flat)
    assert header["$blobs"] == [len(blob) for blob in flat]
    assert header["type"] == message.message_type()
    decoded = decode(frame, WORKER_LINK, max_bytes=LIMIT)
    assert all(type(blob) is bytes for blob in _bytes_of(decoded))


def _bytes_of(message: BaseModel) -> list[Any]:
    out: list[Any] = []

    def walk(value: Any) -> None:
        if isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, bytes | bytearray | memoryview):
            out.append(value)

    walk(message)
    return out


def test_decode_accepts_bytearray_and_memoryview() -> None:
    message = HeartbeatAck(seq=7)
    frame = encode(message)
    assert decode(bytearray(frame), WORKER_LINK, max_bytes=LIMIT) == message
    assert decode(memoryview(frame), WORKER_LINK, max_bytes=LIMIT) == message


@FAST
@given(message=any_message)
def test_directional_adapters_refuse_the_other_direction(message: Message) -> None:
    frame = encode(message)
    directions: tuple[tuple[TypeAdapter[Any], set[type[BaseModel]]], ...] = (
        (MINER_TO_WORKER, members(MinerToWorker)),
        (WORKER_TO_MINER, members(WorkerToMiner)),
        (VALIDATOR_REQUEST, members(ValidatorRequest)),
        (MINER_RESPONSE, members(MinerResponse)),
    )
    for adapter, allowed in directions:
        if type(message) in allowed:
            assert decode(frame, adapter, max_bytes=LIMIT) == message
        else:
            with pytest.raises(MalformedMessage):
                decode(frame, adapter, max_bytes=LIMIT)


# --------------------------------------------------------------------------- size limits


@FAST
@given(message=any_message)
def test_size_limit_is_exact(message: Message) -> None:
    frame = encode(message)
    adapter = adapter_for(type(message))
    assert decode(frame, adapter, max_bytes=len(frame)) == message
    with pytest.raises(MessageTooLarge) as info:
        decode(frame, adapter, max_bytes=len(frame) - 1)
    assert info.value.size == len(frame)
    assert info.value.limit == len(frame) - 1
    with pytest.raises(MessageTooLarge):
        encode(message, max_bytes=len(frame) - 1)
    assert encode(message, max_bytes=len(frame)) == frame


def test_size_is_checked_before_any_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append("loads")
        raise AssertionError("parsed an oversized message")

    monkeypatch.setattr(json, "loads", spy)  # the codec's json is this module
    garbage = b"\xff" * 1000  # would be MalformedMessage if it were parsed
    with pytest.raises(MessageTooLarge):
        decode(garbage, WORKER_LINK, max_bytes=999)
    with pytest.raises(MessageTooLarge):
        decode(encode(HeartbeatAck(seq=1)), WORKER_LINK, max_bytes=10)
    with pytest.raises(MessageTooLarge):
        decode("[" * 1000, WORKER_LINK, max_bytes=999)
    assert calls == []


def test_text_size_counts_utf8_bytes() -> None:
    text = encode_text(LeaseStop(lease_id="l", reason="é" * 100))
    assert len(text.encode()) > len(text)
    with pytest.raises(MessageTooLarge):
        decode(text, WORKER_LINK, max_bytes=len(text))
    decoded = decode(text, WORKER_LINK, max_bytes=len(text.encode()))
    assert isinstance(decoded, LeaseStop)
    assert decoded.reason == "é" * 100


def test_header_over_its_own_cap_is_malformed() -> None:
    frame = MAGIC + struct.pack("<I", MAX_HEADER_BYTES + 1) + b"{" + b" " * MAX_HEADER_BYTES + b"}"
    with pytest.raises(MalformedMessage, match="header"):
        decode(frame, WORKER_LINK, max_bytes=len(frame))


# --------------------------------------------------------------------------- versions


@FAST
@given(
    message=any_message,
    version=st.integers(-(10**20), 10**20).filter(lambda v: v != PROTOCOL_VERSION),
)
def test_other_protocol_version_is_unsupported(message: Message, version: int) -> None:
    header, blobs = split(encode(message))
    header["protocol_version"] = version
    with pytest.raises(UnsupportedVersion) as info:
        decode(reframe(header, blobs), adapter_for(type(message)), max_bytes=LIMIT)
    assert info.value.got == version
    assert info.value.supported == PROTOCOL_VERSION


def test_unsupported_version_wins_over_unknown_type() -> None:
    frame = reframe({"type": "from_the_future", "protocol_version": 2, "$blobs": []})
    with pytest.raises(UnsupportedVersion):
        decode(frame, WORKER_LINK, max_bytes=LIMIT)
    text = json.dumps({"type": "from_the_future", "protocol_version": 7, "x": [1]})
    with pytest.raises(UnsupportedVersion):
        decode(text, WORKER_LINK, max_bytes=LIMIT)


@pytest.mark.parametrize("version", ["1", 1.0, True, None, [1], {"v": 1}])
def test_version_of_the_wrong_type_is_malformed(version: Any) -> None:
    text = json.dumps({"type": "heartbeat_ack", "protocol_version": version, "seq": 1})
    with pytest.raises(MalformedMessage, match="protocol_version"):
        decode(text, WORKER_LINK, max_bytes=LIMIT)


def test_missing_version_is_malformed() -> None:
    with pytest.raises(MalformedMessage, match="protocol_version"):
        decode('{"type": "heartbeat_ack", "seq": 1}', WORKER_LINK, max_bytes=LIMIT)


# --------------------------------------------------------------------------- malformed input

ACK = {"type": "heartbeat_ack", "protocol_version": 1, "seq": 1}
HELLO_HEADER = {
    "type": "hello",
    "protocol_version": 1,
    "$blobs": [32],
    "nonce": {"$b": 0},
    "miner_hotkey": "5Hot",
    "heartbeat_interval_s": 5,
}
NONCE = b"n" * 32

MALFORMED_FRAMES: dict[str, bytes] = {
    "empty": b"",
    "short prefix": b"BLP1\x00\x00",
    "bad magic": b"BLP2" + encode(HeartbeatAck(seq=1))[4:],
    "plain json as bytes": json.dumps(ACK).encode(),
    "header length beyond end": MAGIC + struct.pack("<I", 1000) + b"{}",
    "header length huge": MAGIC + b"\xff\xff\xff\xff" + b"{}",
    "invalid utf-8": reframe(None, raw=b'{"type":"heartbeat_ack","x":"\xff\xfe"}'),
    "bad json": reframe(None, raw=b'{"type":'),
    "non-object": reframe([1, 2, 3]),
    "json null": reframe(None, raw=b"null"),
    "no $blobs": reframe(ACK),
    "$blobs not a list": reframe({**ACK, "$blobs": 3}),
    "negative blob length": reframe({**ACK, "$blobs": [-1]}),
    "bool blob length": reframe({**ACK, "$blobs": [True]}, b"x"),
    "leftover bytes": reframe({**ACK, "$blobs": []}, b"extra"),
    "truncated blobs": reframe(HELLO_HEADER, NONCE[:-1]),
    "ref out of range": reframe({**HELLO_HEADER, "nonce": {"$b": 1}}, NONCE),
    "ref negative": reframe({**HELLO_HEADER, "nonce": {"$b": -1}}, NONCE),
    "ref not int": reframe({**HELLO_HEADER, "nonce": {"$b": "0"}}, NONCE),
    "ref bool": reframe({**HELLO_HEADER, "nonce": {"$b": False}}, NONCE),
    "ref extra key": reframe({**HELLO_HEADER, "nonce": {"$b": 0, "n": 32}}, NONCE),
    "blob unused": reframe({**HELLO_HEADER, "$blobs": [32, 1]}, NONCE + b"x"),
    "blob used twice": reframe({**HELLO_HEADER, "miner_hotkey": {"$b": 0}, "$blobs": [32]}, NONCE),
    "bytes where str expected": reframe(
        {**HELLO_HEADER, "$blobs": [32, 4], "miner_hotkey": {"$b": 1}}, NONCE + b"5Hot"
    ),
    "base64 instead of blob": reframe({**HELLO_HEADER, "nonce": "bm" * 22, "$blobs": []}),
    "unknown type": reframe({**ACK, "type": "bogus", "$blobs": []}),
    "missing type": reframe({"protocol_version": 1, "seq": 1, "$blobs": []}),
    "type not a string": reframe({**ACK, "type": 5, "$blobs": []}),
    "extra field": reframe({**ACK, "extra": 1, "$blobs": []}),
    "missing field": reframe({"type": "heartbeat_ack", "protocol_version": 1, "$blobs": []}),
    "str for int": reframe({**ACK, "seq": "1", "$blobs": []}),
    "float for int": reframe({**ACK, "seq": 1.0, "$blobs": []}),
    "bool for int": reframe({**ACK, "seq": True, "$blobs": []}),
    "negative seq": reframe({**ACK, "seq": -1, "$blobs": []}),
    "int too long": reframe(
        None,
        raw=b'{"type":"heartbeat_ack","protocol_version":1,"$blobs":[],"seq":' + b"9" * 30 + b"}",
    ),
    "NaN": reframe(None, raw=b'{"type":"hello","protocol_version":1,"$blobs":[],"x":NaN}'),
    "Infinity": reframe(None, raw=b'{"type":"hello","protocol_version":1,"$blobs":[],"x":1e999}'),
    "duplicate key": reframe(
        None, raw=b'{"type":"heartbeat_ack","protocol_version":1,"$blobs":[],"seq":1,"seq":2}'
    ),
    "lone surrogate": reframe(
        None,
        raw=b'{"type":"lease_stop","protocol_version":1,"$blobs":[],'
        b'"lease_id":"l","reason":"\\ud800"}',
    ),
    "surrogate key": reframe(
        None, raw=b'{"type":"hello","protocol_version":1,"$blobs":[],"\\udfff":1}'
    ),
    "deep list": reframe(
        None,
        raw=b'{"type":"hello","protocol_version":1,"$blobs":[],"x":'
        + b"[" * 100_000
        + b"]" * 100_000
        + b"}",
    ),
    "deep object": reframe(
        None,
        raw=b'{"type":"hello","protocol_version":1,"$blobs":[],"x":'
        + b'{"a":' * (MAX_JSON_DEPTH + 1)
        + b"1"
        + b"}" * (MAX_JSON_DEPTH + 1)
        + b"}",
    ),
    "unbalanced": reframe(None, raw=b'{"type":"hello","protocol_version":1,"$blobs":[]]'),
    "challenge params invalid": reframe(
        {
            "type": "challenge",
            "protocol_version": 1,
            "$blobs": [32],
            "challenge_id": "c",
            "seed": {"$b": 0},
            "params": {"m": 3, "n": 1, "k": 1, "v": 1, "stages": 1},
            "gpu_uuids": ["GPU-1"],
            "deadline_ms": 10,
        },
        NONCE,
    ),
}


@pytest.mark.parametrize("name", sorted(MALFORMED_FRAMES))
def test_malformed_frames(name: str) -> None:
    with pytest.raises(MalformedMessage):
        decode(MALFORMED_FRAMES[name], WORKER_LINK, max_bytes=LIMIT)


def test_well_formed_twin_of_the_malformed_frames_decodes() -> None:
    """The malformed cases above fail for the reason named, not because the base is broken."""
    assert decode(reframe(HELLO_HEADER, NONCE), WORKER_LINK, max_bytes=LIMIT) == Hello(
        nonce=NONCE, miner_hotkey="5Hot", heartbeat_interval_s=5
    )
    assert decode(reframe({**ACK, "$blobs": []}), WORKER_LINK, max_bytes=LIMIT) == HeartbeatAck(
        seq=1
    )
    nested = {**ACK, "x": json.loads("[" * (MAX_JSON_DEPTH - 2) + "]" * (MAX_JSON_DEPTH - 2))}
    with pytest.raises(MalformedMessage, match="Extra inputs"):  # depth fine, refused by the model
        decode(json.dumps(nested), WORKER_LINK, max_bytes=LIMIT)


MALFORMED_TEXT: dict[str, str] = {
    "empty": "",
    "not json": "hello",
    "array": "[1]",
    "$blobs in text": json.dumps({**ACK, "$blobs": []}),
    "ref in text": json.dumps({k: v for k, v in HELLO_HEADER.items() if k != "$blobs"}),
    "bytes as str": json.dumps(
        {**{k: v for k, v in HELLO_HEADER.items() if k != "$blobs"}, "nonce": "n" * 32}
    ),
    "lone surrogate char": '{"type":"lease_stop","protocol_version":1,"lease_id":"l",'
    '"reason":"\ud800"}',
    "deep": "[" * 5000 + "]" * 5000,
}


@pytest.mark.parametrize("name", sorted(MALFORMED_TEXT))
def test_malformed_text(name: str) -> None:
    with pytest.raises(MalformedMessage):
        decode(MALFORMED_TEXT[name], WORKER_LINK, max_bytes=LIMIT)


def test_validation_errors_do_not_echo_input() -> None:
    secretish = "x" * 500
    text = json.dumps({**ACK, "type": secretish})
    with pytest.raises(MalformedMessage) as info:
        decode(text, WORKER_LINK, max_bytes=LIMIT)
    assert len(info.value.message) < 600
    text = json.dumps({**ACK, "seq": secretish})
    with pytest.raises(MalformedMessage) as info:
        decode(text, WORKER_LINK, max_bytes=LIMIT)
    assert secretish not in info.value.message
    text = json.dumps({**ACK, "type": "evil\nlog line\u2028"})
    with pytest.raises(MalformedMessage) as info:
        decode(text, WORKER_LINK, max_bytes=LIMIT)
    assert info.value.message.isprintable()


# --------------------------------------------------------------------------- fuzzing

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
ADAPTERS = st.sampled_from(
    [
        WORKER_LINK,
        MINER_TO_WORKER,
        WORKER_TO_MINER,
        VALIDATOR_API,
        VALIDATOR_REQUEST,
        MINER_RESPONSE,
    ]
)


@FUZZ
@given(data=st.binary(max_size=300), adapter=ADAPTERS)
def test_arbitrary_bytes_raise_only_protocol_errors(data: bytes, adapter: TypeAdapter[Any]) -> None:
    assert decodes_safely(data, adapter) is None


@FUZZ
@given(header=st.binary(max_size=200), tail=st.binary(max_size=40), adapter=ADAPTERS)
def test_arbitrary_framed_bytes_raise_only_protocol_errors(
    header: bytes, tail: bytes, adapter: TypeAdapter[Any]
) -> None:
    assert decodes_safely(reframe(None, tail, raw=header), adapter) is None


@FUZZ
@given(text=st.text(max_size=300), adapter=ADAPTERS)
def test_arbitrary_text_raises_only_protocol_errors(text: str, adapter: TypeAdapter[Any]) -> None:
    assert decodes_safely(text, adapter) is None


@FUZZ
@given(value=json_values, tail=st.binary(max_size=16), adapter=ADAPTERS)
def test_arbitrary_json_raises_only_protocol_errors(
    value: Any, tail: bytes, adapter: TypeAdapter[Any]
) -> None:
    text = json.dumps(value)
    assert decodes_safely(text, adapter) is None
    as_frame = {"$blobs": [len(tail)], **value} if isinstance(value, dict) else value
    decodes_safely(reframe(as_frame, tail), adapter)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out += _paths(item, (*prefix, index))
    return out


@FUZZ
@given(message=any_message, data=st.data())
def test_structurally_mutated_messages(message: Message, data: st.DataObject) -> None:
    """Replace, delete or add one value anywhere in a valid header."""
    header, blobs = split(encode(message))
    path = data.draw(st.sampled_from([p for p in _paths(header) if p]))
    parent = header
    for part in path[:-1]:
        parent = parent[part]
    action = data.draw(st.sampled_from(["replace", "delete", "add"]))
    if action == "replace":
        parent[path[-1]] = data.draw(json_values)
    elif action == "delete":
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[data.draw(st.text(max_size=8))] = data.draw(json_values)
    else:
        parent.append(data.draw(json_values))
    adapter = adapter_for(type(message))
    decodes_safely(reframe(header, blobs), adapter)
    text_header = {k: v for k, v in header.items() if k != "$blobs"}
    decodes_safely(json.dumps(text_header), adapter)


@FUZZ
@given(message=any_message, data=st.data())
def test_byte_mutated_frames(message: Message, data: st.DataObject) -> None:
    frame = bytearray(encode(message))
    kind = data.draw(st.sampled_from(["flip", "truncate", "extend", "insert", "splice"]))
    if kind == "flip":
        for _ in range(data.draw(st.integers(1, 4))):
            index = data.draw(st.integers(0, len(frame) - 1))
            frame[index] ^= data.draw(st.integers(1, 255))
    elif kind == "truncate":
        del frame[data.draw(st.integers(0, len(frame) - 1)) :]
    elif kind == "extend":
        frame += data.draw(st.binary(min_size=1, max_size=32))
    elif kind == "insert":
        index = data.draw(st.integers(0, len(frame)))
        frame[index:index] = data.draw(st.binary(min_size=1, max_size=8))
    else:
        start = data.draw(st.integers(0, len(frame) - 1))
        stop = data.draw(st.integers(start, len(frame)))
        del frame[start:stop]
    result = decodes_safely(bytes(frame), adapter_for(type(message)))
    if kind in ("truncate", "extend"):
        assert result is None  # a frame's length is exact: no prefix or extension decodes


def test_adversarial_header_is_refused_quickly() -> None:
    """Bracket, quote and backslash soups at the header cap are refused in linear time."""
    import time

    cap = MAX_HEADER_BYTES
    for raw in (
        b"[]" * (cap // 2),
        b"[" * cap,
        b"[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]," * (cap // 32),
        b'{"a":"' + b"\\\\" * (cap // 2 - 4) + b'"}',
        b'"' + b'\\"' * (cap // 2 - 1) + b"x",  # one unterminated string full of escaped quotes
        b'"' * cap,
        b'{"a":"' + b"[" * (cap - 10) + b'"}',  # brackets inside a string do not nest
    ):
        start = time.perf_counter()
        with pytest.raises(MalformedMessage):
            decode(reframe(None, raw=raw), WORKER_LINK, max_bytes=MAX_HEADER_BYTES + 64)
        assert time.perf_counter() - start < 2.0


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(item) for item in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(item) for item in value.values()), default=0)
    return 0


tricky_text = st.text(st.sampled_from('[]{}"\\ab\u00e9'), max_size=12)


@FUZZ
@given(
    base=st.recursive(
        st.none() | st.integers() | tricky_text,
        lambda children: (
            st.lists(children, max_size=3) | st.dictionaries(tricky_text, children, max_size=3)
        ),
        max_leaves=8,
    ),
    wrappers=st.lists(st.sampled_from(["list", "dict"]), max_size=MAX_JSON_DEPTH + 4),
    key=tricky_text,
)
def test_depth_guard_matches_the_real_depth(base: Any, wrappers: list[str], key: str) -> None:
    value = base
    for wrapper in wrappers:
        value = [value] if wrapper == "list" else {key: value}
    raw = json.dumps({"x": value}, ensure_ascii=False).encode()
    if _depth({"x": value}) > MAX_JSON_DEPTH:
        with pytest.raises(MalformedMessage, match="nested deeper"):
            codec._check_depth(raw)
    else:
        codec._check_depth(raw)  # must not refuse legitimate nesting

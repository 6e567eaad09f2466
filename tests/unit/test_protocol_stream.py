"""Record streams (``byteleap.protocol.stream``) and the epoch messages: any chunking of a stream
gives the same records and the same error, and every bound is enforced before buffering."""

from __future__ import annotations

import itertools
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from byteleap.challenge.params import ChallengeParams
from byteleap.crypto import WorkerKey
from byteleap.errors import (
    MalformedMessage,
    MessageTooLarge,
    PeerTimeout,
    PeerUnavailable,
    ProtocolError,
)
from byteleap.protocol import codec
from byteleap.protocol.common import MAX_TEXT, MAX_WORKERS
from byteleap.protocol.miner_api.challenges import (
    ChallengeRequest,
    ChallengeResponse,
    EpochFailure,
    EpochRequest,
)
from byteleap.protocol.miner_api.errors import ApiError
from byteleap.protocol.miner_api.forward import LeaseStatusRequest
from byteleap.protocol.stream import (
    RECORD_PREFIX_BYTES,
    STREAM_CONTENT_TYPE,
    EpochRecord,
    RecordReader,
    encode_record,
    epoch_failure_for,
)
from byteleap.protocol.worker_link.challenges import GpuCommit

CHUNKINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PARAMS = ChallengeParams(m=64, n=64, k=64, v=15, stages=3)
LIMIT = 1 << 20
KEY = WorkerKey.from_seed(bytes(range(32)))
GPU = "GPU-00000000-1111-2222-3333-444444444444"


def commit(cid: str, gpus: int = 1) -> ChallengeResponse:
    return ChallengeResponse(
        challenge_id=cid,
        miner_hotkey="5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY",
        worker_pubkey=KEY.public_key.hex(),
        gpus=[
            GpuCommit.create(KEY, cid, f"{GPU}-{i}", [bytes([i]) * 32] * 3, [1.0, 2.0, 3.0])
            for i in range(gpus)
        ],
        miner_signature=bytes(64),
    )


def failure(cid: str) -> EpochFailure:
    return EpochFailure(challenge_id=cid, code="unavailable", message="worker is leased")


RECORDS: list[EpochRecord] = [
    commit("c-0"),
    failure("c-1"),
    commit("c-2", gpus=4),
    failure("c-3"),
    commit("c-4", gpus=2),
]


def stream_of(records: list[EpochRecord]) -> bytes:
    return b"".join(encode_record(record) for record in records)


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cut % (len(data) + 1) for cut in cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def read_all(reader: RecordReader, chunks: list[bytes]) -> tuple[list[EpochRecord], Any]:
    """Feed every chunk and finish; the records returned and the error raised (or None)."""
    out: list[EpochRecord] = []
    try:
        for chunk in chunks:
            out += reader.feed(chunk)
        reader.finish()
    except ProtocolError as exc:
        return out, exc
    return out, None


def framed(frame: bytes) -> bytes:
    return struct.pack("<I", len(frame)) + frame


# --------------------------------------------------------------------------- round trips


def test_a_record_is_its_frame_behind_a_u32le_length() -> None:
    record = failure("c-9")
    data = encode_record(record)
    frame = codec.encode(record)
    assert data == struct.pack("<I", len(frame)) + frame
    assert RECORD_PREFIX_BYTES == 4
    assert STREAM_CONTENT_TYPE == "application/x-byteleap-records"


@CHUNKINGS
@given(
    count=st.integers(0, len(RECORDS)),
    cuts=st.lists(st.integers(0, 1 << 16), max_size=12),
)
def test_any_chunking_gives_the_same_records(count: int, cuts: list[int]) -> None:
    records = RECORDS[:count]
    reader = RecordReader(LIMIT, len(RECORDS))
    out, error = read_all(reader, pieces(stream_of(records), cuts))
    assert error is None
    assert out == records
    assert reader.records == count and reader.buffered == 0 and reader.error is None


def test_byte_by_byte_and_all_at_once() -> None:
    data = stream_of(RECORDS)
    one = RecordReader(LIMIT, len(RECORDS))
    assert read_all(one, [data[i : i + 1] for i in range(len(data))]) == (RECORDS, None)
    whole = RecordReader(LIMIT, len(RECORDS))
    assert whole.feed(data) == RECORDS
    assert whole.feed(b"") == []
    whole.finish()


def test_a_record_exactly_at_the_cap_is_read() -> None:
    data = encode_record(RECORDS[2])
    reader = RecordReader(len(data) - RECORD_PREFIX_BYTES, 1)
    assert reader.feed(data) == [RECORDS[2]]
    reader.finish()


# --------------------------------------------------------------------------- hostile streams


def test_oversize_declared_length_is_refused_before_its_body() -> None:
    reader = RecordReader(1000, 5)
    with pytest.raises(MessageTooLarge) as info:
        reader.feed(struct.pack("<I", 1001))  # the prefix alone: no body was sent or buffered
    assert (info.value.size, info.value.limit) == (1001, 1000)
    assert reader.buffered == 0
    huge = RecordReader(1000, 5)
    with pytest.raises(MessageTooLarge):
        huge.feed(struct.pack("<I", 0xFFFFFFFF)[:3])
        huge.feed(struct.pack("<I", 0xFFFFFFFF)[3:])


def test_zero_length_is_malformed() -> None:
    with pytest.raises(MalformedMessage, match="length 0"):
        RecordReader(LIMIT, 5).feed(bytes(4))


@pytest.mark.parametrize(
    "frame",
    [
        codec.encode(ApiError(code="internal", message="not a record")),  # a response, not one
        codec.encode(LeaseStatusRequest(lease_id="x")),  # a request: not a miner response
        b"garbage!",
        codec.encode(failure("c-1"))[:-1],  # a frame cut short inside its record
    ],
    ids=["api_error", "request", "garbage", "truncated_frame"],
)
def test_a_record_that_is_not_a_record_is_malformed(frame: bytes) -> None:
    with pytest.raises(MalformedMessage):
        RecordReader(LIMIT, 5).feed(framed(frame))


def test_a_record_over_the_frame_cap_of_its_frame_is_refused() -> None:
    data = encode_record(RECORDS[2])
    with pytest.raises(MessageTooLarge):
        RecordReader(len(data) - RECORD_PREFIX_BYTES - 1, 1).feed(data)


@pytest.mark.parametrize("left", [1, 3, 4, 10])
def test_a_trailing_partial_record_is_malformed_at_the_end(left: int) -> None:
    data = stream_of(RECORDS[:2]) + encode_record(RECORDS[2])[:left]
    reader = RecordReader(LIMIT, 5)
    assert reader.feed(data) == RECORDS[:2]
    assert reader.buffered == left
    with pytest.raises(MalformedMessage, match="inside a record"):
        reader.finish()


def test_more_records_than_allowed_is_malformed() -> None:
    reader = RecordReader(LIMIT, 2)
    # the two allowed records are still returned; the error comes with the next call
    assert reader.feed(stream_of(RECORDS[:3])) == RECORDS[:2]
    assert isinstance(reader.error, MalformedMessage)
    with pytest.raises(MalformedMessage, match="more than 2 records"):
        reader.finish()
    with pytest.raises(MalformedMessage):
        RecordReader(LIMIT, 0).feed(b"\x01")  # no record expected: any byte is one too many


def test_errors_are_sticky() -> None:
    reader = RecordReader(LIMIT, 5)
    with pytest.raises(MalformedMessage):
        reader.feed(bytes(4))
    with pytest.raises(MalformedMessage):
        reader.feed(encode_record(RECORDS[0]))
    with pytest.raises(MalformedMessage):
        reader.finish()


BAD_RECORDS = {
    "zero_length": bytes(4),
    "oversize": struct.pack("<I", LIMIT + 1) + b"xx",
    "wrong_type": framed(codec.encode(ApiError(code="x", message=""))),
    "garbage": framed(b"BLP1 but not really"),
    "partial": encode_record(RECORDS[0])[:7],
}


@CHUNKINGS
@given(
    good=st.integers(0, 3),
    bad=st.sampled_from(sorted(BAD_RECORDS)),
    cuts=st.lists(st.integers(0, 1 << 16), max_size=8),
)
def test_the_outcome_of_a_bad_stream_does_not_depend_on_chunking(
    good: int, bad: str, cuts: list[int]
) -> None:
    data = stream_of(RECORDS[:good]) + BAD_RECORDS[bad]
    if bad != "partial":
        data += stream_of(RECORDS[good:])  # never read: the stream is broken before them
    expected = read_all(RecordReader(LIMIT, len(RECORDS)), [data])
    out, error = read_all(RecordReader(LIMIT, len(RECORDS)), pieces(data, cuts))
    assert out == RECORDS[:good] == expected[0]
    assert type(error) is type(expected[1])
    assert isinstance(error, MessageTooLarge if bad == "oversize" else MalformedMessage)


def test_reader_bounds_are_checked() -> None:
    with pytest.raises(ValueError):
        RecordReader(0, 1)
    with pytest.raises(ValueError):
        RecordReader(1, -1)


# --------------------------------------------------------------------------- encoding


def test_encode_record_refuses_other_messages_and_honours_its_cap() -> None:
    with pytest.raises(TypeError):
        encode_record(ApiError(code="x", message="y"))  # type: ignore[arg-type]
    data = encode_record(RECORDS[2])
    with pytest.raises(MessageTooLarge):
        encode_record(RECORDS[2], max_bytes=len(data) - RECORD_PREFIX_BYTES - 1)


def test_epoch_failure_for_keeps_the_code_and_clips_the_message() -> None:
    leased = epoch_failure_for("c-1", PeerUnavailable(leased=True))
    assert (leased.challenge_id, leased.code, leased.message) == (
        "c-1",
        "unavailable",
        "worker is leased",
    )
    late = epoch_failure_for("c-2", PeerTimeout("x" * (5 * MAX_TEXT)))
    assert late.code == "timeout" and len(late.message) == MAX_TEXT


# --------------------------------------------------------------------------- epoch messages


def challenge(cid: str, key: WorkerKey | None = None) -> ChallengeRequest:
    return ChallengeRequest(
        challenge_id=cid,
        worker_pubkey=(key or WorkerKey.generate()).public_key.hex(),
        gpu_uuids=[GPU],
        seed=bytes(32),
        params=PARAMS,
        deadline_ms=2000,
    )


def test_epoch_request_round_trips_through_the_request_adapter() -> None:
    request = EpochRequest(epoch_id="e-1", challenges=[challenge("a"), challenge("b")])
    decoded = codec.decode(codec.encode(request), codec.VALIDATOR_REQUEST, max_bytes=LIMIT)
    assert decoded == request
    with pytest.raises(MalformedMessage):  # a request is not a miner response
        codec.decode(codec.encode(request), codec.MINER_RESPONSE, max_bytes=LIMIT)
    answer = failure("a")
    assert codec.decode(codec.encode(answer), codec.MINER_RESPONSE, max_bytes=LIMIT) == answer


def test_epoch_request_refuses_duplicates() -> None:
    key = WorkerKey.generate()
    with pytest.raises(ValueError, match="challenge_id values must be distinct"):
        EpochRequest(epoch_id="e", challenges=[challenge("a"), challenge("a")])
    with pytest.raises(ValueError, match="worker_pubkey values must be distinct"):
        EpochRequest(epoch_id="e", challenges=[challenge("a", key), challenge("b", key)])


def test_epoch_request_size_limits() -> None:
    with pytest.raises(ValueError):
        EpochRequest(epoch_id="e", challenges=[])
    with pytest.raises(ValueError):
        EpochRequest(epoch_id="bad id", challenges=[challenge("a")])
    keys = [bytes([i >> 8, i & 0xFF]) + bytes(30) for i in range(MAX_WORKERS + 1)]
    many = [
        challenge("a").model_copy(update={"challenge_id": f"c{i}", "worker_pubkey": key.hex()})
        for i, key in enumerate(keys)
    ]
    full = EpochRequest(epoch_id="e", challenges=many[:MAX_WORKERS])
    assert len(full.challenges) == MAX_WORKERS
    with pytest.raises(ValueError):
        EpochRequest(epoch_id="e", challenges=many)


def test_a_nested_challenge_of_another_version_is_malformed() -> None:
    request = EpochRequest(epoch_id="e", challenges=[challenge("a")])
    frame = codec.encode(request)
    (length,) = struct.unpack_from("<I", frame, 4)
    nested = b'{"protocol_version":1,"type":"challenge_request"'
    header = frame[8 : 8 + length].replace(nested, nested.replace(b":1,", b":2,"))
    assert header != frame[8 : 8 + length]
    bad = frame[:4] + struct.pack("<I", len(header)) + header + frame[8 + length :]
    with pytest.raises(MalformedMessage):
        codec.decode(bad, codec.VALIDATOR_REQUEST, max_bytes=LIMIT)


def test_epoch_failure_bounds() -> None:
    with pytest.raises(ValueError):
        EpochFailure(challenge_id="c", code="Not A Code", message="")
    with pytest.raises(ValueError):
        EpochFailure(challenge_id="c", code="timeout", message="x" * (MAX_TEXT + 1))
    with pytest.raises(ValueError):
        EpochFailure(challenge_id="", code="timeout", message="")

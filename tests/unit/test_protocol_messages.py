"""Message semantics: handshake signature, signed payloads, field bounds, typed error replies."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from byteleap.challenge.params import CPU_DEFAULT, GPU_DEFAULT, ChallengeParams
from byteleap.crypto import WorkerKey, frame
from byteleap.errors import (
    AuthError,
    ByteLeapError,
    ChainError,
    ConfigError,
    Forbidden,
    FraudError,
    FraudReason,
    LinkError,
    MalformedMessage,
    MessageTooLarge,
    Outcome,
    PeerTimeout,
    PeerUnavailable,
    ProtocolError,
    RateLimited,
    StorageError,
    TransientError,
    Unauthenticated,
    UnsupportedVersion,
    VerificationFailed,
    WorkerFailure,
    outcome_of,
)
from byteleap.protocol import (
    HANDSHAKE_TAG,
    MAX_GPUS,
    MAX_OPENINGS,
    VALIDATOR_API,
    WORKER_LINK,
    GpuInfo,
    HostInfo,
    Inventory,
    api_error_for,
    decode,
    encode,
    error_reply_for,
    handshake_payload,
    make_register,
    verify_register,
)
from byteleap.protocol.common import MAX_TEXT
from byteleap.protocol.miner_api.challenges import ChallengeResponse, evidence_payload
from byteleap.protocol.miner_api.errors import ApiError, http_status_for
from byteleap.protocol.worker_link.challenges import (
    COMMIT_TAG,
    ChallengeCommit,
    ChallengeDispatch,
    GpuCommit,
    OpeningRequest,
    Reveal,
    RevealRequest,
    RowOpening,
    commit_payload,
)
from byteleap.protocol.worker_link.session import (
    ErrorReply,
    Heartbeat,
    HeartbeatAck,
    Hello,
    Register,
    Unavailable,
)

SETTINGS = settings(max_examples=20, deadline=None)
LIMIT = 1 << 20

KEY = WorkerKey.from_seed(bytes(range(32)))
OTHER_KEY = WorkerKey.from_seed(bytes(range(1, 33)))
NONCE = bytes(32 * [7])
HOTKEY = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
INVENTORY = Inventory(
    host=HostInfo(
        hostname="gpu-host-1",
        cpu_count_logical=64,
        memory_total_bytes=512 * 2**30,
        memory_available_bytes=400 * 2**30,
    ),
    gpus=[
        GpuInfo(index=0, name="NVIDIA H100 80GB HBM3", uuid="GPU-0a", memory_total_mib=81559),
        GpuInfo(index=1, name="NVIDIA H100 80GB HBM3", uuid="GPU-0b", memory_total_mib=81559),
    ],
    backends=["cupy", "numpy"],
)
HELLO = Hello(nonce=NONCE, miner_hotkey=HOTKEY, heartbeat_interval_s=5)
ROOTS = [bytes([i]) * 32 for i in range(4)]

b32 = st.binary(min_size=32, max_size=32)
hotkeys = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=64)


# --------------------------------------------------------------------------- handshake


def test_register_verifies_for_its_hello() -> None:
    register = make_register(KEY, HELLO, agent_version="0.1.0", inventory=INVENTORY)
    assert register.worker_pubkey == KEY.public_key
    assert verify_register(HELLO, register)
    # and survives the wire
    decoded = decode(encode(register), WORKER_LINK, max_bytes=LIMIT)
    assert isinstance(decoded, Register)
    assert verify_register(HELLO, decoded)


def test_handshake_payload_is_tagged_and_framed() -> None:
    payload = handshake_payload(NONCE, HOTKEY, KEY.public_key)
    assert payload == frame(HANDSHAKE_TAG, NONCE, HOTKEY, KEY.public_key)
    assert payload.startswith(frame(HANDSHAKE_TAG))


@SETTINGS
@given(nonce=b32, hotkey=hotkeys)
def test_register_fails_for_another_nonce_or_hotkey(nonce: bytes, hotkey: str) -> None:
    register = make_register(KEY, HELLO, agent_version="0.1.0", inventory=INVENTORY)
    other = Hello(nonce=nonce, miner_hotkey=hotkey, heartbeat_interval_s=HELLO.heartbeat_interval_s)
    same = nonce == HELLO.nonce and hotkey == HELLO.miner_hotkey
    assert verify_register(other, register) is same


def test_register_fails_with_another_key_or_signature() -> None:
    register = make_register(KEY, HELLO, agent_version="0.1.0", inventory=INVENTORY)
    # claims someone else's key with its own signature
    claimed = register.model_copy(update={"worker_pubkey": OTHER_KEY.public_key})
    assert not verify_register(HELLO, claimed)
    # another key's signature for the same hello
    foreign = make_register(OTHER_KEY, HELLO, agent_version="0.1.0", inventory=INVENTORY)
    assert verify_register(HELLO, foreign)
    mixed = register.model_copy(update={"signature": foreign.signature})
    assert not verify_register(HELLO, mixed)
    # any bit of the signature
    for index in (0, 31, 63):
        bad = bytearray(register.signature)
        bad[index] ^= 1
        assert not verify_register(HELLO, register.model_copy(update={"signature": bytes(bad)}))
    # an all-zero key is not a key
    zero = register.model_copy(update={"worker_pubkey": bytes(32)})
    assert not verify_register(HELLO, zero)


def test_a_miner_cannot_relay_a_register_to_another_miner() -> None:
    register = make_register(KEY, HELLO, agent_version="0.1.0", inventory=INVENTORY)
    elsewhere = HELLO.model_copy(update={"miner_hotkey": HOTKEY[:-1] + "Z"})
    assert not verify_register(elsewhere, register)


def test_register_carries_no_reusable_secret() -> None:
    register = make_register(
        KEY, HELLO, agent_version="0.1.0", inventory=INVENTORY, join_token="one-time-123"
    )
    wire = encode(register)
    assert KEY.seed() not in wire
    assert register.join_token == "one-time-123"


# --------------------------------------------------------------------------- commitments

commit_fields = st.tuples(
    st.text(min_size=1, max_size=12),
    st.text(min_size=1, max_size=12),
    st.lists(st.binary(min_size=32, max_size=32), max_size=4),
)


@SETTINGS
@given(first=commit_fields, second=commit_fields)
def test_commit_payload_is_injective(
    first: tuple[str, str, list[bytes]], second: tuple[str, str, list[bytes]]
) -> None:
    a, b = commit_payload(*first), commit_payload(*second)
    assert (a == b) is (first == second)


def test_commit_payload_framing_separates_fields() -> None:
    assert commit_payload("ab", "c", ROOTS) != commit_payload("a", "bc", ROOTS)
    assert commit_payload("c", "g", ROOTS) == commit_payload("c", "g", b"".join(ROOTS))
    assert commit_payload("c", "g", ROOTS) == frame(COMMIT_TAG, "c", "g", b"".join(ROOTS))


def test_gpu_commit_create_verify_and_roots() -> None:
    commit = GpuCommit.create(KEY, "chal-1", "GPU-0a", ROOTS, [1.5, 2.0, 2.5, 3.0])
    assert commit.root_list() == ROOTS
    assert commit.verify(KEY.public_key, "chal-1")
    assert not commit.verify(KEY.public_key, "chal-2")
    assert not commit.verify(OTHER_KEY.public_key, "chal-1")
    moved = commit.model_copy(update={"gpu_uuid": "GPU-0b"})
    assert not moved.verify(KEY.public_key, "chal-1")
    swapped = commit.model_copy(update={"roots": b"".join(reversed(ROOTS))})
    assert not swapped.verify(KEY.public_key, "chal-1")
    # the timings are informative and unsigned
    retimed = commit.model_copy(update={"stage_ms": [9.0]})
    assert retimed.verify(KEY.public_key, "chal-1")


@pytest.mark.parametrize("length", [1, 31, 33, 95])
def test_ragged_roots_are_a_commit_shape_fraud(length: int) -> None:
    commit = GpuCommit(gpu_uuid="GPU-0a", roots=b"r" * length, signature=bytes(64))
    with pytest.raises(VerificationFailed) as info:
        commit.root_list()
    assert info.value.reason is FraudReason.BAD_COMMIT_SHAPE
    assert outcome_of(info.value) is Outcome.FRAUD


def test_proof_list_splits_siblings_and_flags_ragged_proofs() -> None:
    siblings = [bytes([i]) * 32 for i in range(3)]
    opening = RowOpening(gpu_uuid="g", stage=2, row=5, values=b"", proof=b"".join(siblings))
    assert opening.proof_list() == siblings
    ragged = opening.model_copy(update={"proof": b"p" * 33})
    with pytest.raises(VerificationFailed) as info:
        ragged.proof_list()
    assert info.value.reason is FraudReason.BAD_PROOF_LENGTH
    assert (info.value.stage, info.value.row) == (2, 5)


def test_wrongly_shaped_evidence_still_decodes_for_the_verifier() -> None:
    """Row and proof lengths are the verifier's call (fraud), not the link's (malformed)."""
    reveal = Reveal(
        challenge_id="c",
        openings=[RowOpening(gpu_uuid="GPU-0a", stage=0, row=3, values=b"abc", proof=b"p" * 33)],
    )
    assert decode(encode(reveal), WORKER_LINK, max_bytes=LIMIT) == reveal


def _evidence_args() -> dict[str, Any]:
    return {
        "challenge_id": "chal-1",
        "validator_hotkey": "5Validator",
        "miner_hotkey": HOTKEY,
        "worker_pubkey": KEY.public_key,
        "seed": NONCE,
        "params": CPU_DEFAULT,
        "gpus": [GpuCommit.create(KEY, "chal-1", "GPU-0a", ROOTS)],
    }


def test_evidence_payload_binds_every_field() -> None:
    base = evidence_payload(**_evidence_args())
    other_gpu = GpuCommit.create(KEY, "chal-1", "GPU-0b", ROOTS)
    changes: dict[str, Any] = {
        "challenge_id": "chal-2",
        "validator_hotkey": "5Other",
        "miner_hotkey": HOTKEY[:-1] + "Z",
        "worker_pubkey": OTHER_KEY.public_key,
        "seed": bytes(32),
        "params": CPU_DEFAULT.model_copy(update={"stages": 5}),
        "gpus": [_evidence_args()["gpus"][0], other_gpu],
    }
    for name, value in changes.items():
        assert evidence_payload(**{**_evidence_args(), name: value}) != base, name
    assert evidence_payload(**{**_evidence_args(), "params": GPU_DEFAULT}) != base
    assert evidence_payload(**_evidence_args()) == base


def test_challenge_response_payload_matches_evidence_payload() -> None:
    args = _evidence_args()
    response = ChallengeResponse(
        challenge_id=args["challenge_id"],
        miner_hotkey=args["miner_hotkey"],
        worker_pubkey=KEY.public_key.hex(),
        gpus=args["gpus"],
        miner_signature=bytes(64),
    )
    assert response.worker_pubkey_bytes == KEY.public_key
    payload = response.payload(
        validator_hotkey=args["validator_hotkey"], seed=args["seed"], params=args["params"]
    )
    assert payload == evidence_payload(**args)


# --------------------------------------------------------------------------- bounds


def _dispatch(**update: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "challenge_id": "chal-1",
        "seed": NONCE,
        "params": CPU_DEFAULT,
        "gpu_uuids": ["GPU-0a"],
        "deadline_ms": 10_000,
    }
    return {**fields, **update}


@pytest.mark.parametrize(
    "update",
    [
        {"gpu_uuids": []},
        {"gpu_uuids": ["GPU-0a", "GPU-0a"]},
        {"gpu_uuids": [f"GPU-{i}" for i in range(MAX_GPUS + 1)]},
        {"gpu_uuids": ["has space"]},
        {"challenge_id": ""},
        {"challenge_id": "x" * 129},
        {"challenge_id": "bad/id"},
        {"seed": bytes(31)},
        {"seed": bytes(33)},
        {"deadline_ms": 0},
        {"deadline_ms": 3_600_001},
        {"deadline_ms": "10"},
        {"deadline_ms": True},
        {"protocol_version": 2},
        {"unexpected": 1},
    ],
)
def test_dispatch_bounds(update: dict[str, Any]) -> None:
    ChallengeDispatch(**_dispatch())  # the base is valid
    with pytest.raises(ValidationError):
        ChallengeDispatch(**_dispatch(**update))


def test_messages_are_frozen() -> None:
    ack = HeartbeatAck(seq=1)
    with pytest.raises(ValidationError):
        ack.seq = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    ("cls", "fields"),
    [
        (OpeningRequest, {"gpu_uuid": "g", "stage": 0, "rows": [1, 1]}),
        (OpeningRequest, {"gpu_uuid": "g", "stage": 0, "rows": []}),
        (OpeningRequest, {"gpu_uuid": "g", "stage": -1, "rows": [1]}),
        (OpeningRequest, {"gpu_uuid": "g", "stage": 0, "rows": [2**16]}),
        (
            RevealRequest,
            {
                "challenge_id": "c",
                "openings": [
                    {"gpu_uuid": "g", "stage": 1, "rows": [1]},
                    {"gpu_uuid": "g", "stage": 1, "rows": [2]},
                ],
            },
        ),
        (
            RevealRequest,
            {
                "challenge_id": "c",
                "openings": [
                    {"gpu_uuid": "g", "stage": stage, "rows": list(range(4096))}
                    for stage in range(MAX_OPENINGS // 4096 + 1)
                ],
            },
        ),
        (
            Reveal,
            {
                "challenge_id": "c",
                "openings": [
                    {"gpu_uuid": "g", "stage": 0, "row": 1, "values": b"", "proof": b""},
                    {"gpu_uuid": "g", "stage": 0, "row": 1, "values": b"x", "proof": b""},
                ],
            },
        ),
        (
            RowOpening,
            {"gpu_uuid": "g", "stage": 0, "row": 0, "values": b"", "proof": b"p" * (32 * 17)},
        ),
        (ChallengeCommit, {"challenge_id": "c", "gpus": []}),
        (
            ChallengeCommit,
            {
                "challenge_id": "c",
                "gpus": [{"gpu_uuid": "g", "roots": b"", "signature": bytes(64)}] * 2,
            },
        ),
        (GpuCommit, {"gpu_uuid": "g", "roots": b"", "signature": bytes(63)}),
        (GpuCommit, {"gpu_uuid": "g", "roots": b"", "signature": bytes(64), "stage_ms": [-1.0]}),
        (
            GpuCommit,
            {"gpu_uuid": "g", "roots": b"", "signature": bytes(64), "stage_ms": [float("nan")]},
        ),
        (Heartbeat, {"seq": 1, "state": "sleeping"}),
        (Heartbeat, {"seq": 2**63, "state": "idle"}),
        (Hello, {"nonce": NONCE, "miner_hotkey": "x", "heartbeat_interval_s": 0}),
        (ErrorReply, {"code": "Not A Code", "message": ""}),
        (ErrorReply, {"code": "x", "message": "m" * (MAX_TEXT + 1)}),
        (ErrorReply, {"code": "x", "message": "\ud800"}),
        (
            Register,
            {
                "worker_pubkey": bytes(32),
                "signature": bytes(64),
                "agent_version": "v",
                "inventory": INVENTORY,
                "join_token": "has space",
            },
        ),
    ],
)
def test_model_bounds(cls: type[Any], fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        cls(**fields)


def test_inventory_rejects_duplicate_gpus() -> None:
    gpu = INVENTORY.gpus[0]
    with pytest.raises(ValidationError):
        Inventory.model_validate(
            {**INVENTORY.model_dump(), "gpus": [gpu.model_dump(), gpu.model_dump()]}
        )
    moved = gpu.model_copy(update={"index": 5})
    with pytest.raises(ValidationError, match="UUID"):
        Inventory(host=INVENTORY.host, gpus=[gpu, moved], backends=[])
    assert INVENTORY.gpu("GPU-0b") == INVENTORY.gpus[1]
    assert INVENTORY.gpu("GPU-zz") is None


def test_challenge_params_are_validated_inside_messages() -> None:
    with pytest.raises(ValidationError, match="power of two"):
        ChallengeDispatch(**_dispatch(params={"m": 6, "n": 4, "k": 4, "v": 1, "stages": 1}))
    dispatch = ChallengeDispatch(**_dispatch(params=GPU_DEFAULT))
    assert isinstance(dispatch.params, ChallengeParams)


# --------------------------------------------------------------------------- typed errors


def _every_error() -> list[ByteLeapError]:
    return [
        ByteLeapError("x"),
        ConfigError("bad", key="k"),
        ProtocolError("p"),
        MalformedMessage("m"),
        MessageTooLarge(10, 5),
        UnsupportedVersion(2, 1),
        RateLimited("slow down"),
        AuthError("a"),
        Unauthenticated("u"),
        Forbidden("f"),
        FraudError("f"),
        VerificationFailed(FraudReason.BAD_PROOF, stage=1, row=2),
        PeerTimeout("late"),
        WorkerFailure("out of memory"),
        PeerUnavailable(leased=True),
        TransientError("t"),
        LinkError("l"),
        ChainError("c"),
        StorageError("s"),
    ]


@pytest.mark.parametrize("exc", _every_error(), ids=lambda e: type(e).__name__)
def test_error_replies_carry_the_class_code(exc: ByteLeapError) -> None:
    reply = error_reply_for(exc, in_reply_to="chal-1")
    assert reply.code == exc.code
    assert reply.in_reply_to == "chal-1"
    assert decode(encode(reply), WORKER_LINK, max_bytes=LIMIT) == reply
    body = api_error_for(exc)
    assert body.code == exc.code
    assert decode(encode(body), VALIDATOR_API, max_bytes=LIMIT) == body


def test_error_reply_sanitises_peer_supplied_text() -> None:
    exc = MalformedMessage("bad \ud800 " + "x" * 5000)
    reply = error_reply_for(exc, in_reply_to="id with spaces\n\ud800" + "y" * 500)
    assert len(reply.message) <= MAX_TEXT
    reply.message.encode("utf-8")  # no lone surrogate survives
    assert reply.in_reply_to is not None
    assert " " not in reply.in_reply_to and len(reply.in_reply_to) <= 128
    assert error_reply_for(exc, in_reply_to="  \n").in_reply_to is None
    assert len(api_error_for(exc).message) <= MAX_TEXT


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (Unauthenticated("u"), 401),
        (Forbidden("f"), 403),
        (MessageTooLarge(2, 1), 413),
        (RateLimited("r"), 429),
        (MalformedMessage("m"), 400),
        (UnsupportedVersion(2, 1), 400),
        (PeerUnavailable(), 409),
        (PeerTimeout("t"), 504),
        (WorkerFailure("oom"), 502),
        (LinkError("l"), 503),
        (FraudError("f"), 500),
    ],
)
def test_http_status_for(exc: ByteLeapError, status: int) -> None:
    assert http_status_for(exc) == status


@pytest.mark.parametrize("leased", [True, False])
def test_unavailable_is_excused(leased: bool) -> None:
    error = Unavailable(challenge_id="c", leased=leased).to_error()
    assert isinstance(error, PeerUnavailable)
    assert error.leased is leased
    assert outcome_of(error) is Outcome.EXCUSED


def test_api_error_is_a_message() -> None:
    body = ApiError(code="unavailable", message="worker is leased")
    assert decode(encode(body), VALIDATOR_API, max_bytes=LIMIT) == body

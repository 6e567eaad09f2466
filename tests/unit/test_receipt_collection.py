"""The pure half of receipt collection: what a fetched receipt must pass before it is stored,
with real sr25519 keys, and how stored payloads are read back."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from bittensor.sp_core import Keypair
from hypothesis import given, settings
from hypothesis import strategies as st

from byteleap.errors import MalformedMessage
from byteleap.leases.receipts import (
    Receipt,
    SignedReceipt,
    canonical_bytes,
    signing_payload,
    verify_signatures,
)
from neurons.common.miner_client import verify_hotkey_signature
from neurons.validator.receipts import DropReason, check_fetched, permitted_validators
from neurons.validator.store.receipt_scoring import receipt_from_payload
from neurons.validator.store.records import MinerRow

VALIDATOR = Keypair.create_from_seed(bytes([11]) * 32)
MINER = Keypair.create_from_seed(bytes([12]) * 32)
OTHER_MINER = Keypair.create_from_seed(bytes([13]) * 32)
OUTSIDER = Keypair.create_from_seed(bytes([14]) * 32)
NETUID = 128
T0 = 1_750_000_000
NOW = T0 + 10 * 3600
VALIDATORS = frozenset({VALIDATOR.ss58_address})


def receipt(**overrides: Any) -> Receipt:
    values: dict[str, Any] = {
        "netuid": NETUID,
        "lease_id": "lease-1",
        "seq": 1,
        "kind": "hourly",
        "validator_hotkey": VALIDATOR.ss58_address,
        "miner_hotkey": MINER.ss58_address,
        "worker_pubkey": "cd" * 32,
        "gpu_uuids": ["GPU-1", "GPU-2"],
        "gpus": 2,
        "price_per_gpu_hour_micros": 2_000_000,
        "period_start": T0,
        "period_end": T0 + 3600,
        "issued_at": T0 + 3600,
    }
    values.update(overrides)
    return Receipt(**values)


def sign(r: Receipt, seller: Keypair = VALIDATOR, miner: Keypair = MINER) -> SignedReceipt:
    payload = signing_payload(r)
    return SignedReceipt(
        receipt=r, validator_signature=seller.sign(payload), miner_signature=miner.sign(payload)
    )


def check(signed: SignedReceipt, **kw: Any) -> DropReason | None:
    args: dict[str, Any] = {
        "source_miner": MINER.ss58_address,
        "netuid": NETUID,
        "validators": VALIDATORS,
        "now": NOW,
        "verify": verify_hotkey_signature,
    }
    args.update(kw)
    dropped = check_fetched(signed, **args)
    return None if dropped is None else dropped.reason


def test_a_receipt_signed_by_both_parties_passes() -> None:
    assert check(sign(receipt())) is None
    assert check(sign(receipt(seq=0, kind="start", period_end=T0, issued_at=T0))) is None


def test_a_receipt_served_by_another_miner_is_a_replay() -> None:
    signed = sign(receipt())
    assert check(signed, source_miner=OTHER_MINER.ss58_address) is DropReason.WRONG_MINER


def test_a_receipt_of_another_subnet_is_dropped() -> None:
    assert check(sign(receipt(netuid=7))) is DropReason.WRONG_NETUID


def test_a_receipt_sold_by_a_non_validator_earns_nothing() -> None:
    signed = sign(receipt(validator_hotkey=OUTSIDER.ss58_address), seller=OUTSIDER)
    assert check(signed) is DropReason.NOT_VALIDATOR
    assert check(signed, validators=VALIDATORS | {OUTSIDER.ss58_address}) is None


def test_a_receipt_signed_by_one_party_only_is_dropped() -> None:
    genuine = sign(receipt())
    validator_only = genuine.model_copy(update={"miner_signature": VALIDATOR.sign(b"other")})
    assert check(validator_only) is DropReason.BAD_MINER_SIGNATURE
    # the miner signing in the validator's place
    payload = signing_payload(genuine.receipt)
    miner_only = genuine.model_copy(update={"validator_signature": MINER.sign(payload)})
    assert check(miner_only) is DropReason.BAD_VALIDATOR_SIGNATURE


def test_a_tampered_receipt_no_longer_verifies() -> None:
    genuine = sign(receipt())
    raised = receipt(price_per_gpu_hour_micros=9_000_000)
    tampered = genuine.model_copy(update={"receipt": raised})
    assert check(tampered) is DropReason.BAD_VALIDATOR_SIGNATURE


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        ({"issued_at": T0 + 1800}, "issued before its period ended"),
        (
            {
                "period_start": T0 + 20 * 3600,
                "period_end": T0 + 30 * 3600,
                "issued_at": T0 + 30 * 3600,
            },
            "dated in the future",
        ),
        ({"seq": 0}, "seq 0 that is not a start receipt"),
        ({"period_end": T0 + 25 * 3600, "issued_at": T0 + 25 * 3600}, "over 24 hours"),
    ],
)
def test_a_receipt_that_breaks_the_rules_is_invalid_even_when_signed(
    overrides: dict[str, Any], why: str
) -> None:
    now = max(NOW, T0 + 25 * 3600)
    assert check(sign(receipt(**overrides)), now=now) is DropReason.INVALID, why


def test_a_receipt_that_is_not_in_canonical_form_is_dropped() -> None:
    unsorted = Receipt.model_construct(
        **{**receipt().model_dump(), "gpu_uuids": ["GPU-2", "GPU-1"]}
    )
    signed = SignedReceipt.model_construct(
        receipt=unsorted, validator_signature=b"\0" * 64, miner_signature=b"\0" * 64
    )
    assert check(signed) is DropReason.NOT_CANONICAL


def test_a_verifier_that_raises_counts_as_a_failed_signature() -> None:
    def broken(hotkey: str, message: bytes, signature: bytes) -> bool:
        raise RuntimeError("verifier bug")

    assert check(sign(receipt()), verify=broken) is DropReason.BAD_VALIDATOR_SIGNATURE


def row(hotkey: str, *, permit: bool, stake: float, registered: bool = True) -> MinerRow:
    return MinerRow(
        uid=0,
        hotkey=hotkey,
        coldkey="c",
        stake=stake,
        validator_permit=permit,
        endpoint=None,
        registered=registered,
        last_synced=datetime.fromtimestamp(T0, UTC),
    )


def test_permitted_validators_need_a_permit_the_stake_and_registration() -> None:
    rows = [
        row("a", permit=True, stake=100.0),
        row("b", permit=True, stake=5.0),
        row("c", permit=False, stake=1e6),
        row("d", permit=True, stake=1e6, registered=False),
    ]
    assert permitted_validators(rows, 0.0) == {"a", "b"}
    assert permitted_validators(rows, 10.0) == {"a"}


def test_stored_payloads_are_read_in_canonical_or_framed_form() -> None:
    r = receipt()
    assert receipt_from_payload(canonical_bytes(r)) == r
    assert receipt_from_payload(signing_payload(r)) == r
    for junk in (b"", b"{}", canonical_bytes(r) + b" ", signing_payload(r)[:-1]):
        with pytest.raises(MalformedMessage):
            receipt_from_payload(junk)


# --------------------------------------------------------------------------- property

FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "netuid": st.integers(0, 200),
    "lease_id": st.sampled_from(["lease-1", "lease-2", "x"]),
    "seq": st.integers(0, 5),
    "kind": st.sampled_from(["start", "hourly", "end"]),
    "miner_hotkey": st.sampled_from([MINER.ss58_address, OTHER_MINER.ss58_address]),
    "validator_hotkey": st.sampled_from([VALIDATOR.ss58_address, OUTSIDER.ss58_address]),
    "price_per_gpu_hour_micros": st.integers(0, 10**9),
    "period_start": st.integers(T0 - 3600, T0 + 3600),
    "period_end": st.integers(T0, T0 + 7200),
    "issued_at": st.integers(T0, NOW + 7200),
}


@settings(max_examples=150, deadline=None)
@given(
    changes=st.dictionaries(st.sampled_from(sorted(FIELDS)), st.none(), max_size=4).flatmap(
        lambda keys: st.fixed_dictionaries({k: FIELDS[k] for k in keys})
    ),
    flip=st.sampled_from(["none", "validator", "miner", "swap"]),
    index=st.integers(0, 63),
)
def test_whatever_is_changed_after_signing_never_passes_unless_it_is_the_original(
    changes: dict[str, Any], flip: str, index: int
) -> None:
    original = sign(receipt())
    try:
        mutated = Receipt(**{**original.receipt.model_dump(), **changes})
    except ValueError:
        return  # not even a receipt: the page holding it does not decode
    vsig, msig = bytearray(original.validator_signature), bytearray(original.miner_signature)
    if flip == "validator":
        vsig[index] ^= 0x01
    elif flip == "miner":
        msig[index] ^= 0x01
    elif flip == "swap":
        vsig, msig = msig, vsig
    signed = SignedReceipt(
        receipt=mutated, validator_signature=bytes(vsig), miner_signature=bytes(msig)
    )
    if check(signed) is None:
        assert canonical_bytes(mutated) == canonical_bytes(original.receipt)
        assert (bytes(vsig), bytes(msig)) == (
            original.validator_signature,
            original.miner_signature,
        )
        verify_signatures(signed, verify_hotkey_signature)

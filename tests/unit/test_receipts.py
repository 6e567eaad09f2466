"""Usage receipts: one canonical spelling, the rules a receipt and a chain of them follow, and
both signatures checked with real sr25519 keys."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bittensor.sp_core import Keypair
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from byteleap.errors import Forbidden, FraudReason, MalformedMessage, VerificationFailed
from byteleap.leases.receipts import (
    MAX_PERIOD_S,
    RECEIPT_TAG,
    Receipt,
    SignedReceipt,
    canonical_bytes,
    check_chain,
    check_receipt,
    check_successor,
    lease_usage,
    parse_canonical,
    same_content,
    signing_payload,
    verify_signatures,
)
from byteleap.scoring.leases import lease_revenue
from byteleap.scoring.params import ScoringParams
from neurons.common.miner_client import verify_hotkey_signature

VALIDATOR = Keypair.create_from_seed(bytes([1]) * 32)
MINER = Keypair.create_from_seed(bytes([2]) * 32)
T0 = 1_750_000_000
GPUS = ["GPU-aaaa", "GPU-bbbb"]


def receipt(**overrides: Any) -> Receipt:
    values: dict[str, Any] = {
        "netuid": 128,
        "lease_id": "lease-1",
        "seq": 1,
        "kind": "hourly",
        "validator_hotkey": VALIDATOR.ss58_address,
        "miner_hotkey": MINER.ss58_address,
        "worker_pubkey": "ab" * 32,
        "gpu_uuids": GPUS,
        "gpus": 2,
        "price_per_gpu_hour_micros": 2_500_000,
        "period_start": T0,
        "period_end": T0 + 3600,
        "issued_at": T0 + 3600,
    }
    values.update(overrides)
    return Receipt(**values)


def start_receipt(**overrides: Any) -> Receipt:
    base = {"seq": 0, "kind": "start", "period_start": T0, "period_end": T0, "issued_at": T0}
    return receipt(**{**base, **overrides})


def signed(r: Receipt) -> SignedReceipt:
    payload = signing_payload(r)
    return SignedReceipt(
        receipt=r, validator_signature=VALIDATOR.sign(payload), miner_signature=MINER.sign(payload)
    )


# --------------------------------------------------------------------------- canonical form


def test_canonical_bytes_are_sorted_compact_ascii_json_without_floats() -> None:
    r = receipt()
    raw = canonical_bytes(r)
    text = raw.decode("ascii")
    assert " " not in text and "\n" not in text
    obj = json.loads(text)
    assert list(obj) == sorted(obj)
    assert obj["price_per_gpu_hour_micros"] == 2_500_000
    assert not any(isinstance(value, float) for value in obj.values())
    assert text.startswith('{"gpu_uuids":["GPU-aaaa","GPU-bbbb"],"gpus":2,"issued_at":')
    assert '"version":1' in text


def test_signing_payload_is_the_tagged_frame_of_the_canonical_bytes() -> None:
    r = receipt()
    raw = canonical_bytes(r)
    payload = signing_payload(r)
    tag = RECEIPT_TAG
    assert payload == len(tag).to_bytes(4, "little") + tag + len(raw).to_bytes(4, "little") + raw


def test_parse_canonical_round_trips_and_refuses_other_spellings() -> None:
    r = receipt()
    raw = canonical_bytes(r)
    assert parse_canonical(raw) == r
    spaced = json.dumps(json.loads(raw), sort_keys=True).encode()
    reordered = json.dumps(dict(reversed(list(json.loads(raw).items()))), separators=(",", ":"))
    for other in (spaced, reordered.encode(), raw + b" ", b"{}", b"not json"):
        with pytest.raises(MalformedMessage):
            parse_canonical(other)


@pytest.mark.parametrize(
    "overrides",
    [
        {"gpu_uuids": ["GPU-bbbb", "GPU-aaaa"]},  # not sorted: two spellings of one set
        {"gpu_uuids": ["GPU-aaaa", "GPU-aaaa"]},
        {"gpus": 3},
        {"price_per_gpu_hour_micros": 2.5},
        {"price_per_gpu_hour_micros": -1},
        {"version": 2},
        {"kind": "daily"},
        {"worker_pubkey": "AB" * 32},
    ],
)
def test_receipt_shape_is_validated(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        receipt(**overrides)


def test_amounts_are_exact_integers() -> None:
    assert receipt().amount_micros == 2_500_000 * 2  # one hour of two GPUs
    assert receipt(period_end=T0 + 1800, issued_at=T0 + 1800).amount_micros == 2_500_000


@settings(max_examples=100, deadline=None)
@given(
    seq=st.integers(1, 10**6),
    price=st.integers(0, 10**12),
    length=st.integers(0, MAX_PERIOD_S),
    lease=st.from_regex(r"[A-Za-z0-9._:-]{1,40}", fullmatch=True),
)
def test_canonical_form_is_injective_and_round_trips(
    seq: int, price: int, length: int, lease: str
) -> None:
    r = receipt(
        seq=seq,
        price_per_gpu_hour_micros=price,
        lease_id=lease,
        period_end=T0 + length,
        issued_at=T0 + length,
    )
    assert parse_canonical(canonical_bytes(r)) == r
    other = r.model_copy(update={"seq": seq + 1})
    assert canonical_bytes(other) != canonical_bytes(r)
    assert not same_content(other, r)


# --------------------------------------------------------------------------- one receipt


NOW = T0 + 3600


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"period_start": T0 + 10, "period_end": T0}, "before it starts"),
        ({"period_end": T0 + MAX_PERIOD_S + 1, "issued_at": T0 + MAX_PERIOD_S + 1}, "longer"),
        ({"seq": 0}, "seq 0 is the start receipt"),
        ({"kind": "start"}, "start receipt has seq 0"),
        ({"kind": "start", "seq": 0}, "zero length"),
        ({"issued_at": T0 + 100}, "issued after the period"),
        ({"period_end": NOW + 1000, "issued_at": NOW + 1000}, "future"),
    ],
)
def test_check_receipt_refuses_insane_receipts(overrides: dict[str, Any], fragment: str) -> None:
    with pytest.raises(MalformedMessage, match=fragment):
        check_receipt(receipt(**overrides), now=NOW)


def test_check_receipt_accepts_sane_ones_and_tolerates_skew() -> None:
    check_receipt(receipt(), now=NOW)
    check_receipt(start_receipt(), now=T0)
    late_clock = receipt(period_end=NOW + 60, issued_at=NOW + 60)
    check_receipt(late_clock, now=NOW, skew_s=120)
    with pytest.raises(MalformedMessage):
        check_receipt(late_clock, now=NOW, skew_s=10)


# --------------------------------------------------------------------------- the chain


def test_successor_rules() -> None:
    first = start_receipt()
    hour1 = receipt(seq=1)
    check_successor(None, first)
    check_successor(first, hour1)
    # a gap in seq (a receipt the miner never saw) is allowed, and so is a later period
    check_successor(hour1, receipt(seq=5, period_start=T0 + 7200, period_end=T0 + 9000,
                                   issued_at=T0 + 9000))  # fmt: skip
    # the price may change (an extension at a new price)
    check_successor(hour1, receipt(seq=2, period_start=T0 + 3600, period_end=T0 + 7200,
                                   issued_at=T0 + 7200, price_per_gpu_hour_micros=1))  # fmt: skip
    refused = [
        receipt(seq=1),  # seq not growing
        receipt(seq=2, period_start=T0 + 1800, period_end=T0 + 7200, issued_at=T0 + 7200),
        receipt(seq=2, period_start=T0 + 3600, period_end=T0 + 7200, issued_at=T0 + 7200,
                worker_pubkey="cd" * 32),
        receipt(seq=2, period_start=T0 + 3600, period_end=T0 + 7200, issued_at=T0 + 7200,
                gpu_uuids=["GPU-aaaa"], gpus=1),
        receipt(seq=2, period_start=T0 + 3600, period_end=T0 + 7200, issued_at=T0 + 7200,
                netuid=1),
    ]  # fmt: skip
    for bad in refused:
        with pytest.raises(Forbidden):
            check_successor(hour1, bad)
    end = receipt(seq=2, kind="end", period_start=T0 + 3600, period_end=T0 + 4000,
                  issued_at=T0 + 4000)  # fmt: skip
    check_successor(hour1, end)
    with pytest.raises(Forbidden, match="end receipt"):
        check_successor(end, receipt(seq=3, period_start=T0 + 4000, period_end=T0 + 4100,
                                     issued_at=T0 + 4100))  # fmt: skip
    with pytest.raises(ValueError, match="one validator and lease"):
        check_successor(hour1, receipt(seq=2, lease_id="other", period_start=T0 + 3600,
                                       period_end=T0 + 7200, issued_at=T0 + 7200))  # fmt: skip


def test_check_chain_sorts_drops_exact_duplicates_and_refuses_conflicts() -> None:
    chain = [
        receipt(seq=2, period_start=T0 + 3600, period_end=T0 + 7200, issued_at=T0 + 7200),
        start_receipt(),
        receipt(seq=1),
        receipt(seq=1),  # the same receipt fetched twice
    ]
    assert [r.seq for r in check_chain(chain)] == [0, 1, 2]
    with pytest.raises(Forbidden, match="two contents"):
        check_chain([receipt(seq=1), receipt(seq=1, price_per_gpu_hour_micros=7)])


# --------------------------------------------------------------------------- signatures


def test_both_signatures_verify_with_real_sr25519_keys() -> None:
    good = signed(receipt())
    verify_signatures(good, verify_hotkey_signature)
    # swapped signatures, a signature over other bytes, and a tampered receipt all fail
    swapped = good.model_copy(
        update={
            "validator_signature": good.miner_signature,
            "miner_signature": good.validator_signature,
        }
    )
    other = signed(receipt(seq=2, period_start=T0 + 3600, period_end=T0 + 7200,
                           issued_at=T0 + 7200))  # fmt: skip
    forged_miner = good.model_copy(update={"miner_signature": other.miner_signature})
    tampered = good.model_copy(update={"receipt": receipt(price_per_gpu_hour_micros=9_999_999)})
    expected = [(swapped, "validator"), (forged_miner, "miner"), (tampered, "validator")]
    for bad, party in expected:
        with pytest.raises(VerificationFailed) as info:
            verify_signatures(bad, verify_hotkey_signature)
        assert info.value.reason is FraudReason.BAD_SIGNATURE
        assert party in str(info.value)


def test_a_receipt_signature_is_not_a_signature_of_the_bare_json() -> None:
    r = receipt()
    signature = VALIDATOR.sign(canonical_bytes(r))  # without the domain tag
    assert not verify_hotkey_signature(VALIDATOR.ss58_address, signing_payload(r), signature)


def test_verifier_is_called_with_each_partys_hotkey() -> None:
    seen: list[str] = []

    def verify(hotkey: str, message: bytes, signature: bytes) -> bool:
        seen.append(hotkey)
        assert message == signing_payload(receipt())
        return True

    verify_signatures(signed(receipt()), verify)
    assert seen == [VALIDATOR.ss58_address, MINER.ss58_address]


# --------------------------------------------------------------------------- scoring


def test_receipts_become_lease_usage_and_revenue() -> None:
    chain = [start_receipt(), receipt(seq=1)]
    caps = dict.fromkeys(GPUS, 2.0)
    usages = [lease_usage(r, validator_share=0.25, price_caps=caps) for r in chain]
    assert usages[1].start == datetime.fromtimestamp(T0, UTC)
    assert usages[1].end - usages[1].start == timedelta(hours=1)
    assert usages[1].price_per_gpu_hour == 2.5 and usages[1].gpus == 2
    assert usages[1].validator_hotkey == VALIDATOR.ss58_address
    assert usages[1].validator_share == 0.25
    assert usages[1].gpu_uuids == tuple(GPUS) and usages[1].gpu_price_caps == (2.0, 2.0)
    assert lease_usage(chain[1], validator_share=1.0, price_caps=caps, lease_id="v/L").lease_id == (
        "v/L"
    )
    with pytest.raises(KeyError):
        lease_usage(chain[1], validator_share=1.0, price_caps={})
    now = datetime.fromtimestamp(T0 + 7200, UTC)
    hours = {(MINER.ss58_address, g): (now - timedelta(hours=1),) for g in GPUS}
    revenue = lease_revenue(usages, ScoringParams(), now, verified_hours=hours)[MINER.ss58_address]
    assert revenue.revenue == pytest.approx(4.0)  # 2 GPU-hours at 2.5, capped at 2.0
    assert revenue.gpu_hours == pytest.approx(2.0)
    assert revenue.share == pytest.approx(0.25)  # the seller's whole pool, and its share only

"""Lease matching (pure): what can be offered, how capacity is grouped, which worker a request
gets, and the price policy of ``leases.prices``."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from byteleap.config import ValidatorConfig
from byteleap.config.loader import parse_config
from byteleap.errors import ConfigError
from neurons.validator.leasing.matching import (
    LeaseRequest,
    Match,
    NoMatch,
    capacity,
    choose,
    leasable_gpus,
    offers,
)
from neurons.validator.store.lease_rows import Verification
from neurons.validator.store.records import GpuSnapshot, WorkerRow

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)
WINDOW = timedelta(hours=24)
H100 = "NVIDIA H100 80GB HBM3"
A100 = "NVIDIA A100-SXM4-40GB"
PRICES = ValidatorConfig().leases


def gpu(n: int, model: str = H100, mib: int = 81559) -> GpuSnapshot:
    return GpuSnapshot(f"GPU-{n:04d}", model, mib)


def worker(name: str, *gpus: GpuSnapshot, miner: str = "m1", **kw: object) -> WorkerRow:
    values: dict[str, object] = {
        "miner_hotkey": miner,
        "miner_uid": 1,
        "endpoint": "http://127.0.0.1:1",
        "worker_pubkey": name * 64 if len(name) == 1 else name,
        "state": "idle",
        "online": True,
        "last_seen": NOW,
        "gpus": gpus,
    }
    values.update(kw)
    return WorkerRow(**values)  # type: ignore[arg-type]


def verified(*workers: WorkerRow, age: timedelta = timedelta(hours=1)) -> Verification:
    return Verification(
        {(w.miner_hotkey, w.worker_pubkey): {g.uuid: NOW - age for g in w.gpus} for w in workers},
        frozenset(),
    )


def request(count: int = 1, **kw: object) -> LeaseRequest:
    values: dict[str, object] = {
        "count": count,
        "duration_hours": 2.0,
        "max_price_per_gpu_hour": 10.0,
    }
    values.update(kw)
    return LeaseRequest(**values)  # type: ignore[arg-type]


def test_only_idle_online_verified_unheld_owned_gpus_are_offered() -> None:
    good = worker("a", gpu(1), gpu(2))
    cutoff = NOW - WINDOW
    ok = verified(good)
    assert leasable_gpus(good, ok, set(), cutoff)[0] == good.gpus
    assert leasable_gpus(replace(good, online=False), ok, set(), cutoff)[0] == ()
    assert leasable_gpus(replace(good, state="leased"), ok, set(), cutoff)[0] == ()
    assert leasable_gpus(replace(good, state="busy"), ok, set(), cutoff)[0] == ()
    assert leasable_gpus(replace(good, endpoint=None), ok, set(), cutoff)[0] == ()
    assert leasable_gpus(good, ok, {("m1", "a" * 64)}, cutoff)[0] == ()  # our own lease holds it
    fraud = Verification(ok.verified, frozenset({("m1", "a" * 64)}))
    assert leasable_gpus(good, fraud, set(), cutoff)[0] == ()
    stale = verified(good, age=WINDOW + timedelta(seconds=1))
    assert leasable_gpus(good, stale, set(), cutoff)[0] == ()
    conflicted = replace(good, conflicted_gpus=frozenset({"GPU-0001"}))
    assert leasable_gpus(conflicted, ok, set(), cutoff)[0] == (gpu(2),)
    one_verified = Verification({("m1", "a" * 64): {"GPU-0002": NOW}}, frozenset())
    gpus, newest, models = leasable_gpus(good, one_verified, set(), cutoff)
    assert gpus == (gpu(2),) and newest == NOW and models == {"GPU-0002": "h100-sxm"}


def test_capacity_groups_by_model_and_memory_with_the_largest_single_lease() -> None:
    a = worker("a", gpu(1), gpu(2), gpu(3, A100, 40960))
    b = worker("b", gpu(4), miner="m2")
    offline = worker("c", gpu(5), online=False)
    found = offers([a, b, offline], verified(a, b, offline), set(), now=NOW, verified_within=WINDOW)
    lines = capacity(found, PRICES.price_for)
    assert [
        (x.model, x.vram_mib, x.count, x.max_per_lease, x.price_per_gpu_hour) for x in lines
    ] == [
        ("a100-sxm", 40960, 1, 1, 1.5),
        ("h100-sxm", 81559, 3, 2, 2.5),
    ]


def test_choose_prefers_the_cheapest_then_the_best_fit_then_the_freshest() -> None:
    big = worker("a", gpu(1), gpu(2), gpu(3), gpu(4))
    small = worker("b", gpu(5), gpu(6), miner="m2")
    found = offers([big, small], verified(big, small), set(), now=NOW, verified_within=WINDOW)
    match = choose(found, request(2, model="h100"), PRICES.price_for)
    assert isinstance(match, Match)
    assert match.offer.worker_pubkey == "b" * 64  # best fit: the big worker stays whole
    assert match.gpu_uuids == ("GPU-0005", "GPU-0006") and match.price_per_gpu_hour == 2.5
    three = choose(found, request(3), PRICES.price_for)
    assert isinstance(three, Match) and three.offer.worker_pubkey == "a" * 64
    # equal fit: the more recently verified worker wins
    twin = worker("c", gpu(7), gpu(8), miner="m3")
    fresh = Verification(
        {**verified(small).verified, **verified(twin, age=timedelta(minutes=1)).verified},
        frozenset(),
    )
    found = offers([small, twin], fresh, set(), now=NOW, verified_within=WINDOW)
    chosen = choose(found, request(2), PRICES.price_for)
    assert isinstance(chosen, Match) and chosen.offer.worker_pubkey == "c" * 64


def test_choose_takes_cheaper_gpus_first_and_respects_vram_model_and_price() -> None:
    mixed = worker("a", gpu(1), gpu(2, A100, 40960))
    found = offers([mixed], verified(mixed), set(), now=NOW, verified_within=WINDOW)
    cheap = choose(found, request(1), PRICES.price_for)
    assert isinstance(cheap, Match) and cheap.gpu_uuids == ("GPU-0002",)
    both = choose(found, request(2), PRICES.price_for)
    assert isinstance(both, Match) and both.price_per_gpu_hour == 2.5  # the dearest GPU taken
    roomy = choose(found, request(1, min_vram_mib=50_000), PRICES.price_for)
    assert isinstance(roomy, Match) and roomy.gpu_uuids == ("GPU-0001",)
    too_cheap = choose(
        found, request(1, model="H100", max_price_per_gpu_hour=2.0), PRICES.price_for
    )
    assert isinstance(too_cheap, NoMatch) and "only above 2 per GPU-hour" in too_cheap.reason
    none = choose(found, request(3), PRICES.price_for)
    assert isinstance(none, NoMatch) and "no single worker has 3 GPU(s)" in none.reason
    wrong = choose(found, request(1, model="B200"), PRICES.price_for)
    assert isinstance(wrong, NoMatch) and "'B200'" in wrong.reason
    with pytest.raises(ValueError, match="at least one GPU"):
        choose(found, request(0), PRICES.price_for)


def test_a_lease_never_spans_two_workers() -> None:
    a = worker("a", gpu(1))
    b = worker("b", gpu(2), miner="m2")
    found = offers([a, b], verified(a, b), set(), now=NOW, verified_within=WINDOW)
    assert sum(line.count for line in capacity(found, PRICES.price_for)) == 2
    assert isinstance(choose(found, request(2), PRICES.price_for), NoMatch)


def test_prices_are_keyed_by_canonical_model_id() -> None:
    text = "leases:\n  prices: {default: 0.5, h100-sxm: 3.0, h100-pcie: 2.0, unknown: 0.1}\n"
    section = parse_config(ValidatorConfig, text, source="t.yaml", env={}).leases
    assert section.price_for("h100-sxm") == 3.0
    assert section.price_for("h100-pcie") == 2.0
    assert section.price_for("rtx-4090") == 0.5
    assert section.price_for("unknown") == 0.1
    with pytest.raises(ConfigError, match=r"unknown model id.*'H100'"):
        parse_config(
            ValidatorConfig, "leases:\n  prices: {default: 1, H100: 2}\n", source="t", env={}
        )
    with pytest.raises(ConfigError, match="'default' entry"):
        parse_config(ValidatorConfig, "leases:\n  prices: {h100-sxm: 2}\n", source="t", env={})
    with pytest.raises(ConfigError, match=r"leases\.prices"):
        parse_config(ValidatorConfig, "leases:\n  prices: {default: -1}\n", source="t", env={})
    with pytest.raises(ConfigError, match="receipt_interval_s"):
        parse_config(ValidatorConfig, "leases:\n  receipt_interval_s: 90000\n", source="t", env={})


def test_gpus_are_offered_and_priced_only_as_their_canonical_model() -> None:
    """An ambiguous name is unknown: never matched as H200 nor priced like one; a GPU whose
    memory contradicts its model is not offered; a CPU device is offered only where allowed."""
    ambiguous = gpu(1, "NVIDIA GeForce RTX 3090 H200", 24576)
    liar = gpu(2, H100, 24576)
    w = worker("a", ambiguous, liar)
    found = offers([w], verified(w), set(), now=NOW, verified_within=WINDOW)
    (offer,) = found
    assert offer.gpus == (ambiguous,) and offer.model_ids == {"GPU-0001": "unknown"}
    assert [x.model for x in capacity(found, PRICES.price_for)] == ["unknown"]
    assert isinstance(choose(found, request(1, model="H200"), PRICES.price_for), NoMatch)
    assert isinstance(choose(found, request(1, model="RTX 3090"), PRICES.price_for), NoMatch)
    taken = choose(found, request(1, model="unknown"), PRICES.price_for)
    assert isinstance(taken, Match) and taken.price_per_gpu_hour == PRICES.price_for("unknown")
    cpu = GpuSnapshot("CPU-0001", "NVIDIA H200 141GB HBM3e", 143771)
    c = worker("c", cpu)
    assert offers([c], verified(c), set(), now=NOW, verified_within=WINDOW) == []
    (as_cpu,) = offers([c], verified(c), set(), now=NOW, verified_within=WINDOW, cpu_workers=True)
    assert as_cpu.model_ids == {"CPU-0001": "cpu"}
    assert isinstance(choose([as_cpu], request(1, model="H200"), PRICES.price_for), NoMatch)

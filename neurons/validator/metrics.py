"""Prometheus metrics of the validator, on a registry passed in (no import-time globals).

Served on ``metrics.host:metrics.port`` at ``/metrics`` by ``run``. Per-GPU series are avoided on
purpose (a large subnet has thousands of GPUs); per-miner series are bounded by the subnet's 256
uids.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ValidatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.rounds = Counter(
            "byteleap_validator_rounds",
            "Passes of each loop (metagraph, poll, challenge, weights, prune)",
            ["loop"],
            registry=r,
        )
        self.loop_errors = Counter(
            "byteleap_validator_loop_errors",
            "Passes of a loop that failed (the loop carries on), by loop and error code",
            ["loop", "code"],
            registry=r,
        )
        self.challenges = Counter(
            "byteleap_validator_challenges",
            "Challenged GPUs by outcome and failure type (verified has failure 'none')",
            ["outcome", "failure"],
            registry=r,
        )
        self.challenges_in_flight = Gauge(
            "byteleap_validator_challenges_in_flight",
            "Challenges dispatched, not closed",
            registry=r,
        )
        self.challenge_skips = Counter(
            "byteleap_validator_challenge_skips",
            "Workers not challenged when planned, by reason",
            ["reason"],
            registry=r,
        )
        self.epochs = Counter("byteleap_validator_epochs", "Challenge epochs started", registry=r)
        self.epoch_gpus = Gauge(
            "byteleap_validator_epoch_gpus", "GPUs challenged in the latest epoch", registry=r
        )
        self.epoch_spread_seconds = Gauge(
            "byteleap_validator_epoch_spread_seconds",
            "Seconds from the first to the last miner dispatched in the latest epoch",
            registry=r,
        )
        self.epoch_verify_fraction = Gauge(
            "byteleap_validator_epoch_verify_fraction",
            "Share of the latest epoch's reveals verified exactly (1 while the pool keeps up)",
            registry=r,
        )
        self.unverifiable_gpus = Gauge(
            "byteleap_validator_unverifiable_gpus",
            "GPUs left out of the latest epoch because their claim contradicts the catalogue",
            registry=r,
        )
        self.expected_flops = Gauge(
            "byteleap_validator_expected_flops",
            "Calibrated expected throughput per model id, FLOP/s",
            ["model"],
            registry=r,
        )
        self.verification_seconds = Histogram(
            "byteleap_validator_verification_seconds",
            "CPU seconds one GPU's exact verification took (in the process pool)",
            buckets=_SECONDS_BUCKETS,
            registry=r,
        )
        self.verifier_crashes = Counter(
            "byteleap_validator_verifier_crashes", "Verification processes that died", registry=r
        )
        self.db_seconds = Histogram(
            "byteleap_validator_db_seconds",
            "Seconds per store call, by operation",
            ["operation"],
            buckets=_SECONDS_BUCKETS,
            registry=r,
        )
        self.db_errors = Counter(
            "byteleap_validator_db_errors",
            "Store calls that failed, by operation",
            ["operation"],
            registry=r,
        )
        self.db_ping_seconds = Gauge(
            "byteleap_validator_db_ping_seconds", "Round trip of the last database ping", registry=r
        )
        self.polls = Counter(
            "byteleap_validator_polls",
            "Inventory polls of miners, by result (ok, failed)",
            ["result"],
            registry=r,
        )
        self.miners_known = Gauge(
            "byteleap_validator_miners_known", "Registered neurons in the metagraph", registry=r
        )
        self.workers_known = Gauge(
            "byteleap_validator_workers_known", "Workers of registered miners", registry=r
        )
        self.workers_online = Gauge(
            "byteleap_validator_workers_online",
            "Workers in their miner's most recent successful poll",
            registry=r,
        )
        self.weights = Counter(
            "byteleap_validator_weights_submissions",
            "Weight submissions by status (set, failed, skipped)",
            ["status"],
            registry=r,
        )
        self.last_weights_block = Gauge(
            "byteleap_validator_last_weights_block", "Block of the last weights set", registry=r
        )
        self.last_weights_time = Gauge(
            "byteleap_validator_last_weights_timestamp_seconds",
            "Unix time of the last weights set",
            registry=r,
        )
        self.miner_challenges = Counter(
            "byteleap_validator_miner_challenges",
            "Challenged GPUs per miner hotkey, by outcome",
            ["miner", "outcome"],
            registry=r,
        )
        self.miner_excused_rate = Gauge(
            "byteleap_validator_miner_excused_rate",
            "Share of a miner's recent challenges that were excused",
            ["miner"],
            registry=r,
        )
        self.receipt_pages = Counter(
            "byteleap_validator_receipt_pages",
            "GET /receipts pages read from miners, by result (ok, failed)",
            ["result"],
            registry=r,
        )
        self.receipts_accepted = Counter(
            "byteleap_validator_receipts_accepted",
            "Fetched usage receipts that passed every check and were stored",
            registry=r,
        )
        self.receipts_dropped = Counter(
            "byteleap_validator_receipts_dropped",
            "Fetched usage receipts not stored, by reason (wrong_miner, wrong_netuid, "
            "not_validator, not_canonical, invalid, bad_validator_signature, bad_miner_signature, "
            "duplicate, conflict, broken_chain)",
            ["reason"],
            registry=r,
        )
        self.lease_revenue = Gauge(
            "byteleap_validator_lease_revenue",
            "A miner's lease revenue in the lease window (price x GPUs x hours, from receipts) "
            "at the last scoring",
            ["miner"],
            registry=r,
        )


__all__ = ["ValidatorMetrics"]

"""Prometheus metrics of the worker hub, on a registry passed in (no import-time globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class HubMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.connected = Gauge(
            "byteleap_miner_workers_connected", "Registered worker sessions", registry=r
        )
        self.registrations = Counter(
            "byteleap_miner_worker_registrations",
            "Worker registration attempts by result",
            ["result"],
            registry=r,
        )
        self.refused_messages = Counter(
            "byteleap_miner_worker_messages_refused",
            "Worker messages refused, by reason (rate_limited, malformed, too_large, ...)",
            ["reason"],
            registry=r,
        )
        self.requests = Counter(
            "byteleap_miner_worker_requests",
            "Requests relayed to workers, by kind and outcome",
            ["kind", "outcome"],
            registry=r,
        )
        self.lost = Counter(
            "byteleap_miner_workers_lost",
            "Worker sessions ended, by reason (timeout, closed, replaced, abuse)",
            ["reason"],
            registry=r,
        )

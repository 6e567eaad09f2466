"""Prometheus metrics of the worker, on a registry of its own (no import-time globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.challenges = Counter(
            "byteleap_worker_challenges", "Challenges by result", ["result"], registry=r
        )
        self.challenge_seconds = Histogram(
            "byteleap_worker_challenge_seconds",
            "Wall time from dispatch to commit on this worker",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )
        self.throughput = Gauge(
            "byteleap_worker_throughput_flops",
            "Last challenge's throughput per GPU, measured by the worker (FLOP/s)",
            ["gpu"],
            registry=r,
        )
        self.link_up = Gauge(
            "byteleap_worker_link_up", "1 while connected to the miner", registry=r
        )
        self.busy = Gauge("byteleap_worker_busy", "1 while a challenge runs", registry=r)
        self.reconnects = Counter(
            "byteleap_worker_reconnects", "Reconnection attempts to the miner", registry=r
        )
        self.jobs = Counter(
            "byteleap_worker_jobs", "Renters' jobs by final state", ["state"], registry=r
        )
        self.running_jobs = Gauge(
            "byteleap_worker_jobs_running", "Renters' jobs running now", registry=r
        )

    def serve(self, host: str, port: int) -> None:
        """Expose ``/metrics`` over HTTP from a daemon thread."""
        start_http_server(port, addr=host, registry=self.registry)

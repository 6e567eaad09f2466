"""The provisioned Grafana dashboard is well formed and asks only for metrics the daemons export.

Every metric name in every PromQL expression must be a sample name that the worker's, the miner
hub's or the validator's registry exposes, so renaming a metric without the dashboard fails here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from neurons.miner.hub_metrics import HubMetrics
from neurons.validator.metrics import ValidatorMetrics
from workers.metrics import WorkerMetrics

DOCKER = Path(__file__).resolve().parents[2] / "docker"
GRAFANA = DOCKER / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "byteleap.json"

# sample names a metric family of each type exposes (prometheus_client's text exposition)
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                   "and", "or", "unless", "offset", "inf", "nan"}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, labels and keywords left out)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range and subquery durations
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"(?<![\w:.])([A-Za-z_:][\w:]*)\s*(\()?", expr):
        name, call = match.groups()
        if call is None and name.lower() not in PROMQL_KEYWORDS:
            names.add(name)
    return names


def balanced(expr: str) -> bool:
    """Brackets pair up outside string literals (Grafana shows nothing for a broken query)."""
    stack: list[str] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    for char in re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr):
        if char in "([{":
            stack.append(char)
        elif char in pairs and (not stack or stack.pop() != pairs[char]):
            return False
    return not stack


def exported_names() -> set[str]:
    """Every sample name the three daemons' registries can expose, labelled children or not."""
    names: set[str] = set()
    for metrics in (
        WorkerMetrics(CollectorRegistry()),
        HubMetrics(CollectorRegistry()),
        ValidatorMetrics(CollectorRegistry()),
    ):
        for family in metrics.registry.collect():
            derived = {family.name + suffix for suffix in SUFFIXES[family.type]}
            # unlabelled families have samples already: the suffix table must agree with them
            assert {sample.name for sample in family.samples} <= derived, family.name
            names |= derived
    return names


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


@pytest.fixture(scope="module")
def datasource_uid() -> str:
    provisioned = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yaml").read_text())
    (source,) = provisioned["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    uid: str = source["uid"]
    return uid


def test_the_promql_scanner_finds_metrics_and_only_metrics() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, operation) (rate(a_bucket{x="y", z=~"b.*"}'
        "[$__rate_interval]))) / on(job) group_left(gpu) b_total offset 5m + time() - c:d * 1e3"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c:d"}
    assert balanced(expr)
    assert not balanced("sum(rate(a[5m])") and not balanced('a{x="}"')


def test_the_dashboard_has_a_valid_shape(dashboard: dict[str, Any], datasource_uid: str) -> None:
    assert dashboard["schemaVersion"] >= 39
    assert dashboard["uid"] and dashboard["title"]
    panels = list(all_panels(dashboard["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    graphs = [p for p in panels if p["type"] != "row"]
    assert len(graphs) >= 6
    for panel in graphs:
        grid = panel["gridPos"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["datasource"]["uid"] == datasource_uid, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert balanced(target["expr"]), f"unbalanced brackets in {target['expr']!r}"
            assert target["datasource"]["uid"] == datasource_uid, panel["title"]


def test_every_metric_in_the_dashboard_is_exported(dashboard: dict[str, Any]) -> None:
    exported = exported_names()
    used: dict[str, str] = {}
    for panel in all_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            for name in metric_names(target["expr"]):
                used.setdefault(name, panel["title"])
    unknown = {name: title for name, title in used.items() if name not in exported}
    assert not unknown, f"metrics no daemon exports (panel): {unknown}"
    # the areas operators asked for are all on the dashboard
    for required in (
        "byteleap_worker_throughput_flops",
        "byteleap_worker_challenge_seconds_bucket",
        "byteleap_validator_challenges_total",
        "byteleap_worker_link_up",
        "byteleap_worker_reconnects_total",
        "byteleap_miner_workers_connected",
        "byteleap_miner_workers_lost_total",
        "byteleap_validator_polls_total",
        "byteleap_validator_lease_revenue",
        "byteleap_validator_weights_submissions_total",
        "byteleap_validator_last_weights_block",
        "byteleap_validator_db_seconds_bucket",
    ):
        assert required in used, required


def test_grafana_loads_the_dashboards_from_where_compose_mounts_them() -> None:
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/byteleap.yaml").read_text())
    (entry,) = provider["providers"]
    assert entry["type"] == "file"
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{entry['options']['path']}:ro" in mounts
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in mounts

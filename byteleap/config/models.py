"""The three process configurations, and a lookup by process name."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel

from byteleap.config.miner import MinerConfig
from byteleap.config.validator import ValidatorConfig
from byteleap.config.worker import WorkerConfig

#: process name (as in ``configs/<name>.example.yaml``) -> its config model
CONFIG_MODELS: Mapping[str, type[BaseModel]] = {
    "worker": WorkerConfig,
    "miner": MinerConfig,
    "validator": ValidatorConfig,
}

__all__ = ["CONFIG_MODELS", "MinerConfig", "ValidatorConfig", "WorkerConfig"]

"""Configuration of the three ByteLeap processes (SPEC section 8).

One YAML file per process, validated by the pydantic models here (unknown keys are errors), with
every key overridable by ``BYTELEAP_<SECTION>__<KEY>`` environment variables. Secrets are
references (``{env: NAME}`` or ``{file: PATH}``) resolved on demand, never values in files.

Typical use, once in a daemon's ``__main__``::

    config = load_config(WorkerConfig, args.config)   # raises ConfigError
    token = config.link.join_token.resolve() if config.link.join_token else None

See ``docs/configuration.md`` for every key.
"""

from byteleap.config.challenge import ChallengeSection, ScoringSection
from byteleap.config.common import ChainSection, LoggingSection, MetricsSection, WalletSection
from byteleap.config.dump import check_secrets, dump_yaml, iter_secrets, redacted_dump
from byteleap.config.leasing import LeasesSection, RenterApiSection
from byteleap.config.loader import (
    ENV_PREFIX,
    ENV_SEPARATOR,
    load_config,
    parse_config,
    parse_yaml,
    read_config_text,
    validate_config,
)
from byteleap.config.miner import MinerApiSection, MinerConfig, MinerPaths, WorkerServerSection
from byteleap.config.models import CONFIG_MODELS
from byteleap.config.secrets import Secret
from byteleap.config.validator import (
    DatabaseSection,
    MinersSection,
    ValidatorConfig,
    ValidatorPaths,
)
from byteleap.config.worker import (
    ComputeSection,
    JobsSection,
    LinkSection,
    WorkerConfig,
    WorkerPaths,
)

__all__ = [
    "CONFIG_MODELS",
    "ENV_PREFIX",
    "ENV_SEPARATOR",
    "ChainSection",
    "ChallengeSection",
    "ComputeSection",
    "DatabaseSection",
    "JobsSection",
    "LeasesSection",
    "LinkSection",
    "LoggingSection",
    "MetricsSection",
    "MinerApiSection",
    "MinerConfig",
    "MinerPaths",
    "MinersSection",
    "RenterApiSection",
    "ScoringSection",
    "Secret",
    "ValidatorConfig",
    "ValidatorPaths",
    "WalletSection",
    "WorkerConfig",
    "WorkerPaths",
    "WorkerServerSection",
    "check_secrets",
    "dump_yaml",
    "iter_secrets",
    "load_config",
    "parse_config",
    "parse_yaml",
    "read_config_text",
    "redacted_dump",
    "validate_config",
]

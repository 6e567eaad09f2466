"""The validator's store on SQLAlchemy 2 async: one implementation for PostgreSQL and SQLite.

:class:`SqlStore` is the facade the daemon, the CLI and the tests use. It is made of one class
per aggregate, each on the shared engine and transaction rules of
:class:`~neurons.validator.store.base.StoreBase`:

- :class:`~neurons.validator.store.miners.MinerStore`: miners, workers, GPU claims, availability;
- :class:`~neurons.validator.store.challenges.ChallengeStore`: challenge rows and verdicts;
- :class:`~neurons.validator.store.scoring_inputs.ScoringInputStore`: what the scorer reads;
- :class:`~neurons.validator.store.weight_submissions.WeightSubmissionStore`: weights set;
- :class:`~neurons.validator.store.retention.RetentionStore`: pruning;
- ``receipts`` (:class:`~neurons.validator.store.receipts.ReceiptStore`) and ``leases``
  (:class:`~neurons.validator.store.leases.LeaseStore`) on the same transactions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from neurons.validator.store.base import DEFAULT_CLAIM_EXPIRY
from neurons.validator.store.challenges import RESTART_FAILURE, ChallengeStore
from neurons.validator.store.leases import LeaseStore
from neurons.validator.store.miners import FleetStore
from neurons.validator.store.retention import RetentionStore
from neurons.validator.store.scoring_inputs import ScoringInputStore
from neurons.validator.store.weight_submissions import WeightSubmissionStore

if TYPE_CHECKING:
    from neurons.validator.store.records import ValidatorStore


class SqlStore(
    FleetStore, ChallengeStore, ScoringInputStore, WeightSubmissionStore, RetentionStore
):
    """:class:`~neurons.validator.store.records.ValidatorStore` on an :class:`AsyncEngine`.

    Build it with :func:`neurons.validator.store.open_store`, which also checks (or upgrades) the
    schema; the constructor only wraps an engine whose schema is already at head.
    """

    @property
    def leases(self) -> LeaseStore:
        """Renters, leases and this validator's own receipts on the same engine."""
        return LeaseStore(self)


if TYPE_CHECKING:  # mypy proves that the implementation keeps the contract's signatures

    def _implements(store: SqlStore) -> ValidatorStore:
        return store


__all__ = ["DEFAULT_CLAIM_EXPIRY", "RESTART_FAILURE", "SqlStore"]

"""Pure session state machines: events in, instructions out, no I/O, the clock passed in.

* :mod:`.worker_agent`: the worker's side of its link to the miner (its events and
  instructions in :mod:`.agent_events`).
* :mod:`.miner_registry`: the miner's book of connected workers.
* :mod:`.miner_leases`: the miner's leases (``LeaseTable``): who leased which worker, until when
  (its events, instructions and ``LeaseRecord`` in :mod:`.lease_table_events`).
* :mod:`.lease_book`: the validator's leases (``LeaseBook``; :mod:`.lease_events` in and out,
  :mod:`.lease_state` its records and rules).
* :mod:`.round_planner`: the validator's challenge epochs, when and what (``EpochPlanner``).
* :mod:`.epoch_round`: one epoch from stored to closed (``EpochRound``), per challenge and GPU
  (:mod:`.round_events` in and out, :mod:`.round_checks` its verdicts).
* :mod:`.round_records`: the workers a round plans over and the rows it opens and closes.

Each is driven by a thin asyncio runtime that moves bytes and carries out the instructions
(``workers.runtime``, ``neurons.miner.hub``, ``neurons.miner.api``,
``neurons.validator.challenger``, ``neurons.validator.leasing.manager``).

Each machine names its own events and instructions (``AgentEvent``, ``LeaseTableEvent``,
``LeaseEvent``, ``RoundEvent``; ``RegistryInstruction``, ...): a name means one thing across the
code base (``tests/unit/test_names.py``).
"""

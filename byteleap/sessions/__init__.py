"""Pure session state machines: events in, instructions out, no I/O, the clock passed in.

* :mod:`.worker_agent`: the worker's side of its link to the miner.
* :mod:`.miner_registry`: the miner's book of connected workers.
* :mod:`.miner_leases`: the miner's leases (``LeaseTable``): who leased which worker, until when.
* :mod:`.round_planner`: the validator's challenge epochs, when and what (``EpochPlanner``).
* :mod:`.epoch_round`: one epoch from stored to closed (``EpochRound``), per challenge and GPU.
* :mod:`.round_records`: the workers a round plans over and the rows it opens and closes.

Each is driven by a thin asyncio runtime that moves bytes and carries out the instructions
(``workers.runtime``, ``neurons.miner.hub``, ``neurons.miner.api``,
``neurons.validator.challenger``).
"""

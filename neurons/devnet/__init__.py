"""``byteleap devnet``: a whole ByteLeap network of real processes on one machine.

One devchain file, one validator or several (with different stakes), honest miners with NumPy
workers and miners whose workers cheat (:mod:`neurons.devnet.cheats`), or whose receipts a
colluding validator mints (:mod:`neurons.devnet.colluder`). Every process is started through
its real command line with generated configs, wallets and worker keys in a run directory, and
talks over 127.0.0.1. The devnet only orchestrates and watches: it reads the validators' verdicts
from their databases and the weights from the devchain, and it never decides anything a
validator decides.

Modules: :mod:`~neurons.devnet.plan` (what to start, pure), :mod:`~neurons.devnet.prepare`
(wallets, keys, configs, chain registration on disk), :mod:`~neurons.devnet.processes` (start and
stop children), :mod:`~neurons.devnet.observe` (read the network's state),
:mod:`~neurons.devnet.progress` (the live view), :mod:`~neurons.devnet.report` (the final table
and JSON, the checks and the validators' agreement) and :mod:`~neurons.devnet.runner` (all of it
in order). :mod:`~neurons.devnet.cheat_worker` and :mod:`~neurons.devnet.colluder` are the
devnet-only entry points of the cheating workers and the colluding validator.
"""

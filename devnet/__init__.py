"""``byteleap devnet``: a whole ByteLeap network of real processes on one machine.

One devchain file, one validator or several (with different stakes), honest miners with NumPy
workers and miners whose workers cheat (:mod:`devnet.cheats`), or whose receipts a
colluding validator mints (:mod:`devnet.colluder`). Every process is started through
its real command line with generated configs, wallets and worker keys in a run directory, and
talks over 127.0.0.1. The devnet only orchestrates and watches: it reads the validators' verdicts
from their databases and the weights from the devchain, and it never decides anything a
validator decides.

Modules: :mod:`~devnet.plan` (what to start, pure; its specs and tuning in
:mod:`~devnet.specs`), :mod:`~devnet.prepare`
(wallets, keys, configs, chain registration on disk), :mod:`~devnet.processes` (start and
stop children), :mod:`~devnet.observe` (read the network's state),
:mod:`~devnet.progress` (the live view), :mod:`~devnet.report` (the final table
and JSON, the checks and the validators' agreement) and :mod:`~devnet.runner` (all of it
in order). :mod:`~devnet.cheat_worker` and :mod:`~devnet.colluder` are the
devnet-only entry points of the cheating workers and the colluding validator.
"""

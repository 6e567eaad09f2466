"""``byteleap devnet``: a whole ByteLeap network of real processes on one machine.

One devchain file, one validator, honest miners with NumPy workers and miners whose workers cheat
(:mod:`neurons.devnet.cheats`). Every process is started through its real command line with
generated configs, wallets and worker keys in a run directory, and talks over 127.0.0.1. The
devnet only orchestrates and watches: it reads the validator's verdicts from its database and the
weights from the devchain, and it never decides anything the validator decides.

Modules: :mod:`~neurons.devnet.plan` (what to start, pure), :mod:`~neurons.devnet.prepare`
(wallets, keys, configs, chain registration on disk), :mod:`~neurons.devnet.processes` (start and
stop children), :mod:`~neurons.devnet.observe` (read the network's state),
:mod:`~neurons.devnet.progress` (the live view), :mod:`~neurons.devnet.report` (the final table
and JSON) and :mod:`~neurons.devnet.runner` (all of it in order).
"""

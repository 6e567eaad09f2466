"""Leases sold to renters: matching capacity to requests, the lease lifecycle and its receipts.

- :mod:`.matching`: pure functions that decide which GPUs can be offered and which worker a
  request gets;
- :mod:`.manager`: :class:`LeaseManager`, the driver of the validator's lease book
  (``byteleap.sessions.lease_book``, which decides starts, extensions, ends and the usage
  receipts): it carries out the book's instructions through the store and the miners;
- :mod:`.gateway`: :class:`MinerGateway`, every miner call of leases and their jobs;
- :mod:`.errors`: why a renter's request was refused.
"""

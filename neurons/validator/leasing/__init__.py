"""Leases sold to renters: matching capacity to requests, the lease lifecycle and its receipts.

- :mod:`.matching`: pure functions that decide which GPUs can be offered and which worker a
  request gets;
- :mod:`.manager`: :class:`LeaseManager`, which starts, extends and ends leases through the miners
  and issues the usage receipts (start, hourly, end);
- :mod:`.errors`: why a renter's request was refused.
"""

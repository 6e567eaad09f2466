"""The renter REST API (``/v1``): FastAPI app, API-key auth, rate limits and typed errors.

- :mod:`.app`: :func:`create_renter_app`, which wires the app and its error handlers;
- :mod:`.routes`: the thin routes; :mod:`.deps`: their dependencies (the key's renter, the
  services); :mod:`.services`: leases and jobs as the routes answer them;
- :mod:`.body_limit`: bodies over ``api.max_body_bytes`` refused before parsing;
- :mod:`.keys`: API keys (generated once, stored as SHA-256 hashes);
- :mod:`.ratelimit`: per-key token buckets;
- :mod:`.errors`: the error body and the status of every error;
- :mod:`.models`: request and response bodies (the OpenAPI schema comes from them).
"""

from neurons.validator.renter.app import RenterApiSettings, create_renter_app
from neurons.validator.renter.keys import hash_key, new_key

__all__ = ["RenterApiSettings", "create_renter_app", "hash_key", "new_key"]

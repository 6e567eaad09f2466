"""ByteLeap pure core.

Everything in this package is deterministic computation: configuration models, wire messages,
the typed error tree, the compute-challenge math, Merkle commitments, verification and scoring.
It performs no I/O of its own: clocks and randomness are passed in by the caller, and the
import-linter contract in ``pyproject.toml`` keeps network, database, chain and GPU libraries out.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("byteleap")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"


def version_key(package_version: str | None = None) -> int:
    """The integer weights ``version_key`` derived from a ``MAJOR.MINOR.PATCH`` version.

    ``1.2.3`` becomes ``1_002_003``: it grows with every release, so a subnet owner can require a
    minimum software version on chain. Pre-release and local suffixes are ignored.
    """
    text = package_version or __version__
    parts = []
    for piece in text.split(".")[:3]:
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        parts.append(int(digits or 0))
    while len(parts) < 3:
        parts.append(0)
    major, minor, patch = parts
    return major * 1_000_000 + minor * 1_000 + patch

"""Row commitments: leaf and node hashing and a perfect binary Merkle tree (SPEC 4.3).

* ``leaf_i = SHA-256(0x00 || u32le(t) || u32le(i) || row_i as int32 LE)`` binds a row to its stage
  and index, so a row cannot be replayed at another position or in another stage.
* ``node = SHA-256(0x01 || left || right)``; the distinct prefixes keep leaves and nodes apart.
* A proof is the list of siblings from the leaf upwards. Which side each sibling sits on comes from
  the leaf index, never from the prover, and a proof must be exactly ``log2(m)`` long.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
HASH_BYTES = 32


def leaf_hash(stage: int, row: int, values: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + struct.pack("<II", stage, row) + values).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def build_levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """All levels of the tree, leaves first and the root last. ``len(leaves)`` is a power of two."""
    count = len(leaves)
    if count == 0 or count & (count - 1):
        raise ValueError("a perfect Merkle tree needs a power-of-two number of leaves")
    levels = [list(leaves)]
    while len(levels[-1]) > 1:
        below = levels[-1]
        levels.append([node_hash(below[i], below[i + 1]) for i in range(0, len(below), 2)])
    return levels


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    return build_levels(leaves)[-1][0]


def proof(levels: Sequence[Sequence[bytes]], index: int) -> tuple[bytes, ...]:
    """Siblings of leaf ``index`` from the bottom level up to just below the root."""
    if not 0 <= index < len(levels[0]):
        raise IndexError(f"leaf {index} is outside a tree of {len(levels[0])} leaves")
    path = []
    for level in levels[:-1]:
        path.append(level[index ^ 1])
        index >>= 1
    return tuple(path)


def root_from_proof(leaf: bytes, index: int, path: Sequence[bytes], depth: int) -> bytes | None:
    """The root that ``path`` leads to from ``leaf`` at ``index``, or None when the path is
    malformed (wrong length, a sibling that is not 32 bytes, or an index outside the tree)."""
    if len(path) != depth or not 0 <= index < (1 << depth):
        return None
    node = leaf
    for sibling in path:
        if len(sibling) != HASH_BYTES:
            return None
        node = node_hash(node, sibling) if index & 1 == 0 else node_hash(sibling, node)
        index >>= 1
    return node

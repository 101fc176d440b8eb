"""The exchange's side of RFC 6962 §2.1: the Merkle Tree Hash (MTH) of a list of
leaf hashes, the audit PATH of a leaf and the consistency PROOF between two sizes,
written as the RFC defines them (recursively, k = the largest power of two below n).

A `Tree` remembers the hash of every subtree it has computed, so once its root is
known each further proof costs O(log n) hashes instead of O(n).

The verifier (`trail_verify.merkle`) checks them with the RFC 9162 iterative
algorithms, a second implementation; both are tested against the RFC 6962 test
vectors of certificate-transparency.
"""

import hashlib
from collections.abc import Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


class Tree:
    """The tree over `hashes` (leaf hashes, in log order)."""

    def __init__(self, hashes: Sequence[bytes]) -> None:
        self.hashes = hashes
        self.size = len(hashes)
        self._memo: dict[tuple[int, int], bytes] = {}

    def mth(self, lo: int = 0, hi: int | None = None) -> bytes:
        """MTH(D[lo:hi])."""
        hi = self.size if hi is None else hi
        n = hi - lo
        if n == 0:
            return EMPTY_ROOT
        if n == 1:
            return self.hashes[lo]
        found = self._memo.get((lo, hi))
        if found is None:
            k = split_point(n)
            found = node_hash(self.mth(lo, lo + k), self.mth(lo + k, hi))
            self._memo[(lo, hi)] = found
        return found

    def path(self, index: int) -> list[bytes]:
        """PATH(index, D[n]): the sibling hashes from the leaf up to the root."""
        if not 0 <= index < self.size:
            raise IndexError(f"leaf {index} is not in a tree of {self.size}")
        return self._path(index, 0, self.size)

    def _path(self, m: int, lo: int, hi: int) -> list[bytes]:
        n = hi - lo
        if n == 1:
            return []
        k = split_point(n)
        if m < k:
            return self._path(m, lo, lo + k) + [self.mth(lo + k, hi)]
        return self._path(m - k, lo + k, hi) + [self.mth(lo, lo + k)]

    def proof(self, size1: int) -> list[bytes]:
        """PROOF(size1, D[n]): proves the tree of the first `size1` leaves is a prefix."""
        if not 0 <= size1 <= self.size:
            raise IndexError(f"a tree of {self.size} has no prefix of {size1}")
        if size1 in (0, self.size):
            return []
        return self._subproof(size1, 0, self.size, True)

    def _subproof(self, m: int, lo: int, hi: int, whole: bool) -> list[bytes]:
        n = hi - lo
        if m == n:
            return [] if whole else [self.mth(lo, hi)]
        k = split_point(n)
        if m <= k:
            return self._subproof(m, lo, lo + k, whole) + [self.mth(lo + k, hi)]
        return self._subproof(m - k, lo + k, hi, False) + [self.mth(lo, lo + k)]


def mth(hashes: Sequence[bytes]) -> bytes:
    return Tree(hashes).mth()


def inclusion_path(index: int, hashes: Sequence[bytes]) -> list[bytes]:
    return Tree(hashes).path(index)


def consistency_proof(size1: int, hashes: Sequence[bytes]) -> list[bytes]:
    return Tree(hashes).proof(size1)

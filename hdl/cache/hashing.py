"""Index hashes shared by the cache's table policy and the table prefetcher.

The golden model (sim/cache/cachemodel.c) computes the same functions bit for bit.
"""

from __future__ import annotations

from amaranth import Cat, Const


def fold(value, width: int, n: int):
    """XOR of the n-bit chunks of ``value`` (``width`` bits); 0 bits when n == 0."""
    if n == 0:
        return Const(0, 1)
    out = value[0:min(n, width)]
    for lo in range(n, width, n):
        out = out ^ value[lo:min(lo + n, width)]
    return out


def rotl(value, r: int, n: int):
    """``value`` rotated left by ``r`` within ``n`` bits (zero-extended to n bits first: a
    narrower value, such as a delta of fewer line bits than n, still rotates)."""
    if n == 0:
        return Const(0, 1)
    if len(value) < n:  # slicing past its width would keep it unrotated
        value = Cat(value, Const(0, n - len(value)))
    r %= n
    if r == 0:
        return value
    return Cat(value[n - r:n], value[0:n - r])

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
    if n == 0:
        return Const(0, 1)
    r %= n
    if r == 0:
        return value
    return Cat(value[n - r:n], value[0:n - r])

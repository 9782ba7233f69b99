"""A set of strings in a fixed 2 MiB, whatever their number: a Bloom filter (three bits per string).

It never forgets a string it was given, and may claim one it was not (a false alarm): holding 100,000 strings,
about one lookup in 180,000; 200,000, one in 23,000; 1,000,000, one in 230. Used where a dict of every string would grow the
peak memory with the batch (case ids, cache keys), and a false alarm only costs a slower exact check.
"""

from __future__ import annotations

import hashlib

BITS = 1 << 24  # 2 MiB


class Bloom:
    def __init__(self) -> None:
        self.size = BITS  # read here, so a test can shrink it
        self.bits = bytearray(self.size // 8)

    def _positions(self, text: str) -> tuple[int, int, int]:
        h = int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=12).digest(), "little")
        last = self.size - 1
        return h & last, (h >> 32) & last, (h >> 64) & last

    def add(self, text: str) -> bool:
        """Hold `text`; True when it was certainly not held before (one of its bits was clear)."""
        bits, new = self.bits, False
        for bit in self._positions(text):
            mask = 1 << (bit & 7)
            if not bits[bit >> 3] & mask:
                bits[bit >> 3] |= mask
                new = True
        return new

    def __contains__(self, text: str) -> bool:
        """False: never added. True: added, or a false alarm."""
        a, b, c = self._positions(text)
        bits = self.bits
        return bool(bits[a >> 3] & (1 << (a & 7)) and bits[b >> 3] & (1 << (b & 7)) and bits[c >> 3] & (1 << (c & 7)))

"""Zstandard, from wherever this Python has it: the standard library from 3.14, else backports.zstd.

Both expose the same API (PEP 784), so nothing else asks which one it got. mitmproxy 11 brought
the third-party ``zstandard`` and mitmproxy 12 ``backports.zstd``: relying on either one's
dependency broke the other, so the package declares ``backports.zstd`` itself.
"""

from __future__ import annotations

import sys

if sys.version_info >= (3, 14):
    from compression.zstd import ZstdDecompressor, ZstdError, compress
else:
    from backports.zstd import ZstdDecompressor, ZstdError, compress

__all__ = ["ZstdError", "compress", "decompress_bounded"]


def decompress_bounded(data: bytes, limit: int) -> bytes:
    """At most ``limit + 1`` bytes of ``data`` decoded: enough to tell that it is over the limit.

    ZstdError when it does not decode. Only the first frame is read, as a zstd stream reader does.
    """
    return ZstdDecompressor().decompress(data, max_length=limit + 1)

# HMAC-SHA256 (RFC 2104) on top of hashlib.sha256, so the device needs no extra package.
# Used by ota.py to check bundle signatures and by tools/bundle.py to make them.
import hashlib
from binascii import hexlify

_BLOCK = 64


def _pad(key, byte):
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    out = bytearray(_BLOCK)
    for i in range(_BLOCK):
        out[i] = (key[i] if i < len(key) else 0) ^ byte
    return bytes(out)


def digest(key, msg):
    """HMAC-SHA256 of `msg` under `key` (both bytes): 32 raw bytes."""
    inner = hashlib.sha256(_pad(key, 0x36))
    inner.update(msg)
    outer = hashlib.sha256(_pad(key, 0x5C))
    outer.update(inner.digest())
    return outer.digest()


def hexdigest(key, msg):
    return hexlify(digest(key, msg)).decode()


def equal(a, b):
    """Compare two byte strings in time that does not depend on where they differ."""
    if len(a) != len(b):
        return False
    r = 0
    for i in range(len(a)):
        r |= a[i] ^ b[i]
    return r == 0

# Web password hashes (salted PBKDF2-HMAC-SHA256) and random bytes for config.py. Imported only
# while a password is set or checked, or settings are validated; config.py drops it again on
# MicroPython so its bytecode does not stay in the heap.
# Hash format: 'pbkdf2-sha256$<rounds>$<salt hex>$<derived key hex>'.
import os
import hashlib
import binascii
from compat import sleep_ms

TAG = 'pbkdf2-sha256'


def rand(n):
    try:
        return os.urandom(n)
    except AttributeError:  # ports without urandom (never the ESP32): weak fallback
        import random
        return bytes(random.getrandbits(8) for _ in range(n))


def hexs(b):
    return binascii.hexlify(b).decode()


def is_hex(s):
    for ch in s:
        if ch not in '0123456789abcdefABCDEF':
            return False
    return True


def bad_hash(v):
    """Error message when `v` is neither empty nor a hash in this module's format."""
    if not v:
        return None
    p = v.split('$')
    if len(p) != 4 or p[0] != TAG or not p[1].isdigit() or not is_hex(p[2] + p[3]) \
            or len(p[3]) != 64 or not p[2]:
        return 'is not a password hash made by this firmware'
    return None


def _pbkdf2(pw, salt, start, k, state):
    """Rounds start..start+k-1 of PBKDF2-HMAC-SHA256 (one 32-byte block; MicroPython has
    no pbkdf2_hmac and no hash copy()). state: None first, then the returned tuple;
    the derived key is state[1].to_bytes(32, 'big') after all rounds."""
    if state is None:
        if len(pw) > 64:
            pw = hashlib.sha256(pw).digest()
        pw = pw + bytes(64 - len(pw))
        state = (salt + b'\x00\x00\x00\x01', 0,
                 bytes(b ^ 0x36 for b in pw), bytes(b ^ 0x5C for b in pw))
    u, acc, ip, op = state
    for _ in range(k):
        u = hashlib.sha256(op + hashlib.sha256(ip + u).digest()).digest()
        acc ^= int.from_bytes(u, 'big')
    return (u, acc, ip, op)


def pbkdf2_sha256(pw, salt, n):
    return _pbkdf2(pw, salt, 0, n, None)[1].to_bytes(32, 'big')


def _same(a, b):
    d = len(a) ^ len(b)
    for i in range(min(len(a), len(b))):
        d |= a[i] ^ b[i]
    return d == 0


MIN_LEN = 10
MAX_LEN = 128


def bad_password(plain):
    """Error dict for a new web password that is too short or too long, else None."""
    if not isinstance(plain, str) or not MIN_LEN <= len(plain) <= MAX_LEN:
        return {'web_password_hash': 'The web password must be %d to %d characters long'
                                     % (MIN_LEN, MAX_LEN)}
    return None


def _store(values, n, salt, key):
    values['web_password_hash'] = '%s$%d$%s$%s' % (TAG, n, hexs(salt), hexs(key))
    return {}


def set_password(values, plain, n):
    """Store a new hash of `plain` in values['web_password_hash']. Returns {} or an error."""
    err = bad_password(plain)
    if err:
        return err
    salt = rand(16)
    return _store(values, n, salt, pbkdf2_sha256(plain.encode(), salt, n))


async def set_password_async(values, plain, n, chunk):
    """set_password() yielding to the event loop every `chunk` rounds."""
    err = bad_password(plain)
    if err:
        return err
    salt = rand(16)
    pw, got, st = plain.encode(), 0, None
    while got < n:
        k = min(chunk, n - got)
        st = _pbkdf2(pw, salt, got, k, st)
        got += k
        await sleep_ms(0)
    return _store(values, n, salt, st[1].to_bytes(32, 'big'))


def _parts(h, plain):
    if not h or not isinstance(plain, str) or bad_hash(h):
        return None
    p = h.split('$')
    return plain.encode(), binascii.unhexlify(p[2]), int(p[1]), binascii.unhexlify(p[3])


def check(h, plain):
    """True when `plain` matches the hash `h` (False when there is none)."""
    p = _parts(h, plain)
    return p is not None and _same(pbkdf2_sha256(p[0], p[1], p[2]), p[3])


async def check_async(h, plain, chunk):
    """check() yielding to the event loop every `chunk` rounds."""
    p = _parts(h, plain)
    if p is None:
        return False
    n, got, st = p[2], 0, None
    while got < n:
        k = min(chunk, n - got)
        st = _pbkdf2(p[0], p[1], got, k, st)
        got += k
        await sleep_ms(0)
    return st is not None and _same(st[1].to_bytes(32, 'big'), p[3])

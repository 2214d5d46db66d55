# MEP request digest and MBK key handling.
#
# The digest authenticates a request: it covers MSG || SEQ (not LEN) and is keyed with the
# first 16 bytes of the MEP Basic Key (MBK). See shared protocol reference, section 2.2.
# One message byte is consumed per key bit; a pass walks the key 1.5 times (24 key bytes,
# 192 message bytes) and the last pass is padded with zero bytes.

_KEY_LEN = 16
_PASS = 24  # key bytes per pass: 0..15, then 0..7

MBK_HELP = ('The MBK (MEP Basic Key) from your utility is 20 characters such as '
            '"53540BEEB79D0514AC00". It looks like hex but is plain text: type the 20 '
            'characters exactly. The same key written as 40 hex digits is accepted too.')


def _tables():
    # f(v) for v = d[i] + i (0..262), t = ~v & 0xFF: rotate t left (key bit 1) or minus t
    # rotated right (key bit 0), looked up instead of computed 192 times a pass.
    one = bytearray(263)
    zero = bytearray(263)
    for v in range(263):
        t = ~v & 0xFF
        one[v] = ((t << 1) | (t >> 7)) & 0xFF
        zero[v] = -(((t >> 1) | (t << 7)) & 0xFF) & 0xFF
    return bytes(one), bytes(zero)


_ONE, _ZERO = _tables()


def digest(data, key):
    """Return the 8-byte digest of `data` (MSG || SEQ) under the 16-byte `key`."""
    if len(key) != _KEY_LEN:
        raise ValueError('digest key must be 16 bytes, got %d' % len(key))
    if _native is not None:
        d = bytearray(8)
        _native(data, len(data), key, _ONE, _ZERO, d)
        return bytes(d)
    return _bytecode(data, key)


def _bytecode(data, key):
    one = _ONE
    zero = _ZERO
    d = bytearray(8)
    n = len(data)
    pos = 0
    c = 0
    while True:
        for p in range(_PASS):
            k = key[p if p < _KEY_LEN else p - _KEY_LEN]
            i = 7
            while i >= 0:
                x = data[pos] if pos < n else 0
                pos += 1
                c = (c + x + (one if k & 1 else zero)[d[i] + i]) & 0xFF
                d[i] = c
                k >>= 1
                i -= 1
        if pos >= n:
            break
    return bytes(d)


# The digest as native code (about 20 times faster than _bytecode, which a request costs 192
# loop passes of). It is compiled on the device at import, by the MicroPython that runs it,
# so every firmware file stays plain bytecode for mpy-cross (no -march) and the code fits
# whatever architecture the board has. run(data, n, key, one, zero, d): the digest of
# data[:n] into the 8-byte bytearray d.
_VIPER = """
@micropython.viper
def run(data, n: int, key, one, zero, d):
    b = ptr8(data)
    k8 = ptr8(key)
    o = ptr8(one)
    z = ptr8(zero)
    dd = ptr8(d)
    c = 0
    pos = 0
    while True:
        p = 0
        while p < 24:
            k = k8[p] if p < 16 else k8[p - 16]
            i = 7
            while i >= 0:
                x = 0
                if pos < n:
                    x = b[pos]
                pos += 1
                if k & 1:
                    c = (c + x + o[dd[i] + i]) & 0xFF
                else:
                    c = (c + x + z[dd[i] + i]) & 0xFF
                dd[i] = c
                k >>= 1
                i -= 1
            p += 1
        if pos >= n:
            break
"""


def _load_native(source):
    """run from `source` when this MicroPython compiles native code and it agrees with
    _bytecode on messages of one and of two passes; else None (CPython, WebAssembly)."""
    import sys
    if sys.implementation.name != 'micropython':
        return None
    try:
        import micropython
        g = {'micropython': micropython}
        exec(source, g)
        run = g['run']
    except Exception:           # no native emitter, or no compiler in this image
        return None
    key = b'0123456789ABCDEF'
    for msg in (b'\x30\x00\x1c\x02\x00\x00\x00\x00\x07', bytes(range(200))):
        d = bytearray(8)
        run(msg, len(msg), key, _ONE, _ZERO, d)
        if bytes(d) != _bytecode(msg, key):
            return None
    return run


_native = _load_native(_VIPER)
del _VIPER, _load_native        # used once: their bytes go back to the heap


_HEX = '0123456789abcdefABCDEF'


def _is_hex(s):
    for ch in s:
        if ch not in _HEX:
            return False
    return True


def key_from_mbk(text):
    """Turn what a user typed into the 16 digest key bytes.

    Accepted: the MBK as 20 (or 16) printable ASCII characters (the normal form; the key bytes
    are the characters' codes), or the same key as 40 (or 32) hex digits. Surrounding white
    space is ignored. Anything else raises ValueError with a message that says what an MBK
    looks like. The error never contains the text itself (it is a secret).
    """
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode()
        except UnicodeError:
            raise ValueError('the MBK contains non-ASCII bytes. ' + MBK_HELP)
    if not isinstance(text, str):
        raise ValueError('the MBK must be text. ' + MBK_HELP)
    s = text.strip()
    n = len(s)
    if n in (40, 32) and _is_hex(s):
        # Hex form of the ASCII key (another firmware's format): 20 or 16 bytes.
        raw = bytes(int(s[i:i + 2], 16) for i in range(0, n, 2))
        return raw[:_KEY_LEN]
    if n in (20, 16):
        for ch in s:
            o = ord(ch)
            if o < 0x21 or o > 0x7E:
                raise ValueError('the MBK may only contain printable ASCII characters '
                                 'without spaces. ' + MBK_HELP)
        return s.encode()[:_KEY_LEN]
    raise ValueError('the MBK has %d characters; expected 20 (or 16) characters, or 40 '
                     '(or 32) hex digits. %s' % (n, MBK_HELP))

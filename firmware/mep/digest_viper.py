# The MEP request digest (mep/digest.py) as native code: about 20 times faster than the
# bytecode version, which a request costs 192 loop passes of. It needs MicroPython's native
# emitter: tools/flash.py compiles it for the board's architecture (-march), an image with
# the app frozen in compiles it with the port's. mep/digest.py uses it only where it loads
# and gives the same digest as the bytecode version; elsewhere (CPython, WebAssembly, a
# build without -march) that version runs.
import micropython


@micropython.viper
def run(data, n: int, key, one, zero, d):
    """Digest of data[:n] under the 16-byte key into the 8-byte bytearray d; one/zero: the
    lookup tables of mep/digest.py."""
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

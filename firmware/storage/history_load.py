# History.load(): the state file of history.py, or once the old single-file history
# (history.bin, format version 1, written with atomic.py) converted to history.py's files.
# Imported for the load only and dropped again (its code is not needed afterwards).
#
# Old layout (little-endian): '<4sBBH' 'MEPH', 1, P_UNIT, levels; per level '<Iiqi' size,
# head, sum, count; '<5q' e_in/e_out baseline, their times, newest time (-1 = none); per
# level the arrays p_min, p_avg, p_max (int16), e_in, e_out (uint16 for the minute level,
# uint32 otherwise), size items each, slot = index % size; then the first 8 bytes of the
# sha256 of everything before. Read in small chunks, never as a whole.
import struct
from binascii import crc32
import os
from storage import histfmt as F


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def _globals(h, g):
    h.reset_state()
    h.base = [None if g[0] < 0 else g[0], None if g[1] < 0 else g[1]]
    h.base_t = [g[2], g[3]]
    h.t_last = None if g[4] < 0 else g[4]


def _parse(h, d):
    """One state slot -> True when valid (applied when newer than the one loaded), False
    when damaged or of another layout, None when blank."""
    if not any(d):
        return None
    ss = h.state_size
    if len(d) != ss or struct.unpack_from('<I', d, ss - 4)[0] != crc32(d[:ss - 4]) & 0xFFFFFFFF:
        return False
    magic, ver, unit, nl, _, seq = struct.unpack_from(F.SHDR, d, 0)
    if magic != F.MAGIC or ver != F.VERSION or unit != F.P_UNIT or nl != len(h.levels):
        return False
    off, sl, st = struct.calcsize(F.SHDR), struct.calcsize(F.SLVL), []
    for lv in h.levels:
        st.append(struct.unpack_from(F.SLVL, d, off))
        off += sl
        if st[-1][0] != lv.n:
            return False  # sizes changed
    if seq <= h.seq:
        return True  # the other slot is newer
    for lv, x in zip(h.levels, st):
        lv.reset()
        lv.head, lv.sum, lv.cnt, lv.lo, lv.hi, lv.ein, lv.eout = x[1:]
        lv.wlo = lv.head
    _globals(h, struct.unpack_from(F.SGLB, d, off))
    h.seq = seq
    return True


def _state(h):
    """The state file -> (loaded, a damaged slot seen)."""
    with open(h.state_path, 'rb') as f:
        d = f.read(2 * h.state_size)
    ok = bad = False
    for k in (0, 1):
        r = _parse(h, d[k * h.state_size:(k + 1) * h.state_size])
        ok = ok or r is True
        bad = bad or r is False
    return ok, bad


def _reset(h):
    h.seq = 0
    for lv in h.levels:
        lv.reset()
    h.reset_state()


def load(h):
    h.warning = None
    _reset(h)
    old = [p for p in (h.path, h.path + '.tmp', h.path + '.bak') if _exists(p)]
    try:
        ok, bad = _state(h)
    except Exception:  # noqa: missing, unreadable, MemoryError: start empty
        ok, bad = False, _exists(h.state_path)
    if ok and bad:
        h.warning = 'history state was damaged; the previous save was loaded'
    if not ok:
        _reset(h)
        if old:
            try:
                ok = _convert_any(h)
            except Exception:  # noqa: e.g. MemoryError, flash full: discard
                ok = False
        if not ok:
            if bad or old:
                h.warning = 'history file was corrupt; history discarded'
            _reset(h)
            for p in h.files():
                _remove(p)
    for p in old:  # converted, or left over from a conversion cut short
        _remove(p)
    h.dirty = False


# ---- the old format ----

def _take(f, n):
    b = f.read(n)
    if len(b) != n:
        raise ValueError('truncated')
    return b


def _convert(h, f):
    import hashlib
    hs, ls, gs = struct.calcsize('<4sBBH'), struct.calcsize('<Iiqi'), struct.calcsize('<5q')
    magic, ver, unit, nl = struct.unpack('<4sBBH', _take(f, hs))
    if magic != b'MEPH' or ver != 1 or unit != F.P_UNIT or nl != len(h.levels):
        raise ValueError('not a history file of this layout')
    st = [struct.unpack('<Iiqi', _take(f, ls)) for _ in h.levels]
    g = struct.unpack('<5q', _take(f, gs))
    size = hs + nl * ls + gs + 8
    for lv, x in zip(h.levels, st):
        if x[0] != lv.n:
            raise ValueError('history sizes changed')
        size += lv.n * (10 if lv.period == 60 else 14)
    if f.seek(0, 2) != size:
        raise ValueError('wrong size')
    f.seek(0)
    d = hashlib.sha256()
    left = size - 8
    while left:
        b = _take(f, min(512, left))
        d.update(b)
        left -= len(b)
    if _take(f, 8) != d.digest()[:8]:
        raise ValueError('checksum mismatch')
    off, rs = hs + nl * ls + gs, F.RS
    for lv, x in zip(h.levels, st):
        n, head = lv.n, x[1]
        e = ('H', 2) if lv.period == 60 else ('I', 4)
        cols = (('h', 2), ('h', 2), ('h', 2), e, e)
        lv.reset()
        if head >= 0:
            i = max(0, head - n + 1)  # the whole window, oldest first
            while i <= head:
                s, c = lv.span(i, head)
                a, v = off, []
                for tc, sz in cols:
                    f.seek(a + s * sz)
                    v.append(struct.unpack('<%d%s' % (c, tc), _take(f, c * sz)))
                    a += n * sz
                buf = bytearray(c * rs)
                for k in range(c):
                    r = (v[0][k], v[1][k], v[2][k], v[3][k], v[4][k])
                    F.pack(buf, k * rs, i + k, r)
                    if i + k == head:
                        lv.lo, lv.hi, lv.ein, lv.eout = r[0], r[2], r[3], r[4]
                out = F.open_rw(lv.page(s))
                try:
                    out.seek(s % F.PAGE * rs)
                    out.write(buf)
                finally:
                    out.close()
                i += c
            lv.head, lv.sum, lv.cnt, lv.wlo = head, x[2], x[3], head
        off += n * (10 if lv.period == 60 else 14)
    _globals(h, g)
    h.seq = 0
    h.save()  # the state (and the open buckets again)
    return True


def _convert_any(h):
    """Convert the old file (its path, else the .tmp/.bak copies atomic.py may have left).
    True when converted; False when none was readable."""
    from storage import atomic
    ok, src = atomic.read(h.path, lambda f: _convert(h, f))
    return bool(ok)

# History aggregates: per minute (24 h), per hour (31 days), per day (366 days), in RAM as
# fixed arrays, saved to flash atomically (atomic.py) at most once a minute.
#
# Bucket = net power (p_in - p_out) min/avg/max as int16 in units of P_UNIT W (saturating
# at +-65 kW) and import/export energy in Wh (minute: uint16, hour/day: uint32) from the
# e_in/e_out counter deltas. 10 bytes per minute bucket, 14 per hour/day bucket: with the
# default sizes 29,940 bytes of RAM and a 30,054 byte file.
#
# Buckets are keyed by UTC time: bucket index = time // period, slot = index % size; the
# day level uses UTC days. avg is the mean of the samples, not time weighted.
# Clock policy (closed buckets are never rewritten, never duplicated):
# - time before 2020 or after 2099: dropped (clock not set); the energy baseline stays, so
#   the energy goes to the next accepted reading.
# - time behind the newest accepted time by up to BACK_LIMIT: merged into each level's open
#   (newest) bucket.
# - further behind: dropped, unless such readings keep coming for RESYNC_S of their own
#   time; then the clock is trusted: buckets newer than it are discarded (they were
#   future-dated) and aggregation restarts there ("rebase", reported in .warning).
# - forward jumps close the open buckets; skipped buckets stay empty.
# Energy: a counter delta is counted once, into the bucket of the reading that shows it.
# A counter going backwards counts 0 (the baseline follows it), as does a jump above
# MAX_W average power or a gap over MAX_GAP since the previous counter value.
import struct
import hashlib
import time
from array import array
import atomic
from compat import epoch_offset, sleep_ms

P_UNIT = 2
EMPTY = -32768
MIN_TIME = 1577836800  # 2020-01-01
MAX_TIME = 4102444800  # 2100-01-01
BACK_LIMIT = 86400
RESYNC_S = 3600
MAX_GAP = 3600
MAX_W = 1000000
SAVE_EVERY = 60
LEVELS = (('minute', 60, 1440), ('hour', 3600, 744), ('day', 86400, 366))
COLUMNS = ('time', 'p_min', 'p_avg', 'p_max', 'e_in', 'e_out')
_MAGIC = b'MEPH'
_VERSION = 1
_HDR = '<4sBBH'
_LVL = '<Iiqi'
_GLB = '<qqqqq'


class HistoryError(ValueError):
    pass


def _clamp(v, lo, hi):
    return lo if v < lo else hi if v > hi else v


class Level:
    def __init__(self, name, period, n):
        self.name, self.period, self.n = name, period, n
        self.pmin = array('h', bytearray(2 * n))
        self.pavg = array('h', bytearray(2 * n))
        self.pmax = array('h', bytearray(2 * n))
        tc, sz = ('H', 2) if period == 60 else ('I', 4)
        self.emax = 0xFFFF if sz == 2 else 0xFFFFFFFF
        self.ein = array(tc, bytearray(sz * n))
        self.eout = array(tc, bytearray(sz * n))
        self.arrays = (self.pmin, self.pavg, self.pmax, self.ein, self.eout)
        self.reset()

    def reset(self):
        for s in range(self.n):
            self._clear(s)
        self.head = -1  # bucket index (time // period) of the open bucket
        self.sum = self.cnt = 0

    def nbytes(self):
        return sum(len(a) * memoryview(a).itemsize for a in self.arrays)

    def _clear(self, s):
        self.pmin[s] = self.pavg[s] = self.pmax[s] = EMPTY
        self.ein[s] = self.eout[s] = 0

    def _clear_range(self, first, last):
        if last - first + 1 >= self.n:
            first = last - self.n + 1
        for i in range(first, last + 1):
            self._clear(i % self.n)

    def add(self, t, p, de_in, de_out):
        i = t // self.period
        if i > self.head:  # newer bucket: close the open one; skipped ones stay empty
            self._clear_range(i if self.head < 0 else self.head + 1, i)
            self.head = i
            self.sum = self.cnt = 0
        s = self.head % self.n  # older times merge into the open bucket
        if p is not None:
            self.cnt += 1
            self.sum += p
            v = _clamp(round(p / P_UNIT), -32767, 32767)
            if self.cnt == 1:
                self.pmin[s] = self.pmax[s] = v
            elif v < self.pmin[s]:
                self.pmin[s] = v
            elif v > self.pmax[s]:
                self.pmax[s] = v
            self.pavg[s] = _clamp(round(self.sum / self.cnt / P_UNIT), -32767, 32767)
        if de_in:
            self.ein[s] = min(self.ein[s] + de_in, self.emax)
        if de_out:
            self.eout[s] = min(self.eout[s] + de_out, self.emax)

    def rebase(self, t):
        i = t // self.period
        if i <= self.head:
            self._clear_range(i, self.head)
            self.head = i
            self.sum = self.cnt = 0

    def rows(self, start=None, end=None):
        """(time, p_min, p_avg, p_max, e_in, e_out) of the non-empty buckets, oldest first,
        start <= time < end; powers in W (None when the bucket has energy only)."""
        if self.head < 0:
            return
        for i in range(self.head - self.n + 1, self.head + 1):
            t = i * self.period
            if i < 0 or (start is not None and t < start) or (end is not None and t >= end):
                continue
            s = i % self.n
            lo = self.pmin[s]
            if lo == EMPTY and not self.ein[s] and not self.eout[s]:
                continue
            if lo == EMPTY:
                yield (t, None, None, None, self.ein[s], self.eout[s])
            else:
                yield (t, lo * P_UNIT, self.pavg[s] * P_UNIT, self.pmax[s] * P_UNIT,
                       self.ein[s], self.eout[s])


class History:
    def __init__(self, path, sizes=None):
        """`sizes`: optional (minutes, hours, days) bucket counts (default 1440, 744, 366)."""
        self.path = path
        self.levels = []
        for k, (name, period, n) in enumerate(LEVELS):
            self.levels.append(Level(name, period, sizes[k] if sizes else n))
        self.warning = None
        self.dropped = 0
        self.dirty = False
        self._saved_at = None
        self._reset_state()

    def _reset_state(self):
        self.t_last = None  # newest accepted reading time
        self._base = [None, None]  # last e_in / e_out counter value (int Wh)
        self._bt = [0, 0]  # time of that value
        self._drop0 = None  # time of the first reading of a streak dropped as too old

    def level(self, name):
        for lv in self.levels:
            if lv.name == name:
                return lv
        raise HistoryError('unknown history level %r; use minute, hour or day' % (name,))

    def nbytes(self):
        return sum(lv.nbytes() for lv in self.levels)

    def file_size(self):
        return (struct.calcsize(_HDR) + len(self.levels) * struct.calcsize(_LVL)
                + struct.calcsize(_GLB) + self.nbytes() + 8)

    def _delta(self, k, e, t):
        if e is None:
            return 0
        q = int(e)
        b, dt = self._base[k], t - self._bt[k]
        self._base[k], self._bt[k] = q, t
        if b is None or q <= b or dt > MAX_GAP or (q - b) * 3600 > MAX_W * (dt if dt > 0 else 1):
            return 0
        return q - b

    def add(self, r):
        """Aggregate one reading. Returns False when it was dropped (clock policy above)."""
        t = r.get('time')
        if t is None or not MIN_TIME <= t < MAX_TIME:
            self.dropped += 1
            return False
        t = int(t)
        if self.t_last is not None and t < self.t_last - BACK_LIMIT:
            if self._drop0 is None or t < self._drop0:
                self._drop0 = t
            if t - self._drop0 < RESYNC_S:
                self.dropped += 1
                return False
            for lv in self.levels:
                lv.rebase(t)
            self._reset_state()
            self.warning = 'clock moved back by more than a day; newer history discarded'
        self._drop0 = None
        pi, po = r.get('p_in'), r.get('p_out')
        p = None if pi is None and po is None else round((pi or 0) - (po or 0))
        de_in = self._delta(0, r.get('e_in'), t)
        de_out = self._delta(1, r.get('e_out'), t)
        if self.t_last is None or t > self.t_last:
            self.t_last = t
        for lv in self.levels:
            lv.add(t, p, de_in, de_out)
        self.dirty = True
        return True

    def rows(self, level, start=None, end=None):
        return self.level(level).rows(start, end)

    # ---- persistence ----
    def _chunks(self):
        yield struct.pack(_HDR, _MAGIC, _VERSION, P_UNIT, len(self.levels))
        for lv in self.levels:
            yield struct.pack(_LVL, lv.n, lv.head, lv.sum, lv.cnt)
        b, none = self._base, -1
        yield struct.pack(_GLB, none if b[0] is None else b[0], none if b[1] is None else b[1],
                          self._bt[0], self._bt[1], none if self.t_last is None else self.t_last)
        for lv in self.levels:
            for a in lv.arrays:
                yield a

    def _write(self, f, chunks):
        h = hashlib.sha256()
        for c in chunks:
            h.update(c)
            f.write(c)
        f.write(h.digest()[:8])

    def save(self):
        atomic.write(self.path, lambda f: self._write(f, self._chunks()))
        self.dirty = False

    async def save_async(self):
        """save() yielding to the event loop between chunks (each at most a few KB)."""
        f = atomic.begin(self.path)
        try:
            h = hashlib.sha256()
            for c in self._chunks():
                h.update(c)
                f.write(c)
                await sleep_ms(0)
            f.write(h.digest()[:8])
        except BaseException:
            atomic.abort(f)
            raise
        atomic.commit(self.path, f)
        self.dirty = False

    def _due(self, now):
        """Changed, and SAVE_EVERY seconds (of `now`, any seconds clock) since the last save
        or attempt."""
        if not self.dirty or (self._saved_at is not None and abs(now - self._saved_at) < SAVE_EVERY):
            return False
        self._saved_at = now
        return True

    def maybe_save(self, now):
        """Save when due. Never raises; returns True when saved."""
        if not self._due(now):
            return False
        try:
            self.save()
            return True
        except OSError as e:
            self.warning = 'history not saved: %s' % e
            return False

    async def maybe_save_async(self, now):
        """maybe_save() writing in chunks that yield to the event loop (the MEP link keeps
        running while flash is written)."""
        if not self._due(now):
            return False
        try:
            await self.save_async()
            return True
        except OSError as e:
            self.warning = 'history not saved: %s' % e
            return False

    def _read(self, f):
        h = hashlib.sha256()

        def take(fmt):
            b = f.read(struct.calcsize(fmt))
            if len(b) != struct.calcsize(fmt):
                raise HistoryError('truncated')
            h.update(b)
            return struct.unpack(fmt, b)

        magic, ver, unit, nl = take(_HDR)
        if magic != _MAGIC or ver != _VERSION or unit != P_UNIT or nl != len(self.levels):
            raise HistoryError('not a history file of this layout')
        lv_state = [take(_LVL) for _ in self.levels]
        for lv, st in zip(self.levels, lv_state):
            if st[0] != lv.n:
                raise HistoryError('history sizes changed')
        glb = take(_GLB)
        for lv in self.levels:
            for a in lv.arrays:
                if f.readinto(a) != len(a) * memoryview(a).itemsize:
                    raise HistoryError('truncated')
                h.update(a)
        if f.read(8) != h.digest()[:8]:
            raise HistoryError('checksum mismatch')
        for lv, st in zip(self.levels, lv_state):
            lv.head, lv.sum, lv.cnt = st[1], st[2], st[3]
        self._reset_state()
        self._base = [None if glb[0] < 0 else glb[0], None if glb[1] < 0 else glb[1]]
        self._bt = [glb[2], glb[3]]
        self.t_last = None if glb[4] < 0 else glb[4]
        return True

    def load(self):
        """Load the saved history (never raises). A corrupt file is discarded with a warning."""
        self.warning = None
        try:
            ok, src = atomic.read(self.path, self._read)
        except Exception:  # noqa: e.g. MemoryError: start empty rather than crash
            ok, src = None, None
        if not ok:
            for lv in self.levels:
                lv.reset()
            self._reset_state()
            if atomic.exists(self.path) or atomic.exists(self.path + atomic.BAK):
                self.warning = 'history file was corrupt; history discarded'
        elif src != 'main':
            self.warning = 'history file was missing or corrupt; %s copy loaded' % (
                'backup' if src == 'bak' else 'new')
        self.dirty = False
        return self.warning

    # ---- export ----
    def to_csv(self, level, start=None, end=None):
        """Generator of CSV lines (with '\\n'): header, then one line per non-empty bucket.
        time = bucket start (UTC unix seconds), utc = the same as ISO 8601."""
        rows = self.rows(level, start, end)
        off = epoch_offset()
        yield 'time,utc,p_min_w,p_avg_w,p_max_w,e_in_wh,e_out_wh\n'
        for r in rows:
            g = time.gmtime(r[0] - off)
            yield '%d,%04d-%02d-%02dT%02d:%02d:00Z,%s,%s,%s,%d,%d\n' % (
                r[0], g[0], g[1], g[2], g[3], g[4], _s(r[1]), _s(r[2]), _s(r[3]), r[4], r[5])

    def to_json(self, level, start=None, end=None):
        """Generator of text chunks that together form one JSON object:
        {"level", "period", "columns", "rows": [[time, p_min, p_avg, p_max, e_in, e_out], ...]}."""
        lv = self.level(level)
        yield '{"level":"%s","period":%d,"columns":["%s"],"rows":[' % (
            lv.name, lv.period, '","'.join(COLUMNS))
        sep = ''
        for r in lv.rows(start, end):
            yield '%s[%d,%s,%s,%s,%d,%d]' % (sep, r[0], _j(r[1]), _j(r[2]), _j(r[3]), r[4], r[5])
            sep = ','
        yield ']}'


def _s(v):
    return '' if v is None else str(v)


def _j(v):
    return 'null' if v is None else str(v)

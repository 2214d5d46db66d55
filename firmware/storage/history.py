# History aggregates: per minute (24 h), per hour (31 days), per day (366 days), kept on
# flash; RAM holds only the open bucket of each level and the few closed buckets not yet
# written. Written at most once a minute (maybe_save), reloaded at boot.
#
# Bucket = net power (p_in - p_out) min/avg/max in units of P_UNIT W (int16, saturating at
# +-65 kW) and import/export energy in Wh (uint32) from the e_in/e_out counter deltas.
# Buckets are keyed by time: bucket index = time // period (minute, hour: UTC), slot =
# index % size. The day level is cut at local midnight when History has a `cfg` (its
# 'timezone', see periods.zone(); without one, UTC days): its index is the local day number
# (local time // 86400) and a bucket's time is the UTC time of that local midnight, so a day
# is 23 or 25 hours long when daylight saving starts or ends. The resident part only keeps
# the bounds of the current local day; periods.py and tz.py are imported when a day ends (or
# the zone changes) and dropped again. Day records written before (UTC days) keep their
# index and read as the local day of the same number; a zone change relabels likewise.
# avg is the mean of the samples, not time weighted.
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
#
# Files (<base> = the path given without '.bin', e.g. /history):
#   <base>.minute.0 .. .7, <base>.hour.0 .. .3, <base>.day.0 .. .1: per level `size`
#     20-byte records, bucket i at slot s = i % size, in file s // 192 at (s % 192) * 20
#     (192 records = 3840 bytes: one 4 KB flash block; littlefs rewrites a file from the
#     changed position to its end, so small files keep a save's flash writes small).
#     Record '<I3h2IH': index, p_min, p_avg, p_max, e_in, e_out, check = crc32 of the
#     first 18 bytes & 0xFFFF. A record counts only when its check is right and its index
#     is the bucket asked for: a torn, zeroed, missing or stale record reads as empty.
#   <base>.state: two 152-byte slots written alternately (slot = seq % 2); the valid one
#     with the higher seq wins: '<4sBBBBI' 'MEPS', version 2, P_UNIT, levels, 0, seq; per
#     level '<Iiqi2h2I' size, head (index of the open bucket), sum, count, p_min, p_max,
#     e_in, e_out of the open bucket; '<5q' e_in/e_out baseline, their times, newest time
#     (-1 = none); crc32 of all that ('<I').
# Invariant: per level, with `wlo` = the head at the last save, the records of the window
# [head - size + 1, wlo - 1] in the files are right; the buckets from wlo on are in RAM
# (the open bucket, closed ones with data in `pend`, the others empty). A save writes the
# closed ones, wlo .. head - 1 (skipped buckets as empty records; usually one record a
# minute, the hour and day levels once an hour/day), then the state with the open
# buckets. So a record newer than the saved head (future-dated ones before a rebase,
# those of a save cut short) is never read, and is overwritten before the head passes
# it; a rebase writes nothing at once. A power cut before the state is written loads the
# previous state (at most a minute old) and ignores the newer records; the only records
# the cut save may have overwritten are those of buckets that its new state no longer
# holds (the oldest ones, or after a rebase the discarded ones). Each file write of
# littlefs is atomic on the device; on a PC the record check and the two state slots
# cover torn writes.
# Loading, and converting the old single-file format once: history_load.py.
import os
import struct
import time
from binascii import crc32
import sys
from compat import epoch_offset, sleep_ms, unload
from storage.histfmt import (P_UNIT, REC as _REC, RS as _RS, PAGE as _PAGE,  # noqa: F401
                              MAGIC as _MAGIC, VERSION as _VERSION, SHDR as _SHDR,
                              SLVL as _SLVL, SGLB as _SGLB, pack, open_rw as _open_rw)

EMPTY = -32768
MIN_TIME = 1577836800  # 2020-01-01
MAX_TIME = 4102444800  # 2100-01-01
BACK_LIMIT = 86400
RESYNC_S = 3600
MAX_GAP = 3600
MAX_W = 1000000
SAVE_EVERY = 60
PEND_MAX = 8  # closed unsaved buckets per level; more: written at once (add())
LEVELS = (('minute', 60, 1440), ('hour', 3600, 744), ('day', 86400, 366))
COLUMNS = ('time', 'p_min', 'p_avg', 'p_max', 'e_in', 'e_out')
_CHUNK = 32  # records per file read/write
_EMAX = 0xFFFFFFFF
_EV = (EMPTY, EMPTY, EMPTY, 0, 0)


class HistoryError(ValueError):
    pass


def _clamp(v, lo, hi):
    return lo if v < lo else hi if v > hi else v


def _unpack(buf, off, i):
    """Values of bucket i from the record at buf[off:], or None (empty, torn, stale)."""
    if off + _RS > len(buf):
        return None
    r = struct.unpack_from(_REC, buf, off)
    if r[0] != i or struct.unpack_from('<H', buf, off + 18)[0] != \
            crc32(memoryview(buf)[off:off + 18]) & 0xFFFF:
        return None
    return r[1:]


class Level:
    def __init__(self, name, period, n, path):
        self.name, self.period, self.n, self.path = name, period, n, path
        self.reset()

    def reset(self):
        self.head = -1  # bucket index (time // period) of the open bucket
        self.wlo = 0  # first bucket index not (or not surely) right in the file
        self.pend = []  # closed buckets >= wlo with data: (index,) + values
        self._open()

    def _open(self):
        self.sum = self.cnt = 0
        self.lo = self.hi = EMPTY
        self.ein = self.eout = 0

    def values(self):
        """(p_min, p_avg, p_max, e_in, e_out) of the open bucket."""
        avg = EMPTY
        if self.cnt:
            avg = _clamp(round(self.sum / self.cnt / P_UNIT), -32767, 32767)
        return (self.lo, avg, self.hi, self.ein, self.eout)

    def add(self, i, p, de_in, de_out):
        """Aggregate into bucket i (the index of the reading's time)."""
        if i > self.head:  # newer bucket: close the open one; skipped ones stay empty
            if self.head < 0:  # fresh start: the first save rewrites the whole window
                self.wlo = i - self.n + 1
            elif self.cnt or self.ein or self.eout:
                self.pend.append((self.head,) + self.values())
            self.head = i
            self._open()
            first = i - self.n + 1
            if self.pend and self.pend[0][0] < first:
                self.pend = [x for x in self.pend if x[0] >= first]
        if p is not None:  # older times merge into the open bucket
            self.cnt += 1
            self.sum += p
            v = _clamp(round(p / P_UNIT), -32767, 32767)
            if self.cnt == 1:
                self.lo = self.hi = v
            elif v < self.lo:
                self.lo = v
            elif v > self.hi:
                self.hi = v
        if de_in:
            self.ein = min(self.ein + de_in, _EMAX)
        if de_out:
            self.eout = min(self.eout + de_out, _EMAX)

    def rebase(self, i):
        if i <= self.head:  # buckets i.. are dropped; the file's are never read again
            self.pend = [x for x in self.pend if x[0] < i]
            if i < self.wlo:
                self.wlo = i
            self.head = i
            self._open()

    def get(self, i):
        """Values of bucket i >= wlo (RAM)."""
        if i == self.head:
            return self.values()
        for x in self.pend:
            if x[0] == i:
                return x[1:]
        return _EV

    def saved(self, head):
        """The file is right below `head` (the head when the save began)."""
        self.wlo = head
        if self.pend:
            self.pend = [x for x in self.pend if x[0] >= head]

    def page(self, s):
        """File of slot s."""
        return '%s.%d' % (self.path, s // _PAGE)

    def files(self):
        return [self.page(s) for s in range(0, self.n, _PAGE)]

    def span(self, i, last):
        """Records from bucket i on for one read/write: up to last, within one file."""
        s = i % self.n
        return s, min(_CHUNK, last - i + 1, self.n - s, _PAGE - s % _PAGE)

    def write(self, first, last):
        """Generator: write the records of buckets first..last, a chunk per step."""
        f = p = None
        try:
            i = first
            while i <= last:
                s, c = self.span(i, last)
                if s // _PAGE != p:
                    if f:
                        f.close()
                        f = None
                    p = s // _PAGE
                    f = _open_rw(self.page(s))
                buf = bytearray(c * _RS)
                for k in range(c):
                    pack(buf, k * _RS, i + k, self.get(i + k) if i + k >= self.wlo else _EV)
                f.seek(s % _PAGE * _RS)
                f.write(buf)
                i += c
                yield
        finally:
            if f:
                f.close()

    def _read(self, s, c):
        try:
            with open(self.page(s), 'rb') as f:
                f.seek(s % _PAGE * _RS)
                return f.read(c * _RS)
        except OSError:
            return b''

    def rows(self, start=None, end=None, z=None):
        """(time, p_min, p_avg, p_max, e_in, e_out) of the non-empty buckets, oldest first,
        start <= time < end; powers in W (None when the bucket has energy only). With a
        tz.Zone z (local days) a bucket's time is the UTC time of its local midnight."""
        h = self.head
        if h < 0:
            return
        per, n = self.period, self.n
        i = h - n + 1
        if start is not None:
            i = max(i, int(-(-(z.local(start) if z else start) // per)))
        last = h if end is None else min(h, int(-(-(z.local(end) if z else end) // per)) - 1)
        i = max(i, 0)
        while i <= last:
            if i < self.wlo:  # from the file, a chunk at a time
                s, c = self.span(i, min(last, self.wlo - 1))
                buf = self._read(s, c)
                vals = [_unpack(buf, k * _RS, i + k) for k in range(c)]
            else:
                c = 1
                vals = (self.get(i),)
            for k in range(c):
                v = vals[k]
                if v is None or (v[0] == EMPTY and not v[3] and not v[4]):
                    continue
                t = (i + k) * per
                if z:
                    t = z.from_local(t)
                if v[0] == EMPTY:
                    yield (t, None, None, None, v[3], v[4])
                else:
                    yield (t, v[0] * P_UNIT, v[1] * P_UNIT, v[2] * P_UNIT, v[3], v[4])
            i += c


class History:
    def __init__(self, path, sizes=None, cfg=None):
        """`path`: the old single-file name (e.g. history.bin, converted when found); the
        files are <path without .bin>.state/.minute/.hour/.day. `sizes`: optional
        (minutes, hours, days) bucket counts (default 1440, 744, 366). `cfg`: settings (a
        Config or dict) whose 'timezone' cuts the days at local midnight (None: UTC)."""
        self.path = path
        self.cfg = cfg
        self._day = None  # [start, end, index, zone rule] of the current local day
        base = path[:-4] if path.endswith('.bin') else path
        self.state_path = base + '.state'
        self.levels = []
        for k, (name, period, n) in enumerate(LEVELS):
            self.levels.append(Level(name, period, sizes[k] if sizes else n,
                                     base + '.' + name))
        self.state_size = struct.calcsize(_SHDR) + len(self.levels) * struct.calcsize(_SLVL) \
            + struct.calcsize(_SGLB) + 4
        self.warning = None
        self.dropped = 0
        self.dirty = False
        self._saved_at = None
        self.seq = 0  # of the last state written or loaded
        self._rebases = 0
        self._saving = False
        self._run = None  # the save (generator) under way
        self.reset_state()

    def reset_state(self):
        self.t_last = None  # newest accepted reading time
        self.base = [None, None]  # last e_in / e_out counter value (int Wh)
        self.base_t = [0, 0]  # time of that value
        self._drop0 = None  # time of the first reading of a streak dropped as too old

    def zone(self):
        """tz.Zone of the configured time zone, or None (UTC days). periods.py and tz.py
        are dropped again unless they were loaded before; the Zone keeps working."""
        if self.cfg is None:
            return None
        mine = [n for n in ('periods', 'system.tz') if n not in sys.modules]
        try:
            import periods
            return periods.zone(self.cfg)
        except ValueError:           # a zone the settings should have refused: UTC days
            self.warning = 'time zone not understood; days are cut at UTC midnight'
            return None
        finally:
            unload(*mine)

    def day_index(self, t):
        """Index of the day bucket holding unix time t (local day number with a cfg)."""
        if self.cfg is None:
            return t // 86400
        d = self._day
        try:
            r = self.cfg['timezone']
        except KeyError:
            r = None
        if d is None or not d[0] <= t < d[1] or d[3] != r:
            z = self.zone()
            if z is None:
                a = t - t % 86400
                d = self._day = [a, a + 86400, t // 86400, r]
            else:
                a = z.day_start(t)
                d = self._day = [a, z.day_start(a + 26 * 3600), z.local(a) // 86400, r]
        return d[2]

    def _index(self, lv, t):
        return self.day_index(t) if lv.period == 86400 else t // lv.period

    def level(self, name):
        for lv in self.levels:
            if lv.name == name:
                return lv
        raise HistoryError('unknown history level %r; use minute, hour or day' % (name,))

    def nbytes(self):
        """Bucket data held in RAM (open and closed unsaved buckets), as record bytes."""
        return sum((1 + len(lv.pend)) * _RS for lv in self.levels)

    def file_size(self):
        """Flash bytes of the files once written."""
        return sum(lv.n * _RS for lv in self.levels) + 2 * self.state_size

    def files(self):
        out = [self.state_path]
        for lv in self.levels:
            out += lv.files()
        return out

    def _delta(self, k, e, t):
        if e is None:
            return 0
        q = int(e)
        b, dt = self.base[k], t - self.base_t[k]
        self.base[k], self.base_t[k] = q, t
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
                lv.rebase(self._index(lv, t))
            self._rebases += 1
            self.reset_state()
            self.warning = 'clock moved back by more than a day; newer history discarded'
        self._drop0 = None
        pi, po = r.get('p_in'), r.get('p_out')
        p = None if pi is None and po is None else round((pi or 0) - (po or 0))
        de_in = self._delta(0, r.get('e_in'), t)
        de_out = self._delta(1, r.get('e_out'), t)
        if self.t_last is None or t > self.t_last:
            self.t_last = t
        full = False
        for lv in self.levels:
            lv.add(self._index(lv, t), p, de_in, de_out)
            if len(lv.pend) > PEND_MAX:
                full = True
        self.dirty = True
        if full and not self._saving:
            self._flush()
        return True

    def _flush(self):
        """More closed buckets than PEND_MAX (readings hopping forward, or saves failing):
        write them now; when that fails too, the oldest are lost."""
        try:
            self.save()
        except OSError as e:
            self.warning = 'history not saved: %s' % e
            for lv in self.levels:
                if len(lv.pend) > PEND_MAX:
                    lv.pend = lv.pend[-PEND_MAX:]

    def rows(self, level, start=None, end=None):
        """Generator of the level's rows (Level.rows), with bucket times of local days."""
        lv = self.level(level)
        return lv.rows(start, end, self.zone() if lv.period == 86400 else None)

    # ---- persistence ----
    def _state(self, seq):
        b, none = self.base, -1
        out = bytearray(struct.pack(_SHDR, _MAGIC, _VERSION, P_UNIT, len(self.levels), 0, seq))
        for lv in self.levels:
            out += struct.pack(_SLVL, lv.n, lv.head, lv.sum, lv.cnt, lv.lo, lv.hi, lv.ein,
                               lv.eout)
        bt = self.base_t
        out += struct.pack(_SGLB, none if b[0] is None else b[0], none if b[1] is None else b[1],
                           bt[0], bt[1], none if self.t_last is None else self.t_last)
        out += struct.pack('<I', crc32(out) & 0xFFFFFFFF)
        return out

    def _steps(self):
        """Generator of one save, a step per chunk written: the records of the closed buckets
        of every level (wlo .. head - 1, as of the start), then the state in the older
        slot."""
        self._saving = True
        try:
            seq = self.seq + 1
            state = self._state(seq)  # a consistent snapshot: readings may come meanwhile
            marks = [(lv.wlo, lv.head) for lv in self.levels]
            rebases = self._rebases
            self.dirty = False
            try:
                for lv, (a, h) in zip(self.levels, marks):
                    if a < h:  # the closed buckets; the open one is in the state
                        for _ in lv.write(max(a, h - lv.n + 1), h - 1):
                            yield
                f = _open_rw(self.state_path)
                try:
                    f.seek((seq & 1) * self.state_size)
                    f.write(state)
                finally:
                    f.close()
            except BaseException:
                self.dirty = True
                raise
            self.seq = seq
            if rebases == self._rebases:  # else the next save writes from the rebase on
                for lv, (a, h) in zip(self.levels, marks):
                    if h >= 0:
                        lv.saved(h)
        finally:
            self._saving = False

    def _begin(self):
        g = self._run
        if g is not None:  # an async save still suspended (e.g. its task was cancelled):
            g.close()  # end it (its file closed) before writing again
        self._run = g = self._steps()
        return g

    def save(self):
        g = self._begin()
        try:
            for _ in g:
                pass
        finally:
            self._run = None

    async def save_async(self):
        """save() yielding to the event loop between chunks (at most 640 bytes each)."""
        steps = self._begin()
        try:
            for _ in steps:
                await sleep_ms(0)
        except BaseException:
            steps.close()
            raise
        finally:
            if self._run is steps:
                self._run = None

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

    def load(self):
        """Load the saved history (never raises). A corrupt one is discarded with a warning;
        the old single-file format is converted. The code is in history_load.py, imported
        for this only."""
        from storage import history_load
        try:
            history_load.load(self)
        finally:
            unload('storage.history_load')
        return self.warning

    # ---- export ----
    def to_csv(self, level, start=None, end=None):
        """Generator of CSV lines (with '\\n'): header, then one line per non-empty bucket.
        time = bucket start (UTC unix seconds), utc = the same as ISO 8601."""
        return self._csv(self.rows(level, start, end))

    def _csv(self, rows):
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
        return self._json(lv, self.rows(level, start, end))

    def _json(self, lv, rows):
        yield '{"level":"%s","period":%d,"columns":["%s"],"rows":[' % (
            lv.name, lv.period, '","'.join(COLUMNS))
        sep = ''
        for r in rows:
            yield '%s[%d,%s,%s,%s,%d,%d]' % (sep, r[0], _j(r[1]), _j(r[2]), _j(r[3]), r[4], r[5])
            sep = ','
        yield ']}'


def _s(v):
    return '' if v is None else str(v)


def _j(v):
    return 'null' if v is None else str(v)

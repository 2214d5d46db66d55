# The poller: start-up reads, then BT23 (energies) and BT28 (instantaneous values) at their
# intervals, or BT28 back to back with BT23 still at its interval ("fast mode": live values as
# often as the wire allows; the energy counters, which move a Wh at a time, need no more than
# their interval and would halve the rate). Each BT28 answer makes one reading in SI units
# (see mep/reading.py) handed to every listener. Sans-IO: the link's loop calls step(now);
# listeners must be cheap (an async consumer uses link.Subscription, which never blocks).
from mep import requests as rq
from mep import tables
from mep.frames import STATUS_RSTL
from mep.jobs import Job, PRIO_POLL
from mep.reading import rows, ENERGY_KEYS as READING_KEYS

STARTUP = (rq.BT52, rq.BT01, rq.BT21, rq.ET03, rq.ET11, rq.ET13, rq.ET50)
BT23_COUNT = 16                  # forward/reverse active and reactive energy
RETRY_MS = 300000                # start-up tables that failed are read again this often
RETRY_FIRST_MS = 5000            # ... sooner (doubling) while BT21 is missing: no readings
CLOCK_MS = 3600000               # the meter clock is read again this often
MAX_W = 100000                   # the largest plausible power on one counter (W, var)
SLACK_WH = 2                     # counter resolution allowed on top
REBASE_N = 10                    # consistent readings before a new counter base is taken
REBASE_MS = 60000                # ... spanning at least this long
ENERGY_KEYS = ('e_fwd', 'e_rev', 'eq_fwd', 'eq_rev')


def _bt28_map():
    """BT28 value index -> reading key (mep/reading.py), the table read once: the values the
    meter sends as they are (W, var, VA), those it sends in thousandths (mA, mV, mHz, 1/1000),
    and the highest index."""
    ints, milli = [], []
    for f in rows():
        if f[3] is not None:
            (ints if f[4] == 1 else milli).append((f[3], f[0]))
    return tuple(ints), tuple(milli), max(i for i, k in ints + milli)


_B28_INT, _B28_MILLI, _B28_TOP = _bt28_map()
del _bt28_map
# every key of a reading from a full BT28: a copy of it is a dict at its final size (filling
# an empty one grows it five times on the way)
_FULL = dict.fromkeys(('time', 'seq') + tuple(f[0] for f in rows()))


def to_reading(v, energy, t, seq):
    """BT28's values (tables.bt28_values) and checked energies -> a reading dict in SI
    units. A value the meter did not send (a short BT28) is absent; an energy not known for
    sure is None."""
    n = len(v)
    if n > _B28_TOP:                    # all of them (every reading of a full BT28)
        r = _FULL.copy()
        r['time'] = t
        r['seq'] = seq
        for i, key in _B28_INT:
            r[key] = v[i]
        for i, key in _B28_MILLI:
            r[key] = v[i] / 1000
    else:
        r = {'time': t, 'seq': seq}
        for i, key in _B28_INT:
            if i < n:
                r[key] = v[i]
        for i, key in _B28_MILLI:
            if i < n:
                r[key] = v[i] / 1000
    e = energy or {}
    for k in range(4):
        r[READING_KEYS[k]] = e.get(ENERGY_KEYS[k])
    return r


class Poller:
    def __init__(self, submit, wall, bt23_ms=1000, bt28_ms=1000, fast=False, log=None):
        self.submit = submit            # submit(job) -> bool (the link's)
        self.wall = wall                # () -> UTC unix seconds
        self.bt23_ms = bt23_ms
        self.bt28_ms = bt28_ms
        self.fast = fast
        self.log = log
        self.listeners = []
        self.tables = {}                # decoded start-up tables by name
        self.info = {}                  # meter identity for the UI, MQTT, HA
        self.latest = None
        self.bt23 = None
        self.readings = 0
        self.errors = 0
        self.last_error = None
        self.cycle_ms = None            # period between the last two readings
        self._todo = list(STARTUP)
        self._retry_at = None
        self._clock_at = None
        self._next23 = 0
        self._next28 = 0
        self._last23 = False            # the last poll was BT23 (fast mode: BT28 next)
        self._last_reading_ms = None
        self._job = None
        self._polls = {}                # tag -> (BT21 it was made from, partial, Job)
        self._now = 0
        self._retry_ms = RETRY_FIRST_MS
        self._bt28_partial = False      # the meter refused the full read as too large
        # energy plausibility: last accepted value and time per counter, and a candidate
        # new base after a rejected value (value, time, count, first time)
        self._ev = [None] * 4
        self._et = [0] * 4
        self._cand = [None] * 4
        self.energy_dropped = 0
        self.energy_rebased = 0

    def on_reading(self, fn):
        self.listeners.append(fn)

    def configure(self, bt23_ms=None, bt28_ms=None, fast=None):
        if bt23_ms is not None:
            self.bt23_ms = bt23_ms
        if bt28_ms is not None:
            self.bt28_ms = bt28_ms
        if fast is not None:
            self.fast = fast

    def step(self, now):
        self._now = now
        if self._job is not None:
            return
        if self._todo:
            self._send(rq.full_read(self._todo[0]), 'start')
            return
        if self._retry_at is not None and now - self._retry_at >= 0:
            self._retry_at = None
            self._todo = [t for t in STARTUP if t not in self._got]
            return
        if self._clock_at is not None and now - self._clock_at >= 0:
            self._clock_at = now + CLOCK_MS
            self._send(rq.full_read(rq.BT52), 'start')
            return
        if 'bt21' not in self.tables:
            return                      # table layouts unknown: nothing is decoded for sure
        if self.fast:
            # a BT28 after every BT23, whatever the interval (0: BT23 before every BT28)
            if now - self._next23 >= 0 and not self._last23:
                self._send23(now)
            else:
                self._send28(now)
            return
        due23 = now - self._next23 >= 0
        due28 = now - self._next28 >= 0
        # both due: the one waiting longest goes first, so a slow BT23 never starves BT28
        if due23 and (not due28 or self._next23 - self._next28 < 0):
            self._send23(now)
        elif due28:
            self._send28(now)

    def _send23(self, now):
        self._next23 = max(self._next23, now - self.bt23_ms) + self.bt23_ms
        self._last23 = True
        self._poll('bt23', False)

    def _send28(self, now):
        self._next28 = (now if self.fast else max(self._next28, now - self.bt28_ms)) + self.bt28_ms
        self._last23 = False
        self._poll('bt28', self._bt28_partial)

    def _poll(self, tag, partial):
        # the job of the last poll of this table is sent again while its request (which
        # depends on BT21 and on a partial BT28) stays the same
        bt21 = self.tables.get('bt21')
        p = self._polls.get(tag)
        if p is not None and p[0] is bt21 and p[1] == partial:
            job = p[2].again()
        else:
            if tag == 'bt23':
                m = rq.partial_read(rq.BT23, 0, tables.bt23_offset(bt21) + BT23_COUNT)
            elif partial:
                m = rq.partial_read(rq.BT28, 0, tables.bt28_offset(bt21) + 4 * tables.BT28_VALUES)
            else:
                m = rq.full_read(rq.BT28)
            job = Job(m, PRIO_POLL, self._done, tag=tag)
            self._polls[tag] = (bt21, partial, job)
        self._submit(job)

    def _send(self, message, tag):
        self._submit(Job(message, PRIO_POLL, self._done, tag=tag))

    def _submit(self, job):
        if self.submit(job):
            self._job = job

    @property
    def _got(self):
        return [t for t in STARTUP if self._name(t) in self.tables]

    @staticmethod
    def _name(table):
        return rq.table_name(table).split(' ')[0].lower()

    def _fail(self, text):
        self.errors += 1
        self.last_error = text
        if self.log:
            self.log('poller: ' + text)

    def _done(self, job):
        self._job = None
        table = job.info.table
        if job.error:
            if job.tag == 'start' and self._todo and self._todo[0] == table:
                self._todo.pop(0)
                if self._retry_at is None:
                    self._retry_at = self._now + self._retry_interval()
            if job.tag == 'bt28' and job.response is not None and \
                    job.response.status == STATUS_RSTL and not self._bt28_partial:
                self._bt28_partial = True
                self._fail('BT28 full read refused as too large: reading it in part')
                return
            self._fail('%s: %s' % (rq.table_name(table), job.error))
            return
        data = job.response.data
        try:
            if job.tag == 'bt23':
                self.bt23 = self._energy(tables.bt23(data, self.tables.get('bt21')))
            elif job.tag == 'bt28':
                self._reading(tables.bt28_values(data, self.tables.get('bt21')))
            else:
                self._startup(table, data)
        except ValueError as e:           # TableError and friends
            self._fail(str(e))
        if job.tag == 'start' and self._todo and self._todo[0] == table:
            self._todo.pop(0)
            if not self._todo and self._clock_at is None:
                self._clock_at = self._now + CLOCK_MS

    def _retry_interval(self):
        if 'bt21' in self.tables:
            return RETRY_MS
        t = self._retry_ms
        self._retry_ms = min(RETRY_MS, t * 2)
        return t

    def _energy(self, b23):
        """Only counters that move plausibly are kept: never backwards, never faster than
        MAX_W allows for the time since the last accepted value. A rejected value is
        dropped and counted; a new base is taken only after REBASE_N consistent values over
        REBASE_MS (a replaced or reset meter)."""
        now = self._now
        out = {}
        for k in range(4):
            v = b23.get(ENERGY_KEYS[k])
            if v is None:
                continue
            last = self._ev[k]
            if last is None or _plausible(last, self._et[k], v, now):
                self._ev[k] = v
                self._et[k] = now
                self._cand[k] = None
                out[ENERGY_KEYS[k]] = v
                continue
            self.energy_dropped += 1
            c = self._cand[k]
            if c is not None and _plausible(c[0], c[1], v, now):
                c = (v, now, c[2] + 1, c[3])
            else:
                c = (v, now, 1, now)
            self._cand[k] = c
            if c[2] >= REBASE_N and now - c[3] >= REBASE_MS:
                self.energy_rebased += 1
                self._ev[k] = v
                self._et[k] = now
                self._cand[k] = None
                out[ENERGY_KEYS[k]] = v
                self._fail('%s: new counter base %d (was %d)' % (ENERGY_KEYS[k], v, last))
            elif c[2] == 1:
                self._fail('%s: implausible value %d after %d, not published'
                           % (ENERGY_KEYS[k], v, last))
        return out

    def _startup(self, table, data):
        name = self._name(table)
        dec = tables.decode(table, data, self.tables)   # ET13 needs 'et11' from it
        self.tables[name] = dec
        info = self.info
        if table == rq.BT01:
            info['manufacturer'] = dec['manufacturer']
            info['model'] = dec['model']
            info['fw'] = dec['fw']
            info['hw'] = dec['hw']
            if 'mfg_serial' in dec:
                info['mfg_serial'] = dec['mfg_serial']
        elif table == rq.ET03:
            info['serial'] = dec['serial']
        elif table == rq.BT52:
            info['meter_time'] = dec['epoch']
            info['clock_offset'] = dec['epoch'] - self.wall()

    def _reading(self, values):
        now = self._now
        if self._last_reading_ms is not None:
            self.cycle_ms = now - self._last_reading_ms
        self._last_reading_ms = now
        self.readings += 1
        r = to_reading(values, self.bt23, self.wall(), self.readings)
        self.latest = r
        for fn in self.listeners:
            try:
                fn(r)
            except Exception as e:
                self._fail('reading listener failed: %r' % (e,))


def _plausible(last, t_last, v, now):
    d = v - last
    return d >= 0 and d <= MAX_W * (now - t_last) / 3600000 + SLACK_WH

# The poller: start-up reads, then BT23 (energies) and BT28 (instantaneous values) at their
# intervals or back to back ("fast mode"). Each BT28 answer makes one reading in SI units
# (see mep/reading.py) handed to every listener. Sans-IO: the link's loop calls step(now);
# listeners must be cheap (an async consumer uses link.Subscription, which never blocks).
from mep import requests as rq
from mep import tables
from mep.jobs import Job, PRIO_POLL

STARTUP = (rq.BT52, rq.BT01, rq.BT21, rq.ET03, rq.ET11, rq.ET13, rq.ET50)
BT23_COUNT = 16                  # forward/reverse active and reactive energy
RETRY_MS = 300000                # start-up tables that failed are read again this often
CLOCK_MS = 3600000               # the meter clock is read again this often


def to_reading(b28, b23, t, seq):
    """BT28 (+ BT23) decoded tables -> a reading dict in SI units."""
    v = b28['values']
    r = {'time': t, 'seq': seq,
         'p_in': v[0], 'p_out': v[1], 'q_in': v[2], 'q_out': v[3], 's': v[12],
         'freq': v[11] / 1000, 'p_in_avg': v[47], 'p_out_avg': v[48]}
    for k in range(3):
        ph = str(k + 1)
        r['i_l' + ph] = v[4 + k] / 1000
        r['u_l' + ph] = v[7 + k] / 1000
        r['p_in_l' + ph] = v[26 + k]
        r['p_out_l' + ph] = v[29 + k]
        r['u_avg_l' + ph] = v[44 + k] / 1000
        r['p_in_avg_l' + ph] = v[49 + k]
        r['p_out_avg_l' + ph] = v[52 + k]
    r['pf_l1'] = v[10] / 1000
    r['pf_l2'] = v[13] / 1000
    r['pf_l3'] = v[14] / 1000
    if b23:
        r['e_in'] = b23['e_fwd']
        r['e_out'] = b23['e_rev']
        r['eq_in'] = b23.get('eq_fwd')
        r['eq_out'] = b23.get('eq_rev')
    else:
        r['e_in'] = r['e_out'] = r['eq_in'] = r['eq_out'] = None
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
        self._last_reading_ms = None
        self._job = None
        self._now = 0

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
        if self.fast:
            if self._next23 <= self._next28:
                self._send23(now)
            else:
                self._send28(now)
            return
        if now - self._next23 >= 0:
            self._send23(now)
        elif now - self._next28 >= 0:
            self._send28(now)

    def _send23(self, now):
        self._next23 = (now if self.fast else max(self._next23, now - self.bt23_ms)) + self.bt23_ms
        off = tables.bt23_offset(self.tables.get('bt21'))
        self._send(rq.partial_read(rq.BT23, 0, off + BT23_COUNT), 'bt23')

    def _send28(self, now):
        self._next28 = (now if self.fast else max(self._next28, now - self.bt28_ms)) + self.bt28_ms
        if self.fast:
            self._next23 = self._next28     # BT23 then BT28, again and again
        self._send(rq.full_read(rq.BT28), 'bt28')

    def _send(self, message, tag):
        job = Job(message, PRIO_POLL, self._done, tag=tag)
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
                self._retry_at = self._now + RETRY_MS
            self._fail('%s: %s' % (rq.table_name(table), job.error))
            return
        data = job.response.data
        try:
            if job.tag == 'bt23':
                self.bt23 = tables.bt23(data, self.tables.get('bt21'))
            elif job.tag == 'bt28':
                self._reading(tables.bt28(data, self.tables.get('bt21')))
            else:
                self._startup(table, data)
        except ValueError as e:           # TableError and friends
            self._fail(str(e))
        if job.tag == 'start' and self._todo and self._todo[0] == table:
            self._todo.pop(0)
            if not self._todo and self._clock_at is None:
                self._clock_at = self._now + CLOCK_MS

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

    def _reading(self, b28):
        now = self._now
        if self._last_reading_ms is not None:
            self.cycle_ms = now - self._last_reading_ms
        self._last_reading_ms = now
        self.readings += 1
        r = to_reading(b28, self.bt23, self.wall(), self.readings)
        self.latest = r
        for fn in self.listeners:
            try:
                fn(r)
            except Exception as e:
                self._fail('reading listener failed: %r' % (e,))

# Jobs for the MEP link, the bounded priority queue that holds them and the exchange log.
try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

from array import array

from mep import requests as rq
from mep import frames

PRIO_ALERT = const(0)
PRIO_USER = const(1)
PRIO_POLL = const(2)
PRIO_NAMES = ('alert', 'user', 'poll')


class Job:
    """One request to the meter and, once finished, its outcome.

    `message` is the MSG; a procedure job instead carries (proc, params) and gets its MSG,
    with the current PSEQ, when it is first transmitted. SEQ is assigned at transmission too.
    `done(job)` is called once when the job ends: `job.response` (a frames.Response with
    status 0) on success, else `job.error` (text) and maybe `job.response` (the error frame).
    """

    def __init__(self, message=None, prio=PRIO_POLL, done=None, proc=None, params=b'', tag=None):
        self.prio = prio
        self.done = done
        self.tag = tag
        self.proc = proc
        self.params = params
        self.message = message
        self.frame = None
        self.seq = None
        self.attempts = 0          # transmissions of the current frame
        self.cycles = 0            # power cycles spent on this job
        self.resends = 0           # new frames after 0x0C / 0x04
        self.response = None
        self.error = None
        self.finished = False
        self.cancelled = False
        self.sent_ms = None        # first transmission
        self.tx_end = None         # end of the latest transmission on the wire
        self.first_tx_end = None   # end of the first transmission of the current frame
        if message is not None:
            self.info = rq.parse_message(message)
        elif proc is not None:
            self.info = None
        else:
            raise ValueError('a job needs a message or a procedure')

    def again(self):
        """The same request as a new job (a poll's job, sent again and again, is reused:
        no new object and no parsing per poll). Only once it has ended."""
        self.frame = self.seq = self.response = self.error = None
        self.sent_ms = self.tx_end = self.first_tx_end = None
        self.attempts = self.cycles = self.resends = 0
        self.finished = self.cancelled = False
        return self

    def is_read(self):
        return self.proc is None and self.info.is_read()

    def expect(self):
        return frames.EXPECT_READ if self.is_read() else frames.EXPECT_WRITE

    def describe(self):
        if self.message is not None:
            return rq.parse_message(self.message).describe()
        return 'procedure 0x%04x' % self.proc

    def ok(self):
        return self.finished and self.error is None


class JobQueue:
    """Bounded priority queue: alert > user > poll; FIFO within a priority."""

    def __init__(self, size=8):
        self.size = size
        self.lanes = ([], [], [])
        self.rejected = 0

    def push(self, job, front=False):
        lane = self.lanes[job.prio]
        if not front and len(lane) >= self.size:
            self.rejected += 1
            return False
        if front:
            lane.insert(0, job)
        else:
            lane.append(job)
        return True

    def pop(self):
        for lane in self.lanes:
            while lane:
                job = lane.pop(0)
                if not job.cancelled:
                    return job
        return None

    def __len__(self):
        return len(self.lanes[0]) + len(self.lanes[1]) + len(self.lanes[2])

    def drop(self, prio):
        """Remove every queued job of one priority; returns them."""
        lane = self.lanes[prio]
        out = lane[:]
        del lane[:]
        return out

    def view(self):
        out = []
        for lane in self.lanes:
            for job in lane:
                if not job.cancelled:
                    out.append({'prio': PRIO_NAMES[job.prio], 'desc': job.describe()})
        return out


LOG_ROOM = const(320)   # frame bytes an entry keeps in place: a poll's request and a BT28 answer
_NONE_T = const(1)      # flags: no wall time, no SEQ, no status
_NONE_SEQ = const(2)
_NONE_ST = const(4)
_NO_FRAME = const(0xFFFF)


class ExchangeLog:
    """The last `size` exchanges, oldest first when listed, kept in storage allocated at
    start: numbers in arrays, the request and answer frames copied into one slot of
    LOG_ROOM bytes per entry (a pair that does not fit, a long user read, is kept as it
    is). So nothing of an exchange stays in the heap: an answer kept for 16 exchanges would
    otherwise sit among the readings' short-lived objects and split the heap's free space
    (a 112 KB heap then failed 1.7 KB allocations with 36 KB free). Entry number k (from 1)
    is in slot (k - 1) % size. An entry becomes a dict, its frames bytes, only when listed;
    rendering (hex, decoding) is left to whoever shows it."""

    def __init__(self, size=16):
        self.size = size
        self.count = 0
        self._t = array('I', bytes(4 * size))
        self._seq = array('I', bytes(4 * size))
        self._ms = array('I', bytes(4 * size))
        self._st = bytearray(size)
        self._flags = bytearray(size)
        self._nq = array('H', bytes(2 * size))
        self._nr = array('H', bytes(2 * size))
        self._obj = [None] * (4 * size)     # kind, desc, text, (req, resp) that did not fit
        self._buf = bytearray(size * LOG_ROOM)

    def add(self, t, kind, desc, seq, req, resp, status, text, ms):
        i = self.count % self.size
        self.count += 1
        f = 0
        if t is None:
            f |= _NONE_T
        else:
            self._t[i] = int(t)
        if seq is None:
            f |= _NONE_SEQ
        else:
            self._seq[i] = seq
        if status is None:
            f |= _NONE_ST
        else:
            self._st[i] = status
        self._flags[i] = f
        self._ms[i] = max(0, int(ms))
        o = self._obj
        k = 4 * i
        o[k] = kind
        o[k + 1] = desc
        o[k + 2] = text
        nq = 0 if req is None else len(req)
        nr = 0 if resp is None else len(resp)
        if nq + nr <= LOG_ROOM:
            o[k + 3] = None
            b = self._buf
            at = i * LOG_ROOM
            if nq:
                b[at:at + nq] = req
            if nr:
                b[at + nq:at + nq + nr] = resp
            self._nq[i] = _NO_FRAME if req is None else nq
            self._nr[i] = _NO_FRAME if resp is None else nr
        else:
            o[k + 3] = (req, resp)

    def _entry(self, num):
        i = (num - 1) % self.size
        f = self._flags[i]
        k = 4 * i
        o = self._obj
        kept = o[k + 3]
        if kept is not None:
            req, resp = kept
        else:
            at = i * LOG_ROOM
            nq, nr = self._nq[i], self._nr[i]
            b = self._buf
            req = None if nq == _NO_FRAME else bytes(b[at:at + nq])
            at += 0 if nq == _NO_FRAME else nq
            resp = None if nr == _NO_FRAME else bytes(b[at:at + nr])
        return {'n': num, 't': None if f & _NONE_T else self._t[i], 'kind': o[k],
                'desc': o[k + 1], 'seq': None if f & _NONE_SEQ else self._seq[i],
                'req': req, 'resp': resp, 'status': None if f & _NONE_ST else self._st[i],
                'text': o[k + 2], 'ms': self._ms[i]}

    @property
    def items(self):
        return self.since(0)

    def since(self, n):
        """The entries still kept whose number is over n, oldest first."""
        first = max(n + 1, self.count - self.size + 1, 1)
        return [self._entry(k) for k in range(first, self.count + 1)]

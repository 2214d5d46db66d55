# Jobs for the MEP link, the bounded priority queue that holds them and the exchange log.
try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

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


_LOG_KEYS = ('n', 't', 'kind', 'desc', 'seq', 'req', 'resp', 'status', 'text', 'ms')


class ExchangeLog:
    """The last `size` exchanges, oldest first when listed. An entry is kept as a tuple
    (no dict per exchange) holding raw bytes; it becomes a dict (_LOG_KEYS) only when
    listed, and rendering (hex, decoding) is left to whoever shows it."""

    def __init__(self, size=16):
        self.size = size
        self._items = []
        self.count = 0

    def add(self, t, kind, desc, seq, req, resp, status, text, ms):
        self.count += 1
        items = self._items
        if len(items) >= self.size:
            items.pop(0)
        items.append((self.count, t, kind, desc, seq, req, resp, status, text, ms))

    @property
    def items(self):
        return [dict(zip(_LOG_KEYS, e)) for e in self._items]

    def since(self, n):
        return [dict(zip(_LOG_KEYS, e)) for e in self._items if e[0] > n]

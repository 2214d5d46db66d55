# Field diagnostics of the MEP link: measured turnaround, pauses inside frames, a histogram
# of the status codes the meter sent and a compact trace of the last exchanges. Everything
# is allocated once at start (fixed-size arrays), so recording never allocates.
from array import array
from struct import pack_into

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

from mep.frames import MAX_STATUS

SAMPLES = const(64)          # turnaround samples kept (the newest)
MIN_SAMPLES = const(3)       # before this many, the turnaround counts as unknown
REFRESH = const(8)           # p95 computed again after this many new samples
TRACE = const(64)            # exchanges kept in the trace
_REQ = const(26)             # request bytes kept per exchange (a procedure call is ~30)
_RESP = const(44)            # response bytes kept: the first 36 and the 8-byte trailer
_HEAD = const(12)            # t(4) ms(2) status(1) kind(1) req_len(2) resp_len(2)
_REC = const(_HEAD + _REQ + _RESP)
_NONE = const(0xFF)

KINDS = ('alert', 'user', 'poll', 'drained', 'dropped', 'unsolicited', 'failed')
K_DRAINED = const(3)
K_DROPPED = const(4)
K_UNSOLICITED = const(5)
K_FAILED = const(6)


class Diag:
    def __init__(self):
        self.turn = array('H', [0] * SAMPLES)
        self.n_turn = 0              # samples ever taken
        self.max_turn = 0
        self._at = -1                # n_turn the cached p95 was computed at
        self._p95 = None
        self.max_gap = 0             # longest pause seen inside a frame
        self.status = array('H', [0] * (MAX_STATUS + 2))    # last slot: unknown
        self.trace = bytearray(TRACE * _REC)
        self.n_trace = 0

    # --- recording -------------------------------------------------------------------------

    def turnaround(self, ms):
        ms = min(max(0, int(ms)), 0xFFFF)
        self.turn[self.n_turn % SAMPLES] = ms
        self.n_turn += 1
        if ms > self.max_turn:
            self.max_turn = ms

    def gap(self, ms):
        if ms > self.max_gap:
            self.max_gap = ms

    def got_status(self, st):
        i = st if 0 <= st <= MAX_STATUS else MAX_STATUS + 1
        if self.status[i] < 0xFFFF:
            self.status[i] += 1

    def record(self, t, ms, kind, req, resp):
        """One exchange: t a time in ms, ms its duration, kind an index into KINDS,
        req/resp the raw frames (either may be None)."""
        o = (self.n_trace % TRACE) * _REC
        self.n_trace += 1
        b = self.trace
        nq = 0 if req is None else len(req)
        nr = 0 if resp is None else len(resp)
        pack_into('<IHBBHH', b, o, t & 0xFFFFFFFF, min(max(0, int(ms)), 0xFFFF),
                  resp[2] if nr > 2 else _NONE, kind, nq, nr)
        if nq:
            _put(b, o + _HEAD, req, nq, _REQ)
        if nr:
            _put(b, o + _HEAD + _REQ, resp, nr, _RESP)

    # --- reading ---------------------------------------------------------------------------

    def percentile(self, p, s=None):
        """The p-th percentile of the kept turnarounds (None while fewer than MIN_SAMPLES);
        `s`: the samples already sorted."""
        n = min(self.n_turn, SAMPLES)
        if n < MIN_SAMPLES:
            return None
        if s is None:
            s = sorted(self.turn[:n])
        return s[min(n - 1, (n * p) // 100)]

    def p95(self):
        """percentile(95), kept up to date within REFRESH samples: the link asks before
        every transmission, the samples are sorted again only after REFRESH new ones (while
        fewer than SAMPLES, after every one)."""
        n = self.n_turn
        if n != self._at and (n - self._at >= REFRESH or n < SAMPLES):
            self._at = n
            self._p95 = self.percentile(95)
        return self._p95

    def summary(self):
        hist = {}
        st = self.status
        for i in range(MAX_STATUS + 1):
            if st[i]:
                hist['%02x' % i] = st[i]
        if st[MAX_STATUS + 1]:
            hist['other'] = st[MAX_STATUS + 1]
        s = sorted(self.turn[:min(self.n_turn, SAMPLES)])
        return {'turnaround': {'p50': self.percentile(50, s), 'p95': self.percentile(95, s),
                               'max': self.max_turn if self.n_turn else None,
                               'samples': self.n_turn},
                'max_gap_ms': self.max_gap, 'status_codes': hist}

    def exchanges(self):
        """The trace, oldest first, as dicts with hex strings. A frame longer than what is
        kept shows its first bytes, '..' and its last 8 (the trailer); *_len is its length."""
        out = []
        n = min(self.n_trace, TRACE)
        b = self.trace
        for k in range(self.n_trace - n, self.n_trace):
            o = (k % TRACE) * _REC
            st = b[o + 6]
            out.append({
                't': b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24),
                'ms': b[o + 4] | (b[o + 5] << 8),
                'kind': KINDS[b[o + 7]] if b[o + 7] < len(KINDS) else '?',
                'status': None if st == _NONE else st,
                'req_len': b[o + 8] | (b[o + 9] << 8),
                'req': _hex(b, o + 8, o + _HEAD, _REQ),
                'resp_len': b[o + 10] | (b[o + 11] << 8),
                'resp': _hex(b, o + 10, o + _HEAD + _REQ, _RESP),
            })
        return out


def _put(b, at, data, n, room):
    """What fits of data (n bytes) at b[at:at+room]: all of it, or its first bytes and its
    last 8 (the trailer)."""
    if n <= room:
        b[at:at + n] = data
    else:
        head = room - 8
        b[at:at + head] = data[:head]
        b[at + head:at + room] = data[n - 8:]


def _hex(b, lo, at, room):
    n = b[lo] | (b[lo + 1] << 8)
    if n == 0:
        return None
    if n <= room:
        return _hx(b[at:at + n])
    head = room - 8
    return _hx(b[at:at + head]) + ' .. ' + _hx(b[at + head:at + room])


def _hx(data):
    return ' '.join(['%02x' % c for c in data])

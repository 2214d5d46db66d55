# The MEP link state machine, free of I/O ("sans-IO"). The asyncio driver in drivers/link.py
# feeds it received bytes and the time, and carries out what it asks for: write a frame,
# switch ENABLE and the RS-232 driver supply. Tests drive it in virtual time.
#
# Rules (shared protocol reference, Part B): one request outstanding; every response is
# matched to the request in flight before anything is decoded (shape, COUNT, the SEQ of a
# 0x0C), a response that does not fit is counted and dropped. The first resend comes 500 ms
# after the last request byte while the meter's turnaround is unknown, then the wait follows
# the measured turnaround (3x its p95, 500 ms to 3 s). After a resend the answer to the
# first transmission is accepted and the duplicates that follow are drained. Pauses inside a
# frame up to 500 ms are normal. ENABLE and the driver supply are power-cycled only after
# 10 s of total silence, with back-off, never a reboot. SEQ is assigned at first
# transmission; 0x0C adopts the meter's expected SEQ (a procedure keeps its PSEQ), 0x04 on a
# BT07 write moves to the next PSEQ; busy-type codes are retried after a pause; one 0x0B on
# a key that has worked is retried, persistent 0x0B backs off ("check the MBK"). Alerts
# preempt polls and their chain always ends.
from mep import frames
from mep import requests as rq
from mep.alerts import AlertChain
from mep.diag import Diag, K_DRAINED, K_DROPPED, K_UNSOLICITED
from mep.jobs import JobQueue, ExchangeLog, PRIO_ALERT, PRIO_POLL, PRIO_NAMES

# Engine states
POWER_UP = 'power-up'
IDLE = 'idle'
WAIT_FIRST = 'wait-first'
WAIT_REST = 'wait-rest'
DRAIN = 'drain'                 # an answer came after a resend: its duplicates are drained
POWER_OFF = 'power-off'

AUTH_ERROR = 'authentication failed: check the MBK'
# Codes after which the same request is sent again after a pause (busy, not ready, locked,
# renegotiate, service sequence state, network timeout / not reachable).
RETRY_CODES = (0x06, 0x07, 0x08, 0x09, 0x0A, 0x0D, 0x0E)
RESP_EXTRA = frames.MAX_FRAME - frames.MAX_TABLE    # a read answer's bytes besides the
                                                    # table data (LEN STATUS COUNT TRAILER)
BT28_MIN = 60                   # BT28 answers shorter than this (15 values) are not BT28


class Settings:
    byte_ms = 1.0416667       # 9600 8N1: 10 bits a byte
    first_timeout_ms = 500    # last request byte -> first response bytes, turnaround unknown
    timeout_max_ms = 3000     # the longest wait for the first bytes
    turnaround_factor = 3     # first-bytes wait = this x p95 of the measured turnaround
    char_timeout_ms = 500     # a pause this long inside a frame ends it (C12.18)
    attempts = 3              # transmissions of one frame before the job fails
    silence_ms = 10000        # total silence before ENABLE/driver are power-cycled
    silence_max_ms = 300000   # ... doubling after each cycle without an answer, up to this
    off_ms = 1000             # ENABLE/driver off during a power cycle
    settle_ms = 500           # driver on -> ENABLE on -> first frame, each
    backoff_ms = 2000         # first back-off after a job failed for silence
    backoff_max_ms = 60000
    auth_tolerance = 3        # consecutive 0x0B (with a key that has worked) before giving up
    auth_backoff_ms = 30000   # first back-off after persistent 0x0B
    auth_backoff_max_ms = 900000
    retry_ms = 1000           # pause before a request refused as busy is sent again
    max_resends = 5           # new frames for one job (0x0C, 0x04, 0x0B, busy)
    idle_ms = 50              # longest the driver waits when nothing is due
    gap_ms = 100              # a lone 00 00 followed by this much quiet is an alert
    poll_ms = 4               # how often the driver looks at the port inside a frame,
    poll_wait_ms = 16         # while an answer is due,
    poll_idle_ms = 100        # and while nothing is (an alert's 00 00 can come any time;
                              # it is decided after gap_ms of quiet anyway),
    poll_nokey_ms = 250       # or without a key (nothing can be answered)


class Engine:
    def __init__(self, key=None, settings=None, wall=None, queue_size=8, log_size=16):
        self.s = settings or Settings()
        self.key = key
        self.wall = wall
        self.queue = JobQueue(queue_size)
        self.log = ExchangeLog(log_size)
        self.diag = Diag()
        self.decoder = frames.Decoder()
        self.alerts = AlertChain(self.submit)
        self.on_frame = None        # optional hook(direction, bytes): 'tx'/'rx' raw frames
        self.seq = 0
        self.pseq = rq.PSEQ_MIN
        self.job = None
        self.state = POWER_UP
        self.phase = 0              # step inside POWER_UP / POWER_OFF
        self.deadline = None
        self.hold_until = None      # no transmission before this time (back-off)
        self.hold_auth = False      # the hold is an authentication back-off
        self.backoff = 0
        self.auth_backoff = 0
        self.auth_run = 0           # consecutive 0x0B answers
        self.ever_ok = False        # a request succeeded with this key
        self.link = 'starting'      # what the user sees: ok, starting, no key, no answer, ...
        self.last_error = None
        self.sizes = {}             # table -> data bytes of its full read, once seen twice
        self._size_seen = {}
        self._actions = []
        self._started = False
        self._last_rx = 0
        self._rx_start = 0          # when the bytes now in the decoder began
        self._rx_n = 0              # bytes received since then, after the first one
        self._wake = None           # when the driver's sleep through an answer ends
        self._woke = False          # the chunk being decoded is the look after that sleep
        self._turn_est = None       # turnaround the next sleep assumes (ms)
        self._up_since = 0          # end of the last power-up
        self._silence = self.s.silence_ms
        self._tx_deadline = None
        self._drain_left = 0
        if key is None:
            self.link = 'no key'
        self.c = {'tx': 0, 'rx': 0, 'retransmits': 0, 'timeouts': 0, 'resyncs': 0,
                  'seq_errors': 0, 'pseq_errors': 0, 'auth_failures': 0, 'errors': 0,
                  'alerts': 0, 'alerts_handled': 0, 'alerts_failed': 0, 'power_cycles': 0,
                  'unexpected': 0, 'jobs_failed': 0, 'callback_errors': 0, 'echoes': 0,
                  'late': 0, 'drained': 0, 'mismatched': 0, 'busy_retries': 0,
                  'auth_retries': 0}

    # --- public API -------------------------------------------------------------------

    def submit(self, job):
        """Queue a job; False when its priority lane is full."""
        if self.key is None and job.prio == PRIO_POLL:
            return False
        return self.queue.push(job)

    def set_key(self, key):
        self.key = key
        self.auth_backoff = 0
        self.auth_run = 0
        self.ever_ok = False
        self.hold_until = None
        self.hold_auth = False
        if key is None:
            self.link = 'no key'
        elif self.link in ('no key', 'auth failed'):
            self.link = 'starting'

    def busy(self):
        return self.job is not None

    def on_bytes(self, data, now):
        if not data:
            return
        dec = self.decoder
        if dec.pending():
            self._rx_n += len(data)
        else:
            # the first byte came the wire time of the others earlier than they are seen
            # (the driver may look late, e.g. after sleeping through the expected answer)
            self._rx_n = len(data) - 1  # bytes after the first one (their wire time counts)
            self._rx_start = now - int(self._rx_n * self.s.byte_ms)
            # the look right after sleeping through the expected answer (expect_ms), not a
            # later poll: what it finds complete came some time before (until decoded)
            w = self._wake
            self._woke = w is not None and now - w < self.s.poll_wait_ms
            if self.state == WAIT_FIRST and self.job:
                f = self.job.frame
                if len(data) >= 3 and data[:3] == f[:3]:
                    self.c['echoes'] += 1
                    self._error('the request came back unchanged: TX looped to RX?')
        self._last_rx = now
        self._silence = self.s.silence_ms
        before = dec.resyncs
        waiting = self.state != IDLE
        for ev in dec.feed(data):
            self._event(ev, now)
        self._woke = False
        self.c['resyncs'] += dec.resyncs - before
        if self._rx_n and waiting and not dec.pending():
            # the frame took longer than its bytes' wire time: the pauses inside it
            self.diag.gap(now - self._rx_start - int(self._rx_n * self.s.byte_ms))
            self._rx_n = 0
        if dec.pending():               # inside a frame: wait while bytes keep coming
            if self.state == WAIT_FIRST:
                self.state = WAIT_REST
            if self.state == WAIT_REST:
                self.deadline = now + self.s.char_timeout_ms
            elif self.state == DRAIN:
                self.deadline = max(self.deadline, now + self.s.char_timeout_ms)

    def step(self, now):
        """Advance timers; returns the actions to carry out: ('write', frame),
        ('enable', bool), ('driver', bool)."""
        if not self._started:
            self._started = True
            self._power_up(now)
        if self.alerts.check(now):
            self._alert_counts()
        if self.decoder.pending() and now - self._last_rx >= self._quiet_limit():
            for ev in self.decoder.idle():
                self._event(ev, now)
        st = self.state
        if st == POWER_UP or st == POWER_OFF:
            if now - self.deadline >= 0:
                self._power_step(now)
        elif st == WAIT_FIRST or st == WAIT_REST:
            if now - self.deadline >= 0:
                self._timeout(now)
        elif st == DRAIN:
            if now - self.deadline >= 0 and not self.decoder.pending():
                self.state = IDLE
                self.deadline = None
        if self.state == IDLE:
            self._next(now)
        a = self._actions
        self._actions = []
        return a

    def wait_ms(self, now):
        """How long the driver may wait for bytes before calling step() again."""
        t = self.s.idle_ms
        if self.deadline is not None and self.state != IDLE:
            t = min(t, max(0, self.deadline - now))
        elif self.hold_until is not None:
            t = min(t, max(0, self.hold_until - now))
        if self.alerts.active():
            t = min(t, max(0, self.alerts.deadline - now))
        if self.decoder.pending():
            t = min(t, max(0, self._last_rx + self._quiet_limit() - now))
        return t

    def poll_ms(self):
        """How often the driver should look at the port now: often while a frame (or an
        alert's 00 00) is coming in, seldom otherwise. Each look costs CPU; the port's
        buffer keeps the bytes, 16 ms is little against a turnaround of 500 ms and 100 ms
        little against an alert chain of several exchanges."""
        if self.decoder.pending():
            return self.s.poll_ms
        if self.state != IDLE:
            return self.s.poll_wait_ms
        # without a key nothing can be sent, an alert not answered: the port is only drained
        return self.s.poll_idle_ms if self.key is not None else self.s.poll_nokey_ms

    def expect_ms(self, now):
        """How long the driver may sleep before looking for the answer in flight: until the
        whole of it is due, from the turnaround measured last and the answer's size when
        both are known (a full read of a table whose size was learnt, a partial read). One
        look then usually finds the complete answer. 0 when unknown or already arriving."""
        self._wake = None
        job = self.job
        if self.state != WAIT_FIRST or job is None or self.decoder.pending() or \
                job.attempts != 1 or job.info is None:
            return 0
        info = job.info
        if info.service == rq.PARTIAL_READ:
            n = info.count
        elif info.service == rq.FULL_READ and job.proc is None:
            n = self.sizes.get(info.table)
        else:
            return 0
        turn = self._turn_est
        if n is None or turn is None:
            return 0
        t = min(job.tx_end + turn + int((n + RESP_EXTRA) * self.s.byte_ms) - now,
                self.deadline - now)
        if t <= 0:
            return 0
        self._wake = now + t
        return t

    def _turnaround(self, turn):
        # A frame complete at the look after sleeping through it came some time before:
        # the measured turnaround is only an upper bound (recorded, it would make the next
        # sleep longer still). The estimate is then moved 1 ms earlier, so a look now and
        # then sees the answer arriving and measures it exactly.
        if self._woke:
            if self._turn_est is not None:     # may go below 0: a port whose request
                # bytes reach the meter faster than the wire time (a simulator over TCP)
                self._turn_est = max(-self.s.first_timeout_ms, self._turn_est - 1)
        else:
            self._turn_est = turn + 3           # a little late beats a second look
            self.diag.turnaround(turn)

    def rest_ms(self):
        """The wire time of the rest of the frame being received (its LEN says how much is
        missing): the driver may sleep that long and let the bytes collect in the port's
        buffer instead of waking for every few bytes. 0 when nothing is known to be coming."""
        m = self.decoder.missing()
        if m < 4:
            return 0
        return min(int(m * self.s.byte_ms), self.s.char_timeout_ms >> 1)

    def timeout_ms(self, attempt=1):
        """The wait for the first response bytes of transmission number `attempt`."""
        s = self.s
        p95 = self.diag.p95()
        if p95 is None:
            t = s.first_timeout_ms << (attempt - 1)
        else:
            t = max(s.first_timeout_ms, s.turnaround_factor * p95)
        return min(t, s.timeout_max_ms)

    def status(self):
        d = self.diag.summary()
        d['timeout_ms'] = self.timeout_ms()
        return {
            'link': self.link, 'state': self.state, 'last_error': self.last_error,
            'seq': self.seq, 'pseq': self.pseq, 'counters': dict(self.c),
            'queue': self.queue.view(), 'queue_rejected': self.queue.rejected,
            'current': self.job.describe() if self.job else None,
            'alert': self.alerts.status(), 'diag': d,
        }

    # --- internals ----------------------------------------------------------------------

    def _error(self, text):
        self.last_error = text

    def _quiet_limit(self):
        # A lone 00 00 is decided quickly (alert or the start of a frame); anything else in
        # the decoder is part of a frame and may pause up to the inter-character timeout.
        d = self.decoder
        if d.pending() == 2 and d.buf[0] == 0 and d.buf[1] == 0:
            return self.s.gap_ms
        return self.s.char_timeout_ms

    def _power_up(self, now):
        self.state = POWER_UP
        self.phase = 0
        self._actions.append(('enable', False))
        self._actions.append(('driver', True))
        self.deadline = now + self.s.settle_ms

    def _power_step(self, now):
        if self.state == POWER_OFF:
            self._actions.append(('driver', True))
            self.state = POWER_UP
            self.phase = 0
            self.deadline = now + self.s.settle_ms
        elif self.phase == 0:
            self._actions.append(('enable', True))
            self.phase = 1
            self.deadline = now + self.s.settle_ms
        else:
            self.decoder.reset()
            self.deadline = None
            self._up_since = now
            if self.job:                # resume the job that caused the power cycle
                self._transmit(now)
            else:
                self.state = IDLE

    def _next(self, now):
        if self.hold_until is not None:
            if now - self.hold_until < 0:
                # an alert chain still goes out during an authentication back-off when the
                # key has worked before (a passing 0x0B must not leave alerts unanswered)
                if not (self.hold_auth and self.ever_ok and self.queue.lanes[PRIO_ALERT]):
                    return
            else:
                self.hold_until = None
                self.hold_auth = False
        job = self.queue.pop()
        if job is None:
            return
        if self.key is None:
            self._fail(job, 'no MBK configured', now)
            return
        self.job = job
        self._transmit(now)

    def _transmit(self, now):
        job = self.job
        if job.frame is None:
            if job.proc is not None and job.message is None:
                job.message = rq.procedure(job.proc, self.pseq, job.params)
                job.info = rq.parse_message(job.message)
                self.pseq = rq.next_pseq(self.pseq)
            job.seq = self.seq
            job.frame = frames.encode_request(job.message, self.seq, self.key)
            job.attempts = 0
        else:
            self.c['retransmits'] += 1
        job.attempts += 1
        if job.sent_ms is None:
            job.sent_ms = now
        job.tx_end = now + int(len(job.frame) * self.s.byte_ms)
        if job.attempts == 1:
            job.first_tx_end = job.tx_end
        self.c['tx'] += 1
        self._actions.append(('write', job.frame))
        self._hook('tx', job.frame)
        self.state = WAIT_FIRST
        self.deadline = self._tx_deadline = job.tx_end + self.timeout_ms(job.attempts)

    def _hook(self, direction, data):
        if self.on_frame is not None:
            try:
                self.on_frame(direction, data)
            except Exception:
                self.c['callback_errors'] += 1

    def _timeout(self, now):
        job = self.job
        for ev in self.decoder.idle():      # a partial frame is garbage now
            self._event(ev, now)
        if self.job is not job or self.state == IDLE or self.state == DRAIN:
            return                          # idle() completed the job after all
        self.c['timeouts'] += 1
        self._error('no answer from the meter (%s)' % job.describe())
        if now - max(self._last_rx, self._up_since) >= self._silence:
            self._power_cycle(now)
            return
        if job.attempts < self.s.attempts:
            self._transmit(now)
            return
        self.link = 'no answer'
        self.backoff = min(self.s.backoff_max_ms, self.backoff * 2 or self.s.backoff_ms)
        self.hold_until = now + self.backoff
        self.hold_auth = False
        self._fail(job, 'no answer from the meter', now)

    def _power_cycle(self, now):
        self.c['power_cycles'] += 1
        self._actions.append(('enable', False))
        self._actions.append(('driver', False))
        self.state = POWER_OFF
        self.deadline = now + self.s.off_ms
        self.job.attempts = 0
        self._silence = min(self.s.silence_max_ms, self._silence * 2)

    def _event(self, ev, now):
        kind, val = ev
        if kind == frames.EV_ALERT:
            self.c['alerts'] += 1
            self.alerts.alert(now)
            self._alert_counts()
            return
        if kind == frames.EV_ERROR:
            self._error('framing error: %s' % val)
            return
        self.c['rx'] += 1
        self._hook('rx', val.raw)
        self.diag.got_status(val.status)
        job = self.job
        if self.state == DRAIN:
            self._drop(val, now, K_DRAINED, 'duplicate answer drained')
            self._drain_left -= 1
            if self._drain_left <= 0 and not self.decoder.pending():
                self.state = IDLE
                self.deadline = None
            return
        if job is None or self.state not in (WAIT_FIRST, WAIT_REST):
            self.c['unexpected'] += 1
            self._error('answer without a request (status 0x%02x)' % val.status)
            self._drop(val, now, K_UNSOLICITED, 'answer without a request')
            return
        why = self._mismatch(job, val)
        if why is not None:
            if why == 'stale':
                self._drop(val, now, K_DRAINED, '0x0C answering an earlier duplicate')
            else:
                self.c['mismatched'] += 1
                self._error('dropped an answer that does not fit %s: %s'
                            % (job.describe(), why))
                self._drop(val, now, K_DROPPED, 'dropped: ' + why)
            self.state = WAIT_FIRST
            self.deadline = max(self._tx_deadline, now + self.s.char_timeout_ms)
            return
        self._response(val, now)

    def _mismatch(self, job, resp):
        """Why `resp` cannot answer `job` (None when it can). 'stale': a 0x0C whose expected
        SEQ is the job's own, i.e. the refusal of an earlier request's duplicate."""
        st = resp.status
        if st == frames.STATUS_SEQ:
            return 'stale' if resp.expected_seq() == job.seq else None
        if st != frames.STATUS_OK:
            return None
        info = job.info
        if job.proc is not None or not info.is_read():
            return 'a read answer to a write' if resp.count is not None else None
        if resp.count is None:
            return 'a write acknowledgement to a read'
        n = resp.count
        if info.service == rq.PARTIAL_READ:
            if n != info.count:
                return 'COUNT %d, %d asked for' % (n, info.count)
            return None
        if info.max_len is not None and n > info.max_len:
            return 'COUNT %d over the %d asked for' % (n, info.max_len)
        known = self.sizes.get(info.table)
        if known is not None and n != known:
            return 'COUNT %d, the table has %d' % (n, known)
        if info.table == rq.BT28 and n < BT28_MIN:
            return 'COUNT %d too short for BT28' % n
        return None

    def _learn_size(self, job, resp):
        # The size of a fully read table, once two answers to single transmissions agree.
        info = job.info
        if job.proc is not None or info.service != rq.FULL_READ or job.attempts != 1:
            return
        t = info.table
        if t in self.sizes:
            return
        if self._size_seen.get(t) == resp.count:
            self.sizes[t] = resp.count
        else:
            self._size_seen[t] = resp.count

    def _drop(self, resp, now, kind, text):
        if kind == K_DRAINED:
            self.c['drained'] += 1
        self.diag.record(now, 0, kind, None, resp.raw)
        self.log.add(self._wall(), '-', text, None, None, resp.raw, resp.status, text, 0)

    def _alert_counts(self):
        a = self.alerts
        self.c['alerts_handled'] = a.handled
        self.c['alerts_failed'] = a.failed

    def _wall(self):
        return self.wall() if self.wall else None

    def _log(self, job, resp, text, now):
        ms = now - job.sent_ms if job.sent_ms is not None else 0
        raw = resp.raw if resp else None
        self.diag.record(now, ms, job.prio, job.frame, raw)
        # 'desc': the MSG, described when the log is shown (not for every exchange)
        self.log.add(self._wall(), PRIO_NAMES[job.prio], job.message, job.seq, job.frame, raw,
                     resp.status if resp else None, text, ms)

    def _response(self, resp, now):
        job = self.job
        st = resp.status
        turn = self._rx_start - job.first_tx_end     # from the first transmission: an
        self._turnaround(turn)                        # over-estimate after a resend
        self.job = None
        self.state = IDLE
        self.deadline = None
        if job.attempts > 1:
            # answered after a resend: the later transmissions may be answered too, at most
            # `turn` after they were sent; their answers are drained, never decoded
            self.c['late'] += 1
            self.state = DRAIN
            self._drain_left = job.attempts - 1
            self.deadline = max(now, job.tx_end + max(turn, self.timeout_ms())) + \
                int(len(resp.raw) * self.s.byte_ms) + self.s.char_timeout_ms
        self._log(job, resp, frames.status_text(st), now)
        if st == frames.STATUS_OK:
            self.seq = (job.seq + 1) & 0xFFFFFFFF
            self.link = 'ok'
            self.backoff = 0
            self.auth_backoff = 0
            self.auth_run = 0
            self.ever_ok = True
            self.last_error = None
            self._learn_size(job, resp)
            self._finish(job, resp, None, now)
            return
        if st == frames.STATUS_SEQ:
            self.c['seq_errors'] += 1
            self.seq = resp.expected_seq()
            self._resend(job, 'invalid sequence number', resp, now)   # PSEQ kept
            return
        if st == frames.STATUS_AUTH:
            self.c['auth_failures'] += 1
            self.seq = job.seq              # a refused request does not use up its SEQ
            self.auth_run += 1
            if self.ever_ok and self.auth_run < self.s.auth_tolerance:
                self.c['auth_retries'] += 1
                self._resend(job, 'authentication failed', resp, now)
                return
            self.link = 'auth failed'
            self._error(AUTH_ERROR)
            self.auth_backoff = min(self.s.auth_backoff_max_ms,
                                    self.auth_backoff * 2 or self.s.auth_backoff_ms)
            self.hold_until = now + self.auth_backoff
            self.hold_auth = True
            self._finish(job, resp, AUTH_ERROR, now)
            return
        self.seq = (job.seq + 1) & 0xFFFFFFFF
        if st == frames.STATUS_ONP and job.proc is not None:
            self.c['pseq_errors'] += 1
            job.message = None              # the next PSEQ at the next transmission
            self._resend(job, 'procedure sequence number refused', resp, now)
            return
        if st in RETRY_CODES:
            self.c['busy_retries'] += 1
            self.hold_until = now + self.s.retry_ms
            self.hold_auth = False
            self._resend(job, frames.status_text(st), resp, now)
            return
        self.c['errors'] += 1
        text = 'meter answered 0x%02x: %s' % (st, frames.status_text(st))
        if st > frames.MAX_STATUS:
            text += ' (frame %s)' % ' '.join(['%02x' % b for b in resp.raw])
        self._error('%s (%s)' % (text, job.describe()))
        self._finish(job, resp, text, now)

    def _resend(self, job, why, resp, now):
        job.resends += 1
        if job.resends > self.s.max_resends:
            self._error('%s %d times in a row (%s)' % (why, job.resends, job.describe()))
            self._finish(job, resp, why, now)
            return
        job.frame = None                    # new SEQ at the next transmission
        self.queue.push(job, front=True)

    def _fail(self, job, why, now):
        self._log(job, None, why, now)
        self._finish(job, None, why, now)

    def _finish(self, job, resp, error, now):
        job.response = resp
        job.error = error
        job.finished = True
        job.finished_ms = now
        if error is not None:
            self.c['jobs_failed'] += 1
        self.job = None if self.job is job else self.job
        if self.state in (WAIT_FIRST, WAIT_REST) and self.job is None:
            self.state = IDLE
            self.deadline = None
        if job.done is not None:
            try:
                job.done(job)
            except Exception:
                self.c['callback_errors'] += 1
        self._alert_counts()

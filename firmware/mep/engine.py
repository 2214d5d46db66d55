# The MEP link state machine, free of I/O ("sans-IO"). The asyncio driver in mep/link.py
# feeds it received bytes and the time, and carries out what it asks for: write a frame,
# switch ENABLE and the RS-232 driver supply. Tests drive it in virtual time.
#
# Rules (shared protocol reference, Part B): one request outstanding; 500 ms from the last
# request byte to the first response bytes, then the identical frame is sent again; after
# repeated silence ENABLE and the driver supply are power-cycled, with growing back-off and
# never a reboot; SEQ is assigned at first transmission; 0x0C adopts the meter's expected SEQ
# and sends again; 0x04 on a BT07 write moves to the next PSEQ; 0x0B backs off ("check the
# MBK"); alerts preempt polls and their chain always ends.
from mep import frames
from mep import requests as rq
from mep.alerts import AlertChain
from mep.jobs import JobQueue, ExchangeLog, PRIO_POLL, PRIO_NAMES

# Engine states
POWER_UP = 'power-up'
IDLE = 'idle'
WAIT_FIRST = 'wait-first'
WAIT_REST = 'wait-rest'
POWER_OFF = 'power-off'

AUTH_ERROR = 'authentication failed: check the MBK'


class Settings:
    byte_ms = 1.0416667       # 9600 8N1: 10 bits a byte
    first_timeout_ms = 500    # last request byte -> first response bytes
    rest_slack_ms = 150       # allowance on top of the wire time of the rest of a frame
    attempts = 3              # transmissions of one frame before a power cycle
    cycles = 2                # power cycles spent on one job before it fails
    off_ms = 1000             # ENABLE/driver off during a power cycle
    settle_ms = 500           # driver on -> ENABLE on -> first frame, each
    backoff_ms = 2000         # first back-off after a job failed for silence
    backoff_max_ms = 60000
    auth_backoff_ms = 30000   # first back-off after 0x0B
    auth_backoff_max_ms = 900000
    max_resends = 5           # 0x0C / 0x04 resends of one job
    idle_ms = 50              # longest the driver waits when nothing is due
    gap_ms = 100              # a quiet line this long ends whatever frame was buffered


class Engine:
    def __init__(self, key=None, settings=None, wall=None, queue_size=8, log_size=16):
        self.s = settings or Settings()
        self.key = key
        self.wall = wall
        self.queue = JobQueue(queue_size)
        self.log = ExchangeLog(log_size)
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
        self.backoff = 0
        self.auth_backoff = 0
        self.link = 'starting'      # what the user sees: ok, starting, no key, no answer, ...
        self.last_error = None
        self._actions = []
        self._started = False
        self._last_rx = 0
        if key is None:
            self.link = 'no key'
        self.c = {'tx': 0, 'rx': 0, 'retransmits': 0, 'timeouts': 0, 'resyncs': 0,
                  'seq_errors': 0, 'pseq_errors': 0, 'auth_failures': 0, 'errors': 0,
                  'alerts': 0, 'alerts_handled': 0, 'alerts_failed': 0, 'power_cycles': 0,
                  'unexpected': 0, 'jobs_failed': 0, 'callback_errors': 0, 'echoes': 0}

    # --- public API -------------------------------------------------------------------

    def submit(self, job):
        """Queue a job; False when its priority lane is full."""
        if self.key is None and job.prio == PRIO_POLL:
            return False
        return self.queue.push(job)

    def set_key(self, key):
        self.key = key
        self.auth_backoff = 0
        self.hold_until = None
        if key is None:
            self.link = 'no key'
        elif self.link in ('no key', 'auth failed'):
            self.link = 'starting'

    def busy(self):
        return self.job is not None

    def on_bytes(self, data, now):
        if not data:
            return
        self._last_rx = now
        if self.state == WAIT_FIRST and self.job and self.decoder.pending() == 0:
            f = self.job.frame
            if len(data) >= 3 and data[:3] == f[:3]:
                self.c['echoes'] += 1
                self._error('the request came back unchanged: TX looped to RX?')
        before = self.decoder.resyncs
        for ev in self.decoder.feed(data):
            self._event(ev, now)
        self.c['resyncs'] += self.decoder.resyncs - before
        if self.state == WAIT_FIRST and self.decoder.pending() >= 2:
            b = self.decoder.buf
            n = ((b[0] << 8) | b[1]) or frames.MAX_LEN    # 00 00: an alert, a frame follows
            self.state = WAIT_REST
            self.deadline = now + int((n + 2) * self.s.byte_ms) + self.s.rest_slack_ms

    def step(self, now):
        """Advance timers; returns the actions to carry out: ('write', frame),
        ('enable', bool), ('driver', bool)."""
        if not self._started:
            self._started = True
            self._power_up(now)
        if self.alerts.check(now):
            self._alert_counts()
        if self.decoder.pending() and now - self._last_rx >= self.s.gap_ms:
            for ev in self.decoder.idle():
                self._event(ev, now)
        st = self.state
        if st == POWER_UP or st == POWER_OFF:
            if now - self.deadline >= 0:
                self._power_step(now)
        elif st == WAIT_FIRST or st == WAIT_REST:
            if now - self.deadline >= 0:
                self._timeout(now)
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
            t = min(t, max(0, self._last_rx + self.s.gap_ms - now))
        return t

    def status(self):
        return {
            'link': self.link, 'state': self.state, 'last_error': self.last_error,
            'seq': self.seq, 'pseq': self.pseq, 'counters': dict(self.c),
            'queue': self.queue.view(), 'queue_rejected': self.queue.rejected,
            'current': self.job.describe() if self.job else None,
            'alert': self.alerts.status(),
        }

    # --- internals ----------------------------------------------------------------------

    def _error(self, text):
        self.last_error = text

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
            if self.job:                # resume the job that caused the power cycle
                self._transmit(now)
            else:
                self.state = IDLE

    def _next(self, now):
        if self.hold_until is not None:
            if now - self.hold_until < 0:
                return
            self.hold_until = None
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
            if job.proc is not None:
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
        self.c['tx'] += 1
        self.decoder.expect = job.expect()
        self._actions.append(('write', job.frame))
        self._hook('tx', job.frame)
        self.state = WAIT_FIRST
        self.deadline = now + int(len(job.frame) * self.s.byte_ms) + self.s.first_timeout_ms

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
        if self.job is not job:            # idle() completed the job after all
            return
        self.c['timeouts'] += 1
        self._error('no answer from the meter (%s)' % job.describe())
        if job.attempts < self.s.attempts:
            self._transmit(now)
            return
        if job.cycles < self.s.cycles:
            job.cycles += 1
            self._power_cycle(now)
            return
        self.link = 'no answer'
        self.backoff = min(self.s.backoff_max_ms, self.backoff * 2 or self.s.backoff_ms)
        self.hold_until = now + self.backoff
        self._fail(job, 'no answer from the meter', now)

    def _power_cycle(self, now):
        self.c['power_cycles'] += 1
        self._actions.append(('enable', False))
        self._actions.append(('driver', False))
        self.state = POWER_OFF
        self.deadline = now + self.s.off_ms + self.backoff
        self.job.attempts = 0

    def _event(self, ev, now):
        kind, val = ev
        if kind == frames.EV_ALERT:
            self.c['alerts'] += 1
            self.alerts.alert(now)
            self._alert_counts()
        elif kind == frames.EV_ERROR:
            self._error('framing error: %s' % val)
        else:
            self.c['rx'] += 1
            self._hook('rx', val.raw)
            if self.job is None or self.state not in (WAIT_FIRST, WAIT_REST):
                self.c['unexpected'] += 1
                self._error('answer without a request (status 0x%02x)' % val.status)
                self.log.add({'t': self._wall(), 'kind': '-', 'desc': 'unsolicited',
                              'seq': None, 'req': None, 'resp': val.raw, 'status': val.status,
                              'text': 'answer without a request', 'ms': 0})
                return
            self._response(val, now)

    def _alert_counts(self):
        a = self.alerts
        self.c['alerts_handled'] = a.handled
        self.c['alerts_failed'] = a.failed

    def _wall(self):
        return self.wall() if self.wall else None

    def _log(self, job, resp, text, now):
        self.log.add({'t': self._wall(), 'kind': PRIO_NAMES[job.prio], 'desc': job.describe(),
                      'seq': job.seq, 'req': job.frame, 'resp': resp.raw if resp else None,
                      'status': resp.status if resp else None, 'text': text,
                      'ms': now - job.sent_ms if job.sent_ms is not None else 0})

    def _response(self, resp, now):
        job = self.job
        st = resp.status
        self.deadline = None
        self.state = IDLE
        self.job = None
        self.decoder.expect = frames.EXPECT_ANY
        self._log(job, resp, frames.status_text(st), now)
        if st == frames.STATUS_OK:
            self.seq = (job.seq + 1) & 0xFFFFFFFF
            self.link = 'ok'
            self.backoff = 0
            self.auth_backoff = 0
            self.last_error = None
            self._finish(job, resp, None, now)
            return
        if st == frames.STATUS_SEQ:
            self.c['seq_errors'] += 1
            try:
                self.seq = resp.expected_seq()
            except ValueError:
                self.seq = (job.seq + 1) & 0xFFFFFFFF
            self._resend(job, 'invalid sequence number', resp, now)
            return
        self.seq = (job.seq + 1) & 0xFFFFFFFF
        if st == frames.STATUS_ONP and job.proc is not None:
            self.c['pseq_errors'] += 1
            self._resend(job, 'procedure sequence number refused', resp, now)
            return
        if st == frames.STATUS_AUTH:
            self.c['auth_failures'] += 1
            self.seq = job.seq              # a refused request does not use up its SEQ
            self.link = 'auth failed'
            self._error(AUTH_ERROR)
            self.auth_backoff = min(self.s.auth_backoff_max_ms,
                                    self.auth_backoff * 2 or self.s.auth_backoff_ms)
            self.hold_until = now + self.auth_backoff
            self._finish(job, resp, AUTH_ERROR, now)
            return
        self.c['errors'] += 1
        text = 'meter answered 0x%02x: %s' % (st, frames.status_text(st))
        self._error('%s (%s)' % (text, job.describe()))
        self._finish(job, resp, text, now)

    def _resend(self, job, why, resp, now):
        job.resends += 1
        if job.resends > self.s.max_resends:
            self._error('%s %d times in a row (%s)' % (why, job.resends, job.describe()))
            self._finish(job, resp, why, now)
            return
        job.frame = None                    # new SEQ (and PSEQ) at the next transmission
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

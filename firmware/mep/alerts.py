# The meter's alert chain. An alert (00 00) asks the MEP device to act; a device that does
# not is black-listed by the meter. The chain: ET11 entry size -> ET13 MEP alert flags ->
# ET50 MEP flags -> EP39 "Post MEP Data" through BT07 -> procedure result from BT08 (or ET58
# when ET50 says so). It always ends - done, failed or timed out - so the next alert
# starts it again.
from mep import requests as rq
from mep import tables
from mep.jobs import Job, PRIO_ALERT

IDLE = 'idle'
STEPS = ('et11', 'et13', 'et50', 'ep39', 'result')


class AlertChain:
    def __init__(self, submit, timeout_ms=30000):
        self.submit = submit            # submit(job) -> bool
        self.timeout_ms = timeout_ms
        self.state = IDLE
        self.started = None
        self.deadline = None
        self.outcome = None             # 'done', 'failed: ...', 'timed out'
        self.pending = False            # another alert came while the chain ran
        self.handled = 0
        self.failed = 0
        self.received = 0
        self.last_ms = None             # duration of the last chain
        self.entry_size = None
        self.alert_flags = None
        self.mep_flags = None
        self.result = None
        self._job = None

    def active(self):
        return self.state != IDLE

    def alert(self, now):
        self.received += 1
        if self.active():
            self.pending = True
            return
        self._start(now)

    def _start(self, now):
        self.started = now
        self.deadline = now + self.timeout_ms
        self.entry_size = self.alert_flags = self.mep_flags = self.result = None
        self._step('et11', rq.partial_read(rq.ET11, 1, 1))

    def _step(self, state, message=None, proc=None, params=b''):
        self.state = state
        job = Job(message, PRIO_ALERT, self._done, proc=proc, params=params, tag='alert')
        self._job = job
        if not self.submit(job):
            self._end('failed: queue full', None)

    def _end(self, outcome, now):
        self.outcome = outcome
        if outcome == 'done':
            self.handled += 1
        else:
            self.failed += 1
        if now is not None and self.started is not None:
            self.last_ms = now - self.started
        if self._job and not self._job.finished:
            self._job.cancelled = True
        self._job = None
        self.state = IDLE
        # An alert that arrived meanwhile is answered by a fresh chain unless this one
        # just served the meter successfully.
        again = self.pending and outcome != 'done'
        self.pending = False
        return again

    def check(self, now):
        """Call regularly: ends a chain that ran past its deadline. Returns True when an
        alert is waiting to start a new chain."""
        if self.active() and now - self.deadline >= 0:
            if self._end('timed out', now):
                self._start(now)
            return True
        return False

    def _done(self, job):
        if job is not self._job:
            return                      # a step of a chain that already ended
        now = job.finished_ms
        if job.error:
            if self._end('failed: %s at %s' % (job.error, self.state), now):
                self._start(now)
            return
        data = job.response.data
        try:
            if self.state == 'et11':
                self.entry_size = data[0]
                self._step('et13', rq.partial_read(
                    rq.ET13, tables.et13_alert_offset(self.entry_size), 1))
            elif self.state == 'et13':
                self.alert_flags = data[0]
                self._step('et50', rq.partial_read(rq.ET50, 30, 1))
            elif self.state == 'et50':
                self.mep_flags = data[0]
                self._step('ep39', proc=rq.EP39, params=rq.ep39_params())
            elif self.state == 'ep39':
                table = rq.ET58 if self.mep_flags & tables.ET50_FLAG_ET58 else rq.BT08
                self._step('result', rq.full_read(table))
            elif self.state == 'result':
                self.result = tables.decode(rq.BT08, data)
                self._end('done', now)
        except (IndexError, ValueError) as e:
            if self._end('failed: %s at %s' % (e if str(e) else 'short answer', self.state), now):
                self._start(now)

    def status(self):
        return {
            'state': self.state, 'outcome': self.outcome, 'received': self.received,
            'handled': self.handled, 'failed': self.failed, 'last_ms': self.last_ms,
            'entry_size': self.entry_size, 'alert_flags': self.alert_flags,
            'mep_flags': self.mep_flags,
            'result': self.result['result_text'] if self.result else None,
        }

# A virtual-time bench: the link engine and poller against the meter simulator, coupled
# byte for byte with 9600-baud timing, no real clock and no event loop. Deterministic, so
# the same tests run on CPython and MicroPython.
from mep.engine import Engine, Settings
from mep.poller import Poller
from mepsim import Meter
from mepsim.answers import track

KEY = b'ABCDEFGHIJKLMNOP'
EPOCH = 1763700000


class Bench:
    def __init__(self, key=KEY, meter_key=KEY, seed=1, fast=True, bt23_ms=1000, bt28_ms=1000,
                 settings=None, turnaround_ms=20, sleepy=False):
        self.t = 0
        # sleepy: as drivers/link.py, the driver sleeps through an answer it can expect
        # (Engine.expect_ms) and finds the bytes collected in the port's buffer
        self.sleepy = sleepy
        self.wake_at = None
        self.looks = 0                 # on_bytes calls: the driver found bytes
        self.meter = Meter(key=meter_key, seed=seed, turnaround_ms=turnaround_ms,
                           start_epoch=EPOCH)
        self.eng = Engine(key, settings or Settings(), wall=self.wall)
        self.poller = Poller(self.eng.submit, self.wall, bt23_ms, bt28_ms, fast)
        self.readings = []
        self.poller.on_reading(self.readings.append)
        self.enable = False
        self.driver = False
        self.written = []              # every frame the engine wrote, with its time
        self.inflight = []             # (arrival time at the meter, bytes)
        self.line_log = []             # ('enable'|'driver', value, t)
        self.track = track(self.meter, self.eng, self.poller)   # wrong decodes

    @property
    def wrong(self):
        """Responses taken as the answer to another table's request (must stay empty)."""
        return self.track['wrong']

    @property
    def jobs_ok(self):
        return self.track['ok']

    def wall(self):
        return EPOCH + self.t // 1000

    def line_up(self):
        return self.enable and self.driver

    def _actions(self, acts):
        byte_ms = self.eng.s.byte_ms
        for kind, val in acts:
            if kind == 'write':
                self.written.append((self.t, val))
                if self.line_up():
                    self.inflight.append((self.t + len(val) * byte_ms, val))
            else:
                setattr(self, kind, val)
                self.line_log.append((kind, val, self.t))

    def run(self, ms, until=None):
        """Advance virtual time by `ms` (or until `until()` is true)."""
        end = self.t + ms
        eng = self.eng
        meter = self.meter
        while self.t < end:
            asleep = self.wake_at is not None and self.t < self.wake_at
            if not asleep:
                self.wake_at = None
                self.poller.step(self.t)
                self._actions(eng.step(self.t))
            while self.inflight and self.inflight[0][0] <= self.t:
                at, data = self.inflight.pop(0)
                meter.rx(data, at)
            data = None if asleep else meter.tx(self.t)
            if data and self.line_up():
                self.looks += 1
                eng.on_bytes(data, self.t)
                self.poller.step(self.t)          # as the link's loop does: hooks, then step
                self._actions(eng.step(self.t))
            if self.sleepy and not asleep:
                pre = eng.expect_ms(self.t)
                if pre:
                    self.wake_at = self.t + pre
            if until is not None and until():
                return True
            # next event: engine timer, meter byte, request arrival (at least 1 ms on)
            nxt = self.t + max(1, eng.wait_ms(self.t))
            m = meter.next_tx_ms()
            if self.wake_at is not None:
                m = self.wake_at                  # the bytes wait in the port's buffer
            if m is not None and m < nxt:
                nxt = m
            if self.inflight and self.inflight[0][0] < nxt:
                nxt = self.inflight[0][0]
            nxt = int(nxt + 0.999)
            self.t = min(max(nxt, self.t + 1), end)
        return until() if until is not None else None

    def run_until(self, cond, limit_ms):
        return self.run(limit_ms, cond)

    def readings_after(self, t_ms):
        t = EPOCH + t_ms // 1000
        return [r for r in self.readings if r['time'] >= t]

    def settled(self):
        """Nothing stuck: no alert chain running, no alert or user job waiting (a poll is
        always under way in fast mode)."""
        lanes = self.eng.queue.lanes
        return not lanes[0] and not lanes[1] and not self.eng.alerts.active()

    def alert_done(self, n=1):
        """The meter saw n chains and the engine has seen the last one through."""
        return self.meter.alerts_answered >= n and self.eng.alerts.handled >= n \
            and not self.eng.alerts.active()


def close(a, b, tol):
    return abs(a - b) <= tol


def check_reading(r, snap):
    """A reading agrees with the meter's truth (taken at the same moment)."""
    for k in ('p_in', 'p_out', 'p_in_l1', 'p_in_l2', 'p_in_l3', 'p_out_l1', 'p_out_l2',
              'p_out_l3', 's'):
        if r[k] != snap[k]:
            return '%s %r != %r' % (k, r[k], snap[k])
    for k in ('u_l1', 'u_l2', 'u_l3', 'i_l1', 'i_l2', 'i_l3', 'freq', 'pf_l1'):
        if not close(r[k], snap[k], 0.0015):
            return '%s %r != %r' % (k, r[k], snap[k])
    return None

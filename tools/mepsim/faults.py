# Meter simulator: fault injection (used by Meter; SANS-IO, MicroPython-compatible).
#
# Each fault applies to the next `count` requests (or responses) unless stated:
#   silence       no answer at all; the request is lost (kw process=True: it is processed and
#                 only the answer is lost, so a resend is served from the replay cache)
#   partial       only the first k bytes of the response (kw k, default half), then nothing
#   garbage       n random bytes (kw n, default 7) before the real response
#   garbage_only  n random bytes (kw n, default 7) instead of the response
#                 garbage bytes are 0x03..0xFF by default so that any two of them read as an
#                 impossible LEN; kw any=True allows every byte value
#   auth          0x0B although the digest is right
#   seq_storm     0x0C with the expected SEQ even when the SEQ was right; the expected SEQ
#                 jumps by 2..1000 each time
#   seq_jump      applied at once: the expected SEQ jumps by 2..5000 (count times), as if the
#                 meter had talked to the uplink
#   onp           0x04 on the next BT07 write(s)
#   alert_mid     an alert 00 00 immediately before the next response's bytes
#   alert_resync  the next request fails with 0x0C (the expected SEQ jumps) and 00 00 goes on
#                 the wire right before that 0x0C
#   slow          kw turnaround_ms for the next responses
#   status        the next requests are refused with kw code (default 0x06, device busy)
#   pause         a pause of kw ms (default 150) inside the next responses, after kw at
#                 bytes (default half)
NAMES = ('silence', 'partial', 'garbage', 'garbage_only', 'auth', 'seq_storm', 'seq_jump',
         'onp', 'alert_mid', 'alert_resync', 'slow', 'status', 'pause')


class Faults:
    def __init__(self, meter):
        self.meter = meter
        self.active = []                 # [name, remaining, kw]
        self.pending_alert_mid = 0       # alerts to put right before the next response
        self._lose_next = False
        self.applied = {}                # name -> how many times a fault took effect

    def add(self, name, count=1, kw=None):
        if name not in NAMES:
            raise ValueError('unknown fault %r (known: %s)' % (name, ', '.join(NAMES)))
        count = int(count)
        kw = kw or {}
        if name == 'seq_jump':
            m = self.meter
            for _ in range(count):
                m.expected_seq = (m.expected_seq + m.rng.randint(2, 5000)) & 0xFFFFFFFF
            self._count(name)
            return
        if count > 0:
            self.active.append([name, count, kw])

    def clear(self):
        self.active = []

    def _count(self, name):
        self.applied[name] = self.applied.get(name, 0) + 1

    def take(self, name):
        """Consume one use of fault `name`; returns its entry or None."""
        for e in self.active:
            if e[0] == name:
                e[1] -= 1
                if e[1] <= 0:
                    self.active.remove(e)
                self._count(name)
                return e
        return None

    def ignore(self):
        """Called first for every request: True when the request must be ignored."""
        e = self.take('silence')
        if e is None:
            return False
        if e[2].get('process'):
            self._lose_next = True
            return False
        self.meter.stats['silenced'] = self.meter.stats.get('silenced', 0) + 1
        return True

    def _garbage(self, kw):
        n = int(kw.get('n', 7))
        lo = 0 if kw.get('any') else 3
        return self.meter.rng.randbytes(n, lo, 255)

    def send(self, resp, t, what):
        """Put `resp` (answering a request complete at t) on the wire; returns its end time."""
        m = self.meter
        if self._lose_next:
            self._lose_next = False
            m.stats['silenced'] = m.stats.get('silenced', 0) + 1
            return None
        turn = m.turnaround_ms
        e = self.take('slow')
        if e is not None:
            turn = e[2].get('turnaround_ms', turn)
        earliest = t + turn
        e = self.take('garbage_only')
        if e is not None:
            junk = self._garbage(e[2])
            m._log('tx', earliest, junk, 'garbage instead of: ' + what)
            return m._enqueue(junk, earliest)
        e = self.take('garbage')
        if e is not None:
            junk = self._garbage(e[2])
            m._log('tx', earliest, junk, 'garbage')
            earliest = m._enqueue(junk, earliest)
        if self.take('alert_mid') is not None:
            self.pending_alert_mid += 1
        while self.pending_alert_mid:
            self.pending_alert_mid -= 1
            m._log('tx', earliest, b'\x00\x00', 'alert')
            earliest = m._alert_on_wire(earliest)
        e = self.take('partial')
        if e is not None:
            k = int(e[2].get('k', len(resp) // 2))
            resp = resp[:k]
            what = 'partial (%d bytes) of: %s' % (k, what)
        m.stats['answered'] += 1
        m._log('tx', earliest, resp, what)
        gap, at = m.gap_ms, m.gap_at
        e = self.take('pause')
        if e is not None:
            gap = e[2].get('ms', 150)
            at = e[2].get('at', at)
        if gap and len(resp) > 1:
            k = len(resp) // 2 if at is None else max(1, min(len(resp) - 1, int(at)))
            end = m._enqueue(resp[:k], earliest, 2)
            return m._enqueue(resp[k:], end + gap, 2)
        return m._enqueue(resp, earliest, 2)

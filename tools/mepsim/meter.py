# Meter simulator: the MEP protocol state machine of an NES meter (SANS-IO).
#
# Bytes in: rx(data, now_ms). Bytes out: tx(now_ms), paced one byte per byte_ms after a
# turnaround delay. No sockets, no asyncio, no clock; MicroPython-compatible.
#
# Simulator assumptions where the real meter's behaviour is unknown (mep-protocol.md s. 9, 11):
#  * Request parsing: 2-byte BE LEN then LEN bytes. LEN < 13 or LEN > MAX_REQUEST_LEN is
#    garbage: one byte is skipped and the scan goes on (counted in stats garbage_skipped).
#    A partial frame followed by > 500 ms of silence is dropped. No answer to garbage.
#  * Checks in order: digest (0x0B), then SEQ (0x0C + expected SEQ, 4 bytes BE).
#    auth_before_seq=False swaps them: a wrong SEQ then gets 0x0C even with a wrong digest
#    (this mode deliberately breaks "a wrong key only ever sees 0x0B"; the default keeps it).
#    accept_greater_seq=True accepts any SEQ ahead of the expected one (modulo 2^32) and
#    resynchronises to it. Errors (0x0B, 0x0C) never move the counter.
#  * Every authenticated request with the expected SEQ advances the SEQ by one, even when
#    it is then refused for what it asks (0x01..0x05).
#  * The initial expected SEQ is a random 32-bit value >= 0x10000000 (from the seed).
#  * Duplicates: the identical bytes of the last accepted request are refused with 0x0C
#    and the expected SEQ (the original's SEQ + 1), as seen on a real meter (dup_mode
#    'seq', the default). dup_mode 'replay' answers them again from a cache (same
#    response bytes) and nothing advances.
#  * Timing: turnaround_ms from the end of a request to its answer, byte_ms per byte on the
#    wire (slower pacing than 9600 baud when larger), gap_ms a pause inside every response
#    (after gap_at bytes, default half), auth_rate the chance of a 0x0B although the
#    digest is right (a real meter sends one now and then).
#  * Unknown service code or malformed MSG: 0x01. Unknown table: 0x02. Read of BT07, any
#    write other than a full write of BT07, partial writes: 0x03. Full read of a table longer
#    than the requested max length: 0x04. Partial read past the table end: 0x05.
#    The 3-byte full read (30 tttt) is accepted without a length limit.
#  * Responses: LEN | STATUS | [COUNT(2 BE) | data] | trailer(8). trailer_mode 'digest' = the
#    request digest with the meter key over the bytes after LEN before the trailer
#    (hypothesis (a)); 'zeros' = 8 zero bytes. Errors and write acks carry the trailer unless
#    error_trailer=False (LEN 1, or 5 for 0x0C).
#  * BT07 writes need no C12.18 checksum. PSEQ outside 5..9 -> 0x04 (strict_pseq=True also
#    requires PSEQ = the previous one + 1, wrapping 9 -> 5). Ack = LEN | 00 | trailer. The
#    result record PROC(2 LE) PSEQ RESULT goes to BT08, or to ET58 when ET50 flag bit 1 is set
#    (model.et58). RESULT: 0x00 completed, 0x02 for an EP39 whose length field does not match
#    its data, 0x06 for an unknown procedure. Known: EP39 0x0827, EP18 0x0812 clear alarms.
#  * Alert bookkeeping: after an alert, the client must read (any read, status 00) ET11, ET13,
#    ET50, call EP39 successfully, then read the table holding the result (BT08, or ET58 when
#    model.et58), in that order; other requests in between are allowed. Latency = end of that
#    response on the wire - end of the alert on the wire. A chain answers every alert pending.
#  * Requests arriving while a response is still on the wire are answered in order after it.
from mep import frames, requests, digest as _digest

from .tables import MeterModel, XorShift, ET58, BT08
from .faults import Faults

MAX_REQUEST_LEN = 600
RX_IDLE_MS = 500
KNOWN_PROCS = (requests.EP39, 0x0812)

_TAG_ALERT = 1
_TAG_RESP = 2


def _u32be(v):
    return bytes(((v >> 24) & 0xFF, (v >> 16) & 0xFF, (v >> 8) & 0xFF, v & 0xFF))


class Meter:
    """A faithful-enough NES meter behind the MEP (see the assumptions at the top)."""

    def __init__(self, key=b'ABCDEFGHIJKLMNOP', seed=1, now_ms=0, byte_ms=1.0416667,
                 turnaround_ms=20, start_epoch=1763700000):
        if isinstance(key, str) or len(key) != 16:
            key = _digest.key_from_mbk(key)
        self.key = bytes(key)
        self.rng = XorShift(seed)
        self.model = MeterModel(seed, now_ms, start_epoch)
        self.byte_ms = byte_ms
        self.turnaround_ms = turnaround_ms
        self.auth_before_seq = True
        self.accept_greater_seq = False
        self.strict_pseq = False
        self.trailer_mode = 'digest'
        self.error_trailer = True
        self.dup_mode = 'seq'
        self.gap_ms = 0
        self.gap_at = None
        self.auth_rate = 0.0
        self.expected_seq = self.rng.next() | 0x10000000
        self.last_pseq = None
        self.faults = Faults(self)
        self.on_log = None                 # callable(direction 'rx'|'tx', now_ms, bytes, text)
        self.stats = {'requests': 0, 'answered': 0, 'auth_failures': 0, 'seq_errors': 0,
                      'replays': 0, 'garbage_skipped': 0, 'dropped_partial': 0,
                      'by_table': {}}
        self.alerts_sent = 0
        self.alerts_answered = 0
        self.alert_latency_ms = []
        self._now = now_ms
        self._rx = b''
        self._rx_last = now_ms
        self._wire = []                    # [start_ms, bytes, tag, sent]
        self._wire_end = now_ms
        self._deferred_alerts = 0
        self._alert_ends = []              # end times of alerts not answered yet
        self._alerts_scheduled = 0
        self._chain = 0                    # 0 ET11, 1 ET13, 2 ET50, 3 EP39, 4 result read
        self._last_raw = None
        self._last_resp = None

    # --- wire --------------------------------------------------------------------------------

    def _enqueue(self, data, earliest, tag=0):
        start = max(earliest, self._wire_end)
        self._wire.append([start, data, tag, 0])
        self._wire_end = start + len(data) * self.byte_ms
        return self._wire_end

    def _alert_on_wire(self, earliest):
        end = self._enqueue(b'\x00\x00', earliest, _TAG_ALERT)
        self._alerts_scheduled += 1
        self._alert_ends.append(end)
        self.model.alert_flags = 1
        return end

    def _poll(self, now):
        if now > self._now:
            self._now = now
        if self._rx and now - self._rx_last > RX_IDLE_MS:
            self.stats['dropped_partial'] += 1
            self.stats['garbage_skipped'] += len(self._rx)
            self._rx = b''
            self._flush_deferred(self._rx_last + RX_IDLE_MS)

    def _flush_deferred(self, t):
        while self._deferred_alerts:
            self._deferred_alerts -= 1
            self._alert_on_wire(t)

    def tx(self, now_ms):
        """Bytes the meter has put on the wire by now_ms."""
        self._poll(now_ms)
        out = []
        bm = self.byte_ms
        while self._wire:
            seg = self._wire[0]
            start, data, tag, sent = seg
            due = int((now_ms - start) / bm + 1e-6)
            if due > len(data):
                due = len(data)
            if due > sent:
                out.append(data[sent:due])
                seg[3] = due
            if due < len(data):
                break
            self._wire.pop(0)
            if tag == _TAG_ALERT:
                self.alerts_sent += 1
        return b''.join(out)

    def next_tx_ms(self):
        """When the next byte becomes due (None when nothing is scheduled)."""
        if self._wire:
            start, data, tag, sent = self._wire[0]
            return start + (sent + 1) * self.byte_ms
        if self._deferred_alerts and self._rx:
            return self._rx_last + RX_IDLE_MS + 1
        return None

    def alert(self, now_ms=None):
        """Schedule an alert 00 00 between transactions."""
        now = self._now if now_ms is None else now_ms
        self._poll(now)
        if self._rx:
            self._deferred_alerts += 1
        else:
            self._alert_on_wire(now)

    def pending_alert(self):
        return bool(self._alert_ends) or self._deferred_alerts > 0

    def inject(self, fault, count=1, **kw):
        self.faults.add(fault, count, kw)

    # --- receive -----------------------------------------------------------------------------

    def rx(self, data, now_ms):
        """Bytes from the client, complete by now_ms (any chunking)."""
        self._poll(now_ms)
        if not data:
            return
        self._rx += bytes(data)
        self._rx_last = now_ms
        while len(self._rx) >= 2:
            buf = self._rx
            n = (buf[0] << 8) | buf[1]
            if n < 13 or n > MAX_REQUEST_LEN:
                self._rx = buf[1:]
                self.stats['garbage_skipped'] += 1
                continue
            if len(buf) < n + 2:
                break
            self._rx = buf[n + 2:]
            self._request(buf[:n + 2], now_ms)
        if not self._rx:
            self._flush_deferred(now_ms)

    def _log(self, direction, t, data, text):
        if self.on_log is not None:
            self.on_log(direction, t, data, text)

    # --- requests ----------------------------------------------------------------------------

    def _request(self, raw, t):
        st = self.stats
        st['requests'] += 1
        self.model.advance(t)
        req = frames.parse_request(raw)
        try:
            msg = requests.parse_message(req.message)
            what = msg.describe()
        except ValueError as e:
            msg = None
            what = 'bad message: %s' % e
        self._log('rx', t, raw, '%s SEQ 0x%08x' % (what, req.seq))
        f = self.faults
        if f.ignore():
            return None
        if raw == self._last_raw and self._last_resp is not None:
            st['replays'] += 1
            if self.dup_mode == 'seq':
                st['seq_errors'] += 1
                return self._error(0x0C, t, _u32be(self.expected_seq))
            end = self._send(self._last_resp, t, 'replay of: ' + what, None)
            if msg is not None and end is not None and self._last_resp[2] == 0:
                self._chain_step(msg, end)
            return end
        if f.take('auth') or (self.auth_rate and self.rng.random() < self.auth_rate):
            st['auth_injected'] = st.get('auth_injected', 0) + 1
            return self._error(0x0B, t)
        e = f.take('status')
        if e is not None:
            # a C12.18 error code for a well-formed request; SEQ advances as for 0x01..0x05
            if req.digest_ok(self.key) and req.seq == self.expected_seq:
                self.expected_seq = (req.seq + 1) & 0xFFFFFFFF
            return self._error(int(e[2].get('code', 0x06)), t)
        if self.auth_before_seq and not req.digest_ok(self.key):
            st['auth_failures'] += 1
            return self._error(0x0B, t)
        if f.take('seq_storm'):
            self.expected_seq = (self.expected_seq + self.rng.randint(2, 1000)) & 0xFFFFFFFF
            st['seq_errors'] += 1
            return self._error(0x0C, t, _u32be(self.expected_seq))
        if f.take('alert_resync'):
            self.expected_seq = (self.expected_seq + self.rng.randint(2, 1000)) & 0xFFFFFFFF
            st['seq_errors'] += 1
            return self._error(0x0C, t, _u32be(self.expected_seq), alert_before=True)
        if req.seq != self.expected_seq:
            ahead = (req.seq - self.expected_seq) & 0xFFFFFFFF
            if not (self.accept_greater_seq and ahead < 0x80000000):
                if not self.auth_before_seq or req.digest_ok(self.key):
                    st['seq_errors'] += 1
                    return self._error(0x0C, t, _u32be(self.expected_seq))
        if not self.auth_before_seq and not req.digest_ok(self.key):
            st['auth_failures'] += 1
            return self._error(0x0B, t)
        self.expected_seq = (req.seq + 1) & 0xFFFFFFFF
        if msg is None:
            resp = self._frame(0x01)
        else:
            bt = st['by_table']
            bt[msg.table] = bt.get(msg.table, 0) + 1
            resp = self._serve(msg, t)
        self._last_raw = raw
        self._last_resp = resp
        end = self._send(resp, t, what, msg)
        if msg is not None and end is not None and resp[2] == 0:
            self._chain_step(msg, end)
        return end

    def _serve(self, msg, t):
        svc = msg.service
        if svc == requests.FULL_READ or svc == requests.PARTIAL_READ:
            if msg.table == requests.BT07:
                return self._frame(0x03)
            data = self.model.table(msg.table)
            if data is None:
                return self._frame(0x02)
            if svc == requests.FULL_READ:
                if msg.max_len is not None and len(data) > msg.max_len:
                    return self._frame(0x04)
            else:
                if msg.offset + msg.count > len(data):
                    return self._frame(0x05)
                data = data[msg.offset:msg.offset + msg.count]
            n = len(data)
            return self._frame(0x00, bytes((n >> 8, n & 0xFF)) + data)
        if svc == requests.FULL_WRITE and msg.table == requests.BT07:
            return self._procedure(msg)
        if self.model.table(msg.table) is None and msg.table != requests.BT07:
            return self._frame(0x02)
        return self._frame(0x03)

    def _procedure(self, msg):
        d = msg.data
        if len(d) < 3:
            return self._frame(0x01)
        proc = d[0] | (d[1] << 8)
        pseq = d[2]
        if not requests.PSEQ_MIN <= pseq <= requests.PSEQ_MAX:
            return self._frame(0x04)
        if self.strict_pseq and self.last_pseq is not None and \
                pseq != requests.next_pseq(self.last_pseq):
            return self._frame(0x04)
        if self.faults.take('onp'):
            return self._frame(0x04)
        self.last_pseq = pseq
        result = 0x00
        if proc not in KNOWN_PROCS:
            result = 0x06
        elif proc == requests.EP39:
            p = d[3:]
            if len(p) < 4 or (p[2] | (p[3] << 8)) != len(p) - 4:
                result = 0x02
        elif proc == 0x0812:
            self.model.alert_flags = 0
        rec = bytes((d[0], d[1], pseq, result))
        if self.model.et58:
            self.model.et58_result = rec
        else:
            self.model.proc_result = rec
        return self._frame(0x00)

    def _chain_step(self, msg, end):
        if not self._alert_ends:
            return
        stage = self._chain
        tid = msg.table
        if msg.is_read():
            want = (requests.ET11, requests.ET13, requests.ET50, None,
                    ET58 if self.model.et58 else BT08)[stage]
            if tid != want:
                return
        elif not (msg.is_procedure() and stage == 3 and len(msg.data) >= 2 and
                  (msg.data[0] | (msg.data[1] << 8)) == requests.EP39):
            return
        if stage < 4:
            self._chain = stage + 1
            return
        self._chain = 0
        for a in self._alert_ends:
            self.alerts_answered += 1
            self.alert_latency_ms.append(end - a)
        self._alert_ends = []
        self.model.alert_flags = 0

    # --- responses ---------------------------------------------------------------------------

    def _trailer(self, body):
        if self.trailer_mode == 'zeros':
            return bytes(8)
        return _digest.digest(body, self.key)

    def _frame(self, status, payload=b''):
        body = bytes((status,)) + payload
        if status == 0 or self.error_trailer:
            body += self._trailer(body)
        n = len(body)
        return bytes((n >> 8, n & 0xFF)) + body

    def _error(self, status, t, payload=b'', alert_before=False):
        if alert_before:
            self.faults.pending_alert_mid += 1
        return self._send(self._frame(status, payload), t, frames.status_text(status), None)

    def _send(self, resp, t, what, msg):
        """Put a response on the wire (through the transport faults); returns its end time."""
        return self.faults.send(resp, t, what)

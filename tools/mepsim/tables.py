# Meter simulator: the data model behind the tables (MeterModel) and its evolution in time.
#
# SANS-IO and MicroPython-compatible: no clock, no typing, no struct. Time is passed in as
# integer milliseconds. Everything is deterministic from the seed.
#
# The household: 3 phases, each with a load doing a bounded random walk (plus occasional
# appliance switching) minus an optional solar share (`solar_w`, split over `solar_phases`),
# so a phase can export. Voltages 230 V +-2 %, frequency 50 Hz +-0.05, power factor 0.5..1.0,
# currents = |P| / (U * PF), reactive power = S * sin(phi) with a per-phase sign.
# The walk steps once per simulated second (at multiples of STEP_MS from t=0); between steps
# the values are constant and the energy counters integrate them exactly (integer W*ms).
#
# Simulator choices where the real meter's content is unknown (see mep-protocol.md section 6):
#  BT01: "NES " / "83334-3I", HW 3.2, FW 4.38, serial "SIM" + 13 digits from the seed.
#  BT21: 00 00 | 00 self-reads | 04 summations | 01 demand | 00 coincident | 01 occurrence |
#        04 tiers | 00 present demands | 55 present values  (so BT23/BT28 offsets are 0).
#  BT23 (220 bytes = 55 INT32 LE words): 0 fwd Wh, 1 rev Wh, 2 fwd varh, 3 rev varh,
#        4 fwd+rev varh, 5 demand-reset count (0), 6 fwd+rev Wh, 7 fwd-rev Wh (net),
#        8-11 zero, 12-19 repeat 0-7 (tier 1 block: everything counted in tier 1), rest zero.
#  BT28 (220 bytes = 55 INT32 LE): indices as in the reference; 15-17 = signed reactive power
#        per phase (var, + import), 22-25 = reactive power per quadrant Q1..Q4 (var),
#        38-40 = averaged currents, 41-43 = short-average voltages, 44-46 = long-average
#        voltages, 47-54 = averaged powers (totals = sums of the per-phase averages).
#  BT52: 7 bytes (set bt52_size = 8 for an 8th byte, always 0). Byte 6 = weekday | 0x10 (GMT).
#  ET03: 140 bytes: 30-char utility serial, zeros, image CRC (LE) at 137..138, zero at 139.
#  ET11: 32 bytes, 16-bit fields LE (project decision B2), values below in _ET11.
#  ET13: 5 x 66 bytes; M-Bus entries disabled (day 39, frequency 4 = never, baud 4);
#        MEP entry: billing day 1, 00:00, monthly, baud code 0, alert flags at byte 8.
#  ET50: 68 bytes: MEP id (30 chars), flags (bit 1 = et58), 6 x u16 icons, 6 x int32 data, icon.
#  BT08 / ET58: the last procedure result PROC(2 LE) PSEQ RESULT (4 zero bytes before any).

STEP_MS = 1000
_WMS_PER_WH = 3600000        # W*ms per Wh

BT01 = 0x0001
BT08 = 0x0008
BT21 = 0x0015
BT23 = 0x0017
BT28 = 0x001C
BT52 = 0x0034
ET03 = 0x0803
ET11 = 0x080B
ET13 = 0x080D
ET50 = 0x0832
ET58 = 0x083A

ET13_ENTRY = 66
ET13_ALERT_OFFSET = 4 * ET13_ENTRY + 8

_ET11 = (5, ET13_ENTRY, 16, 4, 32, (128, 2), (512, 2), (512, 2), 64, 48, ET13_ENTRY,
         0, 0, 0, 0, 4, 15, 32, 8, 6, 6, 4, 4, 0, 6, (256, 2), (256, 2))


class XorShift:
    """Tiny seeded PRNG (xorshift32); the same sequence on CPython and MicroPython."""

    def __init__(self, seed):
        s = (int(seed) * 2654435761 + 0x9E3779B9) & 0xFFFFFFFF
        self.s = s or 0x12345678
        for _ in range(8):
            self.next()

    def next(self):
        x = self.s
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.s = x
        return x

    def randint(self, a, b):
        return a + self.next() % (b - a + 1)

    def random(self):
        return self.next() / 4294967296.0

    def randbytes(self, n, lo=0, hi=255):
        return bytes([self.randint(lo, hi) for _ in range(n)])


def i32le(v):
    v = int(v) & 0xFFFFFFFF
    return bytes((v & 0xFF, (v >> 8) & 0xFF, (v >> 16) & 0xFF, v >> 24))


def u16le(v):
    return bytes((v & 0xFF, (v >> 8) & 0xFF))


def civil(epoch):
    """UTC unix seconds -> (year, month, day, hour, minute, second, weekday 0=Sunday)."""
    days = epoch // 86400
    rem = epoch - days * 86400
    wd = (days + 4) % 7
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    y = yoe + era * 400 + (1 if m <= 2 else 0)
    return y, m, d, rem // 3600, (rem // 60) % 60, rem % 60, wd


def _clamp(v, lo, hi):
    return lo if v < lo else hi if v > hi else v


class MeterModel:
    """The meter's measurements and registers, evolving with time (ms)."""

    bt52_size = 7

    def __init__(self, seed=1, now_ms=0, start_epoch=1763700000):
        r = self.rng = XorShift(seed * 7919 + 17)
        self.seed = seed
        self.start_epoch = start_epoch
        self.t = int(now_ms)                      # time the state below is valid for
        self.next_step = (self.t // STEP_MS + 1) * STEP_MS
        self.walk = True                          # False freezes the random walk
        self.solar_w = 0                          # solar generation, W (split over phases)
        self.solar_phases = (0,)
        self.et58 = False                         # ET50 flags bit 1: result goes to ET58
        self.alert_flags = 0
        self.load = [r.randint(150, 900) for _ in range(3)]
        self.mv = [r.randint(228000, 232000) for _ in range(3)]
        self.pf = [r.randint(700, 980) for _ in range(3)]
        self.qsign = [1 if r.random() < 0.4 else -1 for _ in range(3)]
        self.mhz = 50000 + r.randint(-20, 20)
        self.pinned = {}
        self.e_wh = [r.randint(10000000, 60000000), r.randint(0, 2000), 0, 0]
        self.e_wh[2] = self.e_wh[0] // 16
        self.e_wh[3] = self.e_wh[0] // 3
        self.e_wms = [0, 0, 0, 0]                 # fractional W*ms not yet a whole Wh
        self.serial = 'SIM%013d' % (seed % 10000000000000)
        self.utility_serial = 'UTIL-%010d' % ((seed * 48271) % 10000000000)
        self.mep_id = 'MEP-SIM'
        self.proc_result = bytes(4)
        self.et58_result = bytes(4)
        self._derive()
        self.avg_mv = [float(v) for v in self.mv]
        self.short_mv = [float(v) for v in self.mv]
        self.avg_ma = [float(v) for v in self.ma]
        self.avg_fwd = [float(v) for v in self.fwd]
        self.avg_rev = [float(v) for v in self.rev]

    # --- evolution ---------------------------------------------------------------------------

    def _derive(self):
        p = []
        share = 0
        if self.solar_w and self.solar_phases:
            share = self.solar_w / len(self.solar_phases)
        for i in range(3):
            key = 'p%d' % (i + 1)
            if key in self.pinned:
                p.append(int(self.pinned[key]))
            else:
                p.append(int(self.load[i] - (share if i in self.solar_phases else 0)))
        self.p = p
        self.fwd = [max(x, 0) for x in p]
        self.rev = [max(-x, 0) for x in p]
        self.ma = []
        self.va = []
        self.q = []
        for i in range(3):
            pf = self.pf[i] / 1000.0
            s = abs(p[i]) / pf
            q = (s * s - p[i] * p[i]) ** 0.5 if s > abs(p[i]) else 0.0
            self.va.append(s)
            self.q.append(int(round(q)) * self.qsign[i])
            self.ma.append(int(round(s * 1e6 / self.mv[i])))

    def _step(self):
        r = self.rng
        if self.walk:
            for i in range(3):
                d = r.randint(-40, 40)
                if r.randint(0, 59) == 0:                 # an appliance switches
                    d += r.randint(400, 2000) * (1 if r.randint(0, 1) else -1)
                self.load[i] = _clamp(self.load[i] + d, 20, 6000)
                self.mv[i] = _clamp(self.mv[i] + r.randint(-250, 250), 225400, 234600)
                self.pf[i] = _clamp(self.pf[i] + r.randint(-15, 15), 500, 1000)
            self.mhz = _clamp(self.mhz + r.randint(-6, 6), 49950, 50050)
        self._apply_pins()
        for i in range(3):
            self.avg_mv[i] += (self.mv[i] - self.avg_mv[i]) / 16.0
            self.short_mv[i] += (self.mv[i] - self.short_mv[i]) / 2.0
            self.avg_ma[i] += (self.ma[i] - self.avg_ma[i]) / 8.0
            self.avg_fwd[i] += (self.fwd[i] - self.avg_fwd[i]) / 8.0
            self.avg_rev[i] += (self.rev[i] - self.avg_rev[i]) / 8.0

    def _integrate(self, dt):
        rates = (sum(self.fwd), sum(self.rev),
                 sum([x for x in self.q if x > 0]), -sum([x for x in self.q if x < 0]))
        for k in range(4):
            acc = self.e_wms[k] + rates[k] * dt
            whole = acc // _WMS_PER_WH
            self.e_wh[k] += whole
            self.e_wms[k] = acc - whole * _WMS_PER_WH

    def advance(self, now_ms):
        """Bring the model to time now_ms (never goes back)."""
        now = int(now_ms)
        while now >= self.next_step:
            self._integrate(self.next_step - self.t)
            self.t = self.next_step
            self.next_step += STEP_MS
            self._step()
        if now > self.t:
            self._integrate(now - self.t)
            self.t = now

    # --- pinning and truth -------------------------------------------------------------------

    def set(self, **values):
        """Pin values (p1..p3 net W, u1..u3 V, pf1..pf3 ratio, freq Hz) until unpinned with
        value None; set solar_w (W) or the counters e_in, e_out, eq_in, eq_out (Wh/varh)."""
        counters = {'e_in': 0, 'e_out': 1, 'eq_in': 2, 'eq_out': 3}
        for k in values:
            v = values[k]
            if k in counters:
                self.e_wh[counters[k]] = int(v)
                self.e_wms[counters[k]] = 0
            elif k == 'solar_w':
                self.solar_w = v
            elif k in ('p1', 'p2', 'p3', 'u1', 'u2', 'u3', 'pf1', 'pf2', 'pf3', 'freq'):
                if v is None:
                    self.pinned.pop(k, None)
                else:
                    self.pinned[k] = v
            else:
                raise ValueError('unknown model value %r' % k)
        self._apply_pins()

    def _apply_pins(self):
        pin = self.pinned
        for i in range(3):
            n = str(i + 1)
            if 'u' + n in pin:
                self.mv[i] = int(round(pin['u' + n] * 1000))
            if 'pf' + n in pin:
                self.pf[i] = int(round(pin['pf' + n] * 1000))
        if 'freq' in pin:
            self.mhz = int(round(pin['freq'] * 1000))
        self._derive()

    def registers(self):
        """The 55 BT28 values (integers, as the meter reports them)."""
        fwd, rev, q = self.fwd, self.rev, self.q
        v = [0] * 55
        v[0] = sum(fwd)
        v[1] = sum(rev)
        v[2] = sum([x for x in q if x > 0])
        v[3] = -sum([x for x in q if x < 0])
        v[4:7] = self.ma
        v[7:10] = self.mv
        v[10] = self.pf[0]
        v[11] = self.mhz
        v[12] = int(round(sum(self.va)))
        v[13] = self.pf[1]
        v[14] = self.pf[2]
        v[15:18] = q
        v[18:22] = v[0:4]
        for i in range(3):
            quad = (22 if q[i] >= 0 else 25) if self.p[i] >= 0 else (23 if q[i] >= 0 else 24)
            v[quad] += abs(q[i])
        v[26:29] = fwd
        v[29:32] = rev
        v[32:38] = v[26:32]
        v[38:41] = [int(round(x)) for x in self.avg_ma]
        v[41:44] = [int(round(x)) for x in self.short_mv]
        v[44:47] = [int(round(x)) for x in self.avg_mv]
        v[49:52] = [int(round(x)) for x in self.avg_fwd]
        v[52:55] = [int(round(x)) for x in self.avg_rev]
        v[47] = sum(v[49:52])
        v[48] = sum(v[52:55])
        return v

    def epoch(self):
        return self.start_epoch + self.t // 1000

    def snapshot(self):
        """The current true values in SI units, keyed like mep.reading.FIELDS (+ p1..p3 net W,
        epoch, time_ms)."""
        v = self.registers()
        d = {'time_ms': self.t, 'epoch': self.epoch(),
             'p_in': v[0], 'p_out': v[1], 'q_in': v[2], 'q_out': v[3],
             'freq': v[11] / 1000.0, 's': v[12],
             'p_in_avg': v[47], 'p_out_avg': v[48],
             'e_in': self.e_wh[0], 'e_out': self.e_wh[1],
             'eq_in': self.e_wh[2], 'eq_out': self.e_wh[3]}
        for i in range(3):
            n = str(i + 1)
            d['p' + n] = self.p[i]
            d['p_in_l' + n] = v[26 + i]
            d['p_out_l' + n] = v[29 + i]
            d['u_l' + n] = v[7 + i] / 1000.0
            d['i_l' + n] = v[4 + i] / 1000.0
            d['pf_l' + n] = self.pf[i] / 1000.0
            d['p_in_avg_l' + n] = v[49 + i]
            d['p_out_avg_l' + n] = v[52 + i]
            d['u_avg_l' + n] = v[44 + i] / 1000.0
        return d

    # --- tables ------------------------------------------------------------------------------

    def table(self, tid):
        """The current bytes of table `tid`, or None when the meter has no such table."""
        fn = _BUILDERS.get(tid)
        if fn is None:
            return None
        return fn(self)

    def _bt01(self):
        return b'NES 83334-3I' + bytes((3, 2, 4, 38)) + self.serial.encode()[:16]

    def _bt21(self):
        return bytes((0, 0, 0, 4, 1, 0, 1, 4, 0, 55))

    def _bt23(self):
        e = self.e_wh
        w = [e[0], e[1], e[2], e[3], e[2] + e[3], 0, e[0] + e[1], e[0] - e[1]]
        words = w + [0, 0, 0, 0] + w + [0] * 35
        return b''.join([i32le(x) for x in words])

    def _bt28(self):
        return b''.join([i32le(x) for x in self.registers()])

    def _bt52(self):
        y, mo, d, h, mi, s, wd = civil(self.epoch())
        out = bytes((y - 2000, mo, d, h, mi, s, wd | 0x10))
        if self.bt52_size > 7:
            out += bytes(self.bt52_size - 7)
        return out

    def _et03(self):
        s = self.utility_serial[:30]
        crc = (self.seed * 40503 + 0x1D0F) & 0xFFFF
        return (s + ' ' * (30 - len(s))).encode() + bytes(107) + u16le(crc) + b'\x00'

    def _et11(self):
        out = b''
        for x in _ET11:
            out += u16le(x[0]) if isinstance(x, tuple) else bytes((x,))
        return out

    def _et13(self):
        mbus = bytes((39, 0, 0, 4, 0, 0, 4, 0)) + bytes(ET13_ENTRY - 8)
        mep = bytes((1, 0, 0, 3, 0, 0, 0, 0, self.alert_flags & 0xFF)) + bytes(ET13_ENTRY - 9)
        return mbus * 4 + mep

    def _et50(self):
        s = self.mep_id[:30]
        out = (s + ' ' * (30 - len(s))).encode() + bytes((2 if self.et58 else 0,))
        out += bytes(12) + bytes(24) + b'\x00'
        return out

    def _bt08(self):
        return self.proc_result

    def _et58(self):
        return self.et58_result


_BUILDERS = {BT01: MeterModel._bt01, BT08: MeterModel._bt08, BT21: MeterModel._bt21,
             BT23: MeterModel._bt23, BT28: MeterModel._bt28, BT52: MeterModel._bt52,
             ET03: MeterModel._et03, ET11: MeterModel._et11, ET13: MeterModel._et13,
             ET50: MeterModel._et50, ET58: MeterModel._et58}

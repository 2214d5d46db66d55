# Tests of the meter simulator (tools/mepsim): protocol, tables, pacing, faults, alerts,
# transports and the CLI. CPython only.
import asyncio
import datetime
import json
import os
import socket
import struct
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
for p in (ROOT, os.path.join(ROOT, 'firmware')):
    if p not in sys.path:
        sys.path.insert(0, p)

from mep import digest, frames, requests  # noqa: E402
from tools.mepsim import Meter  # noqa: E402
from tools.mepsim import serve  # noqa: E402
from tools.mepsim.tables import ET13_ALERT_OFFSET  # noqa: E402

KEY = b'ABCDEFGHIJKLMNOP'
BAD_KEY = b'ABCDEFGHIJKLMNOQ'
VECTORS = os.path.join(ROOT, 'tests', 'host', 'data', 'mep-digest.json')  # the shared vectors


def drain(m):
    """Run the meter's output to the end in virtual time: (bytes, time of the last byte)."""
    out = b''
    t = None
    while True:
        n = m.next_tx_ms()
        if n is None:
            return out, t
        t = n
        out += m.tx(n)


class Client:
    """Drives a Meter in virtual time with frames built by the firmware's own encoder."""

    def __init__(self, meter, key=KEY):
        self.m = meter
        self.key = key
        self.t = 1000.0

    def frame(self, msg, seq=None, key=None):
        return frames.encode_request(msg, self.m.expected_seq if seq is None else seq,
                                     key or self.key)

    def raw(self, frame):
        self.m.rx(frame, self.t)
        out, t = drain(self.m)
        if t is not None:
            self.t = t
        self.t += 50
        return out

    def call(self, msg, seq=None, key=None):
        return self.raw(self.frame(msg, seq, key))

    def resp(self, msg, seq=None, key=None):
        out = self.call(msg, seq, key)
        return frames.parse_response(out)

    def read(self, table, **kw):
        r = self.resp(requests.full_read(table), **kw)
        assert r.status == 0, frames.status_text(r.status)
        return r.data


@pytest.fixture
def meter():
    return Meter(key=KEY, seed=3)


@pytest.fixture
def cl(meter):
    return Client(meter)


# --- protocol ---------------------------------------------------------------------------------

def test_golden_vector_frames_accepted():
    with open(VECTORS) as f:
        vec = json.load(f)
    n = 0
    for v in vec['frames']:
        if v['key'] != 'ABCDEFGHIJKLMNOPQRST':
            continue
        m = Meter(key=v['key'])
        m.expected_seq = v['seq']
        m.rx(bytes.fromhex(v['frame']), 10)
        out, _ = drain(m)
        r = frames.parse_response(out)
        # accepted (digest and SEQ fine); the 8-byte read of the 7-byte BT52 is a 0x05
        assert r.status == (0x05 if 'BT52 offset 0 count 8' in v['what'] else 0), v['what']
        assert m.expected_seq == (v['seq'] + 1) & 0xFFFFFFFF
        n += 1
    assert n >= 5


def test_mbk_string_key():
    m = Meter(key='ABCDEFGHIJKLMNOPQRST')
    assert m.key == KEY


def test_wrong_key_gets_only_0x0b(cl, meter):
    exp = meter.expected_seq
    for seq in (exp, exp + 7, 0):
        out = cl.call(requests.full_read(requests.BT28), seq=seq, key=BAD_KEY)
        assert out[:3] == b'\x00\x09\x0b' and len(out) == 11
        assert meter.expected_seq == exp
    assert meter.stats['auth_failures'] == 3
    assert meter.stats['by_table'] == {}
    meter.error_trailer = False
    assert cl.call(requests.full_read(requests.BT28), key=BAD_KEY) == b'\x00\x01\x0b'


def test_wrong_seq_gets_0x0c_with_expected(cl, meter):
    exp = meter.expected_seq
    assert exp >= 0x10000000
    r = cl.resp(requests.full_read(requests.BT52), seq=5)
    assert r.status == 0x0C and r.expected_seq() == exp and r.trailer is not None
    assert meter.expected_seq == exp
    r = cl.resp(requests.full_read(requests.BT52), seq=exp)
    assert r.status == 0 and meter.expected_seq == exp + 1
    meter.error_trailer = False
    out = cl.call(requests.full_read(requests.BT52), seq=1)
    assert out == b'\x00\x05\x0c' + struct.pack('>I', exp + 1)
    assert meter.stats['seq_errors'] == 2


def test_check_order_and_greater_seq(cl, meter):
    exp = meter.expected_seq
    meter.auth_before_seq = False
    r = cl.resp(requests.full_read(requests.BT52), seq=1, key=BAD_KEY)
    assert r.status == 0x0C
    r = cl.resp(requests.full_read(requests.BT52), seq=exp, key=BAD_KEY)
    assert r.status == 0x0B
    meter.accept_greater_seq = True
    r = cl.resp(requests.full_read(requests.BT52), seq=exp + 10)
    assert r.status == 0 and meter.expected_seq == exp + 11
    r = cl.resp(requests.full_read(requests.BT52), seq=exp)
    assert r.status == 0x0C


def test_trailer_modes(cl, meter):
    out = cl.call(requests.full_read(requests.BT21))
    assert out[-8:] == digest.digest(out[2:-8], KEY)
    meter.trailer_mode = 'zeros'
    out = cl.call(requests.full_read(requests.BT21))
    assert out[-8:] == bytes(8)


def test_duplicate_refused_with_0x0c_and_seq_plus_1(cl, meter):
    # as seen on a real meter: the identical request again is refused, naming SEQ + 1
    f = cl.frame(requests.full_read(requests.BT28))
    first = frames.parse_response(cl.raw(f))
    assert first.status == 0
    exp = meter.expected_seq
    again = frames.parse_response(cl.raw(f))
    assert again.status == 0x0C and again.expected_seq() == exp
    assert exp == (frames.parse_request(f).seq + 1) & 0xFFFFFFFF
    assert meter.stats['replays'] == 1 and meter.expected_seq == exp
    assert frames.parse_response(cl.call(requests.full_read(requests.BT28))).status == 0


def test_replay_cache(cl, meter):
    meter.dup_mode = 'replay'
    f = cl.frame(requests.full_read(requests.BT28))
    first = cl.raw(f)
    exp = meter.expected_seq
    cl.t += 5000                        # values have moved on, the replay has not
    again = cl.raw(f)
    assert again == first and meter.expected_seq == exp
    assert meter.stats['replays'] == 1
    assert frames.parse_response(cl.call(requests.full_read(requests.BT28))).status == 0


def test_timing_options_pause_and_status_codes(cl, meter):
    meter.gap_ms = 300
    meter.gap_at = 10
    f = cl.frame(requests.full_read(requests.BT21))
    meter.rx(f, cl.t)
    t = cl.t + len(f) * meter.byte_ms + meter.turnaround_ms
    head = meter.tx(t + 10 * meter.byte_ms + 1)
    assert len(head) == 10
    assert meter.tx(t + 10 * meter.byte_ms + 250) == b''          # the pause
    rest = meter.tx(t + 2000)
    assert len(head + rest) == len(frames.parse_response(head + rest).raw)
    meter.gap_ms = 0
    cl.t = t + 3000
    for code in (0x06, 0x10, 0x12):
        meter.inject('status', 1, code=code)
        assert cl.resp(requests.full_read(requests.BT21)).status == code
    meter.auth_rate = 1.0
    assert cl.resp(requests.full_read(requests.BT21)).status == 0x0B


def test_status_choices(cl, meter):
    assert cl.resp(requests.full_read(0x0099)).status == 0x02
    assert cl.resp(requests.full_read(requests.BT28, 100)).status == 0x04
    assert cl.resp(requests.partial_read(requests.BT21, 5, 6)).status == 0x05
    assert cl.resp(requests.full_read(requests.BT07)).status == 0x03
    assert cl.resp(requests.full_write(requests.BT23, b'\x00')).status == 0x03
    assert cl.resp(b'\x55\x00\x01').status == 0x01
    r = cl.resp(b'\x30\x00\x15')                   # 3-byte full read
    assert r.status == 0 and r.count == 10
    r = cl.resp(requests.partial_read(requests.BT21, 8, 2))
    assert r.status == 0 and r.data == b'\x00\x37'


def test_rx_chunking_garbage_and_stale_partial(meter):
    f = frames.encode_request(requests.full_read(requests.BT21), meter.expected_seq, KEY)
    junk = b'\xff\xfe\x00\x03'
    data = junk + f
    for i, b in enumerate(data):
        meter.rx(bytes((b,)), 10 + i)
    out, _ = drain(meter)
    assert frames.parse_response(out).status == 0
    assert meter.stats['garbage_skipped'] >= 3
    f = frames.encode_request(requests.full_read(requests.BT21), meter.expected_seq, KEY)
    meter.rx(f[:6], 1000)
    meter.rx(f[6:], 1600)               # > 500 ms later: the first part was dropped
    assert drain(meter)[0] == b''
    assert meter.stats['dropped_partial'] == 1
    meter.rx(f, 2200)
    assert frames.parse_response(drain(meter)[0]).status == 0


# --- tables -----------------------------------------------------------------------------------

def test_tables_layout(cl, meter):
    meter.model.set(solar_w=2500)
    d = cl.read(requests.BT01)
    assert len(d) == 32 and d[:4].decode().isprintable() and d[4:12].decode().isprintable()
    assert d[16:32].decode().isalnum()
    d = cl.read(requests.BT21)
    assert len(d) == 10 and d[0] == 0 and d[8] == 0 and d[9] == 55
    snap_t = cl.t
    d = cl.read(requests.BT23)
    meter.model.advance(snap_t)
    assert len(d) == 220
    w = struct.unpack('<55i', d)
    s = meter.model.snapshot()
    assert (w[0], w[1], w[2], w[3]) == (s['e_in'], s['e_out'], s['eq_in'], s['eq_out'])
    assert w[12:20] == w[0:8]
    r = cl.resp(requests.partial_read(requests.BT23, 0, 16))
    assert struct.unpack('<4i', r.data)[:2] == w[:2]
    v = struct.unpack('<55i', cl.read(requests.BT28))
    assert v[0] == sum(v[26:29]) and v[1] == sum(v[29:32])
    assert 225400 <= min(v[7:10]) and max(v[7:10]) <= 234600
    assert 49950 <= v[11] <= 50050
    for pf in (v[10], v[13], v[14]):
        assert 500 <= pf <= 1000
    assert v[18:22] == v[0:4] and v[32:38] == v[26:32]
    assert v[47] == sum(v[49:52]) and v[48] == sum(v[52:55])
    d = cl.read(requests.BT52)
    assert len(d) == 7
    t = datetime.datetime.fromtimestamp(meter.model.epoch(), datetime.timezone.utc)
    assert tuple(d[:6]) == (t.year - 2000, t.month, t.day, t.hour, t.minute, t.second)
    assert d[6] & 7 == (t.isoweekday() % 7) and d[6] & 0x10
    meter.model.bt52_size = 8
    assert len(cl.read(requests.BT52)) == 8
    d = cl.read(requests.ET03)
    assert len(d) >= 139 and d[:30].decode().rstrip() and len(d[:30].decode()) == 30
    d = cl.read(requests.ET11)
    assert len(d) == 32 and d[0] == 5 and d[1] == 66
    assert struct.unpack('<H', d[7:9])[0] == 512
    d = cl.read(requests.ET13)
    assert len(d) == 5 * 66 and d[ET13_ALERT_OFFSET] == 0 and ET13_ALERT_OFFSET == 0x110
    d = cl.read(requests.ET50)
    assert len(d) == 68 and d[30] & 2 == 0 and d[:30].decode().startswith('MEP')
    meter.model.et58 = True
    assert cl.read(requests.ET50)[30] & 2
    assert cl.read(requests.BT08) == bytes(4)


def test_clock_follows_start_epoch():
    m = Meter(start_epoch=946684800 + 86400 * 59 + 3600 * 23 + 59 * 60 + 59)  # 2000-02-29
    c = Client(m)
    c.t = 0
    d = c.read(requests.BT52)
    assert tuple(d[:6]) == (0, 2, 29, 23, 59, 59) and d[6] & 7 == 2    # a Tuesday
    c.t = 1500
    assert tuple(c.read(requests.BT52)[:3]) == (0, 3, 1)


def test_bt28_totals_1000_samples():
    m = Meter(seed=11)
    m.model.set(solar_w=4000)
    exported = 0
    for i in range(1000):
        m.model.advance(i * 1000 + 500)
        v = m.model.registers()
        assert v[0] == sum(v[26:29]) and v[1] == sum(v[29:32])
        assert v[0] - v[1] == sum(m.model.p)
        for k in range(3):
            p = m.model.p[k]
            assert v[26 + k] == max(p, 0) and v[29 + k] == max(-p, 0)
            if p:
                i_a = abs(p) / (v[7 + k] / 1000.0 * m.model.pf[k] / 1000.0)
                assert abs(v[4 + k] / 1000.0 - i_a) < 0.002
        exported += v[1] > 0
    assert exported > 50


def test_energy_integrates_power_over_an_hour():
    m = Meter(seed=5)
    m.model.set(solar_w=1500)
    c = Client(m)
    c.t = 0
    e0 = struct.unpack('<4i', c.resp(requests.partial_read(requests.BT23, 0, 16)).data)
    fwd_wms = rev_wms = 0
    for s in range(3600):
        m.model.advance(s * 1000 + 1)
        v = m.model.registers()
        fwd_wms += v[0] * 1000
        rev_wms += v[1] * 1000
    c.t = 3600 * 1000
    e1 = struct.unpack('<4i', c.resp(requests.partial_read(requests.BT23, 0, 16)).data)
    assert e1[0] - e0[0] == pytest.approx(fwd_wms / 3.6e6, abs=1)
    assert e1[1] - e0[1] == pytest.approx(rev_wms / 3.6e6, abs=1)
    assert e1[1] > e0[1]


def test_model_set_and_snapshot(meter):
    meter.model.set(p1=3000, p2=-500, p3=0, u1=230.0, pf1=1.0, freq=50.0)
    meter.model.advance(10000)
    s = meter.model.snapshot()
    assert s['p1'] == 3000 and s['p_in_l1'] == 3000 and s['p_out_l2'] == 500
    assert s['u_l1'] == 230.0 and s['freq'] == 50.0
    assert s['i_l1'] == pytest.approx(3000 / 230.0, abs=0.001)
    assert s['p_in'] == 3000 and s['p_out'] == 500
    meter.model.set(p1=None, e_in=123)
    meter.model.advance(20000)
    assert meter.model.snapshot()['e_in'] >= 123


# --- pacing -----------------------------------------------------------------------------------

def test_pacing_bt28(meter):
    f = frames.encode_request(requests.full_read(requests.BT28), meter.expected_seq, KEY)
    meter.rx(f, 1000)
    assert meter.tx(1020) == b''
    assert meter.next_tx_ms() == pytest.approx(1020 + 1.0416667)
    got = meter.tx(1000 + 20 + 232 * 1.0416667 + 0.01)
    assert len(got) == 232
    end = 1000 + 20 + 233 * 1.0416667
    assert meter.next_tx_ms() == pytest.approx(end)
    assert len(meter.tx(end)) == 1 and meter.next_tx_ms() is None
    assert 262 < end - 1000 < 264


# --- faults -----------------------------------------------------------------------------------

def test_fault_silence(cl, meter):
    meter.dup_mode = 'replay'           # the lost answer is served again from the cache
    meter.inject('silence')
    exp = meter.expected_seq
    f = cl.frame(requests.full_read(requests.BT21))
    assert cl.raw(f) == b'' and meter.expected_seq == exp
    assert frames.parse_response(cl.raw(f)).status == 0
    meter.inject('silence', process=True)
    f = cl.frame(requests.full_read(requests.BT21))
    assert cl.raw(f) == b'' and meter.expected_seq == exp + 2
    assert frames.parse_response(cl.raw(f)).status == 0 and meter.stats['replays'] == 1


def test_fault_partial(cl, meter):
    meter.dup_mode = 'replay'
    meter.inject('partial', k=10)
    f = cl.frame(requests.full_read(requests.BT28))
    assert len(cl.raw(f)) == 10
    assert len(cl.raw(f)) == 233
    meter.inject('partial')
    assert len(cl.call(requests.full_read(requests.BT21))) == 23 // 2


def test_fault_garbage(cl, meter):
    meter.dup_mode = 'replay'
    meter.inject('garbage', count=2, n=5)
    for _ in range(2):
        out = cl.call(requests.full_read(requests.BT21))
        assert len(out) == 5 + 23 and min(out[:5]) >= 3
        d = frames.Decoder()
        ev = d.feed(out)
        assert ev[-1][0] == frames.EV_FRAME and ev[-1][1].count == 10
    assert len(cl.call(requests.full_read(requests.BT21))) == 23
    meter.inject('garbage_only', n=9)
    f = cl.frame(requests.full_read(requests.BT21))
    out = cl.raw(f)
    assert len(out) == 9
    assert frames.parse_response(cl.raw(f)).count == 10


def test_fault_auth_and_onp(cl, meter):
    meter.inject('auth')
    exp = meter.expected_seq
    assert cl.resp(requests.full_read(requests.BT21)).status == 0x0B
    assert meter.expected_seq == exp
    meter.inject('onp')
    assert cl.resp(requests.full_read(requests.BT21)).status == 0   # only BT07 writes
    r = cl.resp(requests.procedure(requests.EP39, 5, requests.ep39_params()))
    assert r.status == 0x04
    r = cl.resp(requests.procedure(requests.EP39, 6, requests.ep39_params()))
    assert r.status == 0 and r.data == b''
    assert cl.read(requests.BT08) == b'\x27\x08\x06\x00'


def test_fault_seq_storm_and_jump(cl, meter):
    meter.inject('seq_storm', count=3)
    seen = []
    for _ in range(3):
        exp = meter.expected_seq
        r = cl.resp(requests.full_read(requests.BT21))
        assert r.status == 0x0C and r.expected_seq() != exp
        seen.append(r.expected_seq())
    assert len(set(seen)) == 3
    assert cl.resp(requests.full_read(requests.BT21)).status == 0
    old = meter.expected_seq
    meter.inject('seq_jump')
    assert meter.expected_seq != old
    r = cl.resp(requests.full_read(requests.BT21), seq=old)
    assert r.status == 0x0C and r.expected_seq() == meter.expected_seq


def test_fault_alert_mid_and_resync(cl, meter):
    meter.inject('alert_mid')
    out = cl.call(requests.full_read(requests.BT21))
    assert out[:2] == b'\x00\x00' and frames.parse_response(out[2:]).count == 10
    assert meter.alerts_sent == 1 and meter.pending_alert()
    exp = meter.expected_seq
    meter.inject('alert_resync')
    out = cl.call(requests.full_read(requests.BT21))
    assert out[:2] == b'\x00\x00'
    r = frames.parse_response(out[2:])
    assert r.status == 0x0C and r.expected_seq() != exp
    assert meter.alerts_sent == 2


def test_fault_slow(cl, meter):
    meter.inject('slow', turnaround_ms=300)
    f = cl.frame(requests.full_read(requests.BT21))
    meter.rx(f, 100)
    assert meter.next_tx_ms() == pytest.approx(401.04, abs=0.01)
    drain(meter)
    meter.rx(cl.frame(requests.full_read(requests.BT21)), 1000)
    assert meter.next_tx_ms() == pytest.approx(1021.04, abs=0.01)


def test_unknown_fault():
    with pytest.raises(ValueError):
        Meter().inject('nope')


# --- alerts -----------------------------------------------------------------------------------

def _alert_chain(cl, meter, result_table):
    r = cl.resp(requests.partial_read(requests.ET11, 1, 1))
    assert r.data == b'\x42'
    r = cl.resp(requests.partial_read(requests.ET13, 4 * r.data[0] + 8, 1))
    assert r.data[0] != 0
    flags = cl.resp(requests.partial_read(requests.ET50, 30, 1)).data[0]
    assert cl.resp(requests.procedure(requests.EP39, 7, requests.ep39_params())).status == 0
    table = requests.ET58 if flags & 2 else requests.BT08
    assert table == result_table
    return cl.read(table)


def test_alert_chain_bt08(cl, meter):
    meter.alert(cl.t)
    out = cl.raw(b'')
    assert out == b'\x00\x00' and meter.alerts_sent == 1 and meter.pending_alert()
    cl.read(requests.BT28)                                   # polls in between are fine
    assert cl.read(requests.ET50)                           # out of order: does not count
    res = _alert_chain(cl, meter, requests.BT08)
    assert res == b'\x27\x08\x07\x00'
    assert meter.alerts_answered == 1 and not meter.pending_alert()
    assert len(meter.alert_latency_ms) == 1 and meter.alert_latency_ms[0] > 100
    assert cl.resp(requests.partial_read(requests.ET13, ET13_ALERT_OFFSET, 1)).data == b'\x00'


def test_alert_chain_et58(cl, meter):
    meter.model.et58 = True
    meter.alert(cl.t)
    cl.raw(b'')
    r = cl.resp(requests.partial_read(requests.ET11, 1, 1))
    cl.resp(requests.partial_read(requests.ET13, ET13_ALERT_OFFSET, 1))
    cl.resp(requests.partial_read(requests.ET50, 30, 1))
    cl.resp(requests.procedure(requests.EP39, 5, requests.ep39_params()))
    assert cl.read(requests.BT08) == bytes(4)                # result is not there
    assert meter.alerts_answered == 0
    assert cl.read(requests.ET58) == b'\x27\x08\x05\x00'
    assert meter.alerts_answered == 1 and r.status == 0


def test_alert_waits_for_the_transaction(meter):
    f = frames.encode_request(requests.full_read(requests.BT21), meter.expected_seq, KEY)
    meter.rx(f[:5], 100)
    meter.alert(101)                                 # request half received: defer
    meter.rx(f[5:], 110)
    out, _ = drain(meter)
    assert frames.parse_response(out[:-2]).count == 10 and out[-2:] == b'\x00\x00'
    f = frames.encode_request(requests.full_read(requests.BT21), meter.expected_seq, KEY)
    meter.rx(f, 1000)
    meter.alert(1001)                                # response pending: goes after it
    out, _ = drain(meter)
    assert out[-2:] == b'\x00\x00' and len(out) == 25
    assert meter.alerts_sent == 2


def test_procedure_results(cl, meter):
    assert cl.resp(requests.full_write(requests.BT07, b'\x27\x08\x04')).status == 0x04
    assert cl.resp(requests.full_write(requests.BT07, b'\x27\x08\x0a')).status == 0x04
    assert cl.resp(requests.procedure(0x0899, 8)).status == 0
    assert cl.read(requests.BT08) == b'\x99\x08\x08\x06'
    assert cl.resp(requests.procedure(requests.EP39, 9, b'\x04\x01\x09\x00')).status == 0
    assert cl.read(requests.BT08)[3] == 0x02
    meter.strict_pseq = True
    assert cl.resp(requests.procedure(requests.EP39, 9, requests.ep39_params())).status == 4
    assert cl.resp(requests.procedure(requests.EP39, 5, requests.ep39_params())).status == 0


# --- transports -------------------------------------------------------------------------------

def test_simport_paced():
    async def run():
        m = Meter()
        port = serve.SimPort(m)
        port.write(frames.encode_request(requests.full_read(requests.BT28), 1, KEY))
        first = await port.read(500)
        assert first
        while len(first) < 15:
            first += await port.read(100)
        r = frames.parse_response(first)
        assert r.status == 0x0C and len(first) == 15
        port.write(frames.encode_request(requests.full_read(requests.BT28), r.expected_seq(),
                                         KEY))
        t0 = time.monotonic()
        buf = b''
        reads = 0
        while len(buf) < 233:
            chunk = await port.read(500)
            assert chunk
            buf += chunk
            reads += 1
        dt = time.monotonic() - t0
        assert frames.parse_response(buf).count == 220
        # paced as on a 9600-baud line: the request's and the answer's byte times at the
        # least (a bound a busy machine cannot break), and the answer arrives in pieces,
        # not at once
        assert dt >= 0.26
        assert reads > 1
        assert await port.read(50) == b''
        port.close()
    asyncio.run(run())


async def _read_n(reader, n, timeout=3):
    buf = b''
    while len(buf) < n:
        buf += await asyncio.wait_for(reader.read(n - len(buf)), timeout)
    return buf


def test_tcp_server_paced():
    async def run():
        m = Meter()
        srv = await serve.serve_tcp(m)
        reader, writer = await asyncio.open_connection('127.0.0.1', srv.port)
        writer.write(frames.encode_request(requests.full_read(requests.BT28), 0, KEY))
        r = frames.parse_response(await _read_n(reader, 15))
        assert r.status == 0x0C
        # a second client replaces the first
        reader2, writer2 = await asyncio.open_connection('127.0.0.1', srv.port)
        await asyncio.sleep(0.05)
        writer2.write(frames.encode_request(requests.full_read(requests.BT28),
                                            r.expected_seq(), KEY))
        t0 = time.monotonic()
        first = await _read_n(reader2, 1)
        t1 = time.monotonic()
        rest = await _read_n(reader2, 232)
        t2 = time.monotonic()
        assert frames.parse_response(first + rest).count == 220
        assert t2 - t1 >= 0.23 and t2 - t0 < 0.5
        assert await reader.read(10) == b''          # the old client was closed
        writer.close()
        writer2.close()
        srv.close()
        await srv.wait_closed()
    asyncio.run(run())


def test_pty_transport():
    async def run():
        m = Meter()
        path = serve.open_pty(m)
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        os.write(fd, frames.encode_request(requests.full_read(requests.BT21), 0, KEY))
        buf = b''
        for _ in range(100):
            await asyncio.sleep(0.01)
            try:
                buf += os.read(fd, 100)
            except BlockingIOError:
                pass
            if len(buf) >= 15:
                break
        assert frames.parse_response(buf).status == 0x0C
        os.close(fd)
        serve.close_pty(path)
    asyncio.run(run())


def test_serial_transport_on_a_pty():
    pytest.importorskip('serial')

    async def run():
        master, slave = os.openpty()
        import tty
        tty.setraw(slave)
        m = Meter()
        link = serve.open_serial(m, os.ttyname(slave))
        os.set_blocking(master, False)
        os.write(master, frames.encode_request(requests.full_read(requests.BT21), 0, KEY))
        buf = b''
        for _ in range(100):
            await asyncio.sleep(0.01)
            try:
                buf += os.read(master, 100)
            except BlockingIOError:
                pass
            if len(buf) >= 15:
                break
        assert frames.parse_response(buf).status == 0x0C
        link.close()
        os.close(master)
        os.close(slave)
    asyncio.run(run())


def _line(proc, prefix, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = proc.stdout.readline()
        if line.startswith(prefix):
            return line
        if not line and proc.poll() is not None:
            break
    raise AssertionError('no %r line from the simulator' % prefix)


def _recv(s, n):
    buf = b''
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        assert chunk
        buf += chunk
    return buf


def test_cli_tcp_and_control():
    proc = subprocess.Popen(
        [sys.executable, '-m', 'tools.mepsim', '--tcp', '127.0.0.1:0',
         '--control', '127.0.0.1:0', '--no-stdin', '--seed', '9', '-v'],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = int(_line(proc, 'mepsim: tcp').split(':')[-1])
        cport = int(_line(proc, 'mepsim: control').split(':')[-1])
        c = socket.create_connection(('127.0.0.1', cport), timeout=5)
        cf = c.makefile('rw')
        cf.write('fault auth\n')
        cf.flush()
        assert cf.readline().startswith('ok fault auth')
        s = socket.create_connection(('127.0.0.1', port), timeout=5)
        s.sendall(frames.encode_request(requests.full_read(requests.BT21), 0, KEY))
        assert _recv(s, 11)[:3] == b'\x00\x09\x0b'
        s.sendall(frames.encode_request(requests.full_read(requests.BT21), 0, KEY))
        exp = frames.parse_response(_recv(s, 15)).expected_seq()
        s.sendall(frames.encode_request(requests.full_read(requests.BT21), exp, KEY))
        buf = _recv(s, 23)
        assert frames.parse_response(buf).data[9] == 55
        cf.write('status\n')
        cf.flush()
        st = json.loads(cf.readline())
        assert st['stats']['requests'] == 3 and st['expected_seq'] == exp + 1
        assert 'ABCDEFGHIJKLMNOP' not in json.dumps(st)
        cf.write('set p1=1234\n')
        cf.flush()
        assert cf.readline().startswith('ok')
        cf.write('quit\n')
        cf.flush()
        assert cf.readline().startswith('ok quit')
        proc.wait(5)
        out = proc.stdout.read()
        assert 'BT21' in out and 'ABCDEFGHIJKLMNOP' not in out
        s.close()
        c.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --- MicroPython (WebAssembly) ------------------------------------------------------------------

_MPY_RUNNER = r"""
import { loadMicroPython } from '%(mjs)s';
import fs from 'fs';
const out = [];
const mp = await loadMicroPython({stdout: (l) => out.push(l), stderr: (l) => out.push(l),
                                  heapsize: 32 * 1024 * 1024});
const root = '%(root)s';
for (const d of ['/lib', '/lib/mep', '/lib/tools', '/lib/tools/mepsim']) mp.FS.mkdir(d);
for (const f of ['__init__.py', 'digest.py', 'frames.py', 'requests.py'])
  mp.FS.writeFile('/lib/mep/' + f, fs.readFileSync(root + '/firmware/mep/' + f));
mp.FS.writeFile('/lib/tools/__init__.py', fs.readFileSync(root + '/tools/__init__.py'));
for (const f of ['__init__.py', 'meter.py', 'tables.py', 'faults.py'])
  mp.FS.writeFile('/lib/tools/mepsim/' + f, fs.readFileSync(root + '/tools/mepsim/' + f));
try { mp.runPython(fs.readFileSync(process.argv[2], 'utf8')); }
catch (e) { out.push('EXC ' + e); }
process.stdout.write(out.join('\n') + '\n');
"""

_MPY_SCRIPT = """
import sys
sys.path.append('/lib')
from tools.mepsim import Meter
from mep import frames, requests
KEY = b'ABCDEFGHIJKLMNOP'
def drain(m):
    out = b''
    while True:
        n = m.next_tx_ms()
        if n is None:
            return out
        out += m.tx(n)
m = Meter(key='ABCDEFGHIJKLMNOPQRST', seed=3)
t = 100
res = []
for tid in (1, 0x15, 0x17, 0x1C, 0x34, 0x803, 0x80B, 0x80D, 0x832, 8, 0x83A):
    m.rx(frames.encode_request(requests.full_read(tid), m.expected_seq, KEY), t)
    res.append(drain(m))
    t += 1500
for f in ('garbage', 'partial', 'seq_storm', 'alert_mid', 'silence'):
    m.inject(f)
    m.rx(frames.encode_request(requests.full_read(0x15), m.expected_seq, KEY), t)
    res.append(drain(m))
    t += 1000
m.model.advance(3600000)
res.append(m.model.table(0x17))
res.append(m.model.table(0x1C))
print('RESULT ' + ' '.join([r.hex() for r in res]))
"""


def test_meter_runs_identically_on_micropython(tmp_path):
    import shutil
    mjs = os.path.join(ROOT, 'tests', 'mpy', 'node_modules', '@micropython',
                       'micropython-webassembly-pyscript', 'micropython.mjs')
    node = shutil.which('node')
    if node is None or not os.path.exists(mjs):
        pytest.skip('node or the MicroPython WebAssembly package is missing')
    runner = tmp_path / 'run.mjs'
    runner.write_text(_MPY_RUNNER % {'mjs': 'file://' + mjs, 'root': ROOT})
    script = tmp_path / 't.py'
    script.write_text(_MPY_SCRIPT)
    out = subprocess.run([node, str(runner), str(script)], capture_output=True, text=True,
                         timeout=60).stdout
    lines = [x for x in out.splitlines() if x.startswith('RESULT ')]
    assert lines, out
    # the same script on CPython must give the same bytes
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile(_MPY_SCRIPT.replace("sys.path.append('/lib')", ''), 'mpy', 'exec'), {})
    assert lines[0] == buf.getvalue().strip()

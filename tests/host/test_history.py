# firmware/storage/ring.py, firmware/storage/history.py and firmware/storage/store.py on CPython.
import csv
import io
import json
import os
import random
import sys

import pytest

_FW = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                   'firmware')
if _FW not in sys.path:
    sys.path.insert(0, _FW)

from storage import atomic  # noqa: E402
from storage import history  # noqa: E402
from storage.history import History, HistoryError, P_UNIT  # noqa: E402
from storage.ring import Ring, FIELDS  # noqa: E402
from storage.store import Store  # noqa: E402

T0 = 1718000000 - 1718000000 % 86400 + 3 * 3600  # a UTC day, 03:00


# ---- ring ----

def cols(r, t=0, fields=None, newest=None):
    """Ring.stream(t, fields) as {name: [values]}; `newest`: only the last so many."""
    out = {k: list(v) for k, v in r.stream(t, fields)}
    if newest is not None:
        out = {k: v[len(v) - newest:] if newest else [] for k, v in out.items()}
    return out


def test_ring_wraps_and_keeps_the_newest():
    r = Ring(10)
    assert len(r) == 0 and r.latest() is None and cols(r) == {f: [] for f in FIELDS}
    for i in range(25):
        r.push({'time': T0 + i, 'p_in': 100 + i, 'p_out': 0, 'u_l1': 230.1, 'i_l1': 1.23,
                'freq': 49.987, 'p_in_l1': 100 + i})
    assert len(r) == 10
    assert r.latest()['time'] == T0 + 24 and r.latest()['p_in'] == 124
    assert r.latest()['u_l1'] == pytest.approx(230.1) and r.latest()['freq'] == pytest.approx(49.987)
    assert r.latest()['i_l1'] == pytest.approx(1.23)
    assert 'u_l2' not in r.latest(), 'missing values stay missing'
    every = cols(r)
    assert every['time'] == [T0 + i for i in range(15, 25)]
    assert every['p_in'] == [100 + i for i in range(15, 25)]
    assert every['u_l2'] == [None] * 10
    three = cols(r, fields=('p_in',), newest=3)
    assert set(three) == {'time', 'p_in'} and three['time'] == [T0 + 22, T0 + 23, T0 + 24]
    assert cols(r, T0 + 21)['time'] == [T0 + 22, T0 + 23, T0 + 24]
    assert cols(r, T0 + 24)['time'] == []
    r.clear()
    assert len(r) == 0


def test_ring_stream_not_full_full_and_wrapped():
    r = Ring(10, fields=('p_in', 'u_l1'))
    assert cols(r) == {'time': [], 'p_in': [], 'u_l1': []}
    for n in (3, 10, 17):                   # not full, exactly full, wrapped
        r.clear()
        for i in range(n):
            r.push({'time': T0 + i, 'p_in': 100 + i, 'u_l1': None if i % 4 else 230.5})
        kept = range(max(0, n - 10), n)
        assert cols(r) == {'time': [T0 + i for i in kept], 'p_in': [100 + i for i in kept],
                           'u_l1': [None if i % 4 else 230.5 for i in kept]}
        for t in (T0 - 1, T0 + n - 3, T0 + n - 1, T0 + n + 5):
            after = [i for i in kept if T0 + i > t]
            assert cols(r, t, ('p_in',)) == {'time': [T0 + i for i in after],
                                             'p_in': [100 + i for i in after]}
    assert cols(r, T0 + 14)['time'] == [T0 + 15, T0 + 16]


def test_ring_memory_and_saturation():
    r = Ring(900)
    assert r.bytes_per_slot() == 38 and r.nbytes() == 38 * 900
    r.push({'time': T0, 'p_in': 1e7, 'p_in_l1': 70000, 'i_l1': 1000.0, 'u_l1': -5, 'p_out': None})
    x = r.latest()
    assert x['p_in'] == 10000000 and x['p_in_l1'] == 65534 and x['i_l1'] == 655.34
    assert x['u_l1'] == 0 and 'p_out' not in x
    with pytest.raises(ValueError):
        Ring(0)


def test_ring_keeps_only_the_chosen_fields():
    r = Ring(300, ('p_in', 'p_out'))
    assert r.fields == ('time', 'p_in', 'p_out') and r.bytes_per_slot() == 12
    assert r.nbytes() == 3600
    for i in range(400):
        r.push({'time': T0 + i, 'p_in': 100000 + i, 'p_out': i % 3 or None, 'u_l1': 230.1})
    assert len(r) == 300
    assert r.latest() == {'time': T0 + 399, 'p_in': 100399}
    assert cols(r, 0, ('p_in', 'p_out', 'u_l1'), newest=5) == {'time': [T0 + 395 + k for k in range(5)],
                    'p_in': [100395 + k for k in range(5)],
                    'p_out': [2, None, 1, 2, None]}
    assert cols(r, T0 + 397, ('p_in',)) == {'time': [T0 + 398, T0 + 399], 'p_in': [100398, 100399]}


# ---- history: a brute-force reference ----

def reference(readings, period):
    """Buckets from the spec rules for monotonic readings: {start: [min, sum, n, max, ein, eout]}."""
    out = {}
    prev = [None, None]
    for r in readings:
        t = r['time']
        b = out.setdefault(t - t % period, [None, 0, 0, None, 0, 0])
        p = round(r['p_in'] - r['p_out'])
        b[0] = p if b[0] is None else min(b[0], p)
        b[3] = p if b[3] is None else max(b[3], p)
        b[1] += p
        b[2] += 1
        for k, key in enumerate(('e_in', 'e_out')):
            q = int(r[key])
            if prev[k] is not None:
                pq, pt = prev[k]
                d = q - pq
                if 0 < d and t - pt <= history.MAX_GAP and d * 3600 <= history.MAX_W * max(t - pt, 1):
                    b[4 + k] += d
            prev[k] = (q, t)
    return out


def gen_readings(seed, n=6000, start=T0):
    rnd = random.Random(seed)
    t, ein, eout = start, 5e6 + rnd.random() * 1000, 1e5
    out = []
    for _ in range(n):
        t += rnd.choice((1, 1, 1, 2, 5, 10, 37, 300, 900, 4000))  # missed readings, gaps
        p_in = rnd.choice((0, rnd.uniform(0, 20000)))
        p_out = 0 if p_in else rnd.uniform(0, 9000)
        ein += p_in * rnd.uniform(0.5, 3) / 3600
        eout += p_out * rnd.uniform(0.5, 3) / 3600
        if rnd.random() < 0.003:
            ein -= rnd.uniform(1, 500)  # counter jumps backwards
        out.append({'time': t, 'p_in': p_in, 'p_out': p_out, 'e_in': ein, 'e_out': eout})
    return out


def check_rows_against(h, level, ref, period):
    lv = h.level(level)
    rows = list(h.rows(level))
    oldest = (lv.head - lv.n + 1) * period
    want = {k: v for k, v in ref.items() if k >= oldest and (v[2] or v[4] or v[5])}
    assert [r[0] for r in rows] == sorted(want)
    for t, lo, avg, hi, ein, eout in rows:
        b = want[t]
        assert (ein, eout) == (b[4], b[5]), (level, t)
        assert abs(lo - b[0]) <= P_UNIT / 2 + 0.5 or abs(b[0]) > 65000
        assert abs(hi - b[3]) <= P_UNIT / 2 + 0.5 or abs(b[3]) > 65000
        assert abs(avg - b[1] / b[2]) <= P_UNIT / 2 + 0.5
        assert lo <= avg <= hi


@pytest.mark.parametrize('seed', [1, 2, 3])
def test_aggregation_matches_brute_force(tmp_path, seed):
    readings = gen_readings(seed)
    h = History(str(tmp_path / 'h.bin'))
    for r in readings:
        assert h.add(r)
    for name, period, n in history.LEVELS:
        check_rows_against(h, name, reference(readings, period), period)
    # every energy delta is counted exactly once in each level (within its window)
    days = list(h.rows('day'))
    ref = reference(readings, 86400)
    assert sum(r[4] for r in days) == sum(b[4] for b in ref.values()) > 0


def test_energy_never_negative_or_double_counted(tmp_path):
    h = History(str(tmp_path / 'h.bin'))
    seq = [(0, 1000), (10, 1010), (20, 990), (30, 995), (40, 995), (50, 10 ** 9), (60, 1001),
           (70, 1003)]
    for dt, e in seq:
        h.add({'time': T0 + dt, 'p_in': 1, 'p_out': 0, 'e_in': e, 'e_out': 0})
    (row,) = list(h.rows('minute', T0, T0 + 60))
    assert row[4] == 10 + 5  # backwards: 0 and the baseline follows; 995->995: 0; spike: 0
    assert [r[4] for r in h.rows('minute', T0 + 60)] == [2]  # 1001 -> 1003 only


def test_clock_jumps_make_no_duplicate_or_corrupt_buckets(tmp_path):
    h = History(str(tmp_path / 'h.bin'))
    rnd = random.Random(7)
    t, e, total = T0, 1000, 0
    truth = 0
    jumps = {300: -30, 700: -3 * 3600, 1100: +2 * 3600, 1500: -50000, 1900: +40 * 86400,
             2300: -7200, 2600: +59}
    snapshots = []
    for i in range(3000):
        t += jumps.get(i, 1)
        if i in jumps and jumps[i] < 0:
            snapshots.append({n: [r for r in h.rows(n) if r[0] < h.level(n).head * p]
                              for n, p, _ in history.LEVELS})
        d = rnd.randint(0, 5)
        e += d
        if i and jumps.get(i, 1) <= history.MAX_GAP:  # the first sets the baseline; long
            truth += d  # gaps are not attributed (documented)
        assert h.add({'time': t, 'p_in': rnd.uniform(0, 5000), 'p_out': 0, 'e_in': e, 'e_out': 0})
        for snap in (snapshots if i % 20 == 0 or (i - 1) in jumps else ()):  # closed
            # buckets are never rewritten
            for n in snap:
                now = {r[0]: r for r in h.rows(n)}
                for r in snap[n]:
                    assert now.get(r[0], r) == r
    for name, period, n in history.LEVELS:
        rows = list(h.rows(name))
        times = [r[0] for r in rows]
        assert times == sorted(set(times)), 'no duplicate buckets'
        assert all(tt % period == 0 for tt in times)
        for r in rows:
            assert r[1] <= r[2] <= r[3] and 0 <= r[1] and r[3] <= 5000 + P_UNIT
            assert r[4] >= 0 and r[5] == 0
    # the 40-day forward jump is within the day level: every Wh is there exactly once
    assert sum(r[4] for r in h.rows('day')) == truth > 0
    assert h.dropped == 0


def test_far_back_and_unset_clock(tmp_path):
    h = History(str(tmp_path / 'h.bin'))
    for i in range(100):
        assert h.add({'time': T0 + 86400 * 3 + i * 60, 'p_in': 100, 'p_out': 0})
    assert not h.add({'time': 946684800, 'p_in': 1, 'p_out': 0}), 'clock not set (2000)'
    assert not h.add({'p_in': 1, 'p_out': 0})
    before = list(h.rows('day'))
    # a clock far behind is dropped ...
    for i in range(0, 3600, 60):
        assert not h.add({'time': T0 + i, 'p_in': 200, 'p_out': 0})
    assert list(h.rows('day')) == before and h.dropped == 62
    # ... until it persists for RESYNC_S: then the future-dated history is discarded
    assert h.add({'time': T0 + 3600, 'p_in': 300, 'p_out': 0})
    assert 'clock' in h.warning
    days = list(h.rows('day'))
    assert days[-1][0] == T0 - T0 % 86400 and days[-1][2] == 300
    assert [r[0] for r in h.rows('minute')] == [T0 + 3600]


def test_forward_jump_leaves_empty_buckets(tmp_path):
    h = History(str(tmp_path / 'h.bin'), sizes=(10, 5, 3))
    h.add({'time': T0, 'p_in': 100, 'p_out': 0})
    h.add({'time': T0 + 300, 'p_in': 200, 'p_out': 0})
    assert [r[0] for r in h.rows('minute')] == [T0, T0 + 300]
    h.add({'time': T0 + 3600 * 24, 'p_in': 300, 'p_out': 0})
    assert [r[2] for r in h.rows('minute')] == [300]
    assert [r[2] for r in h.rows('day')] == [150, 300]
    with pytest.raises(HistoryError):
        list(h.rows('week'))


def test_memory_and_file_size(tmp_path):
    h = History(str(tmp_path / 'h.bin'))
    assert h.nbytes() == 3 * 20  # the open buckets; the rest is on flash
    h.add({'time': T0, 'p_in': 1, 'p_out': 0})
    h.save()
    assert sum(os.path.getsize(p) for p in h.files()) == h.file_size() < 52000


# ---- persistence ----

def test_save_load_round_trip_and_continuation(tmp_path):
    readings = gen_readings(11, n=3000)
    a = History(str(tmp_path / 'a.bin'))
    b = History(str(tmp_path / 'b.bin'))
    for i, r in enumerate(readings):
        a.add(r)
        b.add(r)
        if i == 1700:  # reboot in the middle of open buckets
            b.save()
            b = History(str(tmp_path / 'b.bin'))
            assert b.load() is None
            assert list(b.rows('minute')) == list(a.rows('minute'))
    for name, _, _ in history.LEVELS:
        assert list(b.rows(name)) == list(a.rows(name))


def test_save_rate_limit(tmp_path):
    h = History(str(tmp_path / 'h.bin'))
    assert h.maybe_save(1000) is False  # nothing to save
    h.add({'time': T0, 'p_in': 1, 'p_out': 0})
    assert h.maybe_save(1000) is True
    h.add({'time': T0 + 1, 'p_in': 1, 'p_out': 0})
    assert h.maybe_save(1030) is False and h.maybe_save(1059) is False
    assert h.maybe_save(1060) is True
    assert h.maybe_save(1200) is False  # not dirty
    h.add({'time': T0 + 2, 'p_in': 1, 'p_out': 0})
    assert h.maybe_save(500) is True  # the save clock went backwards: save, no stall


def test_async_save_rate_limit_and_round_trip(tmp_path):
    import asyncio
    h = History(str(tmp_path / 'h.bin'))
    h.add({'time': T0, 'p_in': 500, 'p_out': 0})
    assert asyncio.run(h.maybe_save_async(1000)) is True
    h.add({'time': T0 + 1, 'p_in': 700, 'p_out': 0})
    assert asyncio.run(h.maybe_save_async(1030)) is False      # at most once a minute
    assert asyncio.run(h.maybe_save_async(1060)) is True
    b = History(str(tmp_path / 'h.bin'))
    assert b.load() is None
    assert list(b.rows('minute')) == list(h.rows('minute'))


def test_save_failure_is_a_warning(tmp_path):
    h = History(str(tmp_path / 'missing-dir' / 'h.bin'))
    h.add({'time': T0, 'p_in': 1, 'p_out': 0})
    assert h.maybe_save(0) is False and 'not saved' in h.warning


@pytest.mark.parametrize('damage', ['garbage', 'truncate', 'flip', 'empty', 'layout'])
def test_corrupt_history_is_discarded(tmp_path, damage):
    p = str(tmp_path / 'h.bin')
    h = History(p)
    for i in range(500):
        h.add({'time': T0 + i * 30, 'p_in': 500, 'p_out': 0, 'e_in': i, 'e_out': 0})
    h.save()
    data = bytearray(open(h.state_path, 'rb').read())
    if damage == 'garbage':
        data = bytearray(b'\x00not a history file' * 50)
    elif damage == 'truncate':
        data = data[:h.state_size - 30]  # both state slots (the saves alternate) damaged
    elif damage == 'flip':
        data[h.state_size - 100] ^= 0x10
        data[2 * h.state_size - 100] ^= 0x10
    elif damage == 'empty':
        data = bytearray()
    with open(h.state_path, 'wb') as f:
        f.write(data)
    h2 = History(p, sizes=(60, 744, 366) if damage == 'layout' else None)
    w = h2.load()
    if damage == 'empty':  # as if never saved: nothing to warn about
        assert w is None
    else:
        assert 'corrupt' in w
    assert list(h2.rows('minute')) == [] and list(h2.rows('day')) == []
    h2.add({'time': T0 + 86400, 'p_in': 1, 'p_out': 0})  # and it keeps working
    assert len(list(h2.rows('day'))) == 1
    h2.save()
    h3 = History(p, [lv.n for lv in h2.levels])
    assert h3.load() is None and [r[2] for r in h3.rows('day')] == [0]


def test_damaged_newest_state_uses_the_previous_save(tmp_path):
    p = str(tmp_path / 'h.bin')
    h = History(p)
    h.add({'time': T0, 'p_in': 100, 'p_out': 0})
    h.save()
    h.add({'time': T0 + 60, 'p_in': 200, 'p_out': 0})
    h.save()  # the second state slot (A, B alternate)
    with open(h.state_path, 'r+b') as f:
        f.seek(20)
        f.write(b'\xff' * 8)
    h2 = History(p)
    assert 'previous save' in h2.load()
    assert [r[2] for r in h2.rows('minute')] == [100]


# power cuts during saves and the conversion: test_history_flash.py


async def test_save_async_round_trip(tmp_path):
    p = str(tmp_path / 'h.bin')
    h = History(p)
    for r in gen_readings(5, n=500):
        h.add(r)
    await h.save_async()
    h2 = History(p)
    assert h2.load() is None
    assert list(h2.rows('hour')) == list(h.rows('hour'))


# ---- export ----

def test_csv_and_json_export(tmp_path):
    h = History(str(tmp_path / 'h.bin'))
    readings = gen_readings(3, n=800)
    for r in readings:
        h.add(r)
    rows = list(h.rows('minute'))
    gen = h.to_csv('minute')
    assert iter(gen) is gen, 'a generator, not a string'
    lines = list(gen)
    assert all(line.endswith('\n') for line in lines)
    parsed = list(csv.reader(io.StringIO(''.join(lines))))
    assert parsed[0][:2] == ['time', 'utc'] and len(parsed) == len(rows) + 1
    for row, p in zip(rows, parsed[1:]):
        assert int(p[0]) == row[0] and [int(x) for x in p[2:]] == list(row[1:])
        assert p[1].endswith('Z') and p[1][:4] == '2024'
    import time as _t
    assert parsed[1][1] == _t.strftime('%Y-%m-%dT%H:%M:00Z', _t.gmtime(rows[0][0]))
    doc = json.loads(''.join(h.to_json('hour')))
    assert doc['level'] == 'hour' and doc['period'] == 3600
    assert doc['columns'] == list(history.COLUMNS)
    assert [tuple(r) for r in doc['rows']] == list(h.rows('hour'))
    mid = rows[len(rows) // 2][0]
    part = json.loads(''.join(h.to_json('minute', start=mid, end=mid + 600)))
    assert part['rows'] and all(mid <= r[0] < mid + 600 for r in part['rows'])
    assert json.loads(''.join(h.to_json('day', start=0, end=1)))['rows'] == []
    for dt, e in ((86400, 10 ** 7), (86410, 10 ** 7 + 5)):  # energy only
        h.add({'time': readings[-1]['time'] + dt, 'e_in': e, 'e_out': 0})
    assert list(h.rows('minute'))[-1][1:] == (None, None, None, 5, 0)
    assert json.loads(''.join(h.to_json('minute')))['rows'][-1][1] is None
    assert list(h.to_csv('minute'))[-1].split(',')[2] == ''


# ---- store ----

def test_store_ties_ring_and_history(tmp_path):
    s = Store(str(tmp_path), ring_capacity=60)
    assert s.load() is None
    for i in range(200):
        assert s.add({'time': T0 + i, 'p_in': 100 + i, 'p_out': 0, 'e_in': 1000 + i, 'e_out': 0})
    assert len(s.ring) == 60 and s.ring.latest()['p_in'] == 299
    assert s.maybe_save(5000) is True and s.maybe_save(5010) is False
    assert os.path.exists(str(tmp_path / 'history.state'))
    s2 = Store(str(tmp_path) + '/', ring_capacity=60)
    assert s2.load() is None and s2.warning is None
    assert list(s2.history.rows('minute')) == list(s.history.rows('minute'))
    assert len(s2.ring) == 0
    from storage.store import join
    assert join('', 'h.bin') == '/h.bin' and join('/data', 'h.bin') == '/data/h.bin'


def test_ring_keeps_what_the_api_serves():
    """/api/recent charts the ring's columns; the store's ring must keep every one."""
    from storage import store
    from web import server
    assert set(server.RECENT_FIELDS) <= set(store.RING_FIELDS)
    s = Store('/nonexistent', ring_capacity=10)
    assert set(server.RECENT_FIELDS) <= set(s.ring.fields)

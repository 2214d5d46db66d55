# firmware/storage/history.py on flash: the files against an all-in-RAM model of the same rules,
# saves and reloads at random points, power cuts at every write step, the conversion of the
# old single-file format, bounded RAM, chunked I/O.
import asyncio
import copy
import hashlib
import os
import random
import struct
from array import array

import pytest

from storage import history
from storage.history import History, P_UNIT, EMPTY

T0 = 1718000000 - 1718000000 % 86400 + 3 * 3600  # a UTC day, 03:00
SMALL = (100, 48, 10)


def patch_fs(monkeypatch, name, value):
    """Replace `open` (writes: history.py and histfmt.open_rw) or `os` (history.py and
    history_load.py) where the history's file code calls it."""
    from storage import histfmt, history_load
    for mod in {'open': (history, histfmt), 'os': (history, history_load)}[name]:
        monkeypatch.setattr(mod, name, value, raising=False)


# ---- the model: every bucket in RAM arrays (the previous implementation's rules) ----

class MLevel:
    def __init__(self, name, period, n):
        self.name, self.period, self.n = name, period, n
        self.pmin = array('h', [EMPTY] * n)
        self.pavg = array('h', [EMPTY] * n)
        self.pmax = array('h', [EMPTY] * n)
        self.ein = array('I', [0] * n)
        self.eout = array('I', [0] * n)
        self.head = -1
        self.sum = self.cnt = 0

    def _clear(self, s):
        self.pmin[s] = self.pavg[s] = self.pmax[s] = EMPTY
        self.ein[s] = self.eout[s] = 0

    def _clear_range(self, first, last):
        first = max(first, last - self.n + 1)
        for i in range(first, last + 1):
            self._clear(i % self.n)

    def add(self, t, p, de_in, de_out):
        i = t // self.period
        if i > self.head:
            self._clear_range(i if self.head < 0 else self.head + 1, i)
            self.head = i
            self.sum = self.cnt = 0
        s = self.head % self.n
        if p is not None:
            self.cnt += 1
            self.sum += p
            v = max(-32767, min(32767, round(p / P_UNIT)))
            if self.cnt == 1:
                self.pmin[s] = self.pmax[s] = v
            elif v < self.pmin[s]:
                self.pmin[s] = v
            elif v > self.pmax[s]:
                self.pmax[s] = v
            self.pavg[s] = max(-32767, min(32767, round(self.sum / self.cnt / P_UNIT)))
        self.ein[s] += de_in
        self.eout[s] += de_out

    def rebase(self, t):
        i = t // self.period
        if i <= self.head:
            self._clear_range(i, self.head)
            self.head = i
            self.sum = self.cnt = 0

    def rows(self):
        out = []
        for i in range(max(0, self.head - self.n + 1), self.head + 1):
            s = i % self.n
            lo = self.pmin[s]
            if lo == EMPTY and not self.ein[s] and not self.eout[s]:
                continue
            if lo == EMPTY:
                out.append((i * self.period, None, None, None, self.ein[s], self.eout[s]))
            else:
                out.append((i * self.period, lo * P_UNIT, self.pavg[s] * P_UNIT,
                            self.pmax[s] * P_UNIT, self.ein[s], self.eout[s]))
        return out


class Model:
    def __init__(self, sizes=None):
        self.levels = [MLevel(nm, per, sizes[k] if sizes else n)
                       for k, (nm, per, n) in enumerate(history.LEVELS)]
        self.reset()

    def reset(self):
        self.t_last = None
        self.base = [None, None]
        self.bt = [0, 0]
        self.drop0 = None

    def delta(self, k, e, t):
        if e is None:
            return 0
        q = int(e)
        b, dt = self.base[k], t - self.bt[k]
        self.base[k], self.bt[k] = q, t
        if b is None or q <= b or dt > history.MAX_GAP:
            return 0
        if (q - b) * 3600 > history.MAX_W * max(dt, 1):
            return 0
        return q - b

    def add(self, r):
        t = r.get('time')
        if t is None or not history.MIN_TIME <= t < history.MAX_TIME:
            return False
        if self.t_last is not None and t < self.t_last - history.BACK_LIMIT:
            if self.drop0 is None or t < self.drop0:
                self.drop0 = t
            if t - self.drop0 < history.RESYNC_S:
                return False
            for lv in self.levels:
                lv.rebase(t)
            self.reset()
        self.drop0 = None
        pi, po = r.get('p_in'), r.get('p_out')
        p = None if pi is None and po is None else round((pi or 0) - (po or 0))
        de_in, de_out = self.delta(0, r.get('e_in'), t), self.delta(1, r.get('e_out'), t)
        if self.t_last is None or t > self.t_last:
            self.t_last = t
        for lv in self.levels:
            lv.add(t, p, de_in, de_out)
        return True

    def reloaded(self):
        """What a reload of this state gives (the streak of too-old readings is not kept)."""
        m = copy.deepcopy(self)
        m.drop0 = None
        return m

    def rows(self):
        return {lv.name: lv.rows() for lv in self.levels}

    def legacy_bytes(self):
        """This state in the old single-file format (version 1)."""
        parts = [struct.pack('<4sBBH', b'MEPH', 1, P_UNIT, 3)]
        for lv in self.levels:
            parts.append(struct.pack('<Iiqi', lv.n, lv.head, lv.sum, lv.cnt))
        none = -1
        b = self.base
        parts.append(struct.pack('<qqqqq', none if b[0] is None else b[0],
                                 none if b[1] is None else b[1], self.bt[0], self.bt[1],
                                 none if self.t_last is None else self.t_last))
        for lv in self.levels:
            tc = 'H' if lv.period == 60 else 'I'
            for a in (lv.pmin, lv.pavg, lv.pmax, array(tc, lv.ein), array(tc, lv.eout)):
                parts.append(a.tobytes())
        data = b''.join(parts)
        return data + hashlib.sha256(data).digest()[:8]


def rows_of(h):
    return {lv.name: list(lv.rows()) for lv in h.levels}


def reload(path, sizes=None):
    h = History(path, sizes)
    h.load()
    return h


def walk(seed, n, start=T0, jumps=True):
    """Readings every 1-90 s with gaps, counters that sometimes go back and, with `jumps`,
    clock jumps: small ones back (merged), forward by hours and days, back by days
    (dropped, then trusted after an hour: rebase)."""
    rnd = random.Random(seed)
    t, ein, eout = start, 1e6, 5e4
    back_until = None
    for _ in range(n):
        x = rnd.random()
        if jumps and x < 0.004:
            t += rnd.choice((3 * 3600, 2 * 86400, 11 * 86400, 200))
        elif jumps and x < 0.007 and back_until is None:
            t -= rnd.choice((2, 3, 12)) * 86400
            back_until = t + 2 * history.RESYNC_S
        elif jumps and x < 0.03:
            t -= rnd.randint(1, 600)
        else:
            t += rnd.choice((1, 1, 2, 5, 30, 61, 90, 900))
        if back_until is not None and t > back_until:
            back_until = None
        p_in = rnd.choice((0, rnd.uniform(0, 12000)))
        p_out = 0 if p_in else rnd.uniform(0, 6000)
        ein += p_in / 3600 * rnd.uniform(1, 5)
        eout += p_out / 3600 * rnd.uniform(1, 5)
        if rnd.random() < 0.002:
            ein -= 300
        r = {'time': t, 'p_in': p_in, 'p_out': p_out, 'e_in': ein, 'e_out': eout}
        if rnd.random() < 0.02:
            r = {'time': t, 'e_in': ein}  # energy only
        yield r


# ---- the files against the model ----

@pytest.mark.parametrize('seed,sizes,lfs', [(1, SMALL, False), (2, SMALL, False),
                                            (3, (30, 24, 5), False), (4, None, False),
                                            (5, SMALL, True)])
def test_files_match_the_model_through_saves_and_reloads(tmp_path, monkeypatch, seed, sizes,
                                                         lfs):
    if lfs:  # littlefs-like file handles (LfsLikeFile below)
        patch_fs(monkeypatch, 'open', LfsLikeFile)
    p = str(tmp_path / 'h.bin')
    rnd = random.Random(seed * 7)
    h, m = History(p, sizes), Model(sizes)
    assert h.load() is None
    saved = m.reloaded()
    n = 2500 if sizes else 1200
    for k, r in enumerate(walk(seed, n)):
        seq = h.seq
        assert h.add(r) == m.add(r), (k, h.t_last, h._drop0, m.t_last, m.drop0)
        if h.seq != seq:  # too many closed buckets: written at once
            saved = m.reloaded()
        x = rnd.random()
        if x < 0.05:
            h.save()
            saved = m.reloaded()
        if x < 0.02:  # reboot right after a save: nothing lost
            h = reload(p, sizes)
            m = m.reloaded()
            assert h.warning is None
        elif 0.98 < x:  # power cut: back to the last save
            h = reload(p, sizes)
            m = saved.reloaded()
        if k % 25 == 0 or x < 0.02 or x > 0.98:
            assert rows_of(h) == m.rows(), k
        for lv in h.levels:
            assert len(lv.pend) <= history.PEND_MAX
    h.save()
    assert rows_of(reload(p, sizes)) == m.rows()


def test_stale_future_records_never_come_back(tmp_path):
    """History written with a clock days ahead, a rebase, then time moving on over the
    future-dated buckets in steps, gaps and jumps: none of the old records reappears."""
    p = str(tmp_path / 'h.bin')
    h, m = History(p, SMALL), Model(SMALL)
    e = 1000
    for i in range(0, 3 * 86400, 97):  # the wrong clock: three days of history, saved
        e += 1
        r = {'time': T0 + 5 * 86400 + i, 'p_in': 5000, 'p_out': 0, 'e_in': e}
        h.add(r), m.add(r)
        if i % 1200 == 0:
            h.save()
    h.save()
    t = T0
    for i in range(0, 4000, 30):  # the right clock, trusted after RESYNC_S: rebase
        r = {'time': t + i, 'p_in': 100, 'p_out': 0}
        assert h.add(r) == m.add(r), (k, h.t_last, h._drop0, m.t_last, m.drop0)
    assert 'clock' in h.warning
    h.save()
    h = reload(p, SMALL)
    assert rows_of(h) == m.rows()
    t += 4000
    for step in (60, 61, 3600, 59, 7200, 86400, 30, 2 * 86400, 600, 86400):
        t += step
        r = {'time': t, 'p_in': 200, 'p_out': 0}
        h.add(r), m.add(r)
        assert rows_of(h) == m.rows()
        h.save()
        h = reload(p, SMALL)
        assert rows_of(h) == m.rows(), step
        assert all(x[2] <= 200 for rows in rows_of(h).values() for x in rows)


def test_closed_unsaved_buckets_are_bounded(tmp_path):
    p = str(tmp_path / 'h.bin')
    h, m = History(p, SMALL), Model(SMALL)
    for i in range(300):  # each reading in a new minute and hour: buckets close every time
        r = {'time': T0 + i * 3700, 'p_in': 100 + i, 'p_out': 0}
        h.add(r), m.add(r)
        assert all(len(lv.pend) <= history.PEND_MAX for lv in h.levels)
        assert h.nbytes() <= 3 * (history.PEND_MAX + 1) * 20
    assert rows_of(h) == m.rows()
    h.save()
    assert rows_of(reload(p, SMALL)) == m.rows()
    bad = History(str(tmp_path / 'no-dir' / 'h.bin'), SMALL)  # saves fail: oldest dropped
    for i in range(50):
        bad.add({'time': T0 + i * 3700, 'p_in': 100, 'p_out': 0})
        assert all(len(lv.pend) <= history.PEND_MAX for lv in bad.levels)
    assert 'not saved' in bad.warning
    assert len(list(bad.rows('hour'))) == history.PEND_MAX + 1


def test_file_sizes_and_ram(tmp_path):
    p = str(tmp_path / 'history.bin')
    h = History(p)
    assert h.state_path == str(tmp_path / 'history.state')
    assert h.files()[1:] == [str(tmp_path / ('history.%s.%d' % (n, k)))
                             for n, pages in (('minute', 8), ('hour', 4), ('day', 2))
                             for k in range(pages)]
    h.add({'time': T0, 'p_in': 1, 'p_out': 0})
    h.save()
    sizes = [os.path.getsize(f) for f in h.files()]
    page = 192 * 20  # a 4 KB flash block
    assert sizes == [2 * 152] + [page] * 7 + [96 * 20] + [page] * 3 + [168 * 20] + [page, 174 * 20]
    assert sum(sizes) == h.file_size() < 52000
    assert h.nbytes() == 3 * 20
    assert not os.path.exists(p)


def test_torn_and_garbage_records_read_as_empty(tmp_path):
    p = str(tmp_path / 'h.bin')
    h = History(p, SMALL)
    for i in range(0, 5 * 3600, 20):
        h.add({'time': T0 + i, 'p_in': 1000 + i % 977, 'p_out': 0, 'e_in': 100 + i // 20})
    h.save()
    good = rows_of(reload(p, SMALL))
    rnd = random.Random(5)
    page = h.levels[0].files()[0]  # the 100 minutes fit in the first file
    data = bytearray(open(page, 'rb').read())
    for _ in range(40):  # flip bits, zero and shift whole records
        k = rnd.randrange(len(data))
        data[k] ^= 1 << rnd.randrange(8)
    data[200:260] = bytes(60)
    data[400:440] = data[420:460]
    with open(page, 'wb') as f:
        f.write(data[:len(data) - 333])  # and truncated
    h2 = reload(p, SMALL)
    assert h2.warning is None
    got = rows_of(h2)
    assert got['hour'] == good['hour'] and got['day'] == good['day']
    assert 0 < len(got['minute']) < len(good['minute'])
    assert set(got['minute']) <= set(good['minute']), 'never a damaged value'


# ---- power cuts ----

class PowerCut(BaseException):
    pass


def install_faults(monkeypatch, fail_at, counter):
    """history's open/os calls and file writes are numbered steps; step `fail_at` raises
    PowerCut (a write then stores only its first half, a torn write)."""
    real_open = open

    def step(name):
        counter[0] += 1
        if counter[0] == fail_at:
            raise PowerCut(name)

    class FakeOs:
        def __getattr__(self, name):
            real = getattr(os, name)

            def call(*a):
                step(name)
                return real(*a)
            return call

    class FakeFile:
        def __init__(self, f, mode):
            self.f, self.mode = f, mode

        def write(self, b):
            b = bytes(memoryview(b).cast('B'))
            if counter[0] + 1 == fail_at:
                self.f.write(b[:len(b) // 2])
            step('write')
            return self.f.write(b)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def close(self):
            self.f.close()

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

    def fake_open(p, mode='r'):
        if 'r' in mode and '+' not in mode:
            return real_open(p, mode)  # reads are not steps
        step('open')
        return FakeFile(real_open(p, mode), mode)

    patch_fs(monkeypatch, 'os', FakeOs())
    patch_fs(monkeypatch, 'open', fake_open)


def count_steps(monkeypatch, fn):
    counter = [0]
    with monkeypatch.context() as mp:
        install_faults(mp, None, counter)
        fn()
    return counter[0]


def scenario_minute(h, m):
    for i in range(0, 5 * 60, 7):
        r = {'time': T0 + 300 + i, 'p_in': 700 + i, 'p_out': 0, 'e_in': 2000 + i}
        h.add(r), m.add(r)


def scenario_gap(h, m):  # a 130-minute gap: skipped buckets are written as empty records
    for dt in (130 * 60, 130 * 60 + 10, 130 * 60 + 70):
        r = {'time': T0 + 300 + dt, 'p_in': 900, 'p_out': 0, 'e_in': 2100}
        h.add(r), m.add(r)


def scenario_long_gap(h, m):  # 30 hours: whole minute windows, several files
    for dt in (30 * 3600, 30 * 3600 + 61):
        r = {'time': T0 + 300 + dt, 'p_in': 900, 'p_out': 0, 'e_in': 2100}
        h.add(r), m.add(r)


def scenario_rebase(h, m):  # the clock was 3 days ahead: trusted back after an hour
    for i in range(0, 3700, 60):
        r = {'time': T0 - 3 * 86400 + i, 'p_in': 50, 'p_out': 0, 'e_in': 3000 + i}
        h.add(r), m.add(r)


def by_time(rows):
    return {r[0]: r for r in rows}


def assert_old_state(got, o, n, rebase=False):
    """`got` (rows of a reload after a save was cut short) is the old state `o`, except for
    buckets the new state `n` already dropped (their slots were overwritten): every bucket
    is the old or the new value; after a rebase the records of its open buckets may be
    read too (new values)."""
    for name, per, _ in history.LEVELS:
        go, oo, nn = by_time(got[name]), by_time(o[name]), by_time(n[name])
        for t in set(go) | set(oo):
            assert go.get(t) in (oo.get(t), nn.get(t)), (name, t)
        if not rebase:
            first = min(nn) if nn else 0
            assert all(go.get(t) == oo[t] for t in oo if t >= first), name


@pytest.mark.parametrize('scenario,sizes', [(scenario_minute, SMALL), (scenario_gap, SMALL),
                                            (scenario_rebase, SMALL), (scenario_long_gap, None)])
def test_power_cut_at_every_step_of_a_save(tmp_path, monkeypatch, scenario, sizes):
    def prepare(p):
        h, m = History(p, sizes), Model(sizes)
        for i in range(-3 * 3600, 300, 20):  # every window full, saved once a minute
            r = {'time': T0 + i, 'p_in': 1000 + i % 997, 'p_out': 0, 'e_in': 10 ** 5 + i}
            h.add(r), m.add(r)
            if i % 60 == 0:
                h.save()
        h.save()
        old = m.reloaded()
        scenario(h, m)
        return h, m, old

    h, m, old = prepare(str(tmp_path / 'count.bin'))
    total = count_steps(monkeypatch, h.save)
    assert total >= 4  # open and write of the minute file and of the state
    for k in range(1, total + 1):
        p = str(tmp_path / ('k%d.bin' % k))
        h, m, old = prepare(p)
        seq = h.seq
        with monkeypatch.context() as mp:
            install_faults(mp, k, [0])
            with pytest.raises(PowerCut):
                h.save()
        h2 = reload(p, sizes)
        assert h2.seq == seq and h2.t_last == old.t_last, 'the state of the last save'
        assert_old_state(rows_of(h2), old.rows(), m.rows(), scenario is scenario_rebase)
        # and it goes on from there: nothing the cut save wrote comes back later
        if scenario is scenario_rebase:
            continue  # its open buckets may be read (they are new values), checked above
        ref = old.reloaded()
        for i in range(0, 4 * 3600, 45):
            r = {'time': m.t_last + 30 + i, 'p_in': 400, 'p_out': 0, 'e_in': 10 ** 6 + i}
            h2.add(r), ref.add(r)
        h2.save()
        assert rows_of(reload(p, sizes)) == ref.rows(), 'step %d' % k


def test_power_cut_during_the_first_save(tmp_path, monkeypatch):
    def prepare(p):
        h, m = History(p, SMALL), Model(SMALL)
        for i in range(0, 200, 5):
            r = {'time': T0 + i, 'p_in': 100 + i, 'p_out': 0}
            h.add(r), m.add(r)
        return h, m

    h, m = prepare(str(tmp_path / 'count.bin'))
    total = count_steps(monkeypatch, h.save)
    assert total > 8  # whole files, several chunks each
    for k in range(1, total + 1):
        p = str(tmp_path / ('k%d.bin' % k))
        h, m = prepare(p)
        with monkeypatch.context() as mp:
            install_faults(mp, k, [0])
            with pytest.raises(PowerCut):
                h.save()
        h2 = reload(p, SMALL)
        assert rows_of(h2) == {'minute': [], 'hour': [], 'day': []}, k
        h2.add({'time': T0 + 86400, 'p_in': 5, 'p_out': 0})
        h2.save()
        assert [r[0] for r in reload(p, SMALL).rows('day')] == [T0 - T0 % 86400 + 86400]


# ---- the old format ----

def legacy(tmp_path, name='history.bin', sizes=SMALL, seed=9, n=1500):
    m = Model(sizes)
    for r in walk(seed, n, jumps=False):
        m.add(r)
    p = str(tmp_path / name)
    with open(p, 'wb') as f:
        f.write(m.legacy_bytes())
    return p, m


def test_old_file_is_converted(tmp_path):
    p, m = legacy(tmp_path)
    h = History(p, SMALL)
    assert h.load() is None
    assert rows_of(h) == m.rows()
    assert not os.path.exists(p) and os.path.exists(h.state_path)
    h2 = reload(p, SMALL)  # the converted files, with the open buckets and the baseline
    assert h2.warning is None and rows_of(h2) == m.rows()
    for r in walk(10, 300, start=m.t_last + 5, jumps=False):
        h2.add(r), m.add(r)
    assert rows_of(h2) == m.rows()


def test_old_file_default_sizes_and_backup_copy(tmp_path):
    p, m = legacy(tmp_path, sizes=None, n=800)
    os.rename(p, p + '.bak')  # atomic.py's backup when the main file was missing
    h = History(p)
    assert h.load() is None and rows_of(h) == m.rows()
    assert not os.path.exists(p + '.bak')


@pytest.mark.parametrize('damage', ['flip', 'truncate', 'layout'])
def test_damaged_old_file_is_dropped_with_a_warning(tmp_path, damage):
    p, m = legacy(tmp_path)
    data = bytearray(open(p, 'rb').read())
    if damage == 'flip':
        data[len(data) // 2] ^= 4
    elif damage == 'truncate':
        data = data[:-20]
    with open(p, 'wb') as f:
        f.write(data)
    sizes = (60, 48, 10) if damage == 'layout' else SMALL
    h = History(p, sizes)
    assert 'corrupt' in h.load()
    assert rows_of(h) == {'minute': [], 'hour': [], 'day': []}
    assert not os.path.exists(p)
    h.add({'time': T0, 'p_in': 1, 'p_out': 0})
    h.save()
    h2 = reload(p, sizes)
    assert h2.warning is None and list(h2.rows('minute')) == [(T0, 0, 0, 0, 0, 0)]


def test_power_cut_during_the_conversion(tmp_path, monkeypatch):
    p, m = legacy(tmp_path, 'count.bin')
    total = count_steps(monkeypatch, lambda: History(p, SMALL).load())
    assert total > 10
    for k in range(1, total + 1):
        p, m = legacy(tmp_path, 'k%d.bin' % k)
        with monkeypatch.context() as mp:
            install_faults(mp, k, [0])
            with pytest.raises(PowerCut):
                History(p, SMALL).load()
        h = reload(p, SMALL)
        assert h.warning is None and rows_of(h) == m.rows(), k


# ---- chunked I/O and the event loop ----

def test_io_is_chunked(tmp_path, monkeypatch):
    p = str(tmp_path / 'h.bin')
    h = History(p)
    sizes = []
    real_open = open

    class F:
        def __init__(self, f):
            self.f = f

        def write(self, b):
            sizes.append(len(b))
            return self.f.write(b)

        def read(self, n=-1):
            assert 0 < n <= 640
            b = self.f.read(n)
            sizes.append(len(b))
            return b

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

    patch_fs(monkeypatch, 'open', lambda p, mode='r': F(real_open(p, mode)))
    for i in range(0, 2 * 86400, 45):  # closed buckets are written 9 at a time
        h.add({'time': T0 + i, 'p_in': 100 + i % 300, 'p_out': 0})
    h.save()
    assert max(sizes) <= 640 and sum(sizes) >= 2550 * 20  # the first one: whole files
    sizes.clear()
    lines = list(h.to_csv('minute'))
    assert len(lines) == 1441 and max(sizes) <= 640 and len(sizes) >= 1440 // 32


async def test_async_save_yields_and_takes_readings_meanwhile(tmp_path):
    p = str(tmp_path / 'h.bin')
    h, m = History(p, SMALL), Model(SMALL)
    for i in range(0, 480, 20):  # 8 minutes, nothing written yet: the save writes whole files
        r = {'time': T0 + 3000 + i, 'p_in': 300 + i % 50, 'p_out': 0, 'e_in': 10 + i // 20}
        h.add(r), m.add(r)
    at_start = m.reloaded()
    ticks = [0]
    t = [T0 + 3000 + 480]

    async def meter():  # readings arrive while the save runs: a new minute and hour
        while True:
            t[0] += 40
            r = {'time': t[0], 'p_in': 800, 'p_out': 0, 'e_in': 10 + t[0] // 20}
            h.add(r), m.add(r)
            ticks[0] += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(meter())
    await h.save_async()
    task.cancel()
    assert ticks[0] >= 5
    assert rows_of(h) == m.rows()
    assert rows_of(reload(p, SMALL)) == at_start.rows()  # the snapshot of the start
    await h.save_async()
    assert rows_of(reload(p, SMALL)) == m.rows()


async def test_async_save_cancelled_leaves_the_previous_save(tmp_path):
    p = str(tmp_path / 'h.bin')
    h, m = History(p, SMALL), Model(SMALL)
    for i in range(0, 3600, 30):
        r = {'time': T0 + i, 'p_in': 100, 'p_out': 0}
        h.add(r), m.add(r)
    h.save()
    saved = m.reloaded()
    for i in range(0, 300, 30):  # after a gap: whole windows to write
        r = {'time': T0 + 5 * 3600 + i, 'p_in': 200, 'p_out': 0}
        h.add(r), m.add(r)
    task = asyncio.create_task(h.save_async())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert h.dirty and not h._saving
    h2 = reload(p, SMALL)
    assert h2.t_last == saved.t_last
    assert_old_state(rows_of(h2), saved.rows(), m.rows())
    h.save()
    assert rows_of(reload(p, SMALL)) == m.rows()


class LfsLikeFile:
    """A file as littlefs has it: each open handle works on its own copy, which replaces
    the whole file when the handle is closed (the last one closed wins)."""

    def __init__(self, path, mode):
        self.path, self.pos = path, 0
        self.data = bytearray()
        if 'w' not in mode:
            with open(path, 'rb') as f:  # FileNotFoundError like the real one
                self.data = bytearray(f.read())

    def seek(self, pos, whence=0):
        self.pos = pos if whence == 0 else len(self.data) + pos
        return self.pos

    def write(self, b):
        b = bytes(b)
        if self.pos > len(self.data):
            self.data += bytes(self.pos - len(self.data))
        self.data[self.pos:self.pos + len(b)] = b
        self.pos += len(b)
        return len(b)

    def read(self, n=-1):
        b = bytes(self.data[self.pos:] if n < 0 else self.data[self.pos:self.pos + n])
        self.pos += len(b)
        return b

    def close(self):
        if self.data is not None:
            with open(self.path, 'wb') as f:
                f.write(self.data)
            self.data = None

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


async def test_save_while_an_async_save_is_suspended(tmp_path, monkeypatch):
    """The app's final save() runs right after cancelling the tasks, before a cancelled
    save_async() got control back: the suspended one is ended first (its file closed),
    then everything is written once more."""
    patch_fs(monkeypatch, 'open', LfsLikeFile)
    p = str(tmp_path / 'h.bin')
    h, m = History(p, SMALL), Model(SMALL)
    for i in range(0, 3600, 30):
        r = {'time': T0 + i, 'p_in': 100 + i % 7, 'p_out': 0}
        h.add(r), m.add(r)
    h.save()
    for i in range(0, 300, 30):  # after a gap: several chunks to write
        r = {'time': T0 + 5 * 3600 + i, 'p_in': 200, 'p_out': 0}
        h.add(r), m.add(r)
    task = asyncio.create_task(h.save_async())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert h._saving
    task.cancel()
    h.save()
    assert not h._saving and not h.dirty
    await asyncio.gather(task, return_exceptions=True)
    assert rows_of(reload(p, SMALL)) == m.rows() == rows_of(h)
